#!/bin/sh
# A rank that stops calling decide (stall) or dies (kill): the other ranks'
# decisions end within the deadline plus slack, or the job ends — never a hang.
# Usage: gate_faults.sh stall|kill TEST_BIN MPIEXEC...
set -u
mode=$1 bin=$2; shift 2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
start=$(date +%s)
"$@" "$bin" "$mode" "$dir" > "$dir/log" 2>&1
status=$?
elapsed=$(( $(date +%s) - start ))
cat "$dir/log"
fail=0
[ $status -ne 0 ] || { echo "FAIL: the job succeeded"; fail=1; }
[ $elapsed -le 25 ] || { echo "FAIL: took ${elapsed}s (deadline 5 s)"; fail=1; }
if [ "$mode" = stall ]; then
    # every waiting rank reports the timeout, within deadline + 2 s
    n=$(grep -cE "^rank [013]: decide returned -8 after [5-6]\.[0-9]+ s: .*timed out after 5\.0 s" "$dir/log")
    [ "$n" -ge 1 ] || { echo "FAIL: no rank reported the timeout within the deadline"; fail=1; }
fi
exit $fail
