#!/usr/bin/env python3
"""`warmcal plan` against the runs and the gate it answers for.

  shipped_models      plan answers for shipped models (DeepSeek-V3 on the original
                      bug's deployment, dense Llama-3.1-70B with rank 0 holding more):
                      rank 0, with the least free memory, limits the context budget,
                      and every budget is exact by `warmcal estimate` (T fits, T + 1
                      does not), with and without --reserve, for all ranks and for
                      one rank's view
  agrees_with_synth   shape by shape, plan --shapes gives what `warmcal-synth --gate`
                      decided on 4 MPI ranks at the same free memory: run or skip, the
                      blocking rank, the reason and its words, the bytes short
  max_tokens_agrees   Gate.max_tokens on 4 MPI ranks (mpi4py, free memory by the value
                      probe) equals plan --free a,b,c,d --json for every label
  bad_inputs          bad arguments and files: exit 2, one line naming the option,
                      file, line or field, nothing on stdout

usage: test_plan.py CASE --warmcal BIN --synth BIN --source DIR --workdir DIR
                    [--python PY] -- MPIEXEC...

Every multi-rank job runs under a limit and is killed whole past it (the
runner of tests/gate/python/run_job.py); everything is written under a
temporary folder removed at the end.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ARGS = None
TMP = None
GiB = 1 << 30
JOB_LIMIT_S = 100


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def run(argv, limit=JOB_LIMIT_S, env=None):
    """(exit status, stdout, stderr); a job still running at its limit is
    killed whole (mpirun and every rank) and fails the test."""
    sys.path.insert(0, os.path.join(ARGS.source, "tests", "gate", "python"))
    from run_job import kill_tree
    e = dict(os.environ)
    e.pop("WARMCAL_PROGRESS", None)
    e.update(env or {})
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=TMP, env=e,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, err = p.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        kill_tree(p)
        p.communicate()
        raise Failure("%s did not end within %d s (killed)" % (" ".join(argv[:6]), limit))
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")


def warmcal(*argv):
    return run([ARGS.warmcal] + [str(a) for a in argv])


def ok(*argv):
    rc, out, err = warmcal(*argv)
    check(rc == 0, "warmcal %s: exit %d: %s" % (" ".join(map(str, argv)), rc, err))
    return out


def synth(out_dir, model, *flags):
    m = os.path.join(ARGS.source, "data", "models", model)
    rc, out, err = run(ARGS.mpiexec + [ARGS.synth, "--model", os.path.join(m, "config.json"),
                                       "--out", out_dir, "--timeout", "30"] + list(flags))
    check(rc == 0, "warmcal-synth %s %s: exit %d:\n%s" % (model, " ".join(flags), rc, err))
    return err


def deployment(model, name):
    return os.path.join(ARGS.source, "data", "models", model, name)


def traces(folder):
    return [os.path.join(folder, "rank-%d.h5" % r) for r in range(4)]


def phases(folder):
    """Per rank, the phases of its trace (warmcal inspect --json)."""
    doc = json.loads(ok("inspect", *traces(folder), "--json"))
    check([t["rank"] for t in doc] == [0, 1, 2, 3], "ranks of the traces")
    return [t["phases"] for t in doc]


def free_of(folder):
    """Each rank's free memory during the run: the same at every phase edge
    (the synthetic device frees what a pass took), else the test says so."""
    free = []
    for r, ps in enumerate(phases(folder)):
        seen = {p["device_free_begin"] for p in ps} | {p["device_free_end"] for p in ps}
        check(len(seen) == 1 and None not in seen, "rank %d: free memory changed during the "
              "run: %r" % (r, sorted(seen, key=str)))
        free.append(seen.pop())
    return free


def fit(folder, table):
    ok("fit", *traces(folder), "-o", table)


def plan(table, free, *more):
    return json.loads(ok("plan", table, "--free", ",".join(map(str, free)), "--json", *more))


def estimate(table, rank, tokens, label="context"):
    """The table's bytes for a pass, or None where it refuses (range)."""
    rc, out, err = warmcal("estimate", table, "--tokens", tokens, "--rank", rank, "--label", label)
    if rc == 2 and "range" in err:
        return None
    check(rc == 0, "estimate rank %d %d tokens: %d %s" % (rank, tokens, rc, err))
    return int(out)


# --- (a) the shipped models ---------------------------------------------------------

def check_budget(table, rank, label, tokens, limit, free, reserve):
    """tokens is rank's budget: a pass of tokens fits, one of tokens + 1 meets limit."""
    where = "rank %d %s budget %d (%s)" % (rank, label, tokens, limit)
    if tokens > 0:
        need = estimate(table, rank, tokens, label)
        check(need is not None and need + reserve <= free, "%s: %r + %d does not fit in %d"
              % (where, need, reserve, free))
    after = estimate(table, rank, tokens + 1, label)
    if limit == "memory":
        check(after is not None and after + reserve > free, "%s: one token more fits: %r"
              % (where, after))
    elif limit == "range":
        check(after is None, "%s: one token more is inside the range" % where)
    else:
        raise Failure("%s: unexpected limit" % where)


def check_plan(table, free, reserve, model):
    doc = plan(table, free, "--reserve", reserve)
    check(doc["world_size"] == 4 and doc["free_bytes"] == free and doc["rank"] is None
          and doc["reserve_bytes"] == reserve and doc["shapes"] == [], "%s: header %r" % (model, doc))
    labels = {l["label"]: l for l in doc["labels"]}
    check(set(labels) == {"context", "generation"}, "%s: labels %r" % (model, sorted(labels)))
    for label, l in labels.items():
        ranks = l["ranks"]
        check([r["rank"] for r in ranks] == [0, 1, 2, 3], "%s %s: ranks" % (model, label))
        least = min(r["max_tokens"] for r in ranks)
        first = min(r["rank"] for r in ranks if r["max_tokens"] == least)
        check(l["max_tokens"] == least and l["limiting_rank"] == first
              and l["limit"] == ranks[first]["limit"],
              "%s %s: the budget is not the smallest rank's (lowest on ties): %r" % (model, label, l))
        for r in ranks:
            check_budget(table, r["rank"], label, r["max_tokens"], r["limit"], free[r["rank"]],
                         reserve)
        # one rank's view is that rank's own budget
        view = plan(table, free, "--reserve", reserve, "--rank", 1, "--label", label)
        check(view["rank"] == 1 and len(view["labels"]) == 1, "%s: --rank 1 view" % model)
        v = view["labels"][0]
        check(v["max_tokens"] == ranks[1]["max_tokens"] and v["limiting_rank"] == 1
              and v["limit"] == ranks[1]["limit"], "%s %s: rank 1's view %r, in the full plan %r"
              % (model, label, v, ranks[1]))
    return labels


def case_shipped_models():
    runs = [("deepseek-v3", ["--deployment", deployment("deepseek-v3", "deploy-tp4-rank0-overhead.json"),
                             "--seed", "1"]),
            ("llama-3.1-70b", ["--deployment", deployment("llama-3.1-70b", "deploy-tp4.json"),
                               "--rank-overhead", "0:3GiB", "--seed", "1"])]
    for model, flags in runs:
        cal = os.path.join(TMP, model)
        synth(cal, model, *flags)
        table = os.path.join(TMP, model + ".json")
        fit(cal, table)
        free = free_of(cal)
        check(free[0] < min(free[1:]), "%s: rank 0 has the least free memory: %r" % (model, free))
        for reserve in (0, 256 << 20):
            labels = check_plan(table, free, reserve, model)
            ctx = labels["context"]
            check(ctx["limiting_rank"] == 0 and ctx["limit"] == "memory" and ctx["max_tokens"] > 0,
                  "%s, reserve %d: context is limited by rank 0's memory: %r" % (model, reserve, ctx))
        # the text says the same
        text = ok("plan", table, "--free", ",".join(map(str, free)), "--label", "context")
        row = [l for l in text.splitlines() if l.startswith("context ")]
        check(len(row) == 1 and row[0].split()[1:5] == [str(plan(table, free)["labels"][0]
                                                             ["max_tokens"]), "rank", "0", "low"],
              "%s: the text's context row: %r" % (model, text))
        print("%s: free %r, reserve 256 MiB -> context budget %d tokens, limited by rank 0 "
              "(memory)" % (model, free, ctx["max_tokens"]))


# --- (b) shape by shape with warmcal-synth --gate -----------------------------------

SKIP = re.compile(r"^warmcal-synth: gate: pass (\d+) \((\S+), (\d+) tokens\) skipped on every "
                  r"rank: (.*)$", re.M)


def gate_agreement(name, model, cal_flags, run_flags, gated_flags=()):
    cal = os.path.join(TMP, name + "-cal")
    synth(cal, model, *cal_flags)
    table = os.path.join(TMP, name + ".json")
    fit(cal, table)
    # the same run without the gate (and in lockstep: unsynchronized, it would
    # hang at its first out-of-memory pass): its passes are the schedule the
    # gate decided on
    plain = os.path.join(TMP, name + "-plain")
    synth(plain, model, *run_flags)
    schedule = [(p["tokens"], p["batch"], p["label"]) for p in phases(plain)[0]]
    gated = os.path.join(TMP, name + "-gated")
    log = synth(gated, model, *run_flags, *gated_flags, "--gate", table)
    skipped = {int(m.group(1)): (int(m.group(3)), m.group(2), m.group(4)) for m in SKIP.finditer(log)}
    ran = phases(gated)
    kept = [s for i, s in enumerate(schedule) if i not in skipped]
    for r in range(4):
        check([(p["tokens"], p["batch"], p["label"]) for p in ran[r]] == kept,
              "%s: rank %d ran other passes than the schedule less the skips" % (name, r))
        check(all(p["outcome"] == "ok" for p in ran[r]), "%s: rank %d: a gated pass failed" % (name, r))
    for i, (tokens, label, _) in skipped.items():
        check(schedule[i][0] == tokens and schedule[i][2] == label, "%s: pass %d" % (name, i))
    check(skipped and len(skipped) < len(schedule), "%s: nothing to compare: %d of %d skipped"
          % (name, len(skipped), len(schedule)))
    # what the gate saw: the simulated device's free memory at the decision,
    # which the trace samples at the phase's begin right after; constant here
    free = free_of(gated)
    check(free == free_of(plain), "%s: the gated and plain runs had different free memory" % name)

    shapes_file = os.path.join(TMP, name + "-shapes.txt")
    with open(shapes_file, "w") as f:
        f.write("# the warmup of %s, as warmcal-synth runs it\n" % name)
        for tokens, batch, label in schedule:
            f.write("%d %d %s\n" % (tokens, batch, label))
    doc = plan(table, free, "--shapes", shapes_file)
    check(len(doc["shapes"]) == len(schedule), "%s: one answer per shape" % name)
    reasons = set()
    for i, (s, (tokens, batch, label)) in enumerate(zip(doc["shapes"], schedule)):
        what = "%s: pass %d (%s, %d tokens)" % (name, i, label, tokens)
        check((s["tokens"], s["batch"], s["label"], s["line"]) == (tokens, batch, label, i + 2),
              "%s: the shape as read: %r" % (what, s))
        if i not in skipped:
            check(s["run"] and s["reason"] == "run" and s["blocking_rank"] is None
                  and s["short_bytes"] == 0 and s["text"] == "run",
                  "%s: the gate ran it, plan says %r" % (what, s))
            continue
        text = skipped[i][2]
        check(not s["run"] and s["text"] == text, "%s: the gate said %r, plan %r" % (what, text, s))
        blocking = int(re.search(r"rank (\d+)", text).group(1))
        check(s["blocking_rank"] == blocking, "%s: blocking rank %r, the gate named %d"
              % (what, s["blocking_rank"], blocking))
        reasons.add(s["reason"])
        if "is short of" in text:
            need = estimate(table, blocking, tokens, label)
            check(s["reason"] == "low_memory" and s["short_bytes"] == need - free[blocking],
                  "%s: short %r, by the estimate %d - free %d" % (what, s, need, free[blocking]))
        elif "outside the calibrated range" in text:
            check(s["reason"] == "out_of_range" and s["short_bytes"] == 0, "%s: %r" % (what, s))
        else:
            raise Failure("%s: a reason this test does not know: %r" % (what, text))
    print("%s: %d shapes, %d skipped (%s), plan and the gate agree on every one"
          % (name, len(schedule), len(skipped), ", ".join(sorted(reasons))))
    return reasons


def case_agrees_with_synth():
    ds = deployment("deepseek-v3", "deploy-tp4-rank0-overhead.json")
    reasons = gate_agreement("deepseek", "deepseek-v3", ["--deployment", ds, "--seed", "1"],
                             ["--deployment", ds, "--seed", "5"], ["--unsynchronized"])
    check(reasons == {"low_memory"}, "deepseek: rank 0's low memory: %r" % reasons)
    # dense: calibrated to 8192 tokens, warmed up to 16384 with rank 2 short of
    # memory: skips for low memory (rank 2) and outside the calibrated range
    ll = deployment("llama-3.1-8b", "deploy-tp4.json")
    reasons = gate_agreement("llama", "llama-3.1-8b",
                             ["--deployment", ll, "--max-num-tokens", "8192", "--rank-overhead",
                              "0:2GiB", "--seed", "1"],
                             ["--deployment", ll, "--max-num-tokens", "16384", "--rank-overhead",
                              "2:7GiB", "--seed", "4"])
    check(reasons == {"low_memory", "out_of_range"}, "llama: reasons %r" % reasons)


# --- (c) Gate.max_tokens on 4 ranks -------------------------------------------------

def case_max_tokens_agrees():
    ds = deployment("deepseek-v3", "deploy-tp4-rank0-overhead.json")
    cal = os.path.join(TMP, "cal")
    synth(cal, "deepseek-v3", "--deployment", ds, "--seed", "1")
    table = os.path.join(TMP, "table.json")
    fit(cal, table)
    measured = free_of(cal)
    # (free per rank, reserve): the run's own, all equal (ties), rank 3 the
    # least, a reserve, room beyond every range, and no room at all
    scenarios = [(measured, 0), ([4 * GiB] * 4, 0), ([5 * GiB, 5 * GiB, 5 * GiB, GiB + 12345], 0),
                 (measured, 300 << 20), ([1 << 50] * 4, 0), ([1 << 20] * 4, 0)]
    spec = os.path.join(TMP, "scenarios.json")
    answers = os.path.join(TMP, "budgets.json")
    with open(spec, "w") as f:
        json.dump({"table": table, "labels": ["context", "generation"],
                   "scenarios": [{"free": fr, "reserve": res} for fr, res in scenarios]}, f)
    prog = os.path.join(os.path.dirname(os.path.abspath(__file__)), "budget_ranks.py")
    rc, out, err = run(ARGS.mpiexec + ["--bind-to", "none", ARGS.python, "-m", "mpi4py", prog,
                                       spec, answers])
    check(rc == 0, "budget_ranks.py on 4 ranks: exit %d\n%s\n%s" % (rc, out, err))
    with open(answers) as f:
        gate = json.load(f)
    for k, (fr, res) in enumerate(scenarios):
        doc = plan(table, fr, "--reserve", res)
        mine = {l["label"]: l for l in doc["labels"]}
        for label in ("context", "generation"):
            g = gate[k][label]
            p = mine[label]
            check((p["max_tokens"], p["limiting_rank"]) == (g["tokens"], g["limiting_rank"]),
                  "free %r reserve %d %s: Gate.max_tokens %r, plan %r" % (fr, res, label, g, p))
        print("free %r reserve %d: %s" % (fr, res, ", ".join(
            "%s %d (rank %d, %s)" % (l, mine[l]["max_tokens"], mine[l]["limiting_rank"],
                                     mine[l]["limit"]) for l in mine)))
    limits = {(k, l["label"]): l["limit"] for k in range(len(scenarios))
              for l in plan(table, scenarios[k][0], "--reserve", scenarios[k][1])["labels"]}
    check(limits[(4, "context")] == "range" and limits[(0, "context")] == "memory",
          "the scenarios reach both limits: %r" % limits)


# --- (d) bad inputs --------------------------------------------------------------------

def refused(argv, needle, what):
    rc, out, err = warmcal("plan", *argv)
    check(rc == 2, "%s: exit %d, expected 2 (stderr %r)" % (what, rc, err))
    check(out == "", "%s: stdout %r" % (what, out))
    check(err.count("\n") == 1 and err.endswith("\n"), "%s: expected one line, got %r" % (what, err))
    check(needle in err, "%s: %r not named in %r" % (what, needle, err))


def case_bad_inputs():
    # a one-rank table from one process (no mpirun: MPI starts as a singleton)
    cal = os.path.join(TMP, "cal")
    model = os.path.join(ARGS.source, "data", "models", "llama-3.1-8b", "config.json")
    rc, _, err = run([ARGS.synth, "--model", model, "--max-num-tokens", "2048", "--out", cal])
    check(rc == 0, "warmcal-synth alone: %d %s" % (rc, err))
    table = os.path.join(TMP, "table.json")
    ok("fit", os.path.join(cal, "rank-0.h5"), "-o", table)
    ok("plan", table, "--free", "10GiB")

    def shapes(name, text):
        path = os.path.join(TMP, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    refused([table, "--free", "1GiB,2GiB"], "--free", "two values for a one-rank table")
    refused([table, "--free", "lots"], "--free", "bad bytes")
    refused([table, "--free", "1GiB,"], "--free", "an empty value")
    refused([table, "--free", "1GiB", "--reserve", "-3"], "--reserve", "a negative reserve")
    refused([table, "--free", "1GiB", "--label", "prefill"], "--label", "unknown label")
    refused([table, "--free", "1GiB", "--rank", "1"], "--rank", "a rank outside the world")
    refused([table, "--free", "1GiB", "--rank", "x"], "--rank", "a rank that is no number")
    refused([table], "--free", "without --free")
    refused(["--free", "1GiB"], "no table", "without a table")
    refused([table, "--free", "1GiB", "--free", "2GiB"], "--free", "--free twice")
    refused([table, "--free", "1GiB", "--tokens", "3"], "--tokens", "an unknown option")
    refused([os.path.join(TMP, "missing.json"), "--free", "1GiB"], "missing.json", "a missing table")
    bad_table = shapes("bad-table.json", '{"format": "warmcal-table", "version": 1,')
    refused([bad_table, "--free", "1GiB"], "bad-table.json", "a truncated table")
    for name, text, needle in [
            ("zero.txt", "# warmup\n64\n0 1\n", "line 3: tokens"),
            ("word.txt", "64 1 context\nmany\n", "line 2: tokens"),
            ("batch.txt", "64 0\n", "line 1: batch"),
            ("bigbatch.txt", "64 4294967296\n", "line 1: batch"),
            ("label.txt", "64 1 " + "x" * 40 + "\n", "line 1: label"),
            ("utf8.txt", b"64 1 \xff\n".decode("latin-1"), "line 1: label"),
            ("fields.txt", "64 1 context extra\n", "line 1: unexpected fourth field"),
            ("empty.txt", "# nothing but comments\n\n", "no shapes")]:
        path = shapes(name, text)
        if name == "utf8.txt":
            with open(path, "wb") as f:
                f.write(b"64 1 \xff\n")
        refused([table, "--free", "1GiB", "--shapes", path], path + ": " + needle.split(":")[0],
                "shapes file " + name)
        refused([table, "--free", "1GiB", "--shapes", path], needle, "shapes file " + name)
    refused([table, "--free", "1GiB", "--shapes", os.path.join(TMP, "nope.txt")], "nope.txt",
            "a missing shapes file")
    # a good file with comments, defaults and a label the table lacks: an answer, not an error
    good = shapes("good.txt", "# tokens batch label\n\n16 # batch 1, context\n32 4 generation\n"
                              "8 1 prefill\n")
    doc = json.loads(ok("plan", table, "--free", "10GiB", "--shapes", good, "--json"))
    got = [(s["line"], s["tokens"], s["batch"], s["label"], s["reason"]) for s in doc["shapes"]]
    check(got == [(3, 16, 1, "context", "run"), (4, 32, 4, "generation", "run"),
                  (5, 8, 1, "prefill", "no_estimate")], "good shapes: %r" % got)


def main():
    global ARGS, TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--warmcal", required=True)
    ap.add_argument("--synth", required=True)
    ap.add_argument("--source", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--python", default=sys.executable)
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    ARGS = ap.parse_args(argv[:cut])
    ARGS.mpiexec = argv[cut + 1:]
    fn = globals().get("case_" + ARGS.case)
    if not fn:
        print("no case %s" % ARGS.case, file=sys.stderr)
        return 2
    os.makedirs(ARGS.workdir, exist_ok=True)
    TMP = tempfile.mkdtemp(prefix="plan-" + ARGS.case[:20] + "-", dir=ARGS.workdir)
    try:
        fn()
    except Failure as e:
        print("FAIL %s: %s" % (ARGS.case, e), file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print("ok %s" % ARGS.case)
    return 0


if __name__ == "__main__":
    sys.exit(main())
