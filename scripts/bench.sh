#!/usr/bin/env bash
# make bench: Go benchmarks, then ccmr against the peer tools on the same
# input, each next to its floor measured in the same run. Figures go to
# docs/performance.md by hand (the numbers depend on the machine).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${BENCH_OUT:-bench-out}
mkdir -p "$out"
ccmr=bin/ccmr

echo "== Go benchmarks"
go test -run '^$' -bench 'ReplayBinary$|BareHash|ReplayVirtual' -benchtime 3x ./eventlog/ima | tee "$out/ima.txt"
go test -run '^$' -bench . -benchtime 2s ./vmr | tee "$out/vmr.txt"
go test -run '^$' -bench . -benchtime 1s ./backend/sim ./cmd/ccmr | tee "$out/sim.txt"
CCMR_BENCH_HISTORY=${HISTORY:-1000000} go test -run '^$' -bench . -benchtime 3x -timeout 30m ./verifier | tee "$out/verifier.txt"

bash scripts/bench-ima.sh "$out" | tee "$out/ima-peers.txt"

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
CCMR=$ccmr BENCH_OUT=$out bash scripts/bench-vmr.sh

