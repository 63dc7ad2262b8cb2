#!/usr/bin/python3
"""The estimator as users run it: warmcal-synth on real MPI ranks, then
`warmcal fit`, `check`, `estimate` and `validate`.

usage: test_estimator_cli.py CASE --synth BIN --warmcal BIN --data DIR --mpiexec MPIEXEC...
"""
import argparse
import glob
import json
import os
import select
import stat
import subprocess
import sys
import tempfile
import time

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
    # above its own range rank 0 is served by the any-rank entry (the gate then
    # decides on rank 0's free memory)
    rc, out, err = run(ARGS.warmcal, "estimate", f"{tmp}/t.json", "--rank", "0", "--tokens", "32784")
    _, any_rank, _ = run(ARGS.warmcal, "estimate", f"{tmp}/t.json", "--tokens", "32784")
    check(rc == 0 and out == any_rank,
          f"rank 0 beyond its range: {rc} {out!r} {any_rank!r} {err!r}")


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


def snapshot(path):
    """What a path is: its kind, device numbers and, for a link, its text."""
    st = os.lstat(path)
    link = os.readlink(path) if stat.S_ISLNK(st.st_mode) else None
    return (stat.S_IFMT(st.st_mode), st.st_rdev, st.st_ino, link)


def leftovers(folder):
    return sorted(n for n in os.listdir(folder) if ".tmp-" in n)


def is_table(text):
    try:
        return json.loads(text).get("format") == "warmcal-table"
    except ValueError:
        return False


def same_fit(text, reference):
    """The same table but for when it was made."""
    if not (is_table(text) and is_table(reference)):
        return False
    a, b = json.loads(text), json.loads(reference)
    a.pop("created"), b.pop("created")
    return a == b


def table_at(text, start=0):
    """The JSON document that text holds from start on, as text (what follows it is ignored)."""
    try:
        return json.dumps(json.JSONDecoder().raw_decode(text, start)[0])
    except ValueError:
        return ""


def fit_through_fifo(trace, fifo):
    """Run fit onto a FIFO while this process reads it; (exit, stderr, what was read)."""
    rd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader exists before fit opens it
    proc = subprocess.Popen([ARGS.warmcal, "fit", trace, "-o", fifo], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    data, deadline = b"", time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([rd], [], [], 0.05)
        chunk = b""
        if ready:
            try:
                chunk = os.read(rd, 1 << 16)
            except BlockingIOError:
                pass
        data += chunk
        if not chunk and proc.poll() is not None:
            break
        if not chunk:
            time.sleep(0.01)  # a FIFO without a writer reads as at its end
    os.close(rd)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return proc.returncode, err, data.decode(errors="replace")


def case_fit_output_that_is_not_a_regular_file_is_never_renamed_over(tmp):
    trace = f"{tmp}/good.h5"
    write_trace(trace, [256, 1024, 4096, 16384])
    fit([trace], f"{tmp}/table.json")
    table_text = open(f"{tmp}/table.json").read()
    check(is_table(table_text), "the reference fit wrote a table")

    # a character device is written through (like /dev/null): it stays a device
    if os.geteuid() != 0:
        print("SKIP character device part: creating a device node (mknod) needs root")
    else:
        null = f"{tmp}/null"
        os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        before = snapshot(null)
        rc, _, err = run(ARGS.warmcal, "fit", trace, "-o", null)
        check(rc == 0, f"fit -o a /dev/null node: exit {rc}: {err}")
        check(snapshot(null) == before and stat.S_ISCHR(os.lstat(null).st_mode),
              f"the device node is left a device node: {before} -> {snapshot(null)}")

    # the real /dev/null, which needs no root to name: it stays the same device. Were it
    # renamed over (the bug this guards against, run as root) it is put back at once.
    real_null = "/dev/null"
    before = snapshot(real_null)
    if not (stat.S_ISCHR(before[0]) and before[1] == os.makedev(1, 3)):
        print(f"SKIP {real_null} part: it is not the null device here: {before}")
    else:
        rc, _, err = run(ARGS.warmcal, "fit", trace, "-o", real_null)
        after = snapshot(real_null)
        if after != before and os.geteuid() == 0:
            os.unlink(real_null)
            os.mknod(real_null, stat.S_IFCHR, os.makedev(1, 3))
            os.chmod(real_null, 0o666)
        check(rc == 0, f"fit -o {real_null}: exit {rc}: {err}")
        check(after == before, f"{real_null} is left the null device: {before} -> {after}")

    # a FIFO with a reader gets the table; without one, exit 2 at once
    fifo = f"{tmp}/fifo"
    os.mkfifo(fifo)
    before = snapshot(fifo)
    rc, err, data = fit_through_fifo(trace, fifo)
    check(rc == 0 and is_table(data), f"fit -o FIFO with a reader: exit {rc}, read {data[:80]!r}: {err}")
    check(snapshot(fifo) == before, "the FIFO is left a FIFO")
    rc, _, err = run(ARGS.warmcal, "fit", trace, "-o", fifo)
    check(rc == 2 and fifo in err and "reader" in err, f"fit -o FIFO without a reader: exit {rc}: {err!r}")
    check(snapshot(fifo) == before, "the FIFO is left a FIFO after a refused write")

    # a link to where the output already goes (`-o /dev/stdout`, which is one) writes through it
    stdout_link = f"{tmp}/stdout"
    os.symlink("/proc/self/fd/1", stdout_link)
    rc, out, err = run(ARGS.warmcal, "fit", trace, "-o", stdout_link)
    check(rc == 0 and '"format": "warmcal-table"' in out, f"fit -o a link to stdout: exit {rc}: {err}")
    check(os.path.islink(stdout_link) and os.readlink(stdout_link) == "/proc/self/fd/1",
          "the stdout link is left a link")
    rc, out, err = run(ARGS.warmcal, "fit", trace, "-o", "/dev/stdout")
    check(rc == 0 and same_fit(table_at(out), table_text),
          f"fit -o /dev/stdout into a pipe: exit {rc}: {err}")

    # `fit -o /dev/stdout >> log` (and stdout's other names): the table goes after what the
    # log held, through the descriptor the shell opened; the log is not replaced by it
    log = f"{tmp}/log.txt"
    for name in ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"):
        with open(log, "w") as f:
            f.write("earlier lines\n")
        inode = os.stat(log).st_ino
        with open(log, "a") as f:
            p = subprocess.run([ARGS.warmcal, "fit", trace, "-o", name], stdout=f, stderr=subprocess.PIPE,
                               text=True, timeout=240)
        text = open(log).read()
        head = "earlier lines\n"
        check(p.returncode == 0 and text.startswith(head) and same_fit(table_at(text, len(head)), table_text),
              f"fit -o {name} >> log: exit {p.returncode}, the log now reads {text[:60]!r}: {p.stderr}")
        check(os.stat(log).st_ino == inode and f"table {name}:" in text,
              f"fit -o {name} >> log: the log is the same file, with the summary after the table")

    # a symlink output replaces its target, not the link: relative, and dangling
    os.mkdir(f"{tmp}/real")
    os.mkdir(f"{tmp}/links")
    with open(f"{tmp}/real/t.json", "w") as f:
        f.write("old\n")
    os.symlink("../real/t.json", f"{tmp}/links/t.json")
    os.symlink("../real/new.json", f"{tmp}/links/new.json")
    for name in ("t.json", "new.json"):
        link = f"{tmp}/links/{name}"
        before = snapshot(link)
        rc, _, err = run(ARGS.warmcal, "fit", trace, "-o", link)
        check(rc == 0, f"fit -o symlink {name}: exit {rc}: {err}")
        check(snapshot(link) == before, f"the link {name} is left a link to the same target")
        target = f"{tmp}/real/{name}"
        check(os.path.isfile(target) and not os.path.islink(target) and
              same_fit(open(target).read(), table_text), f"the link's target {name} holds the new table")
    check(leftovers(f"{tmp}/real") == [] and leftovers(f"{tmp}/links") == [] and leftovers(tmp) == [],
          f"no temporary file left: {leftovers(tmp)} {leftovers(f'{tmp}/real')}")

    # a folder is refused, named, and left as it was
    os.mkdir(f"{tmp}/folder")
    rc, _, err = run(ARGS.warmcal, "fit", trace, "-o", f"{tmp}/folder")
    check(rc == 2 and f"{tmp}/folder" in err and "folder" in err, f"fit -o FOLDER: exit {rc}: {err!r}")
    check(os.path.isdir(f"{tmp}/folder") and os.listdir(f"{tmp}/folder") == [], "the folder is untouched")


def case_fit_refuses_an_output_that_is_one_of_its_inputs(tmp):
    trace = f"{tmp}/good.h5"
    write_trace(trace, [256, 1024, 4096, 16384])
    os.link(trace, f"{tmp}/hard.h5")
    os.symlink("good.h5", f"{tmp}/soft.h5")
    original = open(trace, "rb").read()
    for output in (trace, f"{tmp}/hard.h5", f"{tmp}/soft.h5", f"{tmp}/./good.h5"):
        with open(trace, "r+b") as f:  # as it was, even if a previous output replaced it
            f.write(original)
            f.truncate()
        rc, _, err = run(ARGS.warmcal, "fit", trace, "-o", output)
        check(rc == 2 and output in err and "input" in err, f"fit {trace} -o {output}: exit {rc}: {err!r}")
        check(open(trace, "rb").read() == original, f"-o {output}: the trace is byte-identical")
    check(os.path.islink(f"{tmp}/soft.h5"), "the link to the trace is still a link")
    check(leftovers(tmp) == [], f"no temporary file left: {leftovers(tmp)}")


def case_fit_empty_output_path_names_the_option(tmp):
    trace = f"{tmp}/good.h5"
    write_trace(trace, [256, 1024, 4096, 16384])
    for flag in ("-o", "--output"):
        rc, _, err = run(ARGS.warmcal, "fit", trace, flag, "")
        check(rc == 2 and f"warmcal fit: {flag}: expected a file path, found an empty string" in err,
              f"fit {flag} '': exit {rc}: {err!r}")
    check(sorted(os.listdir(tmp)) == ["good.h5"], f"nothing written: {os.listdir(tmp)}")


def write_rank_trace(path, rank, world, rows):
    """A trace of one rank; rows are (label, tokens, outcome), each needing 1000 bytes a token."""
    with h5py.File(path, "w") as f:
        for k, v in (("warmcal_schema", 1), ("rank", rank), ("world_size", world), ("complete", 1)):
            f.attrs[k] = np.int32(v)
        for k, v in (("model", "m"), ("source", "import"), ("gpu_name", "g")):
            f.attrs[k] = v
        f.attrs["gpu_total_bytes"] = np.uint64(80 * GiB)
        dt = np.dtype([("label", "S32"), ("tokens", "<u8"), ("batch", "<u4"), ("begin_ns", "<u8"),
                       ("end_ns", "<u8"), ("live_begin", "<u8"), ("live_peak", "<u8"),
                       ("live_end", "<u8"), ("device_free_begin", "<u8"), ("device_free_end", "<u8"),
                       ("outcome", "u1"), ("failed_alloc_bytes", "<u8")])
        data = np.array([(label.encode(), t, 1, 0, 1, 0, t * 1000, 0, 2**64 - 1, 2**64 - 1, outcome,
                          t * 1000 if outcome == 1 else 0) for label, t, outcome in rows], dtype=dt)
        f.create_dataset("phases", data=data, maxshape=(None,), chunks=(16,))


def case_fit_says_the_any_rank_entry_serves_a_rank_only_when_there_is_one(tmp):
    """A (rank, label) fit cannot estimate is served by the any-rank entry only
    when one was made: here `generation` ran on rank 0 alone at 2 token counts
    and every `prefill` pass ran out of memory (no any-rank entry for either),
    while `decode` has 2 token counts per rank, 4 over both (an any-rank entry)."""
    ctx = [("context", t, 0) for t in (256, 1024, 4096, 16384)]
    write_rank_trace(f"{tmp}/rank-0.h5", 0, 2,
                     ctx + [("generation", 16, 0), ("generation", 32, 0), ("decode", 1, 0),
                            ("decode", 2, 0)] + [("prefill", t, 1) for t in (512, 1024, 2048)])
    write_rank_trace(f"{tmp}/rank-1.h5", 1, 2, ctx + [("decode", 4, 0), ("decode", 8, 0)])
    table = f"{tmp}/t.json"
    rc, out, err = run(ARGS.warmcal, "fit", f"{tmp}/rank-0.h5", f"{tmp}/rank-1.h5", "-o", table)
    check(rc == 0, f"fit: exit {rc}: {err}")
    entries = {(e["rank"], e["label"]) for e in json.load(open(table))["estimates"]} if rc == 0 else set()
    check((-1, "decode") in entries and (-1, "context") in entries,
          f"any-rank entries for decode and context: {sorted(entries)}")
    check((-1, "generation") not in entries and (-1, "prefill") not in entries,
          f"no any-rank entry for generation or prefill: {sorted(entries)}")
    warnings = {}
    for line in err.splitlines():
        if line.startswith("warning: rank "):
            rank_label = line[len("warning: "):].split(":")[0]
            warnings[rank_label] = line
    for rank, label in ((0, "decode"), (1, "decode")):
        line = warnings.get(f"rank {rank}, label {label}", "")
        check("(the any-rank entry serves it)" in line, f"rank {rank} {label}: {line!r}")
    for label in ("generation", "prefill"):
        line = warnings.get(f"rank 0, label {label}", "")
        check(line and "any-rank entry serves" not in line and "no any-rank entry" in line,
              f"rank 0 {label}: no false claim: {line!r}")
        check(f"warning: any rank, label {label}: not estimated" in err,
              f"the missing any-rank {label} entry is reported: {err!r}")
    rc, out, err = run(ARGS.warmcal, "estimate", table, "--rank", "0", "--label", "generation",
                       "--tokens", "16")
    check(rc == 2, f"no entry serves rank 0 generation: estimate exit {rc}: {out!r} {err!r}")


def case_validate_names_the_table_when_an_estimate_does_not_fit_in_64_bits(tmp):
    """An estimate beyond 64 bits inside the calibrated range is the table's
    fault: validate says so, naming the table, and exits 2; it is not a
    phase "outside the calibrated range"."""
    trace = f"{tmp}/rank-0.h5"
    write_trace(trace, [256, 1024, 4096, 16384])
    table = f"{tmp}/t.json"
    fit([trace], table)
    doc = json.load(open(table))
    for e in doc["estimates"]:
        e["model"] = {"form": "linear", "coefficients": [0.0, 1e16]}  # past 2^64 from 1845 tokens
    json.dump(doc, open(table, "w"))
    rc, out, err = run(ARGS.warmcal, "validate", table, trace)
    check(rc == 2, f"validate exit {rc}, expected 2: {err!r}")
    check(err.startswith(f"{table}: rank 0, label context: the estimate at 4096 tokens")
          and "does not fit in 64 bits" in err, f"validate names the table and why: {err!r}")
    check("outside the calibrated range" not in out, f"not out of range: {out!r}")


CASES = {k[5:]: v for k, v in globals().items() if k.startswith("case_")}
if ARGS.case not in CASES:
    sys.exit(f"unknown case {ARGS.case}")
with tempfile.TemporaryDirectory() as tmp:
    CASES[ARGS.case](tmp)
sys.exit(1 if FAILURES else 0)
