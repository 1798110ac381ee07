#!/usr/bin/env bash
# Installs the Debian packages ccmr's tests use, only when something is missing.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have swtpm || need+=(swtpm swtpm-tools)
have tpm2_pcrread || need+=(tpm2-tools)
have evmctl || need+=(ima-evm-utils)
# setpriv drops root for the tests that need file modes to apply (TestReadOnlyFolder).
have setpriv || need+=(util-linux)
# PostgreSQL (initdb, postgres) for the fleet store tests, which start their own server.
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
dpkg -s libtss2-tcti-swtpm0 >/dev/null 2>&1 || need+=(libtss2-tcti-swtpm0)
if [ "${CCMR_E2E:-}" = 1 ]; then
	have qemu-system-x86_64 || need+=(qemu-system-x86)
	# The dynamic busybox package also answers to "busybox": check for the static one.
	{ [ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1; } || need+=(busybox-static)
	have cpio || need+=(cpio)
fi
if [ "${CCMR_CROSS:-}" = 1 ]; then
	have qemu-aarch64 || need+=(qemu-user) # make cross runs the linux/arm64 verifier tests under it
fi
# Debian trixie's systemd-pcrextend for the systemd log tests, in .cache (installs nothing).
[ "${CCMR_SYSTEMD:-}" = 1 ] && bash "$(dirname "$0")/systemd-trixie.sh" >/dev/null
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
echo "deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
