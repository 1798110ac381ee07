#!/usr/bin/env bash
# make release-check: builds the release of HEAD twice, from two fresh
# copies of the committed tree (git archive) in two different folders, the
# second with an empty Go build cache so that every package is compiled
# again, and requires the same bytes. It also checks each SBOM against the
# binary's own module list (go version -m).
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(bash scripts/release-version.sh)
version=${version%+dirty} # the copies are of HEAD, without the changes
epoch=$(git log -1 --format=%ct)
work=$(mktemp -d "${TMPDIR:-/tmp}/ccmr-release-check.XXXXXX")
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
start=$(date +%s)
for t in a b; do
	mkdir -p "$work/$t/ccmr-$t"
	git archive --format=tar HEAD | tar -x -C "$work/$t/ccmr-$t"
done
export VERSION=$version SOURCE_DATE_EPOCH=$epoch OUT=dist
(cd "$work/a/ccmr-a" && bash scripts/release.sh >/dev/null)
(cd "$work/b/ccmr-b" && RELEASE_GOCACHE="$work/b/gocache" bash scripts/release.sh >/dev/null)
a="$work/a/ccmr-a/dist" b="$work/b/ccmr-b/dist"
if ! diff -r "$a" "$b" >/dev/null; then
	echo "release-check: FAIL: two builds of $version differ:" >&2
	diff "$a/SHA256SUMS" "$b/SHA256SUMS" >&2 || true
	exit 1
fi
(cd "$a" && sha256sum --quiet -c SHA256SUMS)
n=0
for sbom in "$a"/*.cdx.json; do
	bin=${sbom%.cdx.json}
	want=$(go version -m "$bin" | awk '$1 == "dep" { print $2 "@" $3 }' | sort)
	got=$(jq -er 'select(.bomFormat == "CycloneDX" and .specVersion == "1.6") | .components[] | "\(.name)@\(.version)"' "$sbom" | sort)
	if [ -z "$want" ] || [ "$want" != "$got" ]; then
		echo "release-check: FAIL: $(basename "$sbom") does not list the modules of $(basename "$bin"):" >&2
		diff <(echo "$want") <(echo "$got") >&2 || true
		exit 1
	fi
	n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "release-check: FAIL: no SBOM" >&2; exit 1; }
echo "release-check: $version: $(wc -l <"$a/SHA256SUMS") files byte-identical across two clean builds (one with an empty build cache); $n SBOMs list their binaries' modules; $(($(date +%s) - start)) s"
