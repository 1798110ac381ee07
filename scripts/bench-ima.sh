#!/usr/bin/env bash
# IMA part of `make bench` (issue 17 items 4 and 5): whole-process runs,
# interleaved round by round so that every ratio compares runs made under
# the same load, each with its peak RSS (/usr/bin/time -v):
#   1. `ccmr log replay` of a 1M-entry ima-ng list (sha1 + sha256 banks,
#      every listed hash checked, PCR 10 expected) vs the two-core floor
#      (internal/cmd/imafloor: read the list, fold one bank chain per core,
#      nothing else) vs `evmctl ima_measurement` on the same list and banks;
#   2. `ccmr log replay --ima-keys` of 100k RSA-2048 ima-sig entries vs the
#      time `openssl speed -multi 2 rsa2048` says 100k verifies take.
# Usage: scripts/bench-ima.sh [OUT_DIR]; IMA_ENTRIES, IMA_SIGNED, ROUNDS.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-${BENCH_OUT:-bench-out}}
n=${IMA_ENTRIES:-1000000}
nsig=${IMA_SIGNED:-100000}
rounds=${ROUNDS:-5}
mkdir -p "$out"
go build -o "$out/ccmr" ./cmd/ccmr
go build -o "$out/imafloor" ./internal/cmd/imafloor
ccmr=$out/ccmr

list="$out/ima-$n.bin"
[ -f "$list" ] || go run ./internal/cmd/imagen -n "$n" -o "$list"
slist="$out/ima-sig-$nsig.bin"
[ -f "$slist" ] && [ -f "$slist.pem" ] || go run ./internal/cmd/imagen -n "$nsig" -o "$slist" -sig-key "$slist.pem"

# Three opinions of PCR 10 must agree before anything is timed.
$ccmr log replay "$list" > "$out/pcrs.txt"
val() { awk -v b="$1" '$1=="pcr10" && index($2, b":")==1 {sub(b":","",$2); print $2}' "$2"; }
sha1=$(val sha1 "$out/pcrs.txt")
sha256=$(val sha256 "$out/pcrs.txt")
"$out/imafloor" "$list" > "$out/floor.txt"
[ "$(val sha1 "$out/floor.txt")" = "$sha1" ] && [ "$(val sha256 "$out/floor.txt")" = "$sha256" ] ||
	{ echo "imafloor and ccmr disagree on PCR 10" >&2; exit 1; }
for b in sha1 sha256; do
	v=$([ $b = sha1 ] && echo "$sha1" || echo "$sha256")
	size=$([ $b = sha1 ] && echo 20 || echo 32)
	for i in $(seq 0 23); do
		if [ "$i" = 10 ]; then printf 'PCR-%02d: %s\n' "$i" "$v"; else printf 'PCR-%02d: %s\n' "$i" "$(head -c $size /dev/zero | od -An -tx1 | tr -d ' \n')"; fi
	done > "$out/pcrs-$b"
done
evmctl ima_measurement --pcrs "sha1,$out/pcrs-sha1" --pcrs "sha256,$out/pcrs-sha256" "$list" 2>&1 | grep -q 'Matched' ||
	{ echo "evmctl does not match ccmr's PCR 10" >&2; exit 1; }

# run NAME CMD...: one timed run; appends "NAME wall-seconds peakKB
# cpu-seconds" to $out/runs.
run() {
	local name=$1
	shift
	/usr/bin/time -v -o "$out/time.txt" "$@" > /dev/null 2>&1 || { echo "$name failed" >&2; cat "$out/time.txt" >&2; exit 1; }
	awk -v n="$name" '/Elapsed \(wall clock\)/ {t=$NF; k=split(t,a,":"); s=0; for(i=1;i<=k;i++) s=s*60+a[i]}
		/Maximum resident set size/ {m=$NF} /User time|System time/ {c+=$NF}
		END {printf "%s %.3f %d %.3f\n", n, s, m, c}' "$out/time.txt" >> "$out/runs"
}
: > "$out/runs"
: > "$out/openssl.txt"
for r in $(seq "$rounds"); do
	run ccmr $ccmr log replay "$list" --expect "pcr10=sha1:$sha1" --expect "pcr10=sha256:$sha256"
	run floor "$out/imafloor" "$list"
	run evmctl evmctl ima_measurement --pcrs "sha1,$out/pcrs-sha1" --pcrs "sha256,$out/pcrs-sha256" "$list"
	run ccmr-sig $ccmr log replay "$slist" --ima-keys "$slist.pem"
	openssl speed -multi 2 -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ {print $(NF)}' | tail -1 >> "$out/openssl.txt"
done

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
col() { awk -v n="$1" -v c="$2" '$1==n {print $c}' "$out/runs" | median; }
verifies=$(median < "$out/openssl.txt")
row() { printf '%-28s %8.3f s  cpu %8.3f s  peak RSS %7d KB\n' "$1" "$(col "$2" 2)" "$(col "$2" 4)" "$(col "$2" 3)"; }
echo "== IMA replay, $n ima-ng entries, median of $rounds interleaved rounds (whole process)"
row "ccmr log replay" ccmr
row "floor (imafloor, 2 banks)" floor
row "evmctl ima_measurement" evmctl
# Ratios are taken round by round (the runs of a round share the load) and
# their median reported.
ratio() { awk -v a="$1" -v b="$2" -v c="$3" '$1==a {x[++i]=$c} $1==b {y[++j]=$c} END {for (k=1; k<=i; k++) print x[k]/y[k]}' "$out/runs" | median; }
printf 'ccmr / floor = %.2f (target <= 1.2; in cpu time %.2f), ccmr / evmctl = %.3f (target < 0.15)\n' \
	"$(ratio ccmr floor 2)" "$(ratio ccmr floor 4)" "$(ratio ccmr evmctl 2)"
echo "== IMA signatures, $nsig RSA-2048 ima-sig entries"
row "ccmr log replay --ima-keys" ccmr-sig
sigratio=$(awk -v n="$nsig" 'NR==FNR {if ($1=="ccmr-sig") t[++i]=$2; next} {print t[FNR]/(n/$1)}' "$out/runs" "$out/openssl.txt" | median)
awk -v v="$verifies" -v n="$nsig" -v r="$sigratio" 'BEGIN {
	printf "openssl speed -multi 2 rsa2048: %.0f verify/s (median), %d verifies = %.3f s; ccmr / openssl = %.2f (target <= 1.5)\n", v, n, n/v, r}'
