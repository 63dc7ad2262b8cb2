#!/usr/bin/python3
"""The estimator as users run it: warmcal-synth on real MPI ranks, then
`warmcal fit`, `check`, `estimate` and `validate`.

usage: test_estimator_cli.py CASE --synth BIN --warmcal BIN --data DIR --mpiexec MPIEXEC...
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("case")
ap.add_argument("--synth", required=True)
ap.add_argument("--warmcal", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--mpiexec", nargs=argparse.REMAINDER, required=True)
ARGS = ap.parse_args()
FAILURES = []
GiB = 1 << 30


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what)


def run(*argv):
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=240)
    return p.returncode, p.stdout, p.stderr


def synth(out, model, deployment=None, tp=4, *flags):
    cmd = [*ARGS.mpiexec, "-np", str(tp), ARGS.synth, "--model", f"{ARGS.data}/models/{model}/config.json",
           "--out", out, *flags]
    if deployment:
        cmd += ["--deployment", f"{ARGS.data}/models/{model}/{deployment}.json"]
    rc, _, err = run(*cmd)
    if rc != 0:
        print(err)
    check(rc == 0, f"warmcal-synth {model} {deployment} {flags}: exit {rc}")
    return sorted(glob.glob(f"{out}/rank-*.h5"))


def fit(traces, table, *flags):
    rc, out, err = run(ARGS.warmcal, "fit", *traces, "-o", table, *flags)
    check(rc == 0, f"fit: exit {rc}: {err}")
    return out


def case_every_shipped_model_validates_on_another_seed_without_under_estimates(tmp):
    for deployment in sorted(glob.glob(f"{ARGS.data}/models/*/deploy-*.json")):
        model = os.path.basename(os.path.dirname(deployment))
        name = os.path.basename(deployment)[:-5]
        tp = json.load(open(deployment))["tp"]
        a = synth(f"{tmp}/{name}-1", model, name, tp, "--seed", "1")
        b = synth(f"{tmp}/{name}-2", model, name, tp, "--seed", "2")
        table = f"{tmp}/{model}-{name}.json"
        fit(a, table)
        rc, out, err = run(ARGS.warmcal, "check", table)
        check(rc == 0, f"{model}/{name}: check exit {rc}: {err}")
        rc, out, err = run(ARGS.warmcal, "validate", table, *b)
        summary = [l for l in out.splitlines() if l.startswith("summary:")]
        print(f"{model}/{name}: {summary}")
        check(rc == 0, f"{model}/{name}: validate exit {rc}")
        check(summary and " 0 under-estimated" in summary[0], f"{model}/{name}: {summary}")
        check("UNDER-ESTIMATE" not in out, f"{model}/{name}: under-estimates listed")


def case_hot_expert_on_rank_0_is_caught_as_under_estimate(tmp):
    """Imbalanced routing in production, balanced at calibration: the known
    cause of profiling under-estimates; validate must say so, on rank 0 only."""
    a = synth(f"{tmp}/bal", "deepseek-v3", "deploy-tp4", 4, "--seed", "1")
    b = synth(f"{tmp}/hot", "deepseek-v3", "deploy-tp4", 4, "--seed", "2",
              "--moe-hot-rank", "0", "--moe-hot-share", "0.5")
    fit(a, f"{tmp}/t.json")
    rc, out, err = run(ARGS.warmcal, "validate", f"{tmp}/t.json", *b)
    check(rc == 1, f"validate exit {rc}, expected 1")
    under = [l for l in out.splitlines() if l.endswith("UNDER-ESTIMATE")]
    check(len(under) > 0, "no under-estimate listed")
    check(all(l.split()[0] == "0" for l in under), f"under-estimates off rank 0: {under}")
    check(any(" under-estimated" in l and not " 0 under-estimated" in l for l in out.splitlines()
              if l.startswith("summary:")), "summary counts them")


def case_rank0_overhead_stays_in_rank0_entries(tmp):
    traces = synth(f"{tmp}/bug", "deepseek-v3", "deploy-tp4-rank0-overhead", 4, "--seed", "3")
    fit(traces, f"{tmp}/t.json")
    t = json.load(open(f"{tmp}/t.json"))
    ctx = {e["rank"]: e for e in t["estimates"] if e["label"] == "context"}
    free = {r: e["calibration"]["device_free_min"] for r, e in ctx.items()}
    for r in (1, 2, 3):
        check(abs((free[r] - free[0]) - 3 * GiB) < 64 << 20,
              f"rank 0 has 3 GiB less free than rank {r}: {free[r] - free[0]}")
        check(ctx[r]["tokens_max"] == 32784 and ctx[r]["failures"]["oom"] == 0,
              f"rank {r} keeps its whole range")
    check(ctx[0]["failures"]["oom"] >= 1 and ctx[0]["tokens_max"] < ctx[0]["failures"]["oom_tokens_min"],
          "rank 0's range stops below its first OOM")
    check(free[-1] == free[0], "the any-rank entry takes the lowest free memory")
    est = {}
    for r in (0, 1, 2, 3):
        rc, out, err = run(ARGS.warmcal, "estimate", f"{tmp}/t.json", "--rank", str(r), "--tokens", "16384")
        check(rc == 0 and out.strip().isdigit(), f"estimate rank {r}: {rc} {out!r} {err!r}")
        est[r] = int(out.strip()) if rc == 0 else 0
    spread = max(est.values()) / max(1, min(est.values()))
    check(spread < 1.05, f"per-pass needs agree across ranks within 5%: {est}")
    rc, out, err = run(ARGS.warmcal, "estimate", f"{tmp}/t.json", "--rank", "0", "--tokens", "32784")
    check(rc == 2 and "16384" in err, f"rank 0 refuses beyond its range: {rc} {err!r}")


def write_trace(path, tokens):
    with h5py.File(path, "w") as f:
        for k, v in (("warmcal_schema", 1), ("rank", 0), ("world_size", 1), ("complete", 1)):
            f.attrs[k] = np.int32(v)
        for k in ("model", "source", "gpu_name"):
            f.attrs[k] = {"source": "import"}.get(k, "m")
        f.attrs["gpu_total_bytes"] = np.uint64(80 * GiB)
        dt = np.dtype([("label", "S32"), ("tokens", "<u8"), ("batch", "<u4"), ("begin_ns", "<u8"),
                       ("end_ns", "<u8"), ("live_begin", "<u8"), ("live_peak", "<u8"),
                       ("live_end", "<u8"), ("device_free_begin", "<u8"), ("device_free_end", "<u8"),
                       ("outcome", "u1"), ("failed_alloc_bytes", "<u8")])
        rows = np.array([(b"context", t, 1, 0, 1, 0, t * 1000, 0, 2**64 - 1, 2**64 - 1, 0, 0)
                         for t in tokens], dtype=dt)
        f.create_dataset("phases", data=rows, maxshape=(None,), chunks=(16,))


def case_degenerate_traces_get_clear_errors(tmp):
    for name, tokens, expect in (("empty", [], "no phases"),
                                 ("one", [4096], "rank 0, label context: 1 measured phase"),
                                 ("flat", [512, 512, 512], "all 3 phases ran at 512 tokens")):
        path = f"{tmp}/{name}.h5"
        write_trace(path, tokens)
        rc, out, err = run(ARGS.warmcal, "fit", path, "-o", f"{tmp}/{name}.json")
        check(rc == 2 and expect in err and path in err, f"{name}: exit {rc}, {err!r}")
        check(not os.path.exists(f"{tmp}/{name}.json"), f"{name}: no table written")
    # a good fit is not overwritten by a failed one
    write_trace(f"{tmp}/good.h5", [256, 1024, 4096, 16384])
    fit([f"{tmp}/good.h5"], f"{tmp}/keep.json")
    before = open(f"{tmp}/keep.json").read()
    rc, _, _ = run(ARGS.warmcal, "fit", f"{tmp}/one.h5", "-o", f"{tmp}/keep.json")
    check(rc == 2 and open(f"{tmp}/keep.json").read() == before, "failed fit left the old table")


CASES = {k[5:]: v for k, v in globals().items() if k.startswith("case_")}
if ARGS.case not in CASES:
    sys.exit(f"unknown case {ARGS.case}")
with tempfile.TemporaryDirectory() as tmp:
    CASES[ARGS.case](tmp)
sys.exit(1 if FAILURES else 0)
