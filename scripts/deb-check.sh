#!/usr/bin/env bash
# make deb-check: builds the Debian package, installs it with dpkg into an
# empty root (never this machine's own: dpkg --root), and runs what it
# installed: `ccmr version`, the man pages and completions, the demo's
# steps (scripts/demo.sh with CCMR set to the installed binary). Then
# builds and runs the Containerfile where podman or docker can, and says so
# in one line where neither can.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/ccmr-deb-check.XXXXXX")
trap 'rm -rf "$work"' EXIT
start=$(date +%s)
make --no-print-directory build BIN="$work/ccmr" >/dev/null
version=$(bash scripts/release-version.sh)
VERSION=$version SOURCE_DATE_EPOCH=$(git log -1 --format=%ct) ARCH=$(go env GOARCH) \
	BINARY="$work/ccmr" OUT="$work/out" bash scripts/deb.sh 2>/dev/null
deb=$(echo "$work"/out/ccmr_*.deb)
[ -f "$deb" ] || { echo "deb-check: FAIL: no package built" >&2; exit 1; }

root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: >"$root/var/lib/dpkg/status"
dpkg --root="$root" --log=/dev/null -i "$deb" >/dev/null
dpkg --root="$root" -s ccmr | grep -q '^Status: install ok installed$' ||
	{ echo "deb-check: FAIL: dpkg does not list ccmr as installed" >&2; exit 1; }
ccmr="$root/usr/bin/ccmr"
# The generator of the pages just installed: one page per command, naming
# each of its flags (built only with the tag, so run here).
go test -count=1 -tags ccmr_man -run TestManPages ./cmd/ccmr >/dev/null
"$ccmr" version | grep -qF "ccmr $version " ||
	{ echo "deb-check: FAIL: installed ccmr version: $("$ccmr" version)" >&2; exit 1; }

# Every file the package promises is there and works.
for f in usr/share/man/man1/ccmr.1.gz usr/share/man/man1/ccmr-verify.1.gz \
	usr/share/bash-completion/completions/ccmr usr/share/zsh/vendor-completions/_ccmr \
	usr/share/fish/vendor_completions.d/ccmr.fish usr/lib/systemd/system/ccmr-ima-forward.service \
	usr/lib/tmpfiles.d/ccmr.conf usr/share/doc/ccmr/copyright usr/share/doc/ccmr/NOTICE; do
	[ -s "$root/$f" ] || { echo "deb-check: FAIL: $f not installed" >&2; exit 1; }
done
zcat "$root/usr/share/man/man1/ccmr-verify.1.gz" | grep -q -- 'nonce' ||
	{ echo "deb-check: FAIL: ccmr-verify(1) does not document --nonce" >&2; exit 1; }
bash --norc -c 'source "$1" && complete -p ccmr >/dev/null' _ "$root/usr/share/bash-completion/completions/ccmr" ||
	{ echo "deb-check: FAIL: the bash completion does not load" >&2; exit 1; }
grep -qx 'ExecStart=/usr/bin/ccmr ima forward --interval 2s' "$root/usr/lib/systemd/system/ccmr-ima-forward.service" ||
	{ echo "deb-check: FAIL: the unit does not run the installed binary" >&2; exit 1; }
if command -v systemd-analyze >/dev/null; then
	# The unit's syntax (an unknown key is only a message, so any output
	# fails), with ExecStart pointed at the installed binary.
	mkdir -p "$work/units"
	sed "s|^ExecStart=/usr/bin/ccmr |ExecStart=$ccmr |" "$root/usr/lib/systemd/system/ccmr-ima-forward.service" \
		>"$work/units/ccmr-ima-forward.service"
	problems=$(systemd-analyze verify --man=no "$work/units/ccmr-ima-forward.service" 2>&1 || echo "exit $?")
	[ -z "$problems" ] || { echo "deb-check: FAIL: systemd-analyze verify: $problems" >&2; exit 1; }
fi

# The demo's steps against the installed binary.
TMPDIR="$work" CCMR="$ccmr" bash scripts/demo.sh >"$work/demo.out" 2>&1 ||
	{ cat "$work/demo.out" >&2; echo "deb-check: FAIL: demo with the installed binary" >&2; exit 1; }
grep -q ': TRUSTED (platform sim)$' "$work/demo.out" ||
	{ cat "$work/demo.out" >&2; echo "deb-check: FAIL: the demo's verify did not say trusted" >&2; exit 1; }
echo "deb-check: $(basename "$deb") ($(stat -c %s "$deb") bytes) installed into an empty root with dpkg; version, man pages, completions, unit and demo pass; $(($(date +%s) - start)) s"

# The verifier container.
runtime=
for r in podman docker; do
	if command -v "$r" >/dev/null && "$r" info >/dev/null 2>&1; then runtime=$r; break; fi
done
if [ -z "$runtime" ]; then
	echo "deb-check: Containerfile NOT BUILT: no container runtime here (podman absent or docker without a daemon)"
	exit 0
fi
ctx="$work/context"
mkdir -p "$ctx"
cp "$work/ccmr" "$ctx/ccmr"
cp /etc/ssl/certs/ca-certificates.crt LICENSE NOTICE "$ctx/"
tag="ccmr-deb-check:$$"
"$runtime" build -q -f Containerfile -t "$tag" "$ctx" >/dev/null
out=$("$runtime" run --rm --network=none "$tag" version)
"$runtime" rmi -f "$tag" >/dev/null 2>&1 || true
case $out in "ccmr $version "*) echo "deb-check: Containerfile built and run with $runtime: $out" ;;
*) echo "deb-check: FAIL: the container says: $out" >&2; exit 1 ;; esac
