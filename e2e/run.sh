#!/usr/bin/env bash
# make e2e: ccmr end to end on a real Linux kernel (docs/e2e.md).
#
# Boots Debian's cloud kernel under QEMU with a TPM 2.0 from swtpm and IMA
# on, runs ccmr inside (registers, read, ima forward into mr_ima backed by
# PCR 14, quote), brings the evidence back over a serial port and verifies
# it here with a policy whose reference values this script computes itself;
# then checks that tampered copies of the evidence fail at the right layer.
# Ends with PASS (exit 0) or FAIL (exit 1) and names the artifacts folder.
#
# Environment:
#   CCMR             ccmr binary to use (static; default: built here)
#   E2E_ACCEL        auto (default), kvm or tcg
#   E2E_KERNEL_PKG   Debian kernel package (default: what linux-image-cloud-amd64 depends on)
#   E2E_CACHE        cache folder (default .cache/e2e)
#   E2E_OUT          artifacts folder (default e2e-out/run-DATE)
#   E2E_TIMEOUT      seconds the guest may run (default 300)
#   E2E_MODULES      extra kernel modules to load in the guest (names)
set -uo pipefail

T0=$(date +%s)
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CACHE=${E2E_CACHE:-$ROOT/.cache/e2e}
OUTDIR=${E2E_OUT:-$ROOT/e2e-out/run-$(date +%Y%m%d-%H%M%S)}
GUEST_TIMEOUT=${E2E_TIMEOUT:-300}
PROBE_TIMEOUT=10
mkdir -p "$CACHE" "$OUTDIR/host"
OUTDIR=$(cd "$OUTDIR" && pwd)
SUMMARY=$OUTDIR/summary.txt
: >"$SUMMARY"
failures=0

say() { echo "e2e: $*"; }
pass() { echo "PASS $*" | tee -a "$SUMMARY"; }
fail() {
	echo "FAIL $*" | tee -a "$SUMMARY"
	failures=$((failures + 1))
}
die() {
	fail "$*"
	finish
}
finish() {
	local t=$(($(date +%s) - T0))
	echo "time: ${t}s total" | tee -a "$SUMMARY"
	echo "artifacts: $OUTDIR"
	if [ "$failures" -eq 0 ]; then
		echo "e2e: PASS" | tee -a "$SUMMARY"
		exit 0
	fi
	echo "e2e: FAIL ($failures checks failed)" | tee -a "$SUMMARY"
	exit 1
}

SWTPM_PID=""
SOCKDIR=""
cleanup() {
	[ -n "$SWTPM_PID" ] && kill "$SWTPM_PID" 2>/dev/null
	[ -n "$SOCKDIR" ] && rm -rf "$SOCKDIR"
}
trap cleanup EXIT

# ---- tools ---------------------------------------------------------------
missing=()
for t in qemu-system-x86_64 swtpm swtpm_setup cpio gzip dpkg-deb apt-get apt-cache base64 sha256sum timeout go; do
	command -v "$t" >/dev/null 2>&1 || missing+=("$t")
done
BUSYBOX=/bin/busybox
[ -x $BUSYBOX ] && ! ldd $BUSYBOX >/dev/null 2>&1 || missing+=("busybox-static (a static /bin/busybox)")
[ ${#missing[@]} -eq 0 ] || die "missing: ${missing[*]} (CCMR_E2E=1 bash scripts/deps.sh installs them)"

# ---- the kernel ----------------------------------------------------------
cloudkernel() { apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-/ {print $2; exit}'; }
PKG=${E2E_KERNEL_PKG:-$(cloudkernel)}
if [ -z "$PKG" ]; then
	say "no package list names the cloud kernel: apt-get update"
	sudo=""
	[ "$(id -u)" = 0 ] || sudo=sudo
	$sudo apt-get update -qq >/dev/null 2>&1 || true
	PKG=$(cloudkernel)
fi
[ -n "$PKG" ] || die "no Debian cloud kernel package (apt-cache depends linux-image-cloud-amd64)"
KDIR=$CACHE/kernel/$PKG
if ! ls "$KDIR"/boot/vmlinuz-* >/dev/null 2>&1; then
	say "fetching $PKG with apt-get download"
	rm -rf "$CACHE/dl" && mkdir -p "$CACHE/dl"
	if ! (cd "$CACHE/dl" && timeout 300 apt-get download "$PKG" >/dev/null 2>&1); then
		say "apt-get download failed; apt-get update and retry"
		sudo=""
		[ "$(id -u)" = 0 ] || sudo=sudo
		$sudo apt-get update -qq >/dev/null 2>&1
		(cd "$CACHE/dl" && timeout 300 apt-get download "$PKG" >/dev/null 2>&1) || die "apt-get download $PKG"
	fi
	rm -rf "$KDIR.tmp" && mkdir -p "$KDIR.tmp"
	dpkg-deb -x "$CACHE"/dl/"$PKG"_*.deb "$KDIR.tmp" || die "dpkg-deb -x $PKG"
	dpkg-deb -f "$CACHE"/dl/"$PKG"_*.deb Version >"$KDIR.tmp/VERSION"
	rm -rf "$KDIR" && mv "$KDIR.tmp" "$KDIR" && rm -rf "$CACHE/dl"
fi
VMLINUZ=$(ls "$KDIR"/boot/vmlinuz-* | head -1)
KCONFIG=$(ls "$KDIR"/boot/config-* | head -1)
KREL=${VMLINUZ##*/vmlinuz-}
say "kernel $PKG $(cat "$KDIR/VERSION" 2>/dev/null) ($KREL)"
for sym in CONFIG_IMA CONFIG_SECURITYFS; do
	grep -q "^$sym=y" "$KCONFIG" || die "kernel $KREL lacks $sym=y"
done

go build -o "$CACHE/e2etool" ./e2e/tool || die "go build ./e2e/tool"
TOOL=$CACHE/e2etool

# Modules the guest must load: tpm, tpm_tis_core, tpm_tis when they are not
# built in, and their dependencies (modinfo's depends=), in load order.
MODDIR=$KDIR/lib/modules/$KREL
mods=()
for pair in CONFIG_TCG_TPM:tpm CONFIG_TCG_TIS_CORE:tpm_tis_core CONFIG_TCG_TIS:tpm_tis; do
	sym=${pair%%:*}
	case "$(grep "^$sym=" "$KCONFIG" | cut -d= -f2)" in
	y) ;;
	m) mods+=("${pair##*:}") ;;
	*) die "kernel $KREL has no $sym" ;;
	esac
done
mods+=(${E2E_MODULES:-})
declare -A seen=()
order=()
KO=$CACHE/modules
rm -rf "$KO" && mkdir -p "$KO"
addmod() { # NAME: its dependencies first, then itself (uncompressed into $KO)
	local name=$1 f d
	[ -n "${seen[$name]:-}" ] && return 0
	seen[$name]=1
	f=$(find "$MODDIR" \( -name "$name.ko*" -o -name "${name//_/-}.ko*" \) | head -1)
	[ -n "$f" ] || {
		fail "module $name not in $MODDIR"
		return 1
	}
	case "$f" in
	*.ko.xz) xz -dc "$f" >"$KO/$name.ko" ;;
	*.ko.zst) zstd -qdc "$f" >"$KO/$name.ko" ;;
	*.ko.gz) gzip -dc "$f" >"$KO/$name.ko" ;;
	*) cp "$f" "$KO/$name.ko" ;;
	esac || {
		fail "module $name: cannot unpack $f"
		return 1
	}
	for d in $("$TOOL" ko-depends "$KO/$name.ko"); do addmod "$d" || return 1; done
	order+=("$name")
}
for m in "${mods[@]}"; do addmod "$m" || die "kernel modules"; done
[ ${#order[@]} -eq 0 ] && say "tpm_tis is built in: no modules" || say "modules for the guest: ${order[*]}"

# ---- ccmr and the host helper -------------------------------------------
if [ -z "${CCMR:-}" ]; then
	say "building ccmr (static)"
	CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(git describe --always --dirty 2>/dev/null || echo devel)" \
		-o "$CACHE/ccmr" ./cmd/ccmr || die "go build ./cmd/ccmr"
	CCMR=$CACHE/ccmr
fi
CCMR=$(cd "$(dirname "$CCMR")" && pwd)/$(basename "$CCMR")
ldd "$CCMR" >/dev/null 2>&1 && die "$CCMR is not static (build with CGO_ENABLED=0)"
say "ccmr: $CCMR ($("$CCMR" version 2>/dev/null | head -1))"

# ---- the initramfs --------------------------------------------------------
STAGE=$CACHE/initramfs
rm -rf "$STAGE" && mkdir -p "$STAGE"/{bin,proc,sys,dev,run,tmp,lib/modules/e2e,etc/e2e}
cp e2e/init.sh "$STAGE/init" && chmod 755 "$STAGE/init"
cp $BUSYBOX "$STAGE/bin/busybox"
cp "$CCMR" "$STAGE/bin/ccmr"
cp -r e2e/guest/. "$STAGE/"
: >"$STAGE/etc/e2e/modules"
for m in "${order[@]}"; do
	cp "$KO/$m.ko" "$STAGE/lib/modules/e2e/$m.ko" || die "module $m"
	echo "$m.ko" >>"$STAGE/etc/e2e/modules"
done
# The reference digests of the policy: every file in the initramfs, hashed
# here (the guest measures the same bytes).
(cd "$STAGE" && find . -type f | LC_ALL=C sort | xargs sha256sum) >"$OUTDIR/host/initramfs.sha256"
(cd "$STAGE" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$CACHE/initramfs.cpio.gz" || die "cpio"
say "initramfs $(du -k "$CACHE/initramfs.cpio.gz" | cut -f1) KiB"

# ---- accelerator -----------------------------------------------------------
# KVM when it works: on some machines /dev/kvm opens but the guest hangs or
# the CPU model is refused, so a tiny guest must print a marker in time.
PROBE=$CACHE/probe
rm -rf "$PROBE" && mkdir -p "$PROBE/bin" "$PROBE/proc"
cp $BUSYBOX "$PROBE/bin/busybox"
printf '#!/bin/busybox sh\n/bin/busybox echo CCMR-E2E-PROBE-OK\n/bin/busybox poweroff -f\n' >"$PROBE/init"
chmod 755 "$PROBE/init"
(cd "$PROBE" && find . | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$CACHE/probe.cpio.gz"
probe() { # ACCEL-ARGS...: 0 when a guest boots with them
	# (in a subshell, so that a QEMU that aborts is reported into the log)
	(timeout $PROBE_TIMEOUT qemu-system-x86_64 -machine q35 "$@" -m 256 -display none -monitor none \
		-serial stdio -no-reboot -kernel "$VMLINUZ" -initrd "$CACHE/probe.cpio.gz" \
		-append "console=ttyS0 panic=-1 quiet" </dev/null 2>&1; exit 0) 2>&1 | tr -d '\r' >"$OUTDIR/host/probe.log"
	grep -q '^CCMR-E2E-PROBE-OK' "$OUTDIR/host/probe.log"
}
ACCEL=()
case "${E2E_ACCEL:-auto}" in
tcg) ACCEL=(-accel tcg) ;;
kvm) ACCEL=(-accel kvm -cpu host) ;;
auto)
	if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
		for try in "-accel kvm -cpu host" "-accel kvm"; do
			tp=$(date +%s)
			if probe $try; then
				ACCEL=($try)
				break
			fi
			say "KVM probe '$try' failed after $(($(date +%s) - tp))s: $(grep -m2 '^qemu-system' "$OUTDIR/host/probe.log" | tr '\n' ' ')"
		done
	else
		say "/dev/kvm is not usable"
	fi
	[ ${#ACCEL[@]} -gt 0 ] || ACCEL=(-accel tcg)
	;;
*) die "E2E_ACCEL=$E2E_ACCEL: want auto, kvm or tcg" ;;
esac
say "accelerator: ${ACCEL[*]}"
{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "kernel: $PKG $(cat "$KDIR/VERSION" 2>/dev/null) ($KREL)"
	echo "qemu: $(qemu-system-x86_64 --version | head -1)"
	echo "swtpm: $(swtpm --version 2>&1 | head -1)"
	echo "ccmr: $("$CCMR" version 2>&1 | head -1)"
	echo "accelerator: ${ACCEL[*]}"
	echo "host: $(uname -srm)"
} >"$OUTDIR/host/versions.txt"
echo "accelerator: ${ACCEL[*]}" >>"$SUMMARY"

# ---- swtpm -----------------------------------------------------------------
SOCKDIR=$(mktemp -d /tmp/ccmr-e2e.XXXXXX)
TPMDIR=$OUTDIR/host/swtpm
mkdir -p "$TPMDIR"
timeout 120 swtpm_setup --tpm2 --tpmstate "$TPMDIR" --createek --pcr-banks sha1,sha256 --overwrite \
	>"$OUTDIR/host/swtpm_setup.log" 2>&1 || die "swtpm_setup (see $OUTDIR/host/swtpm_setup.log)"
swtpm socket --tpm2 --tpmstate dir="$TPMDIR" --ctrl type=unixio,path="$SOCKDIR/swtpm.sock" \
	--log file="$OUTDIR/host/swtpm.log",level=1 --terminate &
SWTPM_PID=$!
for _ in $(seq 50); do [ -S "$SOCKDIR/swtpm.sock" ] && break; sleep 0.1; done
[ -S "$SOCKDIR/swtpm.sock" ] || die "swtpm did not create its socket"

# ---- the guest -------------------------------------------------------------
NONCE=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
echo "$NONCE" >"$OUTDIR/host/nonce.txt"
APPEND="console=ttyS0 panic=-1 quiet loglevel=4 ima_template=ima-sig ima_hash=sha256 ccmr_e2e.nonce=$NONCE"
echo "qemu-system-x86_64 -machine q35 ${ACCEL[*]} -m 1024 -kernel $(basename "$VMLINUZ") -initrd initramfs.cpio.gz -append \"$APPEND\" -device tpm-tis" >"$OUTDIR/host/qemu-cmdline.txt"
say "booting the guest (timeout ${GUEST_TIMEOUT}s)"
TB=$(date +%s)
timeout "$GUEST_TIMEOUT" qemu-system-x86_64 -machine q35 "${ACCEL[@]}" -m 1024 -smp 1 \
	-display none -monitor none -no-reboot \
	-serial file:"$OUTDIR/console.log" -serial file:"$OUTDIR/host/ttyS1.txt" \
	-kernel "$VMLINUZ" -initrd "$CACHE/initramfs.cpio.gz" -append "$APPEND" \
	-chardev socket,id=chrtpm,path="$SOCKDIR/swtpm.sock" \
	-tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0 \
	</dev/null >"$OUTDIR/host/qemu.log" 2>&1
qrc=$?
BOOT_S=$(($(date +%s) - TB))
echo "guest: ${BOOT_S}s (qemu exit $qrc)" >>"$SUMMARY"
say "guest ran ${BOOT_S}s (qemu exit $qrc)"
[ $qrc -eq 124 ] && fail "guest did not finish within ${GUEST_TIMEOUT}s"
tr -d '\r' <"$OUTDIR/console.log" | grep '^e2e: ' | sed 's/^/  guest /'

# ---- artifacts back from the guest -------------------------------------------
G=$OUTDIR/guest
mkdir -p "$G"
tr -d '\r' <"$OUTDIR/host/ttyS1.txt" >"$OUTDIR/host/ttyS1.clean"
end=$(grep -m1 '^-----END CCMR-E2E ' "$OUTDIR/host/ttyS1.clean")
if [ -z "$end" ]; then
	echo "--- last lines of the guest console"
	tr -d '\r' <"$OUTDIR/console.log" | tail -30
	die "no artifacts from the guest (see $OUTDIR/console.log)"
fi
sum=$(echo "$end" | awk '{print $3}' | tr -d -)
sed -n '/^-----BEGIN CCMR-E2E-----$/,/^-----END CCMR-E2E /p' "$OUTDIR/host/ttyS1.clean" | sed '1d;$d' |
	base64 -d >"$OUTDIR/host/guest.tgz" || die "artifacts: base64"
[ "$(sha256sum <"$OUTDIR/host/guest.tgz" | cut -d' ' -f1)" = "$sum" ] || die "artifacts: sha256 differs from the guest's"
tar -xzf "$OUTDIR/host/guest.tgz" -C "$G" || die "artifacts: tar"
rm -f "$OUTDIR/host/ttyS1.txt" "$OUTDIR/host/ttyS1.clean"
pass "artifacts received over ttyS1 ($(du -k "$OUTDIR/host/guest.tgz" | cut -f1) KiB, sha256 checked)"

# ---- the guest's own checks ----------------------------------------------------
if [ -s "$G/checks.txt" ]; then
	sed "s/^/guest: /" "$G/checks.txt" >>"$SUMMARY"
	sed 's/^/  /' "$G/checks.txt"
	n=$(grep -c '^FAIL' "$G/checks.txt")
	[ "$n" -eq 0 ] && pass "guest checks ($(grep -c '^PASS' "$G/checks.txt") passed)" || fail "guest checks: $n failed"
else
	fail "guest checks: none reported"
fi
[ -s "$G/bundle.json" ] && [ -s "$G/ak.pem" ] || die "guest made no bundle or AK"

# ---- verify on the host ----------------------------------------------------------
H=$OUTDIR/host
"$TOOL" unpack "$G/bundle.json" "$H/bundle-logs" || fail "unpack bundle"
cmp -s "$G/ak.pem" "$H/bundle-logs/ak-from-bundle.pem" && pass "ccmr key gives the AK in the bundle" ||
	fail "ccmr key and the bundle's public_key differ"
fwd=$(sed -n 's/^forwarded \([0-9]*\) entries.*/\1/p' "$G/forward.txt")
fwd2=$(sed -n 's/^forwarded \([0-9]*\) entries.*/\1/p' "$G/forward2.txt")
[ -n "$fwd" ] && [ -n "$fwd2" ] || die "no forward count in forward.txt/forward2.txt"
N=$((fwd + fwd2))
entries=$(grep -c . "$G/ascii_runtime_measurements")
say "mr_ima holds $N records; the IMA list at quote time has $entries entries"
[ "$entries" -gt "$N" ] || fail "the guest's late.sh left no entry after the forwarded ones ($entries entries, $N forwarded)"
"$TOOL" policy -bundle "$G/bundle.json" -manifest "$H/initramfs.sha256" -sysfs-pcrs "$G/pcrs.txt" \
	-forwarded "$N" -o "$H/policy.json" || die "policy"
want_mr_ima=$("$TOOL" mr-ima "$G/binary_runtime_measurements" "$N")
got_mr_ima=$(awk '/^mr_ima /{print $2}' "$G/read-mr_ima.txt")
[ "$want_mr_ima" = "$got_mr_ima" ] && pass "guest's ccmr read mr_ima = fold of sha384(template data) over $N entries computed here" ||
	fail "guest's mr_ima $got_mr_ima, computed here $want_mr_ima"

verify() { # BUNDLE NAME [POLICY]: runs ccmr verify, report in host/NAME.json and .txt
	local pol=${3:-$H/policy.json} rc
	"$CCMR" verify "$1" --trust-ak "$G/ak.pem" --nonce "$NONCE" --policy "$pol" >"$H/$2.txt" 2>&1
	"$CCMR" -o json verify "$1" --trust-ak "$G/ak.pem" --nonce "$NONCE" --policy "$pol" >"$H/$2.json" 2>"$H/$2.stderr"
	rc=$?
	echo $rc >"$H/$2.exit"
	return $rc
}
verify "$G/bundle.json" verify
rc=$?
if [ $rc -eq 0 ] && out=$("$TOOL" expect-pass "$H/verify.json"); then
	pass "ccmr verify of the guest's bundle: exit 0, $out"
	# On a TPM the quoted PCR 10 proves the whole list: the entries the
	# forwarder has not yet recorded in mr_ima are proven and judged too.
	grep -q "$((entries - N)) IMA entries after the last mr_ima record are proven by the quoted PCRs (judged by policy)" "$H/verify.txt" &&
		pass "verify proves the $N forwarded IMA entries by mr_ima and PCR 10, and the $((entries - N)) later one(s) by PCR 10, all judged" ||
		fail "verify does not report the $((entries - N)) IMA entries after mr_ima's records as proven by PCR 10 and judged"
else
	fail "ccmr verify of the guest's bundle: exit $rc: $(cat "$H/verify.txt")"
fi

# Second opinion on the IMA list: evmctl against the kernel's PCR values.
if command -v evmctl >/dev/null 2>&1; then
	for b in sha1 sha256; do
		awk -v b=$b '$1 == b {printf "PCR-%02d: %s\n", $2, tolower($3)}' "$G/pcrs.txt" >"$H/evmctl-pcrs-$b.txt"
	done
	if evmctl ima_measurement --pcrs sha1,"$H/evmctl-pcrs-sha1.txt" --pcrs sha256,"$H/evmctl-pcrs-sha256.txt" \
		"$G/binary_runtime_measurements" >"$H/evmctl.txt" 2>&1; then
		pass "evmctl ima_measurement: the IMA list replays to the kernel's PCR 10 ($(grep -m1 -i matched "$H/evmctl.txt"))"
	else
		fail "evmctl ima_measurement: $(tail -3 "$H/evmctl.txt" | tr '\n' ' ')"
	fi
elif [ "${CCMR_REQUIRE_TOOLS:-}" = 1 ]; then
	fail "evmctl missing"
else
	say "evmctl missing: second opinion on the IMA list skipped"
fi

# ---- tampered evidence must fail, at the right layer -----------------------------------
K=$((N / 2))
[ $K -ge 1 ] || K=1
negative() { # NAME LAYER RECORD(-|n) BUNDLE [POLICY]
	local name=$1 layer=$2 rec=$3 b=$4 pol=${5:-} rc out
	verify "$b" "$name" $pol
	rc=$?
	if [ $rc -ne 1 ]; then
		fail "$name: ccmr verify exit $rc, want 1: $(cat "$H/$name.stderr")"
		return
	fi
	if [ "$rec" = - ]; then
		out=$("$TOOL" expect-fail "$H/$name.json" "$layer" 2>&1)
	else
		out=$("$TOOL" expect-fail "$H/$name.json" "$layer" "$rec" 2>&1)
	fi && pass "$name: exit 1, $out" || fail "$name: $out"
}
T=$H/tampered
mkdir -p "$T"
"$TOOL" tamper-ima "$G/bundle.json" "$T/ima-entry.json" $K >"$T/ima-entry.how" &&
	negative tamper-ima-entry 3 $K "$T/ima-entry.json"
"$TOOL" tamper-ima "$G/bundle.json" "$T/ima-entry-rehash.json" $K rehash >"$T/ima-entry-rehash.how" &&
	negative tamper-ima-entry-rehashed 3 $K "$T/ima-entry-rehash.json"
"$TOOL" tamper-runtime "$G/bundle.json" "$T/runtime-record.json" $K >"$T/runtime-record.how" &&
	negative tamper-runtime-record 1 $K "$T/runtime-record.json"
"$TOOL" tamper-runtime "$G/bundle.json" "$T/runtime-record-rehash.json" $K rehash >"$T/runtime-record-rehash.how" &&
	negative tamper-runtime-record-rehashed 1 - "$T/runtime-record-rehash.json"
"$TOOL" tamper-nonce "$G/bundle.json" "$T/nonce.json" &&
	negative tamper-nonce 0 - "$T/nonce.json"
# A policy whose reference digest for /bin/ccmr is wrong: layer 4.
sed 's#^[0-9a-f]\{64\}  ./bin/ccmr$#'"$(printf '0%.0s' $(seq 64))"'  ./bin/ccmr#' "$H/initramfs.sha256" >"$T/initramfs-wrong-ccmr.sha256"
"$TOOL" policy -bundle "$G/bundle.json" -manifest "$T/initramfs-wrong-ccmr.sha256" -sysfs-pcrs "$G/pcrs.txt" \
	-forwarded "$N" -o "$T/policy-wrong-ccmr.json" &&
	negative policy-wrong-ccmr-digest 4 - "$G/bundle.json" "$T/policy-wrong-ccmr.json"

# ---- Linux 6.12: per-bank IMA lists -------------------------------------------------
# Since 6.10 the kernel writes binary_runtime_measurements_BANK and
# ascii_runtime_measurements_BANK for every allocated PCR bank, each with
# that bank's template hash. Debian trixie's 6.12 cloud kernel is fetched
# through an apt sources list of our own (the machine's sources and lists
# stay untouched), booted with swtpm allocating sha1, sha256 and sha384,
# and every list is replayed here against every bank's PCR 10 as the guest
# read it (E2E_PERBANK=0 skips this part).
perbank() {
	local TK=$CACHE/trixie PKG6 KDIR6 VML6 O6 d rc
	mkdir -p "$TK/lists/partial" "$TK/archives/partial" "$TK/dl"
	echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian trixie main" >"$TK/sources.list"
	APT6=(-o APT::Sandbox::User=root -o Dir::Etc::sourcelist="$TK/sources.list" -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$TK/lists"
		-o Dir::Cache::Archives="$TK/archives" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= -o APT::Get::List-Cleanup=0)
	newest6() { apt-cache "${APT6[@]}" search '^linux-image-6\.12.*-cloud-amd64-unsigned$' 2>/dev/null | awk '{print $1}' | sort -V | tail -1; }
	PKG6=${E2E_KERNEL612_PKG:-$(ls "$CACHE/kernel" 2>/dev/null | grep '^linux-image-6\.12.*-cloud-amd64-unsigned$' | sort -V | tail -1)}
	if [ -z "$PKG6" ]; then
		PKG6=$(newest6)
		if [ -z "$PKG6" ]; then
			say "apt-get update of the trixie list (in $TK)"
			timeout 300 apt-get "${APT6[@]}" update >"$OUTDIR/host/apt-trixie.log" 2>&1 || {
				fail "apt-get update of the trixie sources list (see host/apt-trixie.log)"
				return
			}
			PKG6=$(newest6)
		fi
	fi
	[ -n "$PKG6" ] || {
		fail "no linux-image-6.12*-cloud-amd64-unsigned in Debian trixie"
		return
	}
	KDIR6=$CACHE/kernel/$PKG6
	if ! ls "$KDIR6"/boot/vmlinuz-* >/dev/null 2>&1; then
		say "fetching $PKG6 (trixie) with apt-get download"
		rm -f "$TK"/dl/*.deb
		(cd "$TK/dl" && timeout 300 apt-get "${APT6[@]}" download "$PKG6" >>"$OUTDIR/host/apt-trixie.log" 2>&1) || {
			fail "apt-get download $PKG6"
			return
		}
		rm -rf "$KDIR6.tmp" && mkdir -p "$KDIR6.tmp"
		dpkg-deb -x "$TK"/dl/*.deb "$KDIR6.tmp" && dpkg-deb -f "$TK"/dl/*.deb Version >"$KDIR6.tmp/VERSION" || {
			fail "dpkg-deb -x $PKG6"
			return
		}
		rm -rf "$KDIR6" && mv "$KDIR6.tmp" "$KDIR6" && rm -f "$TK"/dl/*.deb
	fi
	VML6=$(ls "$KDIR6"/boot/vmlinuz-* | head -1)
	say "kernel $PKG6 $(cat "$KDIR6/VERSION" 2>/dev/null)"
	echo "kernel 6.12: $PKG6 $(cat "$KDIR6/VERSION" 2>/dev/null)" >>"$OUTDIR/host/versions.txt"
	for sym in CONFIG_IMA CONFIG_SECURITYFS CONFIG_TCG_TPM CONFIG_TCG_TIS_CORE CONFIG_TCG_TIS; do
		grep -q "^$sym=y" "$KDIR6"/boot/config-* || {
			fail "kernel $PKG6 lacks $sym=y"
			return
		}
	done
	# The same initramfs, without the 6.1 kernel's modules.
	S6=$CACHE/initramfs612
	rm -rf "$S6" && cp -a "$STAGE" "$S6" && rm -f "$S6"/lib/modules/e2e/* && : >"$S6/etc/e2e/modules"
	(cd "$S6" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet | gzip -1) >"$CACHE/initramfs612.cpio.gz" || {
		fail "cpio (6.12)"
		return
	}
	local T6=$OUTDIR/host/swtpm612
	mkdir -p "$T6"
	timeout 120 swtpm_setup --tpm2 --tpmstate "$T6" --createek --pcr-banks sha1,sha256,sha384 --overwrite \
		>"$OUTDIR/host/swtpm612_setup.log" 2>&1 || {
		fail "swtpm_setup with sha1,sha256,sha384"
		return
	}
	swtpm socket --tpm2 --tpmstate dir="$T6" --ctrl type=unixio,path="$SOCKDIR/swtpm612.sock" \
		--log file="$OUTDIR/host/swtpm612.log",level=1 --terminate &
	SWTPM_PID=$!
	for _ in $(seq 50); do [ -S "$SOCKDIR/swtpm612.sock" ] && break; sleep 0.1; done
	local N6
	N6=$(od -An -tx1 -N32 /dev/urandom | tr -d ' \n')
	say "booting Linux 6.12 (per-bank IMA lists)"
	TB=$(date +%s)
	timeout "$GUEST_TIMEOUT" qemu-system-x86_64 -machine q35 "${ACCEL[@]}" -m 1024 -smp 1 \
		-display none -monitor none -no-reboot \
		-serial file:"$OUTDIR/console612.log" -serial file:"$OUTDIR/host/ttyS1-612.txt" \
		-kernel "$VML6" -initrd "$CACHE/initramfs612.cpio.gz" \
		-append "console=ttyS0 panic=-1 quiet loglevel=4 ima_template=ima-sig ima_hash=sha256 ccmr_e2e.nonce=$N6 ccmr_e2e.mode=perbank" \
		-chardev socket,id=chrtpm,path="$SOCKDIR/swtpm612.sock" \
		-tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0 \
		</dev/null >"$OUTDIR/host/qemu612.log" 2>&1
	rc=$?
	echo "guest 6.12: $(($(date +%s) - TB))s (qemu exit $rc)" >>"$SUMMARY"
	say "6.12 guest ran $(($(date +%s) - TB))s (qemu exit $rc)"
	local G6=$OUTDIR/guest612 H6=$OUTDIR/host/perbank
	mkdir -p "$G6" "$H6"
	tr -d '\r' <"$OUTDIR/host/ttyS1-612.txt" >"$H6/ttyS1.clean"
	end=$(grep -m1 '^-----END CCMR-E2E ' "$H6/ttyS1.clean")
	[ -n "$end" ] || {
		tr -d '\r' <"$OUTDIR/console612.log" | tail -30
		fail "no artifacts from the 6.12 guest (see console612.log)"
		return
	}
	sed -n '/^-----BEGIN CCMR-E2E-----$/,/^-----END CCMR-E2E /p' "$H6/ttyS1.clean" | sed '1d;$d' | base64 -d >"$H6/guest.tgz" &&
		[ "$(sha256sum <"$H6/guest.tgz" | cut -d' ' -f1)" = "$(echo "$end" | awk '{print $3}' | tr -d -)" ] &&
		tar -xzf "$H6/guest.tgz" -C "$G6" || {
		fail "6.12 artifacts"
		return
	}
	sed 's/^/  6.12 /' "$G6/checks.txt"
	sed "s/^/guest 6.12: /" "$G6/checks.txt" >>"$SUMMARY"
	grep -q '^FAIL' "$G6/checks.txt" && fail "6.12 guest checks: $(grep -c '^FAIL' "$G6/checks.txt") failed"
	# Every list of every bank, against every bank's PCR 10: ccmr reads the
	# bank from the contents (and the file name, which must agree).
	local lists=0 ok=0 bad=0 f b l hex
	for b in sha1 sha256 sha384; do
		for l in binary ascii; do
			[ -s "$G6/${l}_runtime_measurements_$b" ] || fail "6.12: no ${l}_runtime_measurements_$b (banks allocated: sha1, sha256, sha384; lists: $(tr '\n' ' ' <"$G6/ima-files.txt"))"
		done
	done
	cmp -s "$G6/binary_runtime_measurements" "$G6/binary_runtime_measurements_sha1" &&
		pass "6.12: binary_runtime_measurements is the sha1 list" || fail "6.12: binary_runtime_measurements differs from binary_runtime_measurements_sha1"
	for f in "$G6"/*_runtime_measurements_*; do
		lists=$((lists + 1))
		for b in sha1 sha256 sha384; do
			hex=$(awk -v b=$b '$1 == b && $2 == 10 {print tolower($3)}' "$G6/pcrs.txt")
			[ -n "$hex" ] || {
				fail "6.12: no $b PCR 10 read in the guest"
				continue
			}
			if "$CCMR" log replay "$f" --expect "pcr10=$b:$hex" >"$H6/replay-$(basename "$f")-$b.txt" 2>&1; then
				ok=$((ok + 1))
			else
				bad=$((bad + 1))
				fail "6.12: ccmr log replay $(basename "$f") --expect pcr10=$b:…: $(tail -2 "$H6/replay-$(basename "$f")-$b.txt" | tr '\n' ' ')"
			fi
		done
	done
	[ $bad -eq 0 ] && [ $lists -ge 6 ] && pass "6.12: $lists per-bank lists each replay to the PCR 10 of sha1, sha256 and sha384 ($ok replays)"
	# Hostile: the sha256 list under the sha384 list's name is refused
	# (exit 2), read as sm3 it is a mismatch (exit 1).
	cp "$G6/binary_runtime_measurements_sha256" "$H6/binary_runtime_measurements_sha384"
	"$CCMR" log replay "$H6/binary_runtime_measurements_sha384" >"$H6/mislabelled.txt" 2>&1
	rc=$?
	[ $rc -eq 2 ] && pass "6.12: the sha256 list named as the sha384 list: exit 2" || fail "6.12: the sha256 list named as the sha384 list: exit $rc"
	"$CCMR" log replay --format ima-binary-sm3 "$G6/binary_runtime_measurements_sha256" >"$H6/as-sm3.txt" 2>&1
	rc=$?
	[ $rc -eq 1 ] && pass "6.12: the sha256 list read as sm3: exit 1 (mismatch)" || fail "6.12: the sha256 list read as sm3: exit $rc"
	# mr_ima: the forwarder read the sha384 list; the fold of
	# sha384(template data) over the sha1 list's entries must agree.
	local fw want got
	fw=$(sed -n 's/^forwarded \([0-9]*\) entries.*/\1/p' "$G6/forward.txt")
	want=$("$TOOL" mr-ima "$G6/binary_runtime_measurements_sha1" "${fw:-0}")
	got=$(awk '/^mr_ima /{print $2}' "$G6/read-mr_ima.txt")
	[ -n "$fw" ] && [ "$want" = "$got" ] && pass "6.12: ima forward (sha384 list) gives mr_ima = fold over the sha1 list's first $fw entries" ||
		fail "6.12: mr_ima $got, computed here $want ($fw forwarded)"
	# The quote carried the list of the quoted bank, and verifies.
	grep -aq '"ima-binary-sha256"' "$G6/bundle.json" && pass "6.12: the bundle carries the sha256 list (ima-binary-sha256)" ||
		fail "6.12: the bundle does not carry ima-binary-sha256"
	"$CCMR" verify "$G6/bundle.json" --trust-ak "$G6/ak.pem" --nonce "$N6" >"$H6/verify.txt" 2>&1
	rc=$?
	[ $rc -eq 0 ] && pass "6.12: ccmr verify of the bundle: exit 0 ($(grep -m1 'replay to the quoted PCR 10' "$H6/verify.txt" | sed 's/^ *//'))" ||
		fail "6.12: ccmr verify exit $rc: $(tail -5 "$H6/verify.txt" | tr '\n' ' ')"
	# Second opinion: evmctl, on the lists it can read. evmctl 1.4
	# (bookworm) takes two --pcrs banks and no sha384 ("Failed to read any
	# TPM PCRs"), reads every list as a SHA-1 one, and exits 0 even when it
	# cannot ("event name too long"): its "Matched" line is the verdict.
	if command -v evmctl >/dev/null 2>&1; then
		for b in sha1 sha256; do
			awk -v b=$b '$1 == b {printf "PCR-%02d: %s\n", $2, tolower($3)}' "$G6/pcrs.txt" >"$H6/evmctl-pcrs-$b.txt"
		done
		for f in "$G6"/binary_runtime_measurements_*; do
			l=$H6/evmctl-$(basename "$f").txt
			if evmctl ima_measurement --pcrs sha1,"$H6/evmctl-pcrs-sha1.txt" --pcrs sha256,"$H6/evmctl-pcrs-sha256.txt" "$f" >"$l" 2>&1 &&
				grep -q 'Matched per TPM bank' "$l"; then
				pass "6.12: evmctl ima_measurement $(basename "$f"): replays to the kernel's sha1 and sha256 PCR 10"
			elif [ "$(basename "$f")" = binary_runtime_measurements_sha1 ]; then
				fail "6.12: evmctl ima_measurement of the sha1 list: $(tail -2 "$l" | tr '\n' ' ')"
			else
				say "6.12: $(evmctl --version 2>&1 | head -1) cannot read $(basename "$f") (per-bank lists are newer): $(tail -1 "$l")"
				echo "info: evmctl cannot read $(basename "$f"): $(tail -1 "$l")" >>"$SUMMARY"
			fi
		done
	fi
}
[ "${E2E_PERBANK:-1}" = 1 ] && perbank

finish
