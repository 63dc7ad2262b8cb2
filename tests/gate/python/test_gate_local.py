"""Single-process checks of the Python gate, no MPI job:

    test_gate_local.py layout LAYOUT_BIN  ctypes mirrors equal the C structs
    test_gate_local.py lookup DIR         how the library is found, and clear
                                          errors when it is not (or cannot load)
    test_gate_local.py lifetime DIR       close, context manager, __del__, use
                                          after close, callbacks kept alive
    test_gate_local.py cuda DIR           free_bytes=None reads the CUDA driver
                                          (run with the fake libcuda.so.1)
    test_gate_local.py tables WARMCAL     the test tables pass `warmcal check`
"""

import ctypes
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile

import warmcal
from warmcal import _capi
from gatetest import (GiB, RESERVE, TABLES, check, expect_gate_error, need, nothing_printed,
                      write_tables)

HERE = os.path.dirname(os.path.abspath(__file__))


def layout(binary):
    c = json.loads(subprocess.run([binary], check=True, capture_output=True).stdout)
    for cname, py in (("warmcal_gate_options", _capi.Options), ("warmcal_shape", _capi.Shape),
                      ("warmcal_decision", _capi.CDecision)):
        check(ctypes.sizeof(py) == c[cname], "sizeof %s: C %d, ctypes %d"
              % (cname, c[cname], ctypes.sizeof(py)))
        for field, _ in py._fields_:
            key = "%s.%s" % (cname, field)
            check(key in c, "%s is not in the C struct" % key)
            check(getattr(py, field).offset == c[key], "offset of %s: C %d, ctypes %d"
                  % (key, c[key], getattr(py, field).offset))
        check(len(py._fields_) == sum(1 for k in c if k.startswith(cname + ".")),
              "%s: the ctypes mirror has a different number of fields" % cname)
    check(c["MPI_Fint"] == ctypes.sizeof(ctypes.c_int), "MPI_Fint is a C int")
    check(c["warmcal_probe_kind"] == ctypes.sizeof(ctypes.c_int), "enums are C ints")
    ours = [_capi.PROBE_CUDA, _capi.PROBE_VALUE, _capi.PROBE_CALLBACK, _capi.PROBE_SIMULATED,
            _capi.NEED_TABLE, _capi.NEED_CONSTANT, _capi.ABOVE_REFUSE, _capi.ABOVE_EXTRAPOLATE,
            warmcal.REASON_RUN, warmcal.REASON_LOW_MEMORY, warmcal.REASON_INVALID_BATCH,
            warmcal.REASON_OUT_OF_RANGE, warmcal.REASON_NO_ESTIMATE]
    check(ours == c["enums"], "enum values: C %r, Python %r" % (c["enums"], ours))


def run_python(code, env_updates, cwd):
    env = dict(os.environ)
    env.update(env_updates)
    for k, v in env_updates.items():
        if v is None:
            env.pop(k)
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=30)


PROBE = """
import warmcal
try:
    warmcal.Gate("a.json", rank=0, world_size=4, free_bytes=1)
    print("OPENED")
except warmcal.GateError as e:
    print("ERROR", e.code, isinstance(e, ImportError), e)
"""


def lookup(folder):
    write_tables(folder)
    lib = os.environ["WARMCAL_GATE_LIB"]
    pkg = os.path.dirname(warmcal.__file__)
    # 1. $WARMCAL_GATE_LIB names a missing file: a clear error, no fallback
    r = run_python(PROBE, {"WARMCAL_GATE_LIB": "/nonexistent/libwarmcal-gate.so"}, folder)
    check(r.returncode == 0 and r.stdout.startswith("ERROR -10 True") and
          "/nonexistent/libwarmcal-gate.so ($WARMCAL_GATE_LIB): no such file" in r.stdout,
          "missing library: %r %r" % (r.stdout, r.stderr))
    # 2. import itself never needs the library
    r = run_python("import warmcal; print('IMPORTED')", {"WARMCAL_GATE_LIB": "/nonexistent"},
                   folder)
    check(r.stdout.strip() == "IMPORTED", "import without the library: %r" % r.stderr)
    # 3. installed layout: the package with the library beside its modules
    inst = os.path.join(folder, "site")
    shutil.copytree(pkg, os.path.join(inst, "warmcal"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    r = run_python(PROBE, {"WARMCAL_GATE_LIB": None, "PYTHONPATH": inst}, folder)
    check(r.stdout.startswith("ERROR -10 True") and "Tried:" in r.stdout
          and os.path.join(inst, "warmcal", "libwarmcal-gate.so") in r.stdout,
          "no library anywhere names the places tried: %r %r" % (r.stdout, r.stderr))
    shutil.copy(lib, os.path.join(inst, "warmcal", "libwarmcal-gate.so"))
    r = run_python(PROBE, {"WARMCAL_GATE_LIB": None, "PYTHONPATH": inst}, folder)
    check(r.stdout.strip() == "OPENED", "library next to the package: %r %r"
          % (r.stdout, r.stderr))
    # 4. a file that is no library, and an ASan-instrumented one without its runtime
    junk = os.path.join(folder, "junk.so")
    with open(junk, "wb") as f:
        f.write(b"not a shared library\n")
    r = run_python(PROBE, {"WARMCAL_GATE_LIB": junk}, folder)
    check(r.stdout.startswith("ERROR -10 True") and "junk.so" in r.stdout,
          "junk library: %r %r" % (r.stdout, r.stderr))
    fake = os.path.join(folder, "asan.so")
    with open(fake, "wb") as f:
        f.write(b"\x7fELF....libasan.so.8\x00")
    r = run_python(PROBE, {"WARMCAL_GATE_LIB": fake, "LD_PRELOAD": None}, folder)
    check(r.stdout.startswith("ERROR -10 True") and "AddressSanitizer" in r.stdout
          and "LD_PRELOAD" in r.stdout, "instrumented library: %r %r" % (r.stdout, r.stderr))


def lifetime(folder):
    write_tables(folder)
    table = os.path.join(folder, "a.json")
    s = [(1024, 1, "context")]
    one = lambda v: v  # noqa: E731 — a world of one rank reduces to itself
    with nothing_printed("lifetime"):
        # context manager; close twice; use after close
        with warmcal.Gate(table, rank=0, world_size=4, free_bytes=40 * GiB) as g:
            check(not g.closed, "open")
        check(g.closed, "closed by the with block")
        g.close()
        expect_gate_error(lambda: g.decide(s, allreduce_min=one), warmcal.E_STATE, "closed")
        expect_gate_error(g.probe_free, warmcal.E_STATE, "closed")
        # the callback stays alive as long as the gate, with no other reference
        g = warmcal.Gate(table, rank=0, world_size=4, reserve_bytes=RESERVE,
                         free_bytes=(lambda n: (lambda: n))(5 * GiB), allow_config_mismatch=True)
        gc.collect()
        check(g.probe_free() == 5 * GiB, "the callback answers")
        d = g.decide(s, allreduce_min=one)
        check(d[0].run and d[0].min_headroom == 5 * GiB - need(1024), repr(d))
        # dropped without close: __del__ releases it; failed constructors leave nothing
        del g
        gc.collect()
        for _ in range(3):
            try:
                warmcal.Gate(os.path.join(folder, "nope.json"), rank=0, world_size=4,
                             free_bytes=1)
            except warmcal.GateError:
                pass
        gc.collect()
        # local-gate arguments
        expect_gate_error(lambda: warmcal.Gate(table, free_bytes=1), warmcal.E_INVAL,
                          "rank= and world_size=")
        expect_gate_error(lambda: warmcal.Gate(table, rank=4, world_size=4, free_bytes=1),
                          warmcal.E_INVAL, "rank 4 of world size 4")
        expect_gate_error(lambda: warmcal.Gate(table, rank=0, world_size=2, free_bytes=1),
                          warmcal.E_MISMATCH, "calibrated for tp 4")
        expect_gate_error(lambda: warmcal.Gate(table, rank=0, world_size=4, free_bytes=1,
                                               probe="callback"), warmcal.E_INVAL, "callable")
        # extrapolation above the calibrated range, on request
        with warmcal.Gate(table, rank=0, world_size=4, free_bytes=80 * GiB,
                          above_range="extrapolate") as g:
            d = g.decide([(65536, 1, "context")], allreduce_min=one)
            check(d[0].run, "extrapolated: %r" % d[0])
        with warmcal.Gate(table, rank=0, world_size=4, free_bytes=80 * GiB) as g:
            d = g.decide([(65536, 1, "context")], allreduce_min=one)
            check(d[0].reason_code == warmcal.REASON_OUT_OF_RANGE, "refused: %r" % d[0])
        # a KeyboardInterrupt inside the callback is not turned into a GateError
        def interrupted():
            raise KeyboardInterrupt
        g = warmcal.Gate(table, rank=0, world_size=4, free_bytes=interrupted)
        try:
            g.decide(s, allreduce_min=one)
            check(False, "KeyboardInterrupt swallowed")
        except KeyboardInterrupt:
            pass
        g.close()


def cuda(folder):
    """free_bytes=None: the driver's cuMemGetInfo (the fake driver reports
    FAKE_CUDA_FREE bytes and FAKE_CUDA_NAME)."""
    write_tables(folder)
    table = os.path.join(folder, "a.json")
    free = int(os.environ["FAKE_CUDA_FREE"])
    with nothing_printed("cuda"):
        with warmcal.Gate(table, rank=0, world_size=4, reserve_bytes=RESERVE) as g:
            check(g.probe_free() == free, "free memory from the driver")
            d = g.decide([(1024, 1, "context")], allreduce_min=lambda v: v)
            check(d[0].min_headroom == free - need(1024), repr(d))
        os.environ["FAKE_CUDA_NAME"] = "NVIDIA H100 80GB HBM3"  # read at every call
        expect_gate_error(lambda: warmcal.Gate(table, rank=0, world_size=4), warmcal.E_MISMATCH,
                          "calibrated on 'test GPU', this device is 'NVIDIA H100 80GB HBM3'")
        warmcal.Gate(table, rank=0, world_size=4, allow_config_mismatch=True).close()


def tables(cli):
    folder = tempfile.mkdtemp(prefix="warmcal-tables-")
    try:
        write_tables(folder)
        for name in TABLES:
            r = subprocess.run([cli, "check", os.path.join(folder, name)], capture_output=True,
                               text=True)
            check(r.returncode == 0, "warmcal check %s: %s" % (name, r.stderr))
        r = subprocess.run([cli, "estimate", os.path.join(folder, "a.json"), "--tokens", "1024"],
                           capture_output=True, text=True)
        check(r.returncode == 0 and int(r.stdout) == need(1024) - RESERVE,
              "warmcal estimate agrees with gatetest.need: %r" % r.stdout)
    finally:
        shutil.rmtree(folder)


def main():
    case, arg = sys.argv[1], sys.argv[2]
    if case in ("lookup", "lifetime", "cuda"):
        folder = tempfile.mkdtemp(prefix="warmcal-pytest-", dir=arg)
        try:
            {"lookup": lookup, "lifetime": lifetime, "cuda": cuda}[case](folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        {"layout": layout, "tables": tables}[case](arg)
    print("ok %s" % case)


if __name__ == "__main__":
    main()
