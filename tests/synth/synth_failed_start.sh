#!/bin/sh
# A 4-rank warmcal-synth run that cannot start (a --gate table that does not
# exist, weights that do not fit in --gpu-memory, a --rank-overhead that does
# not fit, a --gpu-name too long to keep whole, one rank's trace path taken
# by a folder, an empty --out, and one rank that cannot create its trace
# after every rank has started) exits 2 naming the problem, and leaves the
# traces already in --out as they were: same names, kinds, sizes, modes,
# times and bytes, and no temporary trace left behind. (The folder's own
# modification time is not compared: a rank that created its temporary trace
# and dropped it again changes it.) A run that goes ahead leaves no
# temporary trace either, a stale one included.
# Usage: synth_failed_start.sh SYNTH DATA MPIEXEC...
set -u
synth=$1 data=$2; shift 2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out="$tmp/out"
model="$data/models/llama-3.1-8b/config.json"
# A run that hangs is stopped after 100 s (a normal one takes seconds) and
# reported as such; ranks wait at most 30 s in a collective.
limit=100
fail=0

fingerprint() {
    stat -c '%F %a' "$out"
    find "$out" -mindepth 1 -printf '%P %y %s %m %T@\n' | sort
    find "$out" -type f -exec sha256sum {} + | sort
}

# one failing start: exit status 2, a line matching the pattern, --out untouched
expect_refused() {
    what=$1 pattern=$2; shift 2
    timeout -k 10 $limit "$@" > "$tmp/log" 2>&1 < /dev/null
    status=$?
    case $status in
    2) ;;
    124|137) echo "FAIL: $what: still running after ${limit}s: the run hung"; fail=1 ;;
    *) echo "FAIL: $what: exit status $status, expected 2"; fail=1 ;;
    esac
    grep -q -- "$pattern" "$tmp/log" ||
        { echo "FAIL: $what: no line matching: $pattern"; cat "$tmp/log"; fail=1; }
    fingerprint > "$tmp/after"
    cmp -s "$tmp/before" "$tmp/after" ||
        { echo "FAIL: $what: --out changed:"; diff "$tmp/before" "$tmp/after"; fail=1; }
}

timeout -k 10 $limit "$@" "$synth" --model "$model" --timeout 30 --out "$out" \
    > "$tmp/log" 2>&1 < /dev/null || { echo "FAIL: the first run failed"; cat "$tmp/log"; exit 1; }
[ "$(find "$out" -name 'rank-*.h5' -size +0 | wc -l)" -eq 4 ] ||
    { echo "FAIL: the first run did not write 4 traces"; ls -l "$out"; exit 1; }
[ -z "$(find "$out" -name '*.partial')" ] ||
    { echo "FAIL: the first run left temporary traces"; ls -la "$out"; exit 1; }
fingerprint > "$tmp/before"
sleep 1 # a file rewritten now would show another modification time

expect_refused "missing --gate table" "gate: .*no-such-table.json" \
    "$@" "$synth" --model "$model" --timeout 30 --out "$out" --gate "$tmp/no-such-table.json"
expect_refused "weights larger than --gpu-memory" "gpu_memory: the model's weights .* do not fit in" \
    "$@" "$synth" --model "$model" --timeout 30 --out "$out" --gpu-memory 4GiB
expect_refused "--rank-overhead that does not fit" "rank_overhead: rank 2's extra .* does not fit" \
    "$@" "$synth" --model "$model" --timeout 30 --out "$out" --rank-overhead 2:200GiB
expect_refused "empty --out" "--out: expected a folder path, found an empty string" \
    "$@" "$synth" --model "$model" --timeout 30 --out ""
expect_refused "a 64-byte --gpu-name" "--gpu-name: 64 bytes, longer than the 63 a GPU name may have" \
    "$@" "$synth" --model "$model" --timeout 30 --out "$out" \
    --gpu-name "$(printf '%064d' 7)"

# Every rank has started, then rank 1 cannot create its trace (a folder holds
# its temporary name): the others drop the traces they had created, and the
# old ones stay.
mkdir "$out/.rank-1.h5.partial"
fingerprint > "$tmp/before"
sleep 1
expect_refused "rank 1's trace not created after the start-up agreement" \
    "rank 1: .*\.rank-1\.h5\.partial: cannot create the trace file" \
    "$@" "$synth" --model "$model" --timeout 30 --out "$out"
grep -q "rank 0: weights .* free before warmup" "$tmp/log" ||
    { echo "FAIL: the ranks did not get past the start-up agreement"; cat "$tmp/log"; fail=1; }

# a run that goes ahead replaces a stale temporary trace and leaves none
rmdir "$out/.rank-1.h5.partial"
echo stale > "$out/.rank-2.h5.partial"
timeout -k 10 $limit "$@" "$synth" --model "$model" --timeout 30 --out "$out" \
    > "$tmp/log" 2>&1 < /dev/null || { echo "FAIL: the run after a failed start failed"; cat "$tmp/log"; fail=1; }
[ -z "$(find "$out" -name '*.partial')" ] ||
    { echo "FAIL: a run left temporary traces"; ls -la "$out"; fail=1; }
[ "$(find "$out" -name 'rank-*.h5' -newer "$tmp/before" | wc -l)" -eq 4 ] ||
    { echo "FAIL: the run did not replace the 4 traces"; ls -la "$out"; fail=1; }

# rank 1 cannot create its trace: the other ranks keep theirs too
rm "$out/rank-1.h5" && mkdir "$out/rank-1.h5"
fingerprint > "$tmp/before"
sleep 1
expect_refused "a folder at rank 1's trace" "rank 1: .*rank-1.h5: cannot create the trace file" \
    "$@" "$synth" --model "$model" --timeout 30 --out "$out"

[ $fail -eq 0 ] && echo "every failed start left --out as it was"
exit $fail
