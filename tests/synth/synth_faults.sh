#!/bin/sh
# A rank that stops responding, or is killed with SIGKILL, in the middle of a
# 4-rank synthetic warmup: the job ends (never hangs), and every trace still
# reads up to its last finished pass.
# Usage: synth_faults.sh stall|kill SYNTH WARMCAL DATA MPIEXEC...
set -u
mode=$1 synth=$2 warmcal=$3 data=$4; shift 4
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The failure excluded is a hang: what mpirun and the ranks report says why
# the job ended, and one still running after 100 s (50 times the collective
# timeout, a wide margin for slow machines) is stopped and called hung.
timeout=2 pass=10 victim=2 limit=100
timeout --verbose -k 10 $limit "$@" "$synth" --model "$data/models/llama-3.1-70b/config.json" \
    --deployment "$data/models/llama-3.1-70b/deploy-tp4.json" --timeout $timeout \
    --$mode-rank $victim:$pass --out "$out" > "$out/log" 2>&1 < /dev/null
status=$?
fail=0
! grep -q "^timeout: sending signal" "$out/log" ||
    { echo "FAIL: still running after ${limit}s, stopped: HANG"; fail=1; }
[ $status -ne 0 ] || { echo "FAIL: the job succeeded"; fail=1; }
if [ "$mode" = stall ]; then
    grep -q "collective 0 of pass $pass .* timed out after $timeout.0 s: a rank never arrived" "$out/log" ||
        { echo "FAIL: no rank reported the stalled collective"; fail=1; }
else
    grep -q "rank $victim .* on signal 9" "$out/log" ||
        { echo "FAIL: mpirun did not report rank $victim killed"; fail=1; }
fi
# the victim's trace holds exactly the passes it finished, marked incomplete
"$warmcal" inspect --json "$out/rank-$victim.h5" > "$out/victim.json" 2> "$out/victim.err" ||
    { echo "FAIL: the victim's trace does not read"; cat "$out/victim.err"; fail=1; }
/usr/bin/python3 - "$out/victim.json" $pass $mode <<'PY' || fail=1
import json, sys
doc = json.load(open(sys.argv[1]))[0]
passes, mode = int(sys.argv[2]), sys.argv[3]
rows = doc["phases"]
assert doc["complete"] in (0, False), f"complete = {doc['complete']}"
assert len(rows) == passes, f"{len(rows)} phases, expected {passes}"
assert all(r["outcome"] == "ok" for r in rows)
print(f"{mode}: victim trace reads {len(rows)} finished passes, complete = 0")
PY
grep -q "writer did not finish" "$out/victim.err" || { echo "FAIL: no incomplete-trace warning"; fail=1; }
[ $fail -eq 0 ] || cat "$out/log"
exit $fail
