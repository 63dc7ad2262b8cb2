"""Shared pieces of the Python gate tests: the tables they open (written by
hand after docs/formats.md, "Estimate table"; gate_python_test_tables_pass_warmcal_check
runs `warmcal check` on them), the expected numbers, and small checks.

Table "a": any rank (-1) needs 1 GiB + 1 MiB per token for context passes of
1..32768 tokens, no margins, TP 4, GPU "test GPU". Table "b" shifts every need
by 64 MiB (another table); table "tp2" is "a" calibrated for TP 2.
"""

import contextlib
import json
import os
import sys
import tempfile

GiB = 1 << 30
MiB = 1 << 20
TOKENS_MAX = 32768
RESERVE = 256 * MiB


def need(tokens, extra=0):
    """What table "a" (or one shifted by extra) plus the test reserve needs."""
    return GiB + extra + max(tokens, 1) * MiB + RESERVE


def table(extra=0, tp=4, gpu_name="test GPU"):
    margin = {"relative": 0.0, "bytes": 0.0, "residual": 0.0, "loo": 0.0, "granularity": 0.0}
    return {
        "format": "warmcal-table",
        "version": 1,
        "configuration": {"model": "test-model", "tp": tp, "gpu_name": gpu_name,
                          "gpu_total_bytes": 80 * GiB},
        "tool_version": "0.1.0",
        "created": "2026-11-25T00:00:00Z",
        "policy": {"above_range": "refuse", "below_range": "clamp"},
        "sources": [],
        "estimates": [{
            "rank": -1, "label": "context", "tokens_min": 1, "tokens_max": TOKENS_MAX,
            "model": {"form": "linear", "coefficients": [float(GiB + extra), float(MiB)]},
            "margin": margin,
            "fit": {"points": 10, "rmse": 0.0, "max_residual": 0.0, "loo_rmse": 0.0},
            "failures": {"oom": 0, "oom_tokens_min": 0, "aborted": 0},
        }],
    }


TABLES = {"a.json": table(), "b.json": table(extra=64 * MiB), "tp2.json": table(tp=2)}


def write_tables(folder):
    for name, t in TABLES.items():
        with open(os.path.join(folder, name), "w") as f:
            json.dump(t, f, indent=2)
            f.write("\n")
    with open(os.path.join(folder, "not-a-table.json"), "w") as f:
        f.write('{"format": "warmcal-trace"}\n')


def check(cond, what):
    """A failed check raises, which (under python -m mpi4py) aborts the job."""
    if not cond:
        raise AssertionError(what)


def expect_gate_error(fn, code, *needles):
    """Run fn; it must raise GateError with this code and every needle in
    its message. Returns the error."""
    import warmcal
    try:
        fn()
    except warmcal.GateError as e:
        check(e.code == code, "expected code %d, got %d: %s" % (code, e.code, e))
        for n in needles:
            check(n in str(e), "expected %r in the message: %s" % (n, e))
        return e
    raise AssertionError("expected GateError %d (%s), nothing raised" % (code, needles))


@contextlib.contextmanager
def nothing_printed(label):
    """Fail if anything reaches file descriptors 1 or 2 inside the block: the
    library never prints."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as cap:
        os.dup2(cap.fileno(), 1)
        os.dup2(cap.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
        cap.seek(0)
        text = cap.read().decode("utf-8", "replace")
    check(text == "", "%s: the library printed %r" % (label, text))
