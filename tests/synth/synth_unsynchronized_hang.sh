#!/bin/sh
# --unsynchronized on the bug's deployment: rank 0 runs out of memory and
# moves on, the others wait in the collective. The run must end (not hang)
# after its timeout, fail, and name rank 0 as the missing rank.
set -u
synth=$1 data=$2; shift 2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# The failure excluded is a hang: the ranks' report proves that the 2 s
# timeout fired, and a run still going after 100 s is stopped and called hung
# (a wide margin, so that a slow machine never trips it).
timeout=2 limit=100
timeout --verbose -k 10 $limit "$@" "$synth" --model "$data/models/deepseek-v3/config.json" \
    --deployment "$data/models/deepseek-v3/deploy-tp4-rank0-overhead.json" \
    --unsynchronized --timeout $timeout --out "$out" > "$out/log" 2>&1 < /dev/null
status=$?
cat "$out/log"
fail=0
! grep -q "^timeout: sending signal" "$out/log" ||
    { echo "FAIL: still running after ${limit}s, stopped: HANG"; fail=1; }
[ $status -ne 0 ] || { echo "FAIL: the unsynchronized run succeeded"; fail=1; }
grep -q "timed out after $timeout.0 s: rank 0 never joined" "$out/log" ||
    { echo "FAIL: no rank names rank 0 as missing"; fail=1; }
# every rank still wrote a readable trace: rank 0 with its OOM passes, the
# others with the pass they were stuck in marked aborted
/usr/bin/python3 - "$out" <<'PY' || fail=1
import sys, h5py
out = sys.argv[1]
ph = [h5py.File(f"{out}/rank-{r}.h5", "r")["phases"][()] for r in range(4)]
assert (ph[0]["outcome"] == 1).sum() >= 1, "rank 0 recorded no OOM pass"
assert ph[0]["failed_alloc_bytes"].max() > 0
for r in (1, 2, 3):
    last = ph[r][-1]
    assert last["outcome"] == 2, f"rank {r}: last phase outcome {last['outcome']}, expected aborted"
    assert (ph[r]["outcome"][:-1] == 0).all(), f"rank {r}: earlier passes not all ok"
    assert last["tokens"] == ph[0][ph[0]["outcome"] == 1][0]["tokens"], "stuck where rank 0 left"
print("traces: rank 0 OOM, ranks 1-3 aborted in the pass rank 0 left")
PY
exit $fail
