#!/usr/bin/env bash
# The main job on the software device: read, extend a real and a virtual
# register, forward an IMA list into mr_ima, quote, verify, print the report.
set -euo pipefail
cd "$(dirname "$0")/.."
ccmr=${CCMR:-bin/ccmr}
work=$(mktemp -d "${TMPDIR:-/tmp}/ccmr-demo.XXXXXX")
export CCMR_DEVICE="sim:$work/sim"
ima=testdata/real-kernel-ima-sig/binary_runtime_measurements
step() { printf '\n$ %s\n' "$*"; "$@"; }

echo "ccmr demo on the software device (state in $work/sim)"
step "$ccmr" registers
step "$ccmr" read rtmr2
step "$ccmr" extend rtmr2 --data README.md
step "$ccmr" read rtmr2
step "$ccmr" extend mr_ctr.demo --digest "sha384:$(sha384sum README.md | cut -c1-96)"
step "$ccmr" ima forward --once --ima-log "$ima"
step "$ccmr" vmr list
step "$ccmr" key -O "$work/key.pem"
nonce=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
step "$ccmr" quote --nonce "$nonce" --ima-log "$ima" -O "$work/bundle.json"
step "$ccmr" verify "$work/bundle.json" --allow-sim --trust-sim-key "$work/key.pem" --nonce "$nonce"
echo
echo "demo: bundle and state kept in $work"
