#!/usr/bin/env python3
"""Command-line conventions of `warmcal` and `warmcal-synth`, run as users run
them: --help with examples and --version; one line and exit 2 for every bad
argument; --json of fit and validate against the table and the measurements;
the progress line on a terminal only (a real pseudo-terminal); the manual
page against every subcommand's --help.

usage: test_cli.py CASE --warmcal BIN --synth BIN --source DIR --workdir DIR
"""

import argparse
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile

ARGS = None
TMP = None


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def run(*argv, env=None, cwd=None):
    e = dict(os.environ)
    e.pop("WARMCAL_PROGRESS", None)
    e.update(env or {})
    # bytes decoded by hand: text mode would turn a progress line's \r into \n
    p = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=e, cwd=cwd or TMP, timeout=120)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def warmcal(*argv, **kw):
    return run(ARGS.warmcal, *argv, **kw)


def subcommands():
    rc, out, _ = warmcal("--help")
    check(rc == 0, "warmcal --help: exit %d" % rc)
    block = out.split("subcommands:\n", 1)[1].split("\n\n", 1)[0]
    subs = [line.split()[0] for line in block.splitlines() if line.startswith("  ")]
    check(len(subs) >= 7, "subcommands listed: %r" % subs)
    return subs


def program_helps():
    """(argv, help text) of every program and subcommand, and of import's formats."""
    helps = []
    for argv in [[ARGS.warmcal], [ARGS.synth]] + [[ARGS.warmcal, s] for s in subcommands()]:
        rc, out, err = run(*argv, "--help")
        check(rc == 0 and out and err == "",
              "%s --help: exit %d, stderr %r" % (" ".join(argv[1:]) or argv[0], rc, err))
        helps.append((argv, out))
    for fmt in ("torch-snapshot", "csv"):
        rc, out, err = warmcal("import", fmt, "--help")
        check(rc == 0, "import %s --help: %d %r" % (fmt, rc, err))
        helps.append(([ARGS.warmcal, "import", fmt], out))
    return helps


def before_examples(text):
    return re.split(r"^examples?:$", text, maxsplit=1, flags=re.M)[0]


def options_of(text):
    """{option: takes a value} for every -x/--name before the examples (not
    a launcher's: "usage: mpirun -np N warmcal-synth ...")."""
    text = re.sub(r"^usage: .*?(?=\bwarmcal)", "usage: ", before_examples(text), flags=re.M)
    found = {}
    for m in re.finditer(r"(?:^|[^A-Za-z0-9_-])(--?[A-Za-z][A-Za-z0-9-]*)((?:, --?[A-Za-z][A-Za-z0-9-]*)?)"
                         r"([ =](?:[A-Z][A-Za-z0-9_.:|<>-]*|[a-z]+(?:\|[a-z]+)+))?",
                         text):
        value = bool(m.group(3))
        for opt in [m.group(1)] + re.findall(r"--?[A-Za-z][A-Za-z0-9-]*", m.group(2)):
            found[opt] = found.get(opt, False) or value
    return found


def name_of(argv):
    return " ".join([os.path.basename(argv[0])] + argv[1:])


# --- --help, --version, bad arguments --------------------------------------------

def case_help_ends_with_examples_and_version_prints_the_version():
    for argv, out in program_helps():
        if argv[1:2] == ["import"] and len(argv) == 3:
            continue  # argparse's own help of a format; `warmcal import --help` has the examples
        what = name_of(argv)
        check(out.startswith("usage:"), "%s --help starts with usage: %r" % (what, out[:60]))
        m = re.search(r"^(examples?):\n((?:  .*\n)+)\Z", out, flags=re.M)
        check(m, "%s --help does not end with an example block: ...%r" % (what, out[-300:]))
        lines = m.group(2).replace("\\\n", " ").splitlines()
        prog = os.path.basename(argv[0])
        runs = [line.split()[:4] for line in lines]
        check(all(any(w in ("warmcal", "warmcal-synth") for w in words) for words in runs),
              "%s: an example that runs no warmcal program: %r" % (what, lines))
        check(any(prog in words for words in runs), "%s: no example runs %s" % (what, prog))
    for prog, name in ((ARGS.warmcal, "warmcal"), (ARGS.synth, "warmcal-synth")):
        rc, out, err = run(prog, "--version")
        check(rc == 0 and err == "" and re.fullmatch(name + r" [0-9]+\.[0-9]+\.[0-9]+\n", out),
              "%s --version: %d %r %r" % (name, rc, out, err))


def refused(argv, needle, what):
    rc, out, err = run(*argv)
    check(rc == 2, "%s: exit %d, expected 2 (stderr %r)" % (what, rc, err))
    check(out == "", "%s: stdout %r" % (what, out))
    check(err.count("\n") == 1 and err.endswith("\n"),
          "%s: expected one line on stderr, got %r" % (what, err))
    check(needle in err, "%s: %r not named in %r" % (what, needle, err))


# what a format of `warmcal import` needs before argparse looks at options
IMPORT_REQUIRED = {"csv": ["x.csv", "-o", "out"], "torch-snapshot": ["x.pickle", "-o", "out"]}


def case_bad_arguments_exit_2_with_one_line_naming_the_option():
    for argv, text in program_helps():
        what = name_of(argv)
        if argv[1:2] == ["import"] and len(argv) == 3:
            argv = argv + IMPORT_REQUIRED[argv[2]]
        refused(argv + ["--no-such-option"], "--no-such-option", what + " --no-such-option")
        for opt, takes in options_of(text).items():
            if not takes or opt in ("-h", "--help"):
                continue
            # the option last, with no value after it
            refused(argv + [opt], opt, "%s %s (no value)" % (what, opt))
    refused([ARGS.warmcal], "usage: warmcal", "warmcal alone")
    refused([ARGS.warmcal, "frobnicate"], "'frobnicate'", "unknown subcommand")
    refused([ARGS.warmcal, "fit", "x.h5", "-o", "t.json", "--parsimony", "2"], "--parsimony",
            "fit --parsimony 2")
    refused([ARGS.warmcal, "fit", "x.h5", "-o", "t.json", "--above-range", "maybe"],
            "--above-range", "fit --above-range maybe")
    refused([ARGS.warmcal, "fit", "x.h5"], "-o", "fit without -o")
    refused([ARGS.warmcal, "validate", "t.json"], "no traces", "validate without traces")
    refused([ARGS.warmcal, "estimate", "t.json", "--tokens", "0"], "--tokens", "estimate --tokens 0")
    refused([ARGS.synth, "--tp", "x"], "--tp", "warmcal-synth --tp x")
    refused([ARGS.synth, "--stall-rank", "x", "--model", "m", "--out", "o"], "--stall-rank",
            "warmcal-synth --stall-rank x")
    refused([ARGS.synth, "--model", "m"], "--out", "warmcal-synth without --out")


# --- --json ------------------------------------------------------------------------

MiB = 1 << 20
# rank 0: 5 phases that grow linearly; rank 1: the same plus 64 MiB, and an
# oom; rank 2: two phases only, which cannot be fitted (a warning)
CALIBRATION = [(0, t, 100 * MiB + t * 65536) for t in (512, 1024, 2048, 4096, 8192)] + \
              [(1, t, 164 * MiB + t * 65536) for t in (512, 1024, 2048, 4096, 8192)] + \
              [(2, t, 100 * MiB + t * 65536) for t in (512, 1024)]


def write_csv(path, rows, oom=()):
    with open(path, "w") as f:
        f.write("rank,label,tokens,batch,peak_bytes,outcome\n")
        for rank, tokens, peak in rows:
            f.write("%d,context,%d,1,%d,ok\n" % (rank, tokens, peak))
        for rank, tokens, peak in oom:
            f.write("%d,context,%d,1,%d,oom\n" % (rank, tokens, peak))


def import_csv(name, rows, oom=()):
    csv_path = os.path.join(TMP, name + ".csv")
    write_csv(csv_path, rows, oom)
    out = os.path.join(TMP, name)
    rc, stdout, err = warmcal("import", "csv", csv_path, "--model", "m", "-o", out)
    check(rc == 0, "import %s: %d %s" % (name, rc, err))
    return stdout.split()


def case_fit_json_matches_the_table_it_wrote():
    traces = import_csv("cal", CALIBRATION, oom=[(1, 16384, 0)])
    table = os.path.join(TMP, "table.json")
    rc, out, err = warmcal("fit", *traces, "-o", table, "--json")
    check(rc == 0, "fit --json: %d %s" % (rc, err))
    doc = json.loads(out)
    written = json.load(open(table))
    check(doc["table"] == table and doc["traces"] == traces, "table and traces named")
    check(doc["configuration"] == written["configuration"] and
          doc["configuration"]["model"] == "m", "configuration: %r" % doc["configuration"])
    check(doc["above_range"] == written["policy"]["above_range"], "policy")
    check(doc["above_range"] == "refuse" and doc["constant_guess"] is None, "defaults")
    check(len(doc["estimates"]) == len(written["estimates"]), "one row per table entry")
    for mine, theirs in zip(doc["estimates"], written["estimates"]):
        for key in ("rank", "label", "tokens_min", "tokens_max"):
            check(mine[key] == theirs[key], "%s: %r != table %r" % (key, mine[key], theirs[key]))
        check(mine["model"] == theirs["model"]["form"], "model form")
        check(mine["margin_bytes"] == theirs["margin"]["bytes"], "margin: %r" % mine)
        check(mine["points"] == theirs["fit"]["points"], "points")
        check(isinstance(mine["tokens_max"], int), "exact integers")
    by_rank = {e["rank"]: e for e in doc["estimates"]}
    check(set(by_rank) == {0, 1, -1}, "ranks estimated: %r" % sorted(by_rank))
    check(by_rank[1]["failures"] == {"oom": 1, "oom_tokens_min": 16384, "aborted": 0},
          "rank 1's oom: %r" % by_rank[1]["failures"])
    check(by_rank[0]["failures"]["oom_tokens_min"] is None, "no oom: null")
    check(by_rank[0]["points"] == 5 and by_rank[0]["tokens_min"] == 512, "rank 0 row")
    # the warning about rank 2 is in the output and on stderr
    check(len(doc["warnings"]) == 1 and "rank 2" in doc["warnings"][0], "warnings: %r" % doc["warnings"])
    check("warning: " + doc["warnings"][0] in err, "the same warning on stderr: %r" % err)

    # the constant guess: shorts counted from the measurements themselves
    per_token = 81920.0
    rc, out, err = warmcal("fit", *traces, "-o", table, "--json", "--compare-constant", "81920")
    check(rc == 0, "fit --compare-constant --json: %d %s" % (rc, err))
    guess = json.loads(out)["constant_guess"]
    check(guess["bytes_per_token"] == per_token, "bytes_per_token")
    rows = {(r["rank"], r["label"]): r for r in guess["rows"]}
    for rank in (0, 1):
        need = [(t, peak) for r, t, peak in CALIBRATION if r == rank]
        short = sum(1 for t, peak in need if per_token * t < peak)
        worst = max([peak - per_token * t for t, peak in need if per_token * t < peak] or [0])
        row = rows[(rank, "context")]
        check(row["phases"] == len(need) and row["short"] == short,
              "rank %d: %r, expected %d phases, %d short" % (rank, row, len(need), short))
        check(abs(row["worst_short_bytes"] - worst) < 1, "rank %d worst short %r != %r"
              % (rank, row["worst_short_bytes"], worst))

    # the text and --json agree on the exit status; stdout to the table too is refused
    rc_text, _, _ = warmcal("fit", *traces, "-o", table)
    check(rc_text == 0, "text fit")
    refused([ARGS.warmcal, "fit", *traces, "-o", "/dev/stdout", "--json"], "--json",
            "fit --json -o /dev/stdout")
    bad = os.path.join(TMP, "not-a-trace.h5")
    open(bad, "w").write("no")
    rc, out, err = warmcal("fit", traces[0], bad, "-o", table, "--json")
    check(rc == 2 and out == "" and bad in err, "a bad trace: exit 2, nothing on stdout: %d %r"
          % (rc, out))


def estimate_of(table, rank, tokens):
    rc, out, err = warmcal("estimate", table, "--tokens", str(tokens), "--rank", str(rank))
    check(rc == 0, "estimate: %s" % err)
    return int(out)


def case_validate_json_holds_every_phase_and_the_summary():
    traces = import_csv("cal", CALIBRATION)
    table = os.path.join(TMP, "table.json")
    rc, _, err = warmcal("fit", *traces, "-o", table)
    check(rc == 0, "fit: %s" % err)
    # held out: rank 0 and 1 a bit above their calibration, one rank 1 phase
    # far above its estimate, one oom, one beyond the calibrated range
    held = [(0, t, 100 * MiB + t * 65536 + MiB) for t in (768, 3000, 6000)] + \
           [(1, 5000, 4096 * MiB), (1, 1000, 164 * MiB + 1000 * 65536), (1, 20000, 2000 * MiB)]
    heldout = import_csv("held", held, oom=[(0, 8000, 0)])
    for quiet in ([], ["--quiet"]):
        rc, out, err = warmcal("validate", table, *heldout, "--json", *quiet)
        check(rc == 1, "an under-estimate gives exit 1 with --json too: %d %s" % (rc, err))
        doc = json.loads(out)
        check(doc["table"] == table and doc["traces"] == heldout, "names")
        check(len(doc["phases"]) == len(held) + 1, "every phase: %d" % len(doc["phases"]))
    rc_text, text, _ = warmcal("validate", table, *heldout)
    check(rc_text == 1 and "UNDER-ESTIMATE" in text, "text: same exit status")
    rows = {(p["rank"], p["tokens"]): p for p in doc["phases"]}
    for rank, tokens, peak in held:
        row = rows[(rank, tokens)]
        check(row["need"] == peak and row["outcome"] == "ok", "need of %r: %r" % ((rank, tokens), row))
        if tokens > 8192:
            check(row["compared"] is False and row["not_compared"] == "outside the calibrated range"
                  and row["estimate"] is None and row["over_provision_percent"] is None,
                  "outside the range: %r" % row)
            continue
        est = estimate_of(table, rank, tokens)
        check(row["compared"] and row["not_compared"] is None and row["estimate"] == est,
              "estimate of %r: %r, warmcal estimate says %d" % ((rank, tokens), row, est))
        over = 100.0 * (est - peak) / peak
        check(abs(row["over_provision_percent"] - over) < 1e-6, "over-provision %r" % row)
        check(row["under_estimate"] == (est < peak), "under_estimate flag %r" % row)
    oom = rows[(0, 8000)]
    check(oom["not_compared"] == "oom" and oom["need"] is None and not oom["compared"],
          "oom row: %r" % oom)
    s = doc["summary"]
    compared = [p for p in doc["phases"] if p["compared"]]
    check(s["compared"] == len(compared) == 5 and s["under_estimated"] == 1 and
          s["outside_range"] == 1 and s["not_compared_failed"] == 1, "counts: %r" % s)
    overs = sorted(p["over_provision_percent"] for p in compared)
    check(abs(s["over_provision_median_percent"] - overs[2]) < 1e-9 and
          abs(s["over_provision_max_percent"] - overs[-1]) < 1e-9, "median/max: %r" % s)
    safe = max(p["need"] / p["tokens"] for p in compared)
    g0 = s["constant_guess"][0]
    check(g0["above_tokens"] == 0 and g0["phases"] == 5 and abs(g0["safe_bytes_per_token"] - safe) < 1e-6,
          "safe constant: %r, expected %r" % (g0, safe))
    # without the bad phase: exit 0, the same shape
    good = import_csv("good", held[:3])
    rc, out, err = warmcal("validate", table, *good, "--json")
    check(rc == 0 and json.loads(out)["summary"]["under_estimated"] == 0, "no under-estimate: %d" % rc)


# --- progress --------------------------------------------------------------------

def run_on_terminal(argv, env=None, stderr_terminal=True):
    """Run argv with stderr (or, with stderr_terminal False, stdout) on a
    fresh pseudo-terminal and the other on a pipe; (exit, stdout, stderr)
    as bytes, whatever went to the terminal included."""
    master, slave = pty.openpty()
    e = dict(os.environ)
    e.pop("WARMCAL_PROGRESS", None)
    e.update(env or {})
    if stderr_terminal:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
                             env=e, cwd=TMP)
    else:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=subprocess.PIPE,
                             env=e, cwd=TMP)
    os.close(slave)
    on_terminal = b""
    other = p.stdout if stderr_terminal else p.stderr
    piped = b""
    streams = [master, other.fileno()]
    while streams:
        ready, _, _ = select.select(streams, [], [], 120)
        check(ready, "%s: no output for 120 s" % argv)
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the terminal's last writer closed it
                chunk = b""
            if not chunk:
                streams.remove(fd)
            elif fd == master:
                on_terminal += chunk
            else:
                piped += chunk
    rc = p.wait(timeout=120)
    os.close(master)
    other.close()
    if stderr_terminal:
        return rc, piped, on_terminal.replace(b"\r\n", b"\n")
    return rc, on_terminal.replace(b"\r\n", b"\n"), piped


def progress_cases():
    traces = import_csv("cal", CALIBRATION)
    table = os.path.join(TMP, "table.json")
    csv_path = os.path.join(TMP, "cal.csv")
    synth_out = os.path.join(TMP, "synth")
    model = os.path.join(ARGS.source, "data", "models", "llama-3.1-8b", "config.json")
    report = ([("warmcal report", [ARGS.warmcal, "report", *traces, "-o",
                                   os.path.join(TMP, "report.svg")],
                b"warmcal report: reading traces")] if shutil.which("gnuplot") else [])
    return report + [
        ("warmcal fit", [ARGS.warmcal, "fit", *traces, "-o", table], b"warmcal fit: reading traces"),
        ("warmcal validate", [ARGS.warmcal, "validate", table, *traces],
         b"warmcal validate: traces"),
        ("warmcal import", [ARGS.warmcal, "import", "csv", csv_path, "-o", os.path.join(TMP, "imp")],
         b"warmcal import: writing traces"),
        ("warmcal-synth", [ARGS.synth, "--model", model, "--out", synth_out, "--max-num-tokens",
                           "2048"], b"warmcal-synth: pass"),
    ]


def case_progress_shows_on_a_terminal_only():
    for what, argv, marker in progress_cases():
        # stderr a terminal: the line is drawn with carriage returns, and erased
        rc, out, err = run_on_terminal(argv)
        check(rc == 0, "%s on a terminal: exit %d: %r" % (what, rc, err))
        check(marker in err and b"\r" + marker in err, "%s: no progress on the terminal: %r"
              % (what, err[:300]))
        last = err.rfind(marker)
        erased = re.search(rb"\r +\r", err[last:])
        check(erased, "%s: the line is not erased at the end: %r" % (what, err[last:last + 200]))
        check(b"\r" not in out and marker not in out, "%s: progress on stdout: %r" % (what, out))
        # stderr a pipe: nothing but the messages
        rc, out, err = run(*argv)
        check(rc == 0 and "\r" not in err and marker.decode() not in err,
              "%s with stderr a pipe: %r" % (what, err[:300]))
        # stdout a terminal and stderr a pipe: still nothing, on either
        rc, out, err = run_on_terminal(argv, stderr_terminal=False)
        check(rc == 0 and b"\r" + marker not in err and marker not in out,
              "%s with stdout a terminal: %r %r" % (what, out[:200], err[:200]))
        # the environment decides both ways
        rc, out, err = run(*argv, env={"WARMCAL_PROGRESS": "1"})
        check(rc == 0 and "\r" + marker.decode() in err and marker.decode() not in out,
              "%s WARMCAL_PROGRESS=1 on a pipe: %r" % (what, err[:300]))
        rc, out, err = run_on_terminal(argv, env={"WARMCAL_PROGRESS": "0"})
        check(rc == 0 and marker not in err, "%s WARMCAL_PROGRESS=0 on a terminal: %r"
              % (what, err[:300]))


def case_progress_stays_out_of_the_json():
    traces = import_csv("cal", CALIBRATION)
    table = os.path.join(TMP, "table.json")
    rc, out, err = run_on_terminal([ARGS.warmcal, "fit", *traces, "-o", table, "--json"])
    check(rc == 0 and b"\r" + b"warmcal fit" in err, "fit --json on a terminal: %d %r" % (rc, err))
    json.loads(out.decode())  # stdout is the JSON alone
    rc, out, err = run_on_terminal([ARGS.warmcal, "validate", table, *traces, "--json"])
    check(rc == 0, "validate --json: %d" % rc)
    json.loads(out.decode())


# --- the examples run ---------------------------------------------------------------

# Examples that need what a test machine lacks: a GPU and a server to
# profile, PyTorch snapshots, the demo's output.
NOT_RUN_HERE = (" profile ", "torch-snapshot", "out/demo/")


def examples():
    """Every example line of every --help, continuation lines joined and
    comments dropped, with the program that printed it."""
    found = []
    for argv, out in program_helps():
        m = re.search(r"^examples?:\n((?:  .*\n)+)", out, flags=re.M)
        if not m:
            continue
        for line in m.group(1).replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*", "", line).strip()
            if line not in [l for _, l in found]:
                found.append((name_of(argv), line))
    return found


def case_examples_in_help_run():
    """The examples of every --help, run in order in a scratch folder (with
    the shipped data/ beside them): the synthetic runs first, then the fit,
    then everything that reads their traces and table. Each must exit 0."""
    os.symlink(os.path.join(ARGS.source, "data"), os.path.join(TMP, "data"))
    write_csv(os.path.join(TMP, "measurements.csv"), CALIBRATION)
    with open(os.path.join(TMP, "warmup.txt"), "w") as f:  # warmcal plan --shapes
        f.write("# tokens batch label\n512\n4096 1 context\n16384 1 context\n")
    lines = [(who, l) for who, l in examples() if not any(n in " %s " % l for n in NOT_RUN_HERE)]
    skipped = [l for _, l in examples() if any(n in " %s " % l for n in NOT_RUN_HERE)]
    have_gnuplot = shutil.which(os.environ.get("WARMCAL_GNUPLOT") or "gnuplot")

    def stage(line):
        if "warmcal-synth" in line and "--gate" not in line:
            return 0
        return 1 if " fit " in " %s " % line else 2
    lines.sort(key=lambda wl: stage(wl[1]))
    check(len(lines) >= 10, "examples to run: %r" % lines)
    ran = 0
    for who, line in lines:
        if " report " in " %s " % line and not have_gnuplot:
            print("skip (no gnuplot): %s" % line, file=sys.stderr)
            continue
        words = line.split()
        if words[:3] == ["mpirun", "-np", "4"]:
            words = ARGS.mpiexec + words[3:]
        words = [ARGS.warmcal if w == "warmcal" else ARGS.synth if w == "warmcal-synth" else w
                 for w in words]
        # as a shell would: globs (traces/rank-*.h5) and the ~ of a path
        command = " ".join(subprocess.list2cmdline([w]) if "*" not in w else w for w in words)
        p = subprocess.run(["/bin/sh", "-c", command], cwd=TMP, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=300)
        check(p.returncode == 0, "example of '%s --help' fails (exit %d): %s\n%s"
              % (who, p.returncode, line, p.stderr.decode("utf-8", "replace")[-1500:]))
        ran += 1
    print("%d examples ran; not here: %s" % (ran, "; ".join(skipped)), file=sys.stderr)


# --- the manual page ---------------------------------------------------------------

def deroff(text):
    text = re.sub(r"\\f[BIRP]|\\f\(..|\\&|\\e", "", text)
    return text.replace("\\-", "-").replace("\\(lq", '"').replace("\\(rq", '"')


def man_sections(text):
    """{heading: text} of the page's .SS subsections (and SYNOPSIS)."""
    parts = {}
    current = None
    for line in text.splitlines():
        if line.startswith(".SS ") or line.startswith(".SH "):
            current = line[4:].strip()
            parts[current] = ""
        elif current:
            parts[current] += line + "\n"
    return parts


def case_man_page_documents_every_subcommand_and_option():
    page_path = os.path.join(ARGS.source, "docs", "warmcal.1")
    page = deroff(open(page_path).read())
    sections = man_sections(page)
    check(all(h in sections for h in ("NAME", "SYNOPSIS", "DESCRIPTION", "EXIT STATUS",
                                      "ENVIRONMENT", "FILES", "EXAMPLES", "SEE ALSO")),
          "sections: %r" % list(sections))
    missing = []
    for argv, text in program_helps():
        words = [os.path.basename(argv[0])] + argv[1:2]
        heading = " ".join(words)
        # the subsection that starts with the command's name
        body = next((b for h, b in sections.items() if h.split()[:len(words)] == words), None)
        if body is None:
            if len(argv) > 1:
                missing.append("no subsection '%s'" % heading)
            continue
        if argv[1:] and not re.search(r"\bwarmcal %s\b" % re.escape(argv[1]), sections["SYNOPSIS"]):
            missing.append("'%s' not in SYNOPSIS" % heading)
        for opt in options_of(text):
            if opt in ("-h", "--help", "--version"):
                continue
            if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(opt), body):
                missing.append("%s: %s" % (heading, opt))
    for env in sorted(set(re.findall(r"WARMCAL_[A-Z_]+", "\n".join(t for _, t in program_helps())))):
        if env not in sections["ENVIRONMENT"]:
            missing.append("ENVIRONMENT: %s" % env)
    check(not missing, "the manual page lacks: %s" % "; ".join(missing))
    for code in ("0", "1", "2"):
        check(re.search(r"^\.B %s$" % code, sections["EXIT STATUS"], flags=re.M),
              "EXIT STATUS %s" % code)

    groff = shutil.which("groff")
    if not groff:
        print("skip: groff is not installed: the page was not rendered", file=sys.stderr)
        return
    p = subprocess.run([groff, "-man", "-Tutf8", "-ww", "-z", page_path], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    check(p.returncode == 0 and p.stderr == "", "groff warns: %d %s" % (p.returncode, p.stderr))


def main():
    global ARGS, TMP
    parser = argparse.ArgumentParser()
    parser.add_argument("case")
    parser.add_argument("--warmcal", required=True)
    parser.add_argument("--synth", required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--mpiexec", nargs=argparse.REMAINDER, default=["mpirun", "-np", "4"],
                        help="the launcher for 4 ranks, last (its own options follow it)")
    ARGS = parser.parse_args()
    fn = globals().get("case_" + ARGS.case)
    if not fn:
        print("no case %s" % ARGS.case, file=sys.stderr)
        return 2
    os.makedirs(ARGS.workdir, exist_ok=True)
    TMP = tempfile.mkdtemp(prefix=ARGS.case[:20] + "-", dir=ARGS.workdir)
    try:
        fn()
    except Failure as e:
        print("FAIL %s: %s" % (ARGS.case, e), file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
