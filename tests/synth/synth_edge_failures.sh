#!/bin/sh
# Failures at the edges of a 4-rank run: the run ends promptly with the right
# status and message on every rank.
#   last-pass-oom     --unsynchronized, rank 0 runs out of memory only in the
#                     last pass and goes on to the end-of-warmup agreement
#   trace-open-fails  rank 1 cannot create its trace: every rank stops at the
#                     start-up agreement with exit status 2, without waiting
# Usage: synth_edge_failures.sh MODE SYNTH DATA MPIEXEC...
set -u
mode=$1 synth=$2 data=$3; shift 3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start=$(date +%s)
case $mode in
last-pass-oom)
    "$@" "$synth" --model "$data/models/deepseek-v3/config.json" --tp 4 --rank-overhead 0:1800MiB \
        --max-num-tokens 32768 --graph-batch-sizes 4096 --unsynchronized --timeout 2 \
        --out "$out/t" > "$out/log" 2>&1
    status=$? want=1 limit=22
    pattern="rank 0 never joined; it left and went on to the end-of-warmup agreement"
    ;;
trace-open-fails)
    mkdir -p "$out/t/rank-1.h5"
    "$@" "$synth" --model "$data/models/llama-3.1-8b/config.json" --timeout 60 \
        --out "$out/t" > "$out/log" 2>&1
    status=$? want=2 limit=20
    pattern="rank 1: .*rank-1.h5: cannot create the trace file"
    ;;
*) echo "unknown mode $mode"; exit 2 ;;
esac
elapsed=$(( $(date +%s) - start ))
fail=0
[ $status -eq $want ] || { echo "FAIL: exit status $status, expected $want"; fail=1; }
[ $elapsed -le $limit ] || { echo "FAIL: took ${elapsed}s"; fail=1; }
grep -q "$pattern" "$out/log" || { echo "FAIL: no line matching: $pattern"; fail=1; }
[ $fail -eq 0 ] || cat "$out/log"
exit $fail
