"""The Python trace writer (gate/python/warmcal/_trace.py) over the C library
libwarmcal-trace.so: its structs match the compiler's layout, every field
goes to disk and back unchanged, bad rows are refused before anything is
written, errors name the file and the field, and a writer dropped without
close keeps its flushed phases.

usage: test_trace_py.py CASE --layout BIN --warmcal BIN
Exit 0 pass, 1 fail, 77 skip (h5py missing).
"""
import argparse
import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile

try:
    import h5py
except ImportError:
    print("skip: h5py is not installed", file=sys.stderr)
    sys.exit(77)

from warmcal import _trace

ARGS = None
TMP = None
INFO = dict(rank=1, world_size=4, model="test-model", source="torch", gpu_name="Test GPU",
            gpu_total_bytes=80 << 30)


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def layout_matches_the_c_header():
    c = json.loads(subprocess.run([ARGS.layout], capture_output=True, text=True,
                                  check=True).stdout)
    mirrors = {"warmcal_error": _trace.CError, "warmcal_phase": _trace.CPhase,
               "warmcal_trace_info": _trace.CTraceInfo, "warmcal_trace_attr": _trace.CTraceAttr,
               "warmcal_trace": _trace.CTrace}
    for cname, py in mirrors.items():
        check(ctypes.sizeof(py) == c[cname], f"sizeof {cname}: C {c[cname]}, "
              f"ctypes {ctypes.sizeof(py)}")
        for field, _ in py._fields_:
            key = f"{cname}.{field}"
            check(key in c, f"{key}: the ctypes mirror has a field the layout does not print")
            check(getattr(py, field).offset == c[key],
                  f"{key}: C offset {c[key]}, ctypes {getattr(py, field).offset}")
        named = {k for k in c if k.startswith(cname + ".")}
        check(len(named) == len(py._fields_), f"{cname}: C prints {len(named)} fields, "
              f"ctypes has {len(py._fields_)}")


def phases():
    return [
        dict(label="context", tokens=4096, batch=2, begin_ns=10, end_ns=20, live_begin=1 << 30,
             live_peak=(1 << 30) + 12345, live_end=(1 << 30) + 7, device_free_begin=9 << 30,
             device_free_end=(9 << 30) - 4096, outcome="ok", failed_alloc_bytes=0,
             pinned_peak=3, anomalies=1, lower_bound=2, reserved_begin=2 << 30,
             reserved_end=(2 << 30) + 8192),
        dict(label="generation", tokens=1, batch=64, begin_ns=30, end_ns=30, live_begin=5,
             live_peak=5, live_end=5, outcome="oom", failed_alloc_bytes=2 << 30),
        dict(label="x" * 31, tokens=1 << 40, outcome="aborted", device_free_begin=0,
             device_free_end=(1 << 64) - 2),
    ]


def every_field_round_trips():
    path = os.path.join(TMP, "rank-1.h5")
    with _trace.TraceWriter(path, tp=4, host="node", start_time="2026-12-02T10:00:00Z",
                            tool_version="t", cuda_version="13.0", **INFO) as w:
        w.set_attr("producer", "test_trace_py")
        w.set_attr("count", (1 << 64) - 1)
        w.add_phase(**phases()[0])
        w.add_phases(phases()[1:])
    back = _trace.read(path)
    check(back["complete"] and back["rank"] == 1 and back["world_size"] == 4, f"{back}")
    check(back["model"] == "test-model" and back["source"] == "torch", f"{back}")
    check(back["gpu_total_bytes"] == 80 << 30, f"{back}")
    check(back["attrs"]["producer"] == "test_trace_py", f"{back['attrs']}")
    check(back["attrs"]["count"] == str((1 << 64) - 1), f"{back['attrs']}")
    check(back["attrs"]["tp"] == "4" and back["attrs"]["cuda_version"] == "13.0",
          f"{back['attrs']}")
    want = []
    for p in phases():
        full = dict(_trace.PHASE_DEFAULTS)
        full.update(p)
        want.append(full)
    check(len(back["phases"]) == 3, f"{len(back['phases'])} phases")
    for i, (got, exp) in enumerate(zip(back["phases"], want)):
        for k, v in exp.items():
            check(got[k] == v, f"phase {i} field {k}: wrote {v!r}, read {got[k]!r}")
    # the file holds the new columns under their documented names (h5py reads it too)
    with h5py.File(path, "r") as f:
        rows = f["phases"][:]
        check(int(rows["reserved_end"][0]) == (2 << 30) + 8192, "reserved_end column")
        check(int(rows["reserved_begin"][1]) == 0, "reserved_begin defaults to 0")
    # and warmcal inspect --json shows them
    out = subprocess.run([ARGS.warmcal, "inspect", "--json", path], capture_output=True,
                         text=True, check=True).stdout
    j = json.loads(out)[0]["phases"][0]
    check(j["reserved_begin"] == 2 << 30 and j["reserved_end"] == (2 << 30) + 8192, f"{j}")


def bad_rows_are_refused_before_anything_is_written():
    path = os.path.join(TMP, "bad.h5")
    w = _trace.TraceWriter(path, **INFO)
    w.add_phase(tokens=1)
    cases = [
        (dict(tokens=0), "tokens"),                 # the C writer's own check
        (dict(tokens=1, live_peak=1, live_begin=2), "live_peak"),
        (dict(tokens=1, outcome="maybe"), "outcome"),
        (dict(tokens=1, label="y" * 32), "label"),
        (dict(tokens=1, colour="red"), "colour"),
        (dict(tokens=1, batch=-1), "batch"),
        (dict(tokens=1, live_peak=1.5), "live_peak"),
        (dict(label="context"), "tokens"),
    ]
    for row, field in cases:
        try:
            w.add_phases([dict(tokens=2), row])
        except _trace.TraceError as e:
            check(field in str(e), f"{row}: error does not name {field}: {e}")
        else:
            raise AssertionError(f"{row}: accepted")
    w.close()
    back = _trace.read(path)
    check([p["tokens"] for p in back["phases"]] == [1], "a refused batch wrote rows")
    check(w.closed, "closed")
    try:
        w.add_phase(tokens=1)
    except _trace.TraceError as e:
        check("closed" in str(e), f"{e}")
    else:
        raise AssertionError("a closed writer accepted a row")


def errors_name_the_file():
    for info, path, words in [
        (dict(INFO, rank=4), os.path.join(TMP, "r.h5"), ["r.h5", "rank"]),
        (dict(INFO, source="guess"), os.path.join(TMP, "s.h5"), ["s.h5", "source"]),
        (INFO, os.path.join(TMP, "missing", "m.h5"), ["missing/m.h5"]),
    ]:
        try:
            _trace.TraceWriter(path, **info)
        except _trace.TraceError as e:
            for word in words:
                check(word in str(e), f"{path}: {e!s} does not name {word}")
            check(e.code < 0, f"code {e.code}")
        else:
            raise AssertionError(f"{path}: opened")
        check(not os.path.exists(path), f"{path} was created")
    try:
        _trace.read(os.path.join(TMP, "nothing.h5"))
    except _trace.TraceError as e:
        check("nothing.h5" in str(e), f"{e}")
    else:
        raise AssertionError("read a missing file")


def a_dropped_writer_keeps_its_phases_and_rename_moves_the_file():
    tmp = os.path.join(TMP, ".rank-1.h5.partial")
    final = os.path.join(TMP, "rank-1.h5")
    w = _trace.TraceWriter(tmp, **INFO)
    w.add_phase(tokens=7, live_peak=3)
    w.rename(final)
    check(not os.path.exists(tmp) and os.path.exists(final), "rename")
    w.add_phase(tokens=8)
    # like a killed process: read the file while the writer is still open
    back = _trace.read(final)
    check(not back["complete"], "complete before close")
    check([p["tokens"] for p in back["phases"]] == [7, 8], f"{back['phases']}")
    del w
    check(_trace.read(final)["complete"], "closed when dropped")


def main():
    global ARGS, TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--layout", required=True)
    ap.add_argument("--warmcal", required=True)
    ARGS = ap.parse_args()
    TMP = tempfile.mkdtemp(prefix="warmcal-trace-py-")
    try:
        globals()[ARGS.case]()
    except AssertionError as e:
        print(f"FAIL {ARGS.case}: {e}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"ok {ARGS.case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
