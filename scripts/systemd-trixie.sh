#!/usr/bin/env bash
# Fetches Debian trixie's systemd-pcrextend and the libraries it needs into
# .cache/systemd-trixie/root, without touching the machine's apt sources or
# installing anything: an apt sources list of the project's own, its own
# package lists and archive folder, `apt-get download`, then `dpkg-deb -x`.
# The binary is then run with trixie's own dynamic loader (bookworm's glibc is
# older than the one trixie's systemd is built against):
#   R=.cache/systemd-trixie/root
#   $R/usr/lib64/ld-linux-x86-64.so.2 --library-path "$(cat .cache/systemd-trixie/libpath)" \
#       $R/usr/lib/systemd/systemd-pcrextend ...
# Prints the root folder. Used by eventlog/cel's TestSystemdPcrextend (skipped
# when the folder is absent).
set -euo pipefail
cd "$(dirname "$0")/.."
C=$PWD/.cache/systemd-trixie
R=$C/root
[ -x "$R/usr/lib/systemd/systemd-pcrextend" ] && [ -s "$C/libpath" ] && [ -x "$R/usr/lib64/ld-linux-x86-64.so.2" ] && ls "$R"/usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-*.so >/dev/null 2>&1 && { echo "$R"; exit 0; }
mkdir -p "$C/lists/partial" "$C/archives/partial" "$C/dl"
# deb.debian.org signs trixie with the keys of debian-archive-keyring (bookworm's
# package already holds the trixie keys).
cat >"$C/sources.list" <<SRC
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main
SRC
APT=(-o APT::Sandbox::User=root -o Dir::Etc::sourcelist="$C/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$C/lists"
	-o Dir::Cache::Archives="$C/archives" -o Dir::Cache="$C/cache" -o APT::Get::List-Cleanup=0
	-o Dir::State::status=/dev/null -o Debug::NoLocking=1 -qq)
mkdir -p "$C/cache"
timeout 600 apt-get "${APT[@]}" update >&2
# systemd (pcrextend, libsystemd-shared), glibc, what libsystemd-shared links,
# and what it dlopens for a TPM: tpm2-tss's ESYS, MU, RC, the TCTI loader and
# the swtpm and device TCTIs, and OpenSSL's libcrypto.
PKGS=(systemd libsystemd-shared libc6 libssl3t64 libacl1 libapparmor1 libaudit1 libcap-ng0 libblkid1 libcap2 libcrypt1
	libgcrypt20 libgpg-error0 libkmod2 liblz4-1 liblzma5 libmount1 libpam0g libseccomp2 libselinux1
	libpcre2-8-0 libzstd1 zlib1g libtss2-esys-3.0.2-0t64 libtss2-mu-4.0.1-0t64 libtss2-rc0t64
	libtss2-tctildr0t64 libtss2-tcti-swtpm0t64 libtss2-tcti-device0t64 libtss2-sys1t64 libcryptsetup12
	libdevmapper1.02.1 libjson-c5 libargon2-1 libudev1 libsystemd0 libgcc-s1 libeconf0 libxxhash0 libfdisk1
	libidn2-0 libunistring5 libpwquality1 libp11-kit0 libffi8)
rm -f "$C"/dl/*.deb
(cd "$C/dl" && timeout 600 apt-get "${APT[@]}" download "${PKGS[@]}" >&2)
rm -rf "$R.tmp" && mkdir -p "$R.tmp"
for d in "$C"/dl/*.deb; do dpkg-deb -x "$d" "$R.tmp"; done
dpkg-deb -f "$C"/dl/systemd_*.deb Version >"$R.tmp/SYSTEMD_VERSION"
rm -rf "$R" && mv "$R.tmp" "$R"
echo "$R/usr/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu/systemd" >"$C/libpath"
echo "$R"
