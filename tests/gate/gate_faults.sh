#!/bin/sh
# A rank that never opens the gate (absent), stops calling decide (stall),
# never asks for the token budget (budgetstall) or dies (kill): the job ends
# with what the ranks report — never a hang. Judged
# from the output: the waiting ranks' codes, messages, their own times (with
# a wide margin against a hang, not a stopwatch on the deadline) and the CPU
# time their wait used; for kill, proof that the job ran and rank 2 died.
# Usage: gate_faults.sh absent|stall|budgetstall|kill TEST_BIN MPIEXEC...
set -u
mode=$1 bin=$2; shift 2
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
"$@" "$bin" "$mode" "$dir" > "$dir/log" 2>&1
status=$?
cat "$dir/log"
fail=0
[ $status -ne 0 ] || { echo "FAIL: the job succeeded"; fail=1; }

# Every waiting rank (0, 1, 3) reported WHAT with code -8 and TEXT, in under
# 30 s (the deadline is 5 s, 2 s for the budget; the failure excluded is a hang) and with under
# 1 s of CPU time (a rank that spun would use about as much as it waited).
waiting_ranks_timed_out() { # WHAT TEXT
    lines=$(grep -E "^rank [013]: $1 returned -8 after [0-9.]+ s, cpu [0-9.]+ s: .*$2" "$dir/log")
    n=$(printf '%s\n' "$lines" | grep -c "^rank")
    [ "$n" -eq 3 ] || { echo "FAIL: $n of 3 waiting ranks reported $1 returning -8 with '$2'"; fail=1; }
    printf '%s\n' "$lines" | awk -v what="$1" '
        /^rank/ { t = $7 + 0; c = $10 + 0
                  if (t >= 30) { print "FAIL: " what " took " t " s: " $0; bad = 1 }
                  if (c >= 1.0) { print "FAIL: " what " burned " c " s of CPU: " $0; bad = 1 } }
        END { exit bad }' || fail=1
}

case $mode in
absent)
    grep -q "^rank 2: never opening the gate" "$dir/log" || { echo "FAIL: rank 2 did not start"; fail=1; }
    waiting_ranks_timed_out open "open timed out after 5\.0 s.*a rank did not join the open.*end the job"
    ;;
stall)
    waiting_ranks_timed_out decide "timed out after 5\.0 s.*a rank did not join"
    ;;
budgetstall)
    grep -q "^rank 2: never asking for the budget" "$dir/log" || { echo "FAIL: rank 2 did not start"; fail=1; }
    waiting_ranks_timed_out max_tokens "token budget \(max_tokens\) for context timed out after 2\.0 s.*a rank did not join.*end the job"
    ;;
kill)
    # the job really started (every rank opened), rank 2 really died of
    # SIGKILL (mpirun says so), and the job ended without a success
    n=$(grep -cE "^rank [0-3]: opened the gate" "$dir/log")
    [ "$n" -eq 4 ] || { echo "FAIL: $n of 4 ranks opened the gate"; fail=1; }
    grep -q "^rank 2: killing itself" "$dir/log" || { echo "FAIL: rank 2 never got to its kill"; fail=1; }
    grep -qE "rank 2 .*signal 9" "$dir/log" || { echo "FAIL: no sign that rank 2 died of signal 9"; fail=1; }
    ;;
*)
    echo "FAIL: unknown mode $mode"; fail=1 ;;
esac
exit $fail
