#!/bin/sh
# The original bug on 4 real MPI ranks, from flags alone (the GPU is chosen to
# fit the model): one trace per rank,
# readable by h5dump and h5py with the documented schema.
set -eu
synth=$1 data=$2 tests=$3; shift 3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$@" "$synth" --model "$data/models/deepseek-v3/config.json" --tp 4 --max-num-tokens 32784 \
    --rank-overhead 0:3GiB --seed 7 --out "$out"
for r in 0 1 2 3; do
    test -s "$out/rank-$r.h5"
    h5dump -H "$out/rank-$r.h5" > "$out/header-$r.txt"
    for name in warmcal_schema rank world_size model source gpu_name gpu_total_bytes complete; do
        grep -q "ATTRIBUTE \"$name\"" "$out/header-$r.txt" || { echo "h5dump: no attribute $name"; exit 1; }
    done
    grep -q 'DATASET "phases"' "$out/header-$r.txt"
done
/usr/bin/python3 "$tests/synth/check_bug_traces.py" "$out" 4 32784
