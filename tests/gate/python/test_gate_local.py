"""Single-process checks of the Python gate, no MPI job:

    test_gate_local.py layout LAYOUT_BIN  ctypes mirrors equal the C structs
    test_gate_local.py lookup DIR         how the library is found, and clear
                                          errors when it is not (or cannot load)
    test_gate_local.py lifetime DIR       close, context manager, __del__, use
                                          after close, callbacks kept alive
    test_gate_local.py cuda DIR           free_bytes=None reads the CUDA driver
                                          (run with the fake libcuda.so.1)
    test_gate_local.py tables WARMCAL     the test tables pass `warmcal check`
    test_gate_local.py reasons DIR        decisions above a rank's own range, beyond
                                          64 bits, and shapes of 0 tokens
    test_gate_local.py budget DIR         max_tokens of a local gate in a world of
                                          one: its numbers, its errors, decide's
                                          agreement
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
from warmcal import _capi, _version
from gatetest import (GiB, MiB, RESERVE, TABLES, check, expect_gate_error, need, nothing_printed,
                      table, write_tables)

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
            warmcal.REASON_OUT_OF_RANGE, warmcal.REASON_NO_ESTIMATE,
            warmcal.REASON_ESTIMATE_TOO_LARGE]
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
from warmcal import _capi
try:
    warmcal.Gate("a.json", rank=0, world_size=4, free_bytes=1)
    print("OPENED", _capi.library_path())
except warmcal.GateError as e:
    print("ERROR", e.code, isinstance(e, ImportError), e)
"""


def opened_from(r):
    """The library file a PROBE run opened, or None (it did not open)."""
    words = r.stdout.split()
    return words[1] if len(words) == 2 and words[0] == "OPENED" else None


def installed_elsewhere():
    """Whether the dynamic loader finds a warmcal gate library installed on
    this machine, which a test of its absence cannot hide."""
    import ctypes.util
    return ctypes.util.find_library("warmcal-gate") is not None


def lookup(folder):
    write_tables(folder)
    lib = os.environ["WARMCAL_GATE_LIB"]
    # the SONAME the built library carries, which the package must look for
    elf = subprocess.run(["readelf", "-d", lib], capture_output=True, text=True).stdout
    soname = elf.split("Library soname: [", 1)[1].split("]", 1)[0]
    check(soname == _version.soname("warmcal-gate"),
          "the library's SONAME %s, the package looks for %s"
          % (soname, _version.soname("warmcal-gate")))
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
    empty = os.path.join(folder, "empty")
    os.mkdir(empty)
    nowhere = {"WARMCAL_GATE_LIB": None, "PYTHONPATH": inst, "LD_LIBRARY_PATH": empty}
    if installed_elsewhere():
        print("note: a warmcal gate library is installed on this machine; its absence "
              "is not tested")
    else:
        r = run_python(PROBE, nowhere, folder)
        check(r.stdout.startswith("ERROR -10 True") and "Tried:" in r.stdout
              and os.path.join(inst, "warmcal", soname) in r.stdout
              and os.path.join(inst, "warmcal", "libwarmcal-gate.so") in r.stdout
              and soname + " (the dynamic loader" in r.stdout
              and "LD_LIBRARY_PATH=%s" % empty in r.stdout,
              "no library anywhere names the places tried: %r %r" % (r.stdout, r.stderr))
    beside = os.path.join(inst, "warmcal", "libwarmcal-gate.so")
    shutil.copy(lib, beside)
    r = run_python(PROBE, nowhere, folder)
    check(opened_from(r) == beside, "library next to the package: %r %r"
          % (r.stdout, r.stderr))
    os.unlink(beside)
    # 4. an installed library, found by the dynamic loader through its
    # SONAME, with nothing set but LD_LIBRARY_PATH (or the ld.so cache)
    bare = {"WARMCAL_GATE_LIB": None, "PYTHONPATH": inst}
    runtime_only = os.path.join(folder, "runtime")
    os.mkdir(runtime_only)
    shutil.copy(lib, os.path.join(runtime_only, soname))
    r = run_python(PROBE, dict(bare, LD_LIBRARY_PATH=runtime_only), folder)
    check(opened_from(r) == os.path.join(runtime_only, soname),
          "the SONAME alone on LD_LIBRARY_PATH: %r %r" % (r.stdout, r.stderr))
    # the package's own library comes first
    shutil.copy(lib, beside)
    r = run_python(PROBE, dict(bare, LD_LIBRARY_PATH=runtime_only), folder)
    check(opened_from(r) == beside, "the package's library before the loader's: %r %r"
          % (r.stdout, r.stderr))
    os.unlink(beside)
    # cmake --install records the libraries' folder relative to the package
    # (_installed.py): found there with no LD_LIBRARY_PATH, before the loader
    prefix_lib = os.path.join(folder, "prefix", "lib")
    os.makedirs(prefix_lib)
    shutil.copy(lib, os.path.join(prefix_lib, soname))
    with open(os.path.join(inst, "warmcal", "_installed.py"), "w") as f:
        f.write("LIBDIR = %r\n" % os.path.relpath(prefix_lib, os.path.join(inst, "warmcal")))
    r = run_python(PROBE, dict(bare, LD_LIBRARY_PATH=empty), folder)
    check(opened_from(r) == os.path.join(prefix_lib, soname),
          "the folder installed with the package: %r %r" % (r.stdout, r.stderr))
    r = run_python(PROBE, dict(bare, LD_LIBRARY_PATH=runtime_only), folder)
    check(opened_from(r) == os.path.join(prefix_lib, soname),
          "the folder installed with the package before the loader's: %r %r"
          % (r.stdout, r.stderr))
    os.unlink(os.path.join(inst, "warmcal", "_installed.py"))
    # the SONAME is preferred to the development symlink (here a copy of
    # its own, so that either would load and only the order decides)
    both = os.path.join(folder, "development")
    os.mkdir(both)
    shutil.copy(lib, os.path.join(both, soname))
    shutil.copy(lib, os.path.join(both, "libwarmcal-gate.so"))
    r = run_python(PROBE, dict(bare, LD_LIBRARY_PATH=both), folder)
    check(opened_from(r) == os.path.join(both, soname),
          "the SONAME before the development symlink: %r %r" % (r.stdout, r.stderr))
    # the development symlink still serves where it is all there is
    os.unlink(os.path.join(both, soname))
    if not installed_elsewhere():
        r = run_python(PROBE, dict(bare, LD_LIBRARY_PATH=both), folder)
        check(opened_from(r) == os.path.join(both, "libwarmcal-gate.so"),
              "the development symlink alone: %r %r" % (r.stdout, r.stderr))
    # a library of another ABI is never used, whatever name it was found
    # under: here this package as version 0.99.0, the library of this build
    # as its development link, and the same library named explicitly
    other = os.path.join(folder, "other")
    shutil.copytree(pkg, os.path.join(other, "warmcal"),
                    ignore=shutil.ignore_patterns("__pycache__", "VERSION"))
    with open(os.path.join(other, "warmcal", "VERSION"), "w") as f:
        f.write("0.99.0\n")
    only_dev = os.path.join(folder, "only-dev")
    os.mkdir(only_dev)
    shutil.copy(lib, os.path.join(only_dev, "libwarmcal-gate.so"))
    for env in ({"WARMCAL_GATE_LIB": None, "LD_LIBRARY_PATH": only_dev},
                {"WARMCAL_GATE_LIB": lib}):
        r = run_python(PROBE, dict(env, PYTHONPATH=other), folder)
        check(r.stdout.startswith("ERROR -10 True") and "not of the ABI" in r.stdout
              and "WARMCAL_GATE_0.99" in r.stdout,
              "a library of another ABI (%s): %r %r" % (env, r.stdout, r.stderr))
    # 5. a file that is no library, and an ASan-instrumented one without its runtime
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
    # the same one where the dynamic loader would find it
    asan_dir = os.path.join(folder, "asan")
    os.mkdir(asan_dir)
    shutil.copy(fake, os.path.join(asan_dir, soname))
    r = run_python(PROBE, dict(bare, LD_LIBRARY_PATH=asan_dir, LD_PRELOAD=None), folder)
    check(r.stdout.startswith("ERROR -10 True") and "AddressSanitizer" in r.stdout
          and os.path.join(asan_dir, soname) in r.stdout,
          "instrumented library on LD_LIBRARY_PATH: %r %r" % (r.stdout, r.stderr))


class HandleLedger:
    """Within a with block, records every C handle the gate library gives
    (warmcal_gate_open_local) and takes back (warmcal_gate_close); the
    binding looks both up on the library at each call."""

    def __enter__(self):
        self.lib = _capi.load()
        self.opened, self.closed = [], []
        real_open = self.real_open = self.lib.warmcal_gate_open_local
        real_close = self.real_close = self.lib.warmcal_gate_close

        def open_local(out, *args):
            rc = real_open(out, *args)
            self.opened.append(out._obj.value)  # out is byref(a c_void_p)
            return rc

        def close(h):
            self.closed.append(getattr(h, "value", h))
            return real_close(h)

        self.lib.warmcal_gate_open_local = open_local
        self.lib.warmcal_gate_close = close
        return self

    def __exit__(self, *exc):
        self.lib.warmcal_gate_open_local = self.real_open
        self.lib.warmcal_gate_close = self.real_close

    def __repr__(self):
        return "opened %r, closed %r" % (self.opened, self.closed)


def live_gates():
    return sum(1 for o in gc.get_objects() if isinstance(o, warmcal.Gate))


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
        # dropped without close: __del__ releases its handle, once
        with HandleLedger() as ledger:
            del g
            gc.collect()
        check(ledger.opened == [] and len(ledger.closed) == 1 and ledger.closed[0],
              "a dropped gate closes its handle once: %r" % ledger)
        # failed constructors leave nothing: the handle a failed open gives
        # (it carries the error) is closed exactly once, no Gate survives,
        # and the error is the library's, with its code
        gates_before = live_gates()
        for args, code, words in (
                (dict(table_path=os.path.join(folder, "nope.json")), warmcal.E_IO, "nope.json"),
                (dict(table_path=table, world_size=2), warmcal.E_MISMATCH, "calibrated for tp 4"),
                (dict(table_path=table, rank=4), warmcal.E_INVAL, "rank 4 of world size 4")):
            kwargs = dict(dict(rank=0, world_size=4, free_bytes=1), **args)
            for _ in range(3):
                with HandleLedger() as ledger:
                    expect_gate_error(lambda: warmcal.Gate(**kwargs), code, words)
                    gc.collect()
                check(len(ledger.opened) == 1 and ledger.opened[0]
                      and ledger.closed == ledger.opened,
                      "failed open %r: its handle is closed once: %r" % (args, ledger))
        check(live_gates() == gates_before, "failed constructors left Gate objects")
        # a constructor that fails before the library is called opens nothing
        with HandleLedger() as ledger:
            expect_gate_error(lambda: warmcal.Gate(table, rank=0, world_size=4,
                                                   free_bytes=-1), warmcal.E_INVAL, "free_bytes")
            gc.collect()
        check(ledger.opened == [] and ledger.closed == [], "nothing opened: %r" % ledger)
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


def reasons(folder):
    """A Decision says what it is: rank 0 above its own range is decided on
    its memory by the any-rank entry (rank 0 ran out of memory there during
    calibration); an estimate beyond 64 bits is "estimate too large", not
    out of range; a shape of 0 tokens is refused as in C."""
    doc = table()
    any_rank = doc["estimates"][0]
    any_rank["model"]["coefficients"] = [float(GiB), 120.0 * 1024]
    rank0 = json.loads(json.dumps(any_rank))
    rank0.update(rank=0, tokens_max=16384)
    rank0["model"]["coefficients"] = [float(GiB), 100.0 * 1024]
    rank2 = json.loads(json.dumps(any_rank))
    rank2["rank"] = 2
    rank2["model"]["coefficients"] = [float(GiB), 1.845e16]  # past 2**64 from 1000 tokens
    doc["estimates"] += [rank0, rank2]
    path = os.path.join(folder, "rank0-short.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    one = lambda v: v  # noqa: E731 — this rank alone is the group's minimum
    shapes = [(16384, 1, "context"), (24576, 1, "context"), (40000, 1, None)]
    with nothing_printed("reasons"):
        with warmcal.Gate(path, rank=0, world_size=4, free_bytes=3 * GiB) as g:
            d = g.decide(shapes, allreduce_min=one)
        check(d[0].run, "rank 0's own entry at 16384 tokens: %r" % d[0])
        check(not d[1].run and d[1].reason_code == warmcal.REASON_LOW_MEMORY
              and d[1].blocking_rank == 0
              and d[1].short_bytes == GiB + 24576 * 120 * 1024 - 3 * GiB
              and d[1].reason.startswith("skip: rank 0 is short of "),
              "above rank 0's own range, the any-rank entry and rank 0's memory: %r" % d[1])
        check(d[2].reason_code == warmcal.REASON_OUT_OF_RANGE, "above every range: %r" % d[2])
        with warmcal.Gate(path, rank=0, world_size=4, free_bytes=8 * GiB) as g:
            check(g.decide(shapes[:2], allreduce_min=one)[1].run, "rank 0 with the memory runs")
        with warmcal.Gate(path, rank=2, world_size=4, free_bytes=80 * GiB) as g:
            d = g.decide([(1000, 1, "context")], allreduce_min=one)[0]
            check(not d.run and d.reason_code == warmcal.REASON_ESTIMATE_TOO_LARGE
                  and d.reason_name == "estimate too large" and d.blocking_rank == 2
                  and d.reason == "skip: rank 2's context estimate at 1000 tokens does not fit "
                                  "in 64 bits", "too large: %r" % d)
            expect_gate_error(lambda: g.decide([(0, 1, "context")], allreduce_min=one),
                              warmcal.E_INVAL, "tokens")


def budget(folder):
    """A local gate's token budget with the caller's collective standing for
    a group of one: the numbers (a rank above its own range is served by the
    any-rank entry, as in decide), the errors, and that a pass of the budget
    runs and one token more does not."""
    write_tables(folder)
    doc = table()
    any_rank = doc["estimates"][0]
    any_rank["model"]["coefficients"] = [float(GiB), 120.0 * 1024]
    rank0 = json.loads(json.dumps(any_rank))
    rank0.update(rank=0, tokens_max=16384)
    rank0["model"]["coefficients"] = [float(GiB), 100.0 * 1024]
    doc["estimates"].append(rank0)
    path = os.path.join(folder, "rank0-short.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    one = lambda v: v  # noqa: E731 — this rank alone is the group's minimum
    calls = []

    def counted(v):
        calls.append(len(v))
        return v
    with nothing_printed("budget"):
        # rank 0 with 3.5 GiB: past its own range (16384), on the any-rank entry
        with warmcal.Gate(path, rank=0, world_size=4, reserve_bytes=RESERVE,
                          free_bytes=7 * GiB // 2) as g:
            b = g.max_tokens(allreduce_min=counted)
            check(calls == [6], "one call of the collective, 6 values: %r" % calls)
            check(b == ((7 * GiB // 2 - GiB - RESERVE) // (120 * 1024), 0), repr(b))
            check(b.tokens > 16384 and b.limiting_rank == 0, repr(b))
            d = g.decide([(b.tokens, 1, None), (b.tokens + 1, 1, None)], allreduce_min=one)
            check(d[0].run and not d[1].run and d[1].reason_code == warmcal.REASON_LOW_MEMORY,
                  repr(d))
            # the call's reserve adds to the gate's
            b2 = g.max_tokens(reserve_bytes=120 * 1024 * 10, allreduce_min=one)
            check(b2.tokens == b.tokens - 10, "%r then %r" % (b, b2))
        # rank 1 (the any-rank entry alone), a table of another TP size allowed
        with warmcal.Gate(path, rank=1, world_size=4, free_bytes=80 * GiB) as g:
            check(g.max_tokens(allreduce_min=one) == (32768, 1), "the range ends it")
        with warmcal.Gate(path, rank=0, world_size=4, free_bytes=80 * GiB,
                          above_range="extrapolate") as g:
            check(g.max_tokens(allreduce_min=one) == ((79 * GiB) // (120 * 1024), 0),
                  "extrapolated to 80 GiB")
        # the original fix's constant need: every pass up to 256 tokens runs
        with warmcal.Gate(None, rank=2, world_size=4, free_bytes=100 * MiB,
                          need_policy="constant", constant_bytes_per_token=MiB,
                          constant_min_tokens=256) as g:
            check(g.max_tokens(allreduce_min=one) == (256, 2), "constant need")
        # errors: clear, with their codes
        with warmcal.Gate(path, rank=0, world_size=4, free_bytes=40 * GiB) as g:
            expect_gate_error(lambda: g.max_tokens("generation", allreduce_min=one),
                              warmcal.E_FIELD, "no generation estimate for rank 0")
            for kw, needle in ((dict(label=5, allreduce_min=one), "max_tokens: label"),
                               (dict(label="", allreduce_min=one), "max_tokens: label"),
                               (dict(reserve_bytes=-1, allreduce_min=one), "reserve_bytes"),
                               (dict(reserve_bytes=1.5, allreduce_min=one), "reserve_bytes"),
                               (dict(allreduce_min=5), "needs allreduce_min"),
                               (dict(), "needs allreduce_min")):
                expect_gate_error(lambda: g.max_tokens(**kw), warmcal.E_INVAL, needle)
            expect_gate_error(lambda: g.max_tokens(allreduce_min=lambda v: [x + 1 for x in v]),
                              warmcal.E_INVAL, "not a MIN reduction")
            def broken(v):
                raise RuntimeError("Gloo connection closed")
            expect_gate_error(lambda: g.max_tokens(allreduce_min=broken), warmcal.E_STATE,
                              "max_tokens: allreduce_min raised RuntimeError")
        def no_device():
            raise ValueError("no device")
        with warmcal.Gate(path, rank=0, world_size=4, free_bytes=no_device) as g:
            e = expect_gate_error(lambda: g.max_tokens(allreduce_min=one), warmcal.E_UNSUPPORTED,
                                  "no device")
            check(isinstance(e.__cause__, ValueError), repr(e.__cause__))
        expect_gate_error(lambda: g.max_tokens(allreduce_min=one), warmcal.E_STATE, "closed")


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
    if case in ("lookup", "lifetime", "cuda", "reasons", "budget"):
        folder = tempfile.mkdtemp(prefix="warmcal-pytest-", dir=arg)
        try:
            {"lookup": lookup, "lifetime": lifetime, "cuda": cuda, "reasons": reasons,
             "budget": budget}[case](folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        {"layout": layout, "tables": tables}[case](arg)
    print("ok %s" % case)


if __name__ == "__main__":
    main()
