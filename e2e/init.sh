#!/bin/busybox sh
# /init of the `make e2e` guest (PID 1). e2e/run.sh puts it into the
# initramfs with busybox, the static ccmr, the IMA policy and a small workload.
#
# It loads the TPM modules (when the kernel has them as modules), writes the
# IMA policy, runs the workload so that IMA measures something, then drives
# ccmr against the TPM: registers, read pcr10 (compared with the kernel's
# sysfs value), ima forward --once into mr_ima backed by PCR 14, quote, key.
# A last step tampers with the runtime log and checks that ccmr refuses to
# quote it. Everything goes to /run/out, which is sent to the host as
# base64 of a tar.gz on the second serial port (ttyS1) between markers; the
# host checks a sha256 given after the data. Then it powers off.
#
# /run is a ramfs: the IMA policy does not measure ramfs (nor sysfs,
# securityfs, procfs), so the runtime log and the outputs do not show up in
# the IMA list they describe. The root file system (the initramfs) is tmpfs
# and is measured.

/bin/busybox --install -s /bin
export PATH=/bin
OUT=/run/out
CCMR="ccmr --device tpm:/dev/tpmrm0"
VREG="--backing pcr14 --log-dir /run/ccmr"

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security
mount -t devtmpfs devtmpfs /dev
mount -t ramfs ramfs /run
mkdir -p /run/ccmr $OUT

say() { echo "e2e: $*"; echo "$*" >>$OUT/guest.log; }
pass() { say "PASS $*"; echo "PASS $*" >>$OUT/checks.txt; }
fail() { say "FAIL $*"; echo "FAIL $*" >>$OUT/checks.txt; }

# send puts /run/out on ttyS1 and powers off; it is the only way out.
send() {
	say "sending artifacts to the host"
	tar -czf /run/out.tgz -C $OUT .
	sum=$(sha256sum /run/out.tgz | cut -d' ' -f1)
	{
		echo "-----BEGIN CCMR-E2E-----"
		base64 /run/out.tgz
		echo "-----END CCMR-E2E $sum-----"
	} >/dev/ttyS1
	# closing the tty waited until the UART drained; give QEMU a moment.
	sleep 1
	echo "e2e: done"
	poweroff -f
}

arg() { # value of ccmr_e2e.NAME= on the kernel command line
	for w in $(cat /proc/cmdline); do
		case "$w" in ccmr_e2e.$1=*) echo "${w#*=}" ;; esac
	done
}
NONCE=$(arg nonce)
say "kernel $(uname -r), nonce $NONCE"
cat /proc/cmdline >$OUT/cmdline.txt

# Modules, in dependency order, when tpm_tis is not built in.
if [ -s /etc/e2e/modules ]; then
	bad=0
	while read -r m; do
		insmod "/lib/modules/e2e/$m" || {
			fail "insmod $m"
			bad=1
		}
	done </etc/e2e/modules
	[ $bad = 0 ] && pass "insmod $(tr '\n' ' ' </etc/e2e/modules)"
fi
i=0
while [ ! -e /dev/tpmrm0 ] && [ $i -lt 100 ]; do
	sleep 0.1
	i=$((i + 1))
done
if [ ! -e /dev/tpmrm0 ]; then
	fail "no /dev/tpmrm0"
	dmesg >$OUT/dmesg.txt
	send
fi
pass "tpm: /dev/tpmrm0 present ($(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null))"

if cat /etc/e2e/ima-policy >/sys/kernel/security/ima/policy; then
	pass "ima: policy written"
else
	fail "ima: policy not accepted"
fi

# The workload: executed scripts (BPRM_CHECK), files read by root
# (FILE_CHECK), and ccmr itself once it runs.
/opt/e2e/workload.sh >$OUT/workload.txt 2>&1 || fail "workload"

# ccmr_e2e.mode=perbank (the Linux 6.12 boot, swtpm with sha1, sha256 and
# sha384 banks): the per-bank IMA lists of Linux 6.10+ and the PCR 10 of
# every bank, read at one point; ima forward (which reads the sha384 list)
# and a quote (whose bundle carries the list of the quoted bank). The host
# replays every list against every bank (e2e/run.sh, "Linux 6.12").
if [ "$(arg mode)" = perbank ]; then
	S=/sys/kernel/security/ima
	pcrs3() {
		for bank in sha1 sha256 sha384; do
			for n in 0 1 2 3 4 5 6 7 8 9 10 14; do
				f=/sys/class/tpm/tpm0/pcr-$bank/$n
				[ -r $f ] && echo "$bank $n $(cat $f)"
			done
		done
	}
	if $CCMR $VREG ima forward --once >$OUT/forward.txt 2>&1; then
		pass "ccmr ima forward --once: $(cat $OUT/forward.txt)"
	else
		fail "ccmr ima forward --once: $(cat $OUT/forward.txt)"
	fi
	$CCMR $VREG read mr_ima >$OUT/read-mr_ima.txt 2>&1 || fail "ccmr read mr_ima: $(cat $OUT/read-mr_ima.txt)"
	ls $S >$OUT/ima-files.txt
	pcrs3 >$OUT/pcrs.txt
	n=0
	for f in $S/binary_runtime_measurements $S/*_runtime_measurements_*; do
		[ -r "$f" ] && cp "$f" $OUT/ && n=$((n + 1))
	done
	pcrs3 >$OUT/pcrs-after.txt
	cmp -s $OUT/pcrs.txt $OUT/pcrs-after.txt && pass "no PCR moved while the $n IMA lists were read" ||
		fail "PCRs moved while the IMA lists were read"
	if $CCMR $VREG quote --nonce "$NONCE" -O $OUT/bundle.json >$OUT/quote.txt 2>&1; then
		pass "ccmr quote ($(wc -c <$OUT/bundle.json) bytes)"
	else
		fail "ccmr quote: $(cat $OUT/quote.txt)"
	fi
	$CCMR key -O $OUT/ak.pem >$OUT/key.txt 2>&1 && pass "ccmr key" || fail "ccmr key: $(cat $OUT/key.txt)"
	send
fi

pcrs() { # BANK INDEX HEX lines from the kernel's sysfs
	for bank in sha1 sha256; do
		for n in 0 1 2 3 4 5 6 7 8 9 10 14; do
			f=/sys/class/tpm/tpm0/pcr-$bank/$n
			[ -r $f ] && echo "$bank $n $(cat $f)"
		done
	done
}

$CCMR registers >$OUT/registers.txt 2>&1 && pass "ccmr registers" || fail "ccmr registers: $(cat $OUT/registers.txt)"

# Ten reads of every register in a row: each is a new process and several
# TPM2_PCR_Read commands through the kernel's /dev/tpmrm0, which answers
# slowly in an emulated guest.
ok=0
for i in 1 2 3 4 5 6 7 8 9 10; do
	if $CCMR read >$OUT/read-all.txt 2>&1; then
		ok=$((ok + 1))
	else
		cp $OUT/read-all.txt $OUT/read-all-error-$i.txt
	fi
done
[ $ok = 10 ] && pass "ccmr read (all registers) 10 times" ||
	fail "ccmr read (all registers): $((10 - ok)) of 10 failed: $(cat $(ls $OUT/read-all-error-*.txt | head -1))"
$CCMR -o json registers >$OUT/registers.json 2>&1 || fail "ccmr -o json registers"

# ccmr read pcr10 against the kernel's own view of PCR 10 (both banks). No
# new measurement can land between the reads: ccmr and busybox are
# measured already and /run is not measured.
s1=$(cat /sys/class/tpm/tpm0/pcr-sha256/10)
$CCMR read pcr10 >$OUT/read-pcr10.txt 2>&1 || fail "ccmr read pcr10: $(cat $OUT/read-pcr10.txt)"
s2=$(cat /sys/class/tpm/tpm0/pcr-sha256/10)
h1=$(cat /sys/class/tpm/tpm0/pcr-sha1/10 2>/dev/null)
echo "sha256 $s1" >$OUT/sysfs-pcr10.txt
echo "sha1 $h1" >>$OUT/sysfs-pcr10.txt
lc() { tr A-F a-f; }
got=$(sed -n 's/^pcr10 sha256://p' $OUT/read-pcr10.txt)
if [ -n "$got" ] && [ "$s1" = "$s2" ] && [ "$got" = "$(echo $s1 | lc)" ]; then
	pass "ccmr read pcr10 sha256 = sysfs pcr-sha256/10 ($got)"
else
	fail "ccmr read pcr10 sha256 '$got' != sysfs pcr-sha256/10 '$s1' (then '$s2')"
fi
if [ -n "$h1" ]; then
	got1=$(sed -n 's/^pcr10 sha1://p' $OUT/read-pcr10.txt)
	[ "$got1" = "$(echo $h1 | lc)" ] && pass "ccmr read pcr10 sha1 = sysfs pcr-sha1/10" ||
		fail "ccmr read pcr10 sha1 '$got1' != sysfs pcr-sha1/10 '$h1'"
fi

if $CCMR $VREG ima forward --once >$OUT/forward.txt 2>&1; then
	pass "ccmr ima forward --once: $(cat $OUT/forward.txt)"
else
	fail "ccmr ima forward --once: $(cat $OUT/forward.txt)"
fi
# A second pass resumes from the runtime log: nothing new to forward.
$CCMR $VREG ima forward --once >$OUT/forward2.txt 2>&1 || fail "second ima forward: $(cat $OUT/forward2.txt)"
$CCMR $VREG read mr_ima >$OUT/read-mr_ima.txt 2>&1 || fail "ccmr read mr_ima: $(cat $OUT/read-mr_ima.txt)"
$CCMR $VREG read pcr14 >$OUT/read-pcr14.txt 2>&1 || fail "ccmr read pcr14: $(cat $OUT/read-pcr14.txt)"
# One more measurement that is not forwarded: the quote's IMA list is then
# one entry longer than mr_ima, and only the forwarded prefix is proven.
/opt/e2e/late.sh >>$OUT/workload.txt 2>&1 || fail "late.sh"

# The kernel's view just before the quote (the host's policy takes PCR 10
# from here), the IMA lists, the firmware log; the quote; the view after.
pcrs >$OUT/pcrs.txt
cp /sys/kernel/security/ima/binary_runtime_measurements $OUT/binary_runtime_measurements
cp /sys/kernel/security/ima/ascii_runtime_measurements $OUT/ascii_runtime_measurements
cp /sys/kernel/security/tpm0/binary_bios_measurements $OUT/tpm_eventlog.bin 2>/dev/null || fail "no firmware log"
if $CCMR $VREG quote --nonce "$NONCE" -O $OUT/bundle.json >$OUT/quote.txt 2>&1; then
	pass "ccmr quote ($(wc -c <$OUT/bundle.json) bytes)"
else
	fail "ccmr quote: $(cat $OUT/quote.txt)"
fi
pcrs >$OUT/pcrs-after.txt
cmp -s $OUT/pcrs.txt $OUT/pcrs-after.txt && pass "no PCR moved during the quote" || fail "PCRs moved during the quote"
$CCMR key -O $OUT/ak.pem >$OUT/key.txt 2>&1 && pass "ccmr key" || fail "ccmr key: $(cat $OUT/key.txt)"
cp /run/ccmr/pcr14.log $OUT/runtime-pcr14.log 2>/dev/null

# Tampering in the guest: change the last hex digit of the runtime log (the
# last mr_ima record). ccmr must refuse to use the log (neither the log nor
# its replay without the last record matches PCR 14), and must work again
# once the log is restored.
log=/run/ccmr/pcr14.log
if [ -s $log ]; then
	cp $log /run/pcr14.log.orig
	size=$(wc -c <$log)
	last=$(tail -c 1 $log)
	new=0
	[ "$last" = 0 ] && new=1
	printf %s $new | dd of=$log bs=1 seek=$((size - 1)) conv=notrunc 2>/dev/null
	if $CCMR $VREG quote --nonce "$NONCE" -O /run/tampered.json >$OUT/tamper-guest.txt 2>&1; then
		fail "ccmr quote accepted a tampered runtime log"
	else
		pass "ccmr quote refuses a tampered runtime log (exit $?): $(cat $OUT/tamper-guest.txt)"
	fi
	cp /run/pcr14.log.orig $log
	$CCMR $VREG read mr_ima >$OUT/read-mr_ima-restored.txt 2>&1 &&
		cmp -s $OUT/read-mr_ima.txt $OUT/read-mr_ima-restored.txt &&
		pass "restored runtime log reads mr_ima as before" || fail "restored runtime log: $(cat $OUT/read-mr_ima-restored.txt)"
else
	fail "no runtime log at $log"
fi

dmesg >$OUT/dmesg.txt
send
