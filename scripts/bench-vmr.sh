#!/usr/bin/env bash
# Whole-process cost of opening the virtual-register store (issue 17 item 1):
# one `ccmr extend mr_ctr.x` on the sim device with a fresh runtime log and
# with one of a million records, and one `ccmr ima forward --once` with
# nothing new after a thousand and after a million IMA entries. Each pair is
# run interleaved (fresh, long, fresh, long, ...) so that load from other
# processes falls on both alike; the figures are medians. The goal is the
# long case within 1.5x of the fresh one.
#
# Environment: BENCH_OUT (default bench-out), VMR_RECORDS (1000000),
# IMA_ENTRIES (1000000), RUNS (31), CCMR (a built ccmr; default: built here).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench-out}
n=${VMR_RECORDS:-1000000}
m=${IMA_ENTRIES:-1000000}
runs=${RUNS:-31}
mkdir -p "$out"
ccmr=${CCMR:-$out/ccmr}
[ -n "${CCMR:-}" ] || go build -o "$ccmr" ./cmd/ccmr
w="$out/vmr"
mkdir -p "$w"

# now_us: a monotonic-enough wall clock in microseconds.
now_us() { echo $(($(date +%s%N) / 1000)); }

# pair NAME RUNS -- CMD_A... -- CMD_B...: interleaved runs, medians in ms.
pair() {
	local name=$1 k=$2
	shift 3
	local a=() b=()
	while [ "$1" != -- ]; do a+=("$1"); shift; done
	shift
	b=("$@")
	local ta=() tb=() s e
	for _ in $(seq "$k"); do
		s=$(now_us); "${a[@]}" >/dev/null; e=$(now_us); ta+=($((e - s)))
		s=$(now_us); "${b[@]}" >/dev/null; e=$(now_us); tb+=($((e - s)))
	done
	local ma mb
	ma=$(printf '%s\n' "${ta[@]}" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
	mb=$(printf '%s\n' "${tb[@]}" | sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}')
	awk -v n="$name" -v a="$ma" -v b="$mb" -v k="$k" 'BEGIN {
		printf "%s: fresh %.2f ms, long %.2f ms, ratio %.2f (medians of %d interleaved runs)\n", n, a/1000, b/1000, b/a, k }'
}

echo "== vmr: one CLI extend, fresh log vs $n records"
fresh="$w/extend-fresh" long="$w/extend-$n"
rm -rf "$fresh"
"$ccmr" --device "sim:$fresh" extend mr_ctr.x --digest "sha384:$(printf '%096d' 0)" >/dev/null
if [ ! -f "$long/runtime/rtmr3.log" ]; then
	rm -rf "$long"
	go run ./vmr/internal/loggen -sim "$long" -n "$n"
fi
d="sha384:$(printf '%096d' 1)"
pair "ccmr extend mr_ctr.x" "$runs" -- "$ccmr" --device "sim:$fresh" extend mr_ctr.x --digest "$d" -- "$ccmr" --device "sim:$long" extend mr_ctr.x --digest "$d"

echo "== vmr: ima forward --once with nothing new, 1000 vs $m entries forwarded"
small="$out/ima-1000.bin" list="$out/ima-$m.bin"
[ -f "$small" ] || go run ./internal/cmd/imagen -n 1000 -o "$small"
[ -f "$list" ] || go run ./internal/cmd/imagen -n "$m" -o "$list"
ffresh="$w/forward-1000" flong="$w/forward-$m"
for p in "$ffresh:$small" "$flong:$list"; do
	dir=${p%%:*} l=${p#*:}
	rm -rf "$dir"
	/usr/bin/time -f "first forward of $l: %e s" "$ccmr" --device "sim:$dir" ima forward --once --ima-log "$l" >/dev/null
done
# The first pass with nothing new checks the list's prefix once and records
# the file (once it is 2 s old); the timed ones find it unchanged.
sleep 2
"$ccmr" --device "sim:$ffresh" ima forward --once --ima-log "$small" >/dev/null
"$ccmr" --device "sim:$flong" ima forward --once --ima-log "$list" >/dev/null
pair "ccmr ima forward --once (nothing new)" "$runs" -- "$ccmr" --device "sim:$ffresh" ima forward --once --ima-log "$small" -- "$ccmr" --device "sim:$flong" ima forward --once --ima-log "$list"
