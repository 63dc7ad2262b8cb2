#!/bin/sh
# warmcal-synth --model NAME --deployment NAME: the shipped model config and
# the deployment beside it, found by name, give the same traces as the same
# files named by path; a name that is neither a file nor shipped exits 2 and
# lists what is shipped. (The installed command's lookup in
# PREFIX/share/warmcal/models is checked by tests/install.)
# Usage: synth_shipped_models.sh SYNTH WARMCAL DATA MPIEXEC...
set -u
synth=$1 warmcal=$2 data=$3; shift 3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
# a run that hangs is stopped after 100 s (a normal one takes seconds)
run() { timeout -k 10 100 "$@" < /dev/null; }

cd "$tmp" || exit 1
run "$@" "$synth" --model llama-3.1-8b --deployment deploy-tp4 --max-num-tokens 2048 \
    --seed 7 --out named > named.log 2>&1 || { cat named.log; echo "FAIL: the run by names"; fail=1; }
run "$@" "$synth" --model "$data/models/llama-3.1-8b/config.json" \
    --deployment "$data/models/llama-3.1-8b/deploy-tp4.json" --max-num-tokens 2048 \
    --seed 7 --out paths > paths.log 2>&1 || { cat paths.log; echo "FAIL: the run by paths"; fail=1; }
for r in 0 1 2 3; do
    # everything but the time and host of the run
    for d in named paths; do
        "$warmcal" inspect "$d/rank-$r.h5" 2>&1 | sed "s|$d/||" | grep -v '^  *\(start_time\|host\) ' > "$d-$r.txt"
    done
    grep -q "model  *meta-llama/Llama-3.1-8B-Instruct" "named-$r.txt" ||
        { echo "FAIL: rank $r: not the llama-3.1-8b model:"; cat "named-$r.txt"; fail=1; }
    cmp -s "named-$r.txt" "paths-$r.txt" ||
        { echo "FAIL: rank $r: by name and by path differ:"; diff "named-$r.txt" "paths-$r.txt"; fail=1; }
done

# refused: exit 2, one line naming the option and listing what is shipped
expect_refused() {
    what=$1 pattern=$2; shift 2
    run "$synth" "$@" --out refused > refused.log 2>&1
    status=$?
    [ $status = 2 ] || { echo "FAIL: $what: exit $status, expected 2"; fail=1; }
    grep -q -- "$pattern" refused.log ||
        { echo "FAIL: $what: no '$pattern' in:"; cat refused.log; fail=1; }
    [ ! -e refused ] || { echo "FAIL: $what: --out was created"; fail=1; }
}
expect_refused "an unknown model" \
    "--model: 'no-such-model' is not a file and not a model shipped with warmcal (in .*data/models: .*deepseek-v3, .*llama-3.1-8b" \
    --model no-such-model
expect_refused "an unknown deployment" \
    "--deployment: 'deploy-tp3' is not a file and not a deployment beside the model in .*llama-3.1-8b (deploy-tp1, deploy-tp4)" \
    --model llama-3.1-8b --deployment deploy-tp3
expect_refused "a deployment by name without a model" \
    "--deployment: 'deploy-tp4' is not a file, and a deployment by name is looked up beside the model: give --model too" \
    --deployment deploy-tp4
expect_refused "the model's config is no deployment" \
    "--deployment: 'config' is not a file and not a deployment beside the model" \
    --model llama-3.1-8b --deployment config
expect_refused "a path is never a name" "llama-3.1-8b.json" --model llama-3.1-8b.json

[ $fail = 0 ] && echo "synth_shipped_models: OK"
exit $fail
