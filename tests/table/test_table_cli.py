"""`warmcal check` and `warmcal estimate` against real files: the reference
table written by table_helper (through the C library), then damaged one way at
a time. Every bad table must exit 2 with nothing on stdout and one line on
stderr naming the file and the field path (or line and column when the file
is not JSON at all).

usage: test_table_cli.py CASE --warmcal BIN --helper BIN --workdir DIR
Exit 0 pass, 1 fail.
"""
import argparse
import copy
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

ARGS = None
TMP = None
GOOD = None  # the reference table as written by the library (text)


def fail(msg):
    raise AssertionError(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def run(*argv):
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout, p.stderr


def warmcal(*argv):
    return run(ARGS.warmcal, *argv)


def good_path():
    global GOOD
    path = os.path.join(TMP, "good.json")
    if GOOD is None:
        rc, _, err = run(ARGS.helper, "write", path)
        check(rc == 0, f"table_helper write: exit {rc}: {err}")
        with open(path) as f:
            GOOD = f.read()
    return path


def good():
    good_path()
    return json.loads(GOOD)


COUNTER = [0]


def write(doc, name=None, raw=False):
    """Write a table (a dict, or raw text) to a new file; returns its path."""
    COUNTER[0] += 1
    path = os.path.join(TMP, name or f"bad-{COUNTER[0]:03d}.json")
    with open(path, "w") as f:
        f.write(doc if raw else json.dumps(doc, indent=2))
    return path


def expect_rejected(path, *needles):
    """`warmcal check PATH`: exit 2, empty stdout, one stderr line naming the
    file and every needle (field path, words of the message)."""
    rc, out, err = warmcal("check", path)
    label = f"check {os.path.basename(path)}"
    check(rc == 2, f"{label}: expected exit 2, got {rc} (stderr: {err!r})")
    check(out == "", f"{label}: expected nothing on stdout, got {out!r}")
    check(err.count("\n") == 1, f"{label}: expected one line on stderr, got {err!r}")
    check(err.startswith(path + ": "), f"{label}: file not named first in {err!r}")
    for n in needles:
        check(n in err, f"{label}: expected {n!r} in {err!r}")
    return err


def expect_field(mutate, where, *words):
    """Apply mutate to a copy of the good table; check names `FILE: WHERE: `."""
    doc = good()
    mutate(doc)
    path = write(doc)
    return expect_rejected(path, f"{path}: {where}: ", *words)


def drop(key_path):
    """A mutation removing the field at key_path (a list of keys/indices)."""
    def m(doc):
        obj = doc
        for k in key_path[:-1]:
            obj = obj[k]
        del obj[key_path[-1]]
    return m


def setter(key_path, value):
    def m(doc):
        obj = doc
        for k in key_path[:-1]:
            obj = obj[k]
        obj[key_path[-1]] = value
    return m


def dotted(key_path):
    s = ""
    for k in key_path:
        s += f"[{k}]" if isinstance(k, int) else (("." if s else "") + k)
    return s


# --- check: good tables ----------------------------------------------------------

def case_check_accepts_a_good_table_and_summarises_it():
    path = good_path()
    rc, out, err = warmcal("check", path)
    check(rc == 0, f"check: exit {rc}, stderr {err!r}")
    check(err == "", f"check: unexpected stderr {err!r}")
    for needle in [f"{path}: valid estimate table (version 1)",
                   "model meta-llama/Llama-3.1-70B-Instruct, tp 4, gpu NVIDIA H200 (140.40 GiB)",
                   "warmcal 0.1.0, 2026-11-25T04:00:00Z",
                   "policy: above range refuse, below range clamp",
                   "sources: 2", "out/rank-0.h5  sha256 e3b0c442", "estimates: 5"]:
        check(needle in out, f"check: expected {needle!r} in:\n{out}")
    rows = [l.split() for l in out.splitlines() if re.match(r"^  (any|\d+)\s", l)]
    check(len(rows) == 5, f"check: expected 5 estimate rows in:\n{out}")
    check(rows[0][:4] == ["0", "context", "1..32784", "linear"], f"row 0: {rows[0]}")
    check(rows[1][:4] == ["1", "context", "16..32784", "quadratic"], f"row 1: {rows[1]}")
    check(rows[4][:4] == ["any", "context", "1..133", "envelope"], f"row 4: {rows[4]}")
    check(rows[0][4] == "3.1" and rows[0][5] == "40", f"margin MiB and points: {rows[0]}")


def case_check_accepts_unknown_fields_and_integers_for_reals():
    doc = good()
    doc["comment"] = "added by a newer writer"
    doc["configuration"]["pp"] = 2
    doc["policy"]["note"] = {"a": [1, 2]}
    doc["sources"][0]["bytes"] = 12345
    e = doc["estimates"][0]
    e["notes"] = None
    e["model"]["basis"] = "tokens"
    e["fit"]["r2"] = 0.99
    e["failures"]["stalled"] = 0
    # integers where reals are expected, and reals with integral value
    e["fit"]["rmse"] = 0
    e["model"]["coefficients"][0] = 1610612736
    doc["estimates"][4]["model"]["knots"][0][1] = 1000000000
    path = write(doc, "extended.json")
    rc, out, err = warmcal("check", path)
    check(rc == 0, f"check extended: exit {rc}: {err}")
    rc, out, err = warmcal("estimate", path, "--tokens", "100", "--rank", "0")
    check(rc == 0 and re.fullmatch(r"\d+\n", out), f"estimate extended: {rc} {out!r} {err!r}")
    c0, c1 = 1610612736, e["model"]["coefficients"][1]
    m = e["margin"]["bytes"]
    want = run(ARGS.helper, "estimate", path, "0", "context", "100")[1]
    check(out == want, f"estimate {out!r} != library {want!r}")
    check(abs(int(out) - (c0 + c1 * 100 + m)) <= 1, f"estimate {out} far from {c0 + c1 * 100 + m}")


# --- check: bad tables -------------------------------------------------------------

def case_check_rejects_wrong_format_and_version():
    expect_field(setter(["format"], "warmcal-trace"), "format", "warmcal-table", "warmcal-trace")
    expect_field(setter(["format"], 1), "format", "not an estimate table")
    expect_field(drop(["format"]), "format", "missing")
    expect_field(setter(["version"], 2), "version", "unsupported version 2")
    expect_field(setter(["version"], 0), "version", "unsupported version 0")
    expect_field(setter(["version"], "1"), "version", "not an integer")
    expect_field(setter(["version"], 1.5), "version", "not an integer")
    expect_field(drop(["version"]), "version", "missing")


def case_check_rejects_missing_fields():
    paths = [["configuration"], ["tool_version"], ["created"], ["policy"], ["sources"],
             ["estimates"],
             ["configuration", "model"], ["configuration", "tp"], ["configuration", "gpu_name"],
             ["configuration", "gpu_total_bytes"], ["policy", "above_range"],
             ["policy", "below_range"], ["sources", 1, "name"], ["sources", 1, "sha256"]]
    for key in ["rank", "label", "tokens_min", "tokens_max", "model", "margin", "fit", "failures"]:
        paths.append(["estimates", 2, key])
    paths += [["estimates", 0, "model", "form"], ["estimates", 0, "model", "coefficients"],
              ["estimates", 1, "model", "coefficients"], ["estimates", 4, "model", "knots"]]
    for group, keys in [("margin", ["bytes", "residual", "loo", "granularity"]),
                        ("fit", ["points", "rmse", "max_residual", "loo_rmse"]),
                        ("failures", ["oom", "oom_tokens_min", "aborted"])]:
        for k in keys:
            paths.append(["estimates", 3, group, k])
    for p in paths:
        expect_field(drop(p), dotted(p), "missing")


def case_check_rejects_wrong_types_nan_and_negative_numbers():
    # JSON has no NaN: as text it is a string, bare it is not JSON
    expect_field(setter(["estimates", 0, "margin", "residual"], "NaN"),
                 "estimates[0].margin.residual", "found a string")
    expect_field(setter(["estimates", 0, "model", "coefficients", 1], "NaN"),
                 "estimates[0].model.coefficients[1]", "found a string")
    for bare in ["NaN", "Infinity", "-Infinity"]:
        doc = good()
        doc["estimates"][0]["fit"]["rmse"] = float(bare.lower().replace("infinity", "inf"))
        text = json.dumps(doc, indent=2)  # Python writes bare NaN / Infinity
        check(bare in text, f"python did not write {bare}")
        path = write(text, raw=True)
        expect_rejected(path, "line ", "column ", "not valid JSON")
    # a real beyond double range: jansson refuses it while parsing
    text = GOOD.replace('"rmse": 0.10000000000000001', '"rmse": 1e400', 1)
    check(text != GOOD, "rmse not found in the good table")
    expect_rejected(write(text, raw=True), "line ", "column ", "number out of range")
    # negative numbers
    for p, v in [(["estimates", 0, "tokens_min"], -1), (["estimates", 0, "tokens_max"], -100),
                 (["estimates", 0, "margin", "loo"], -5.0),
                 (["estimates", 0, "margin", "granularity"], -2097152),
                 (["estimates", 0, "fit", "points"], -1), (["estimates", 0, "fit", "rmse"], -0.5),
                 (["estimates", 1, "failures", "oom"], -2),
                 (["configuration", "gpu_total_bytes"], -1), (["configuration", "tp"], -4),
                 (["configuration", "tp"], 0), (["estimates", 0, "rank"], -2)]:
        expect_field(setter(p, v), dotted(p), "expected")
    expect_field(setter(["estimates", 4, "model", "knots", 0, 1], -1.0),
                 "estimates[4].model.knots[0]", "non-negative")
    expect_field(setter(["estimates", 4, "model", "knots", 0, 0], -1),
                 "estimates[4].model.knots[0]", "non-negative")
    # wrong types
    for p, v, words in [
            (["configuration", "tp"], "4", "found a string"),
            (["configuration"], [], "found an array"),
            (["estimates", 0, "label"], 5, "found an integer"),
            (["estimates", 0, "tokens_max"], 100.5, "found a real number"),
            (["estimates", 0, "tokens_min"], 1.0, "found a real number"),
            (["estimates", 0, "rank"], None, "found null"),
            (["estimates", 0, "model"], "linear", "found a string"),
            (["estimates", 0, "margin", "bytes"], True, "found a boolean"),
            (["sources"], {}, "found an object"),
            (["sources", 0], "out/rank-0.h5", "found a string"),
            (["estimates", 2], [1, 2], "found an array"),
            (["estimates"], {}, "found an object"),
            (["estimates", 4, "model", "knots", 1], [9, 1e9, 3], "pair"),
            (["estimates", 4, "model", "knots", 1], 9, "pair"),
            (["sources", 0, "sha256"], "zz" * 32, "hexadecimal"),
            (["sources", 0, "sha256"], "e3b0" * 15 + "e3b", "hexadecimal"),
            (["sources", 0, "sha256"], ("e3b0" * 16).upper(), "lowercase"),
            (["sources", 0, "name"], "", "empty"),
            (["estimates", 0, "label"], "", "empty"),
            (["estimates", 0, "label"], "x" * 32, "longer than 31 bytes"),
            (["configuration", "model"], "m" * 128, "longer than 127 bytes"),
            (["policy", "above_range"], "ignore", "unknown policy"),
            (["policy", "below_range"], "refuse", "unknown policy")]:
        expect_field(setter(p, v), dotted(p), words)


def case_check_rejects_overflowing_numbers():
    for p, v in [(["estimates", 0, "tokens_max"], 18446744073709551616),
                 (["estimates", 0, "tokens_max"], 9223372036854775808),
                 (["configuration", "gpu_total_bytes"], 18446744073709551615),
                 (["estimates", 1, "failures", "oom_tokens_min"], 10 ** 30),
                 (["estimates", 0, "fit", "points"], 18446744073709551616)]:
        expect_field(setter(p, v), dotted(p), "overflowing")
    expect_field(setter(["estimates", 4, "model", "knots", 1, 0], 18446744073709551616),
                 "estimates[4].model.knots[1]", "overflowing")
    expect_field(setter(["configuration", "tp"], 2 ** 31), "configuration.tp", "at most")
    expect_field(setter(["estimates", 0, "rank"], 2 ** 40), "estimates[0].rank", "at most")
    # where no known field holds it, jansson's own message with line and column
    expect_field_free = good()
    expect_field_free["x-extension"] = 2 ** 64
    expect_rejected(write(expect_field_free), "line ", "column ", "number out of range",
                    "too big integer")
    # negative beyond 64 bits is negative first
    expect_field(setter(["estimates", 0, "tokens_min"], -(2 ** 64)), "estimates[0].tokens_min")


def case_check_rejects_bad_ranges_forms_knots_and_duplicates():
    def swap_range(doc):
        e = doc["estimates"][0]
        e["tokens_min"], e["tokens_max"] = 500, 100
    expect_field(swap_range, "estimates[0].tokens_max", "below tokens_min 500")
    expect_field(setter(["estimates", 0, "tokens_min"], 0), "estimates[0].tokens_min", "positive")
    expect_field(setter(["estimates", 0, "model", "form"], "cubic"), "estimates[0].model.form",
                 "unknown model form 'cubic'")
    expect_field(setter(["estimates", 0, "model", "form"], "Linear"), "estimates[0].model.form")
    expect_field(setter(["estimates", 0, "model", "coefficients"], [1.0, 2.0, 3.0]),
                 "estimates[0].model.coefficients", "2 coefficients")
    expect_field(setter(["estimates", 1, "model", "coefficients"], [1.0, 2.0]),
                 "estimates[1].model.coefficients", "3 coefficients")
    expect_field(setter(["estimates", 4, "model", "knots"], [[1, 1e9]]),
                 "estimates[4].model.knots", "2 to 4096 knots")
    expect_field(setter(["estimates", 4, "model", "knots"], [[i + 1, 1e9] for i in range(4097)]),
                 "estimates[4].model.knots", "found 4097")
    expect_field(setter(["estimates", 4, "model", "knots", 2, 0], 9),
                 "estimates[4].model.knots[2]", "strictly increasing")
    expect_field(setter(["estimates", 4, "model", "knots", 2, 1], 1.0),
                 "estimates[4].model.knots[2]", "never decreases")
    expect_field(setter(["estimates", 0, "margin", "bytes"], 1.0), "estimates[0].margin.bytes",
                 "residual + loo + granularity")
    expect_field(setter(["estimates", 0, "failures", "oom_tokens_min"], 5),
                 "estimates[0].failures.oom_tokens_min", "failures.oom is 0")
    expect_field(setter(["estimates"], []), "estimates", "no estimates")

    def duplicate(doc):
        doc["estimates"].append(copy.deepcopy(doc["estimates"][0]))
    expect_field(duplicate, "estimates[5]", "duplicate entry for rank 0, label 'context'",
                 "estimates[0]")
    # two rank -1 entries for one label
    expect_field(setter(["estimates", 3, "label"], "context"), "estimates[4]",
                 "duplicate entry for rank -1", "estimates[3]")
    # the margin within 1e-6 of its parts is accepted
    doc = good()
    doc["estimates"][0]["margin"]["bytes"] *= 1 + 1e-9
    rc, _, err = warmcal("check", write(doc))
    check(rc == 0, f"margin within tolerance: exit {rc}: {err}")


def case_check_rejects_files_that_are_not_tables():
    expect_rejected(write("hello", raw=True), "line 1, column", "not valid JSON")
    expect_rejected(write(GOOD[: len(GOOD) // 2], raw=True), "line ", "not valid JSON")
    expect_rejected(write(GOOD[:-3], raw=True), "line ", "not valid JSON")
    expect_rejected(write("", raw=True), "line 1, column 0", "not valid JSON")
    expect_rejected(write(GOOD + "{}", raw=True), "line ", "end of file expected")
    expect_rejected(write("[1, 2, 3]", raw=True), "expected a JSON object")
    expect_rejected(write('{"format": "warmcal-table", "format": "x"}', raw=True), "duplicate")
    path = os.path.join(TMP, "binary.json")
    with open(path, "wb") as f:
        f.write(b"\xff\xfe{\x00\x01")
    expect_rejected(path, "not valid JSON")
    folder = os.path.join(TMP, "a-folder")
    os.mkdir(folder)
    expect_rejected(folder, "not a regular file")
    fifo = os.path.join(TMP, "a-fifo")
    os.mkfifo(fifo)
    expect_rejected(fifo, "not a regular file")
    expect_rejected(os.path.join(TMP, "missing.json"), "cannot open")


def case_check_usage_errors_exit_2():
    rc, out, err = warmcal("check")
    check(rc == 2 and out == "" and "no table given" in err, f"no table: {rc} {err!r}")
    p = good_path()
    rc, out, err = warmcal("check", p, p)
    check(rc == 2 and "one table at a time" in err, f"two tables: {rc} {err!r}")
    rc, out, err = warmcal("check", "--bogus", p)
    check(rc == 2 and "unknown option '--bogus'" in err, f"bad option: {rc} {err!r}")
    rc, out, err = warmcal("check", "--help")
    check(rc == 0 and out.startswith("usage: warmcal check TABLE") and err == "",
          f"--help: {rc} {out!r}")


# --- estimate ------------------------------------------------------------------------

def library(path, rank, label, tokens):
    rc, out, err = run(ARGS.helper, "estimate", path, str(rank), label, str(tokens))
    check(rc == 0, f"table_helper estimate: {rc} {err}")
    return out


def case_estimate_prints_one_integer_agreeing_with_the_library():
    path = good_path()
    cases = [(0, "context", 1), (0, "context", 1000), (0, "context", 32784),
             (1, "context", 1), (1, "context", 16), (1, "context", 20000),
             (2, "context", 100), (-1, "context", 1), (-1, "context", 9), (-1, "context", 13),
             (-1, "context", 33), (-1, "context", 120), (-1, "context", 133),
             (0, "generation", 256), (7, "generation", 512), (-1, "generation", 3)]
    for rank, label, tokens in cases:
        rc, out, err = warmcal("estimate", path, "--tokens", str(tokens), "--rank", str(rank),
                               "--label", label)
        what = f"estimate rank {rank} {label} {tokens}"
        check(rc == 0, f"{what}: exit {rc}: {err}")
        check(err == "", f"{what}: stderr {err!r}")
        check(re.fullmatch(r"[0-9]+\n", out), f"{what}: not one integer line: {out!r}")
        want = library(path, rank, label, tokens)
        check(out == want, f"{what}: {out!r} != library {want!r}")
    doc = json.loads(GOOD)
    # rank 1 at its minimum: the quadratic is negative there, the margin remains
    m1 = doc["estimates"][1]["margin"]["bytes"]
    rc, out, _ = warmcal("estimate", path, "--tokens", "1", "--rank", "1")
    check(int(out) == math.ceil(m1), f"clamped negative model: {out} != ceil({m1})")
    # defaults: rank -1 (the any-rank entry), label context, batch 1; --opt=value works
    for argv, rank, label, tokens in [
            (["--tokens", "100"], -1, "context", 100),
            (["--tokens=100", "--rank=any"], -1, "context", 100),
            (["--tokens", "3", "--label", "generation"], -1, "generation", 3),
            (["--tokens", "100", "--batch", "8", "--rank", "0"], 0, "context", 100)]:
        rc, out, err = warmcal("estimate", path, *argv)
        check(rc == 0 and out == library(path, rank, label, tokens),
              f"estimate {argv}: {rc} {out!r} {err!r}")


def case_estimate_refuses_out_of_range_and_bad_arguments_with_exit_2():
    path = good_path()

    def refused(argv, *needles, table=path):
        rc, out, err = warmcal("estimate", table, *argv) if table else warmcal("estimate", *argv)
        check(rc == 2, f"estimate {argv}: expected exit 2, got {rc} ({out!r} {err!r})")
        check(out == "", f"estimate {argv}: stdout {out!r}")
        for n in needles:
            check(n in err, f"estimate {argv}: expected {n!r} in {err!r}")

    # above the calibrated range under "refuse": the range is named
    refused(["--tokens", "40000", "--rank", "0"], path, "rank 0, label context",
            "above the calibrated range 1..32784")
    check(library(path, 0, "context", 40000).startswith("error -11 "), "library does not refuse")
    refused(["--tokens", "134"], "rank -1, label context", "1..133")
    # ... and evaluated under "extrapolate"
    doc = json.loads(GOOD)
    doc["policy"]["above_range"] = "extrapolate"
    ext = write(doc, "extrapolate.json")
    rc, out, err = warmcal("estimate", ext, "--tokens", "40000", "--rank", "0")
    check(rc == 0 and out == library(ext, 0, "context", 40000), f"extrapolate: {rc} {out!r} {err}")
    check(int(out) > int(library(ext, 0, "context", 32784)), "extrapolation does not grow")
    # no entry: rank -1 has none for 'generation' once removed; the hint names --rank
    doc = json.loads(GOOD)
    del doc["estimates"][4]
    no_any = write(doc, "no-any.json")
    refused(["--tokens", "5"], f"{no_any}: rank -1, label context: no entry", "--rank R",
            table=no_any)
    rc, out, _ = warmcal("estimate", no_any, "--tokens", "5", "--rank", "0")
    check(rc == 0, "the rank's own entry still serves")
    refused(["--tokens", "5", "--rank", "0", "--label", "prefill"], "label prefill", "no entry")
    # a margin too large for 64 bits
    doc = json.loads(GOOD)
    doc["estimates"][0]["margin"].update(bytes=1e300, residual=1e300, loo=0.0, granularity=0.0)
    huge = write(doc, "huge-margin.json")
    refused(["--tokens", "5", "--rank", "0"], "64 bits", table=huge)
    # bad arguments
    for argv, needle in [([], "--tokens is required"),
                         (["--tokens"], "--tokens needs a value"),
                         (["--tokens", "0"], "positive integer"),
                         (["--tokens", "-5"], "--tokens '-5'"),
                         (["--tokens", "abc"], "positive integer"),
                         (["--tokens", "1e3"], "positive integer"),
                         (["--tokens", " 12"], "positive integer"),
                         (["--tokens", "18446744073709551616"], "positive integer"),
                         (["--tokens", "5", "--tokens", "6"], "given twice"),
                         (["--tokens", "5", "--rank", "-2"], "--rank '-2'"),
                         (["--tokens", "5", "--rank", "x"], "--rank 'x'"),
                         (["--tokens", "5", "--rank", "2147483648"], "--rank"),
                         (["--tokens", "5", "--batch", "0"], "--batch '0'"),
                         (["--tokens", "5", "--batch", "4294967296"], "--batch"),
                         (["--tokens", "5", "--label", ""], "--label"),
                         (["--tokens", "5", "--label", "x" * 32], "--label"),
                         (["--tokens", "5", "--bogus"], "unknown option '--bogus'")]:
        refused(argv, needle)
    refused(["--tokens", "5"], "no table given", table=None)
    refused([path, "--tokens", "5"], "one table at a time")
    # a bad or missing table: FILE: WHERE: TEXT
    bad = json.loads(GOOD)
    bad["estimates"][0]["tokens_max"] = 0
    bad_path = write(bad)
    refused(["--tokens", "5"], f"{bad_path}: estimates[0].tokens_max: ", table=bad_path)
    refused(["--tokens", "5"], "cannot open", table=os.path.join(TMP, "missing.json"))
    rc, out, err = warmcal("estimate", "--help")
    check(rc == 0 and out.startswith("usage: warmcal estimate") and "any-rank" in out,
          f"--help: {rc} {out!r}")


# --- errors that tell the truth ---------------------------------------------------

def case_check_exits_2_on_estimates_that_overflow_or_fall_inside_their_range():
    # a line that falls: rank 0's slope made negative
    expect_field(setter(["estimates", 0, "model", "coefficients", 1], -1000.0),
                 "estimates[0].model", "falls from", "at 1 tokens to", "at 32784 tokens",
                 "needs may not shrink")
    # a quadratic that turns down inside its range, though it ends higher
    # than it starts: rank 1 (16..32784) peaks at 20000 tokens
    expect_field(setter(["estimates", 1, "model", "coefficients"], [1e9, 4e5, -10.0]),
                 "estimates[1].model", "at 20000 tokens to", "at 32784 tokens")
    # beyond 64 bits at the top of the range
    expect_field(setter(["estimates", 0, "model", "coefficients", 1], 1e16),
                 "estimates[0].model", "at 32784 tokens", "does not fit in 64 bits")
    # an envelope whose last slope, continued to tokens_max, passes 2^64
    expect_field(setter(["estimates", 4, "tokens_max"], 10 ** 18), "estimates[4].model",
                 "does not fit in 64 bits")
    # what read fine and only fails this check still reads: estimate serves it
    doc = good()
    doc["estimates"][0]["model"]["coefficients"][1] = -1000.0
    path = write(doc)
    rc, out, err = warmcal("estimate", path, "--rank", "0", "--tokens", "100")
    check(rc == 0 and out == library(path, 0, "context", 100), f"estimate: {rc} {out!r} {err!r}")


def case_estimate_says_too_large_not_outside_the_range():
    doc = good()
    doc["estimates"][0]["model"]["coefficients"][1] = 1e16  # past 2^64 from 1845 tokens
    path = write(doc)
    rc, out, err = warmcal("estimate", path, "--rank", "0", "--tokens", "2000")
    check(rc == 2 and out == "", f"estimate: exit {rc} {out!r}")
    said = err.partition(f"{path}: ")[2]
    check(said.startswith("rank 0, label context: the estimate at 2000 tokens")
          and "does not fit in 64 bits" in said and "range" not in said, f"estimate says {err!r}")
    check(library(path, 0, "context", 2000).startswith("error -12 "),
          "the library's code is WARMCAL_E_OVERFLOW (-12), not WARMCAL_E_RANGE (-11)")
    check(library(path, 0, "context", 40000).startswith("error -11 "), "above the range: -11")
    rc, out, _ = warmcal("estimate", path, "--rank", "0", "--tokens", "1000")
    check(rc == 0 and out == library(path, 0, "context", 1000), "below 2^64 it is a number")


def case_estimate_serves_a_rank_above_its_own_range_from_the_any_rank_entry():
    # rank 0 ran out of memory above 16384 tokens during calibration; the
    # any-rank entry covers 1..32768
    doc = good()
    doc["estimates"][0]["tokens_max"] = 16384
    doc["estimates"][4]["tokens_max"] = 32768
    path = write(doc)
    # the any-rank figure, never below rank 0's own figure at its tokens_max
    own_top = int(library(path, 0, "context", 16384))
    for tokens in (16385, 24576, 32768):
        rc, out, err = warmcal("estimate", path, "--rank", "0", "--tokens", str(tokens))
        check(rc == 0, f"rank 0 at {tokens}: exit {rc}: {err}")
        _, any_rank, _ = warmcal("estimate", path, "--tokens", str(tokens))
        check(any_rank == library(path, -1, "context", tokens), f"any rank at {tokens}")
        check(int(out) == max(int(any_rank), own_top),
              f"rank 0 at {tokens} gets the any-rank figure, floored at its own top: "
              f"{out!r} {any_rank!r} {own_top}")
    rc, out, _ = warmcal("estimate", path, "--rank", "0", "--tokens", "16384")
    check(rc == 0 and out == library(path, 0, "context", 16384), "inside its range, its own")
    check(out != library(path, -1, "context", 16384), "the entries differ there")
    rc, out, err = warmcal("estimate", path, "--rank", "0", "--tokens", "32769")
    check(rc == 2 and "above the calibrated range 1..32768" in err,
          f"above every range: {rc} {err!r}")
    # a rank whose own range reaches as far keeps its own entry
    rc, out, _ = warmcal("estimate", path, "--rank", "1", "--tokens", "24576")
    check(rc == 0 and out == library(path, 1, "context", 24576), "rank 1: its own")
    check(out != library(path, -1, "context", 24576), "rank 1's entry is not the any-rank one")


def doc_example_keys():
    """The keys of docs/formats.md's table example ("### Layout"), in order."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "docs", "formats.md")) as f:
        text = f.read()
    layout = text[text.index("## Estimate table"):]
    block = layout[layout.index("```json") + 7:]
    block = block[:block.index("```")]
    return re.findall(r'"([a-z_0-9]+)":', block)


def case_reader_follows_the_documented_rules():
    # "number": any JSON number, integers included, in every number field
    doc = good()
    e = doc["estimates"][0]
    e["model"]["coefficients"] = [1610612736, 262144]
    e["margin"].update(relative=0, residual=1000000, loo=123456, granularity=2097152,
                       bytes=3220608)
    e["fit"].update(rmse=0, max_residual=1, loo_rmse=0)
    doc["estimates"][4]["model"]["knots"][1][1] = 1000000000
    path = write(doc)
    rc, _, err = warmcal("check", path)
    check(rc == 0, f"integers in number fields: exit {rc}: {err}")
    rc, out, _ = warmcal("estimate", path, "--rank", "0", "--tokens", "10")
    check(rc == 0 and int(out) == 1610612736 + 262144 * 10 + 3220608,
          f"integers read as their values: {out!r}")
    # ... but an integer literal beyond 64 bits is refused while parsing
    text = GOOD.replace('"rmse": 0.10000000000000001', '"rmse": 18446744073709551616', 1)
    check(text != GOOD, "rmse not found in the good table")
    expect_rejected(write(text, raw=True), "line ", "column ", "number out of range")
    # "integer": no real where one is documented, integral or not
    for p, v in [(["estimates", 0, "fit", "points"], 40.0),
                 (["configuration", "gpu_total_bytes"], 1e3),
                 (["estimates", 4, "model", "knots", 0, 0], 1.0),
                 (["estimates", 1, "failures", "oom"], 2.0),
                 (["estimates", 0, "calibration", "device_free_min"], 5.5)]:
        expect_field(setter(p, v), dotted(p)[:-3] if p[-2] == 0 else dotted(p), "real number")
    # calibration.device_free_min is optional, and so is calibration
    for mutate in (drop(["estimates", 0, "calibration"]),
                   drop(["estimates", 0, "calibration", "device_free_min"])):
        doc = good()
        mutate(doc)
        rc, _, err = warmcal("check", write(doc))
        check(rc == 0, f"calibration or device_free_min absent: exit {rc}: {err}")
    expect_field(setter(["estimates", 0, "calibration", "device_free_min"], None),
                 "estimates[0].calibration.device_free_min", "found null")
    expect_field(setter(["estimates", 0, "calibration"], []), "estimates[0].calibration",
                 "found an array")
    expect_field(setter(["estimates", 0, "calibration", "device_free_min"], -1),
                 "estimates[0].calibration.device_free_min", "non-negative")
    # the documented bounds of tp and rank: 1 to 2^31-1 and -1 to 2^31-1
    for p, v in [(["configuration", "tp"], 2 ** 31 - 1), (["estimates", 0, "rank"], 2 ** 31 - 1),
                 (["estimates", 2, "rank"], -1)]:
        doc = good()
        setter(p, v)(doc)
        if p[-1] == "rank" and v == -1:
            doc["estimates"][2]["label"] = "prefill"
        rc, _, err = warmcal("check", write(doc))
        check(rc == 0, f"{dotted(p)} = {v}: exit {rc}: {err}")
    expect_field(setter(["configuration", "tp"], 2 ** 31), "configuration.tp",
                 "at most 2147483647")
    expect_field(setter(["estimates", 0, "rank"], 2 ** 31), "estimates[0].rank",
                 "at most 2147483647")
    # margin.relative: required, 0 to 10
    expect_field(drop(["estimates", 0, "margin", "relative"]), "estimates[0].margin.relative",
                 "missing")
    doc = good()
    doc["estimates"][0]["margin"]["relative"] = 10
    rc, _, err = warmcal("check", write(doc))
    check(rc == 0, f"relative 10: exit {rc}: {err}")
    expect_field(setter(["estimates", 0, "margin", "relative"], 10.5),
                 "estimates[0].margin.relative")
    # the writer's field order is the documented example's
    want = doc_example_keys()
    got = re.findall(r'"([a-z_0-9]+)":', GOOD)
    source = got.index("sha256")  # the example lists one source, the good table two
    while got[source + 1:source + 3] == ["name", "sha256"]:
        del got[source + 1:source + 3]
    first = want.index("device_free_min") + 1
    check(got[:first] == want[:first],
          f"the writer's order {got[:first]} differs from docs/formats.md's {want[:first]}")


def main():
    global ARGS, TMP
    parser = argparse.ArgumentParser()
    parser.add_argument("case")
    parser.add_argument("--warmcal", required=True)
    parser.add_argument("--helper", required=True)
    parser.add_argument("--workdir", required=True)
    ARGS = parser.parse_args()
    fn = globals().get("case_" + ARGS.case)
    if not fn:
        print(f"no case {ARGS.case}", file=sys.stderr)
        return 1
    os.makedirs(ARGS.workdir, exist_ok=True)
    TMP = tempfile.mkdtemp(prefix=ARGS.case + "-", dir=ARGS.workdir)
    try:
        good_path()
        fn()
    except AssertionError as e:
        print(f"FAIL {ARGS.case}: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"ok {ARGS.case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
