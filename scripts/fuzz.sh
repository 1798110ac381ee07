#!/usr/bin/env bash
# Runs every Fuzz target of the module for $FUZZTIME each (default 60s).
set -euo pipefail
t=${FUZZTIME:-60s}
fail=0
for pkg in $(go list ./...); do
	for f in $(go test -list '^Fuzz' "$pkg" 2>/dev/null | grep '^Fuzz' || true); do
		echo "fuzz: $pkg $f ($t)"
		if ! go test -run='^$' -fuzz="^$f\$" -fuzztime="$t" -fuzzminimizetime=2s "$pkg" >/tmp/ccmr-fuzz.out 2>&1; then
			cat /tmp/ccmr-fuzz.out
			fail=1
		fi
	done
done
exit $fail
