#!/bin/sh
# Failures at the edges of a 4-rank run: the run ends with the right status
# and message on every rank, without waiting out a timeout it does not need.
#   last-pass-oom     --unsynchronized, rank 0 runs out of memory only in the
#                     last pass and goes on to the end-of-warmup agreement;
#                     the others give up after the 2 s timeout
#   trace-open-fails  rank 1 cannot create its trace: every rank stops at the
#                     start-up agreement with exit status 2, without waiting
#                     for its 600 s timeout
# Usage: synth_edge_failures.sh MODE SYNTH DATA MPIEXEC...
set -u
mode=$1 synth=$2 data=$3; shift 3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# What the ranks report proves the behaviour; the wall-clock limit only
# catches a hang or a wait for the 600 s timeout, with a wide margin on both
# sides (a normal run takes seconds).
limit=100
case $mode in
last-pass-oom)
    timeout --verbose -k 10 $limit "$@" "$synth" --model "$data/models/deepseek-v3/config.json" --tp 4 \
        --rank-overhead 0:1800MiB --max-num-tokens 32768 --graph-batch-sizes 4096 \
        --unsynchronized --timeout 2 --out "$out/t" > "$out/log" 2>&1 < /dev/null
    status=$? want=1
    pattern="rank 0 never joined; it left and went on to the end-of-warmup agreement"
    ;;
trace-open-fails)
    mkdir -p "$out/t/rank-1.h5"
    timeout --verbose -k 10 $limit "$@" "$synth" --model "$data/models/llama-3.1-8b/config.json" \
        --timeout 600 --out "$out/t" > "$out/log" 2>&1 < /dev/null
    status=$? want=2
    pattern="rank 1: .*rank-1.h5: cannot create the trace file"
    ;;
*) echo "unknown mode $mode"; exit 2 ;;
esac
fail=0
! grep -q "^timeout: sending signal" "$out/log" ||
    { echo "FAIL: still running after ${limit}s, stopped: HANG"; fail=1; }
[ $status -eq $want ] || { echo "FAIL: exit status $status, expected $want"; fail=1; }
grep -q "$pattern" "$out/log" || { echo "FAIL: no line matching: $pattern"; fail=1; }
[ $fail -eq 0 ] || cat "$out/log"
exit $fail
