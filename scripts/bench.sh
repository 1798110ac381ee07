#!/usr/bin/env bash
# make bench: Go benchmarks, then ccmr against the peer tools on the same
# input, each next to its floor measured in the same run. Figures go to
# docs/performance.md by hand (the numbers depend on the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench-out}
mkdir -p "$out"
ccmr=bin/ccmr
n=${IMA_ENTRIES:-1000000}

echo "== Go benchmarks"
go test -run '^$' -bench 'ReplayBinary$|BareHash|ReplayVirtual' -benchtime 3x ./eventlog/ima | tee "$out/ima.txt"
go test -run '^$' -bench . -benchtime 2s ./vmr | tee "$out/vmr.txt"
go test -run '^$' -bench . -benchtime 1s ./backend/sim ./cmd/ccmr | tee "$out/sim.txt"
CCMR_BENCH_HISTORY=${HISTORY:-1000000} go test -run '^$' -bench . -benchtime 3x -timeout 30m ./verifier | tee "$out/verifier.txt"

echo "== ccmr log replay vs evmctl ima_measurement, $n ima-ng entries"
list="$out/ima-$n.bin"
[ -f "$list" ] || go run ./internal/cmd/imagen -n "$n" -o "$list"
# ccmr computes PCR 10; evmctl must agree with it (a second opinion), then both are timed.
$ccmr log replay "$list" > "$out/pcrs.txt"
sha1=$(awk '$1=="pcr10" && $2 ~ /^sha1:/ {sub("sha1:","",$2); print $2}' "$out/pcrs.txt")
sha256=$(awk '$1=="pcr10" && $2 ~ /^sha256:/ {sub("sha256:","",$2); print $2}' "$out/pcrs.txt")
for b in sha1 sha256; do
	v=$([ $b = sha1 ] && echo "$sha1" || echo "$sha256")
	size=$([ $b = sha1 ] && echo 20 || echo 32)
	: > "$out/pcrs-$b"
	for i in $(seq 0 23); do
		if [ "$i" = 10 ]; then printf 'PCR-%02d: %s\n' "$i" "$v"; else printf 'PCR-%02d: %s\n' "$i" "$(head -c $size /dev/zero | od -An -tx1 | tr -d ' \n')"; fi
	done >> "$out/pcrs-$b"
done
t() { /usr/bin/time -f "%e s elapsed, %M KB peak RSS" "$@"; }
echo "-- ccmr log replay (sha1 + sha256 banks, every listed hash checked)"
t $ccmr log replay "$list" --expect "pcr10=sha1:$sha1" --expect "pcr10=sha256:$sha256" 2>&1 | tail -2
echo "-- evmctl ima_measurement (same banks)"
t evmctl ima_measurement --pcrs "sha1,$out/pcrs-sha1" --pcrs "sha256,$out/pcrs-sha256" "$list" 2>&1 | grep -E 'Matched|elapsed|rror' | tail -3
echo "-- floor: sha1sum + sha256sum of the same bytes"
t sh -c "sha1sum '$list' >/dev/null; sha256sum '$list' >/dev/null" 2>&1 | tail -1

echo "== ccmr read on the sim device, 200 process starts"
dev="sim:$out/sim"
$ccmr --device "$dev" read >/dev/null
start=$(date +%s%N)
for _ in $(seq 200); do $ccmr --device "$dev" read rtmr3 >/dev/null; done
end=$(date +%s%N)
echo "ccmr read: $(( (end - start) / 200000 )) us per run (process start included)"

echo "== hardware verification and start-up (scripts/bench-hw.sh)"
BENCH_OUT="$out" CCMR="$ccmr" bash scripts/bench-hw.sh

echo "== the virtual-register store at 1M records (scripts/bench-vmr.sh)"
CCMR=$ccmr BENCH_OUT=$out IMA_ENTRIES=$n bash scripts/bench-vmr.sh

