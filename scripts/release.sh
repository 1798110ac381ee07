#!/usr/bin/env bash
# make release: static binaries for PLATFORMS, a CycloneDX SBOM of each
# (cyclonedx-gomod, pinned below, from the binary's own build information),
# the Debian packages of the linux ones, and SHA256SUMS, in OUT (dist/).
#
# Reproducible: -trimpath, no VCS stamp, CGO off, the version given rather
# than read from the tree, and every time stamp from SOURCE_DATE_EPOCH (the
# last commit's time): two builds of one commit are the same bytes, which
# scripts/release-check.sh proves on two fresh copies of the tree.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${VERSION:?VERSION is unset}" "${SOURCE_DATE_EPOCH:?SOURCE_DATE_EPOCH is unset}"
out=${OUT:-dist}
platforms=${PLATFORMS:-linux/amd64 linux/arm64}
cyclonedx=${CYCLONEDX:-github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@v1.10.0}
export CGO_ENABLED=0 SOURCE_DATE_EPOCH GOFLAGS=-mod=readonly

rm -rf "$out"
mkdir -p "$out"
echo "release $VERSION (SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH): $platforms" >&2
for p in $platforms; do
	os=${p%/*} arch=${p#*/}
	bin="$out/ccmr_${VERSION}_${os}_${arch}"
	[ "$os" = windows ] && bin="$bin.exe"
	GOCACHE=${RELEASE_GOCACHE:-$(go env GOCACHE)} GOOS=$os GOARCH=$arch go build -trimpath -buildvcs=false \
		-ldflags "-s -w -X main.version=$VERSION" -o "$bin" ./cmd/ccmr
	GOFLAGS= go run "$cyclonedx" bin -json -noserial -notimestamp \
		-version "$VERSION" -output "$bin.cdx.json" "$bin"
done

for p in $platforms; do
	os=${p%/*} arch=${p#*/}
	[ "$os" = linux ] || continue
	ARCH=$arch BINARY="$out/ccmr_${VERSION}_${os}_${arch}" OUT="$out" bash scripts/deb.sh
done

(cd "$out" && sha256sum -- * >SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
cat "$out/SHA256SUMS"
