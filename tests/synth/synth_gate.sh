#!/bin/sh
# The original bug with the gate: calibrate (fit), then warm up
# --unsynchronized with --gate on the rank-0-overhead deployment: the run
# finishes, no pass runs out of memory, and every skip is the same on all ranks.
set -u
synth=$1 warmcal=$2 data=$3; shift 3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
model="$data/models/deepseek-v3"
deploy="$model/deploy-tp4-rank0-overhead.json"
"$@" "$synth" --model "$model/config.json" --deployment "$deploy" --seed 1 --out "$out/cal" \
    2> "$out/cal.log" < /dev/null || { cat "$out/cal.log"; exit 1; }
"$warmcal" fit "$out"/cal/rank-*.h5 -o "$out/table.json" > /dev/null || exit 1
# Ranks that took different decisions would part ways, and a rank left alone
# in a collective reports "timed out" and fails the run: so the run's own
# report, not a stopwatch, proves that nobody waited. The timeout is wide so
# that a slow machine never trips it.
"$@" "$synth" --model "$model/config.json" --deployment "$deploy" --seed 5 --unsynchronized \
    --timeout 30 --gate "$out/table.json" --out "$out/gated" > "$out/log" 2>&1 < /dev/null
status=$?
cat "$out/log"
fail=0
[ $status -eq 0 ] || { echo "FAIL: gated run exit $status"; fail=1; }
! grep -q "timed out" "$out/log" || { echo "FAIL: a rank waited for the timeout"; fail=1; }
[ "$(grep -c ' 0 out of memory, 3 skipped by the gate' "$out/log")" -eq 4 ] ||
    { echo "FAIL: expected every rank: 0 out of memory, 3 skipped"; fail=1; }
/usr/bin/python3 - "$out/gated" <<'PY' || fail=1
import sys, h5py
tok = [sorted(h5py.File(f"{sys.argv[1]}/rank-{r}.h5")["phases"]["tokens"][()]) for r in range(4)]
outc = [h5py.File(f"{sys.argv[1]}/rank-{r}.h5")["phases"]["outcome"][()] for r in range(4)]
assert all(t == tok[0] for t in tok), "ranks ran different passes"
assert all((o == 0).all() for o in outc), "a pass did not end ok"
assert max(tok[0]) < 24576, "the passes rank 0 cannot fit were skipped"
print("gated traces: identical passes on every rank, all ok")
PY
exit $fail
