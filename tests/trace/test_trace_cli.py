"""`warmcal inspect` against real files: written by h5py (other widths, string
kinds and extra fields), broken on purpose (bad values, truncated, corrupt),
left behind by a writer killed with SIGKILL, and warmcal's own files read
back by h5dump and h5py.

usage: test_trace_cli.py CASE --warmcal BIN --kill-writer BIN --h5dump BIN --workdir DIR
Exit 0 pass, 1 fail, 77 skip (h5py or h5dump missing).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

try:
    import h5py
    import numpy as np
except ImportError:
    print("skip: h5py is not installed", file=sys.stderr)
    sys.exit(77)

MIB = 1 << 20
GPU_BYTES = 80 * 1024 * MIB
U64_MAX = (1 << 64) - 1
ARGS = None
TMP = None


def fail(msg):
    raise AssertionError(msg)


def check(cond, msg):
    if not cond:
        fail(msg)


def run(*argv, env=None):
    # a foreign file's bytes may reach the output: read them, never crash on them
    p = subprocess.run(list(argv), capture_output=True, text=True, errors="replace", timeout=60,
                       env=env)
    return p.returncode, p.stdout, p.stderr


def inspect(*argv):
    return run(ARGS.warmcal, "inspect", *argv)


def inspect_corrupt(path):
    """inspect on a corrupt file: HDF5's own leaks there are not reported (see the .supp)."""
    supp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hdf5_corrupt.supp")
    env = dict(os.environ, LSAN_OPTIONS=f"suppressions={supp}:print_suppressions=0")
    return run(ARGS.warmcal, "inspect", path, env=env)


def inspect_json(*paths):
    rc, out, err = inspect("--json", *paths)
    check(rc == 0, f"inspect --json {paths}: exit {rc}, stderr: {err}")
    return json.loads(out), err


def check_quiet_failure(path, rc, out, err, expect):
    """A rejected file: exit 2, nothing on stdout, one 'FILE: WHERE: TEXT' line naming
    the file and `expect`, and no HDF5 error stack."""
    check(rc == 2, f"{path}: expected exit 2, got {rc} (stderr: {err!r})")
    check(out == "", f"{path}: expected nothing on stdout, got {out!r}")
    check(path in err, f"{path}: file not named in {err!r}")
    check(expect in err, f"{path}: expected {expect!r} in {err!r}")
    check("HDF5-DIAG" not in err and "#000" not in err, f"{path}: HDF5 printed its stack: {err!r}")
    check(err.count("\n") == 1, f"{path}: expected one line on stderr, got {err!r}")


# kill_writer.c's phase_for(), mirrored.
def phase_for(i):
    live_begin = i * MIB
    outcome = i % 3
    return {
        "label": "generation" if i % 2 else "context",
        "tokens": 128 * (i + 1),
        "batch": i + 1,
        "begin_ns": 1000000 * i,
        "end_ns": 1000000 * i + 500000,
        "live_begin": live_begin,
        "live_peak": live_begin + (i + 1) * 3 * MIB,
        "live_end": live_begin,
        "device_free_begin": GPU_BYTES - live_begin,
        "device_free_end": None if i % 2 else GPU_BYTES - live_begin,
        "outcome": ["ok", "oom", "aborted"][outcome],
        "failed_alloc_bytes": 64 * MIB * (i + 1) if outcome == 1 else 0,
        "pinned_peak": MIB // 2 * i,
        "anomalies": i,
    }


def check_phases(got, n):
    check(len(got) == n, f"expected {n} phases, got {len(got)}")
    for i, row in enumerate(got):
        want = phase_for(i)
        for key, value in want.items():
            check(row[key] == value, f"phases[{i}].{key}: expected {value!r}, got {row[key]!r}")
        check(row["peak_delta"] == want["live_peak"] - want["live_begin"], f"phases[{i}].peak_delta")


def writer_file(name, n, *flags):
    path = os.path.join(TMP, name)
    rc, _, err = run(ARGS.kill_writer, path, str(n), "--close", *flags)
    check(rc == 0, f"kill_writer failed: {err}")
    return path


# --- files written by h5py ------------------------------------------------

GOOD_ROWS = [
    # label, tokens, batch, begin, end, live_begin, live_peak, live_end, free_begin, free_end,
    # outcome, failed
    ("context", 4096, 1, 100, 900, 10 * MIB, 90 * MIB, 12 * MIB, 70000 * MIB, U64_MAX, 0, 0),
    ("generation", 64, 8, 1000, 1500, 12 * MIB, 20 * MIB, 12 * MIB, U64_MAX, U64_MAX, 1, 7 * MIB),
    ("decode", 1, 2, 2000, 2000, 12 * MIB, 12 * MIB, 12 * MIB, 69000 * MIB, 68000 * MIB, 2, 0),
]

# Narrow and signed integer columns, a vlen label, an unknown float field, no extensions.
H5PY_DTYPE = [
    ("label", h5py.string_dtype()),
    ("tokens", "<i4"),
    ("batch", "<u2"),
    ("comment", "<f8"),
    ("begin_ns", "<i8"),
    ("end_ns", ">u4"),
    ("live_begin", "<i8"),
    ("live_peak", "<u8"),
    ("live_end", "<i8"),
    ("device_free_begin", "<u8"),
    ("device_free_end", "<u8"),
    ("outcome", "i1"),
    ("failed_alloc_bytes", "<i4"),
]


def h5py_attrs(f, **override):
    attrs = {
        "warmcal_schema": np.int32(1),
        "rank": np.int32(0),
        "world_size": np.int32(2),
        "model": "llama-h5py",           # h5py writes str as variable-length UTF-8
        "source": "torch",
        "gpu_name": "NVIDIA A100-SXM4-40GB",
        "gpu_total_bytes": np.uint64(42949672960),
        "complete": np.int32(1),
        "note": "written by h5py",       # unknown attributes are kept for display
        "temperature": np.float64(1.5),
        "shape": np.array([1, 2, 3], dtype=np.int16),
    }
    attrs.update(override)
    for key, value in attrs.items():
        if value is not None:
            f.attrs[key] = value


def write_h5py_file(name, attrs=None, dtype=None, rows=None, edit=None, phases=True):
    """A trace as a Python tool would write it; edit(array) may spoil values."""
    path = os.path.join(TMP, name)
    dtype = np.dtype(dtype or H5PY_DTYPE)
    rows = GOOD_ROWS if rows is None else rows
    with h5py.File(path, "w") as f:
        h5py_attrs(f, **(attrs or {}))
        if phases:
            data = np.zeros(len(rows), dtype=dtype)
            for i, r in enumerate(rows):
                values = dict(zip([c[0] for c in H5PY_DTYPE if c[0] != "comment"], r))
                for key in dtype.names:
                    if key == "comment":
                        data[key][i] = 0.25 * i
                    elif key in values:
                        data[key][i] = values[key]
            if edit:
                edit(data)
            f.create_dataset("phases", data=data, maxshape=(None,))
    return path


def case_inspect_reads_h5py_files():
    vlen = write_h5py_file("h5py-vlen.h5")
    # Fixed-length ASCII strings (a 64-byte label, space-padded attributes), a
    # contiguous table and an /events table of another layout.
    fixed_dtype = [("label", "S64")] + [c for c in H5PY_DTYPE if c[0] not in ("label", "comment")]
    fixed = write_h5py_file("h5py-fixed.h5", dtype=fixed_dtype,
                            attrs={"model": np.bytes_("llama-fixed"), "gpu_name": np.bytes_("GPU"),
                                   "source": np.bytes_("import"), "rank": np.uint8(1),
                                   "complete": np.int64(0)})
    with h5py.File(fixed, "a") as f:
        f.create_dataset("events", data=np.zeros(5, dtype=[("t", "<u8"), ("x", "<i2")]))
        tid = h5py.h5t.C_S1.copy()
        tid.set_size(12)
        tid.set_strpad(h5py.h5t.STR_SPACEPAD)
        aid = h5py.h5a.create(f.id, b"host", tid, h5py.h5s.create(h5py.h5s.SCALAR))
        aid.write(np.array(b"node-3      ", dtype="S12"), mtype=tid)

    doc, err = inspect_json(vlen, fixed)
    check(len(doc) == 2, f"expected 2 traces, got {len(doc)}")
    a, b = doc
    check(a["path"] == vlen and b["path"] == fixed, "paths in argument order")
    check(a["complete"] == 1 and b["complete"] == 0, "complete")
    check(a["model"] == "llama-h5py" and b["model"] == "llama-fixed", "model")
    check(a["source"] == "torch" and b["source"] == "import", "source")
    check(a["gpu_name"] == "NVIDIA A100-SXM4-40GB" and b["gpu_name"] == "GPU", "gpu_name")
    check(a["gpu_total_bytes"] == 42949672960, "gpu_total_bytes")
    check(a["rank"] == 0 and b["rank"] == 1 and a["world_size"] == 2, "rank/world_size")
    check(a["events"] == 0 and b["events"] == 5, "events counted")
    at = a["attributes"]
    check(at["note"] == "written by h5py", f"unknown attribute shown: {at}")
    check(at["temperature"] == "1.5", f"float attribute: {at['temperature']!r}")
    check(at["shape"].startswith("<"), f"array attribute shown as its type: {at['shape']!r}")
    check(at["warmcal_schema"] == "1" and at["gpu_total_bytes"] == "42949672960", "attributes")
    check(b["attributes"]["host"] == "node-3", f"space padding trimmed: {b['attributes']['host']!r}")
    for t in (a, b):
        rows = t["phases"]
        check(len(rows) == 3, "3 phases")
        for i, r in enumerate(GOOD_ROWS):
            got = rows[i]
            check(got["label"] == r[0], f"label {got['label']!r}")
            check((got["tokens"], got["batch"], got["begin_ns"], got["end_ns"]) == r[1:5], f"row {i}")
            check((got["live_begin"], got["live_peak"], got["live_end"]) == r[5:8], f"row {i} live")
            want_free = [None if v == U64_MAX else v for v in r[8:10]]
            check([got["device_free_begin"], got["device_free_end"]] == want_free, f"row {i} free")
            check(got["outcome"] == ["ok", "oom", "aborted"][r[10]], f"row {i} outcome")
            check(got["failed_alloc_bytes"] == r[11], f"row {i} failed_alloc_bytes")
            check(got["pinned_peak"] == 0 and got["anomalies"] == 0, "absent extensions read as 0")
    check("warning: " + fixed + ": writer did not finish (complete = 0)" in err,
          f"complete = 0 warns: {err!r}")
    check(vlen not in err, "no warning for a finished file")

    rc, out, err = inspect(vlen)
    check(rc == 0, f"text mode: exit {rc}: {err}")
    check("llama-h5py" in out and "generation" in out, "text mode shows the trace")


def case_inspect_names_the_bad_field_in_h5py_files():
    def set_row(field, row, value):
        def edit(data):
            data[field][row] = value
        return edit

    no_tokens = [c for c in H5PY_DTYPE if c[0] != "tokens"]
    float_end = [(n, "<f8" if n == "live_end" else t) for n, t in H5PY_DTYPE]
    wide_batch = [(n, "<u8" if n == "batch" else t) for n, t in H5PY_DTYPE]
    bad = [
        ("schema2.h5", dict(attrs={"warmcal_schema": np.int32(2)}),
         "attribute 'warmcal_schema': expected 1, found 2"),
        ("no-schema.h5", dict(attrs={"warmcal_schema": None}), "attribute 'warmcal_schema': missing"),
        ("no-gpu-name.h5", dict(attrs={"gpu_name": None}), "attribute 'gpu_name': missing"),
        ("rank-string.h5", dict(attrs={"rank": "0"}),
         "attribute 'rank': expected an integer, found string"),
        ("rank-out-of-range.h5", dict(attrs={"rank": np.int32(2)}),
         "attribute 'rank': expected 0 <= rank < world_size (2), found 2"),
        ("negative-rank.h5", dict(attrs={"rank": np.int32(-1)}),
         "attribute 'rank': expected >= 0, found -1"),
        ("bad-source.h5", dict(attrs={"source": "nvml"}), "attribute 'source': expected cupti"),
        ("model-int.h5", dict(attrs={"model": np.int32(3)}),
         "attribute 'model': expected a string, found integer"),
        ("complete-2.h5", dict(attrs={"complete": np.int32(2)}),
         "attribute 'complete': expected <= 1, found 2"),
        ("no-phases.h5", dict(phases=False), "phases: dataset missing"),
        ("negative-tokens.h5", dict(edit=set_row("tokens", 1, -5)),
         "phases[1].tokens: expected >= 0, found -5"),
        ("no-tokens.h5", dict(dtype=no_tokens), "phases.tokens: missing"),
        ("float-column.h5", dict(dtype=float_end), "phases.live_end: expected an integer, found float"),
        ("outcome-7.h5", dict(edit=set_row("outcome", 0, 7)),
         "phases[0].outcome: expected 0 (ok), 1 (oom) or 2 (aborted), found 7"),
        ("peak-below-begin.h5", dict(edit=set_row("live_peak", 1, 11 * MIB)),
         f"phases[1].live_peak: expected >= live_begin ({12 * MIB}), found {11 * MIB}"),
        ("peak-below-end.h5", dict(edit=set_row("live_end", 2, 13 * MIB)),
         f"phases[2].live_peak: expected >= live_end ({13 * MIB})"),
        ("end-before-begin.h5", dict(edit=set_row("end_ns", 0, 50)),
         "phases[0].end_ns: expected >= begin_ns (100), found 50"),
        ("batch-too-wide.h5", dict(dtype=wide_batch, edit=set_row("batch", 0, 1 << 33)),
         f"phases[0].batch: expected <= 4294967295, found {1 << 33}"),
        ("long-label.h5", dict(edit=set_row("label", 0, "x" * 40)),
         "phases[0].label: expected at most 31 bytes, found 40"),
    ]
    for name, kwargs, expect in bad:
        path = write_h5py_file(name, **kwargs)
        rc, out, err = inspect(path)
        check_quiet_failure(path, rc, out, err, expect)
        rc, out, err = inspect("--json", path)
        check_quiet_failure(path, rc, out, err, expect)
    # One bad file among good ones: exit 2, the bad one named, no partial output.
    good = write_h5py_file("good.h5")
    path = os.path.join(TMP, "outcome-7.h5")
    rc, out, err = inspect(good, path, good)
    check_quiet_failure(path, rc, out, err, "phases[0].outcome")


# --- what fit and validate take from a trace -----------------------------------

TOKENS_MAX = 1 << 40
FIT_DTYPE = [(n, "<u8" if n == "tokens" else t) for n, t in H5PY_DTYPE]


def fit_rows(tokens=(256, 1024, 4096, 16384, 65536), label="context"):
    """Completed phases fit can estimate: 4 KiB a token (up to 2^40) over 1 MiB live."""
    return [(label, np.uint64(t), 1, 10 * i, 10 * i + 5, MIB, MIB + min(t, TOKENS_MAX) * 4096, MIB,
             np.uint64(U64_MAX), np.uint64(U64_MAX), 0, 0) for i, t in enumerate(tokens)]


def write_fit_trace(name, attrs=None, tokens=(256, 1024, 4096, 16384, 65536), label="context",
                    dtype=None):
    return write_h5py_file(name, attrs=attrs, dtype=dtype or FIT_DTYPE, rows=fit_rows(tokens, label))


def fit(*argv):
    return run(ARGS.warmcal, "fit", *argv)


def check_refused_by_every_command(path, table, expect):
    """inspect, fit and validate each exit 2 naming the trace and `expect`;
    fit writes no table and names no table."""
    rc, out, err = inspect(path)
    check_quiet_failure(path, rc, out, err, expect)
    out_table = os.path.join(TMP, "refused.json")
    rc, out, err = fit(path, "-o", out_table)
    check_quiet_failure(path, rc, out, err, expect)
    check(not os.path.exists(out_table), f"fit {path}: a table was written")
    check(out_table not in err, f"fit {path}: the table is blamed: {err!r}")
    rc, out, err = run(ARGS.warmcal, "validate", table, path)
    check(rc == 2 and f"{path}: {expect}" in err, f"validate {path}: exit {rc}, {err!r}")
    check("summary:" not in out, f"validate {path}: no summary for a refused trace: {out!r}")


def case_inspect_fit_and_validate_refuse_tokens_outside_1_to_2_40():
    good = write_fit_trace("good.h5")
    table = os.path.join(TMP, "table.json")
    rc, _, err = fit(good, "-o", table)
    check(rc == 0, f"fit of the good trace: exit {rc}: {err}")
    edge = write_fit_trace("edge.h5", tokens=(1, 1024, 4096, TOKENS_MAX))
    rc, out, err = inspect("--json", edge)
    check(rc == 0 and [p["tokens"] for p in json.loads(out)[0]["phases"]] == [1, 1024, 4096, TOKENS_MAX],
          f"1 and 2^40 tokens are read: exit {rc}, {err!r}")
    for name, tokens in (("zero-tokens.h5", 0), ("too-many-tokens.h5", TOKENS_MAX + 1),
                         ("u64-max-tokens.h5", U64_MAX)):
        path = write_fit_trace(name, tokens=(256, 1024, 4096, tokens, 65536))
        check_refused_by_every_command(
            path, table, f"phases[3].tokens: expected 1 to {TOKENS_MAX} (2^40), found {tokens}")
    # a narrow signed column: 0 is refused the same way
    narrow = write_h5py_file("narrow-zero.h5", rows=fit_rows((256, 1024, 0)))
    check_refused_by_every_command(narrow, table, "phases[2].tokens: expected 1 to")


def case_fit_blames_text_that_is_not_utf8_on_the_trace():
    good = write_fit_trace("good.h5")
    table = os.path.join(TMP, "table.json")
    rc, _, err = fit(good, "-o", table)
    check(rc == 0, f"fit of the good trace: exit {rc}: {err}")
    fixed_label = [(n, "S32" if n == "label" else t) for n, t in FIT_DTYPE]
    for name, kwargs, expect in (
            ("model-latin1.h5", dict(attrs={"model": np.bytes_("llama-caf\xe9".encode("latin-1"))}),
             "attribute 'model': not valid UTF-8"),
            ("gpu-cut.h5", dict(attrs={"gpu_name": np.bytes_("GPU \u20ac".encode()[:-1])}),
             "attribute 'gpu_name': not valid UTF-8"),
            ("label-latin1.h5", dict(dtype=fixed_label, label="caf\xe9".encode("latin-1")),
             "phases[0].label: not valid UTF-8")):
        path = write_fit_trace(name, **kwargs)
        check_refused_by_every_command(path, table, expect)


def case_long_model_and_gpu_names_are_kept_whole_or_refused_never_cut():
    long_model = "org/" + "m" * 296                     # 300 bytes
    long_gpu = "NVIDIA " + "\u00e9" * 40                # 87 bytes
    path = write_fit_trace("long-model.h5", attrs={"model": long_model})
    doc, _ = inspect_json(path)
    check(doc[0]["model"] == long_model, "inspect shows the whole 300-byte model name")
    for name, attrs, expect in (
            ("long-model.h5", {"model": long_model},
             "attribute 'model': 300 bytes, longer than the 127 an estimate table holds in "
             "configuration.model"),
            ("long-gpu.h5", {"gpu_name": long_gpu},
             "attribute 'gpu_name': 87 bytes, longer than the 63 an estimate table holds in "
             "configuration.gpu_name")):
        path = write_fit_trace(name, attrs=attrs)
        table = os.path.join(TMP, name + ".json")
        rc, out, err = fit(path, "-o", table)
        check_quiet_failure(path, rc, out, err, expect)
        check(not os.path.exists(table), f"{name}: no table written")
    # names exactly as long as a table holds (bytes, not characters) fit, and
    # validate finds no mismatch against the very trace the table came from
    at_limit_model = "org/" + "\u00e9" * 61 + "x"        # 127 bytes
    at_limit_gpu = "NVIDIA " + "\u00e9" * 28               # 63 bytes
    check(len(at_limit_model.encode()) == 127 and len(at_limit_gpu.encode()) == 63, "test's own names")
    path = write_fit_trace("at-limit.h5", attrs={"model": at_limit_model, "gpu_name": at_limit_gpu})
    table = os.path.join(TMP, "at-limit.json")
    rc, _, err = fit(path, "-o", table)
    check(rc == 0, f"fit at the limit: exit {rc}: {err}")
    config = json.load(open(table, encoding="utf-8"))["configuration"] if rc == 0 else {}
    check(config.get("model") == at_limit_model and config.get("gpu_name") == at_limit_gpu,
          f"the table holds the names whole: {config}")
    rc, out, err = run(ARGS.warmcal, "validate", table, path)
    check(rc == 0 and "differs" not in err, f"validate against its own trace: exit {rc}: {err!r}")
    other = write_fit_trace("other-gpu.h5", attrs={"model": at_limit_model, "gpu_name": "GPU B"})
    rc, out, err = run(ARGS.warmcal, "validate", table, other)
    check(rc == 0 and f"warning: {other}: gpu_name 'GPU B' differs from the table's '{at_limit_gpu}'"
          in err and "model '" not in err, f"validate on another GPU warns: exit {rc}: {err!r}")
    # a table lists its traces by path, in at most 255 bytes: a longer one is
    # refused naming the trace, not the table's sources[0].name
    folder = os.path.join(TMP, "d" * 200)
    os.mkdir(folder)
    deep = write_fit_trace(os.path.join(folder, "t" * 60 + ".h5"))
    table = os.path.join(TMP, "deep.json")
    rc, out, err = fit(deep, "-o", table)
    check(rc == 2 and os.path.basename(deep) in err and "longer than the 255" in err
          and not os.path.exists(table), f"fit of a trace with a {len(deep)}-byte path: exit {rc}: {err!r}")


# --- damaged files ----------------------------------------------------------

def overwrite(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def case_inspect_rejects_truncated_and_corrupt_files():
    src = writer_file("good.h5", 6, "--events")
    size = os.path.getsize(src)
    damaged = []

    def copy(name):
        path = os.path.join(TMP, name)
        shutil.copyfile(src, path)
        return path

    half = copy("truncated-half.h5")
    os.truncate(half, size // 2)
    damaged.append((half, "cannot open as HDF5"))
    short = copy("truncated-by-one.h5")
    os.truncate(short, size - 1)
    damaged.append((short, "cannot open as HDF5"))

    with h5py.File(src, "r") as f:
        phases_header = h5py.h5o.get_info(f["phases"].id).addr
        phases_chunk = f["phases"].id.get_chunk_info(0).byte_offset
    # The /phases object header, then the rows themselves, overwritten.
    header = copy("corrupt-header.h5")
    overwrite(header, phases_header, b"\xff" * 64)
    damaged.append((header, "phases"))
    rows = copy("corrupt-rows.h5")
    overwrite(rows, phases_chunk, b"\xff" * 121 * 6)
    damaged.append((rows, "phases[0]"))
    # Its datatype message: HDF5 then leaks internal objects and, unless
    # silenced, complains about them when the process exits.
    dtype = copy("corrupt-datatype.h5")
    overwrite(dtype, phases_header + 256, b"\xa5" * 256)
    damaged.append((dtype, "phases"))
    # The middle third of the file.
    middle = copy("corrupt-middle.h5")
    overwrite(middle, size // 3, b"\xa5" * (size // 3))
    damaged.append((middle, "phases"))
    # The superblock's signature.
    sig = copy("corrupt-signature.h5")
    overwrite(sig, 0, b"NOTHDF5!")
    damaged.append((sig, "cannot open as HDF5"))

    text = os.path.join(TMP, "notes.h5")
    with open(text, "w") as f:
        f.write("rank,tokens,peak\n0,4096,123\n" * 50)
    damaged.append((text, "cannot open as HDF5"))
    empty = os.path.join(TMP, "empty.h5")
    open(empty, "w").close()
    damaged.append((empty, "cannot open as HDF5"))
    damaged.append((os.path.join(TMP, "missing.h5"), "cannot open: No such file or directory"))
    damaged.append((TMP, "cannot open: is a directory"))

    for path, expect in damaged:
        rc, out, err = inspect_corrupt(path)
        check_quiet_failure(path, rc, out, err, expect)

    # Every 512-byte block spoilt in turn: bytes the reader never looks at
    # (unused chunk rows, free space) may pass, but nothing crashes or prints
    # more than one line.
    block = os.path.join(TMP, "block.h5")
    for offset in range(0, size, 512):
        shutil.copyfile(src, block)
        overwrite(block, offset, b"\xa5" * 512)
        rc, out, err = inspect_corrupt(block)
        check(rc in (0, 2), f"block at {offset}: exit {rc}, stderr {err!r}")
        if rc == 2:
            check_quiet_failure(block, rc, out, err, block)


# --- a writer killed with SIGKILL ------------------------------------------

def flock_works(folder):
    """Whether this file system honours flock between two open files."""
    import fcntl
    probe = os.path.join(folder, "flock-probe")
    with open(probe, "w") as a, open(probe, "r") as b:
        fcntl.flock(a, fcntl.LOCK_EX | fcntl.LOCK_NB)
        try:
            fcntl.flock(b, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return False
        except OSError:
            return True


def case_killed_writer_leaves_readable_trace():
    path = os.path.join(TMP, "rank-1.h5")
    n = 5
    # Read as users do, with HDF5's file locking on: a killed writer leaves no lock.
    locking_env = {k: v for k, v in os.environ.items() if k != "HDF5_USE_FILE_LOCKING"}
    proc = subprocess.Popen([ARGS.kill_writer, path, str(n), "--events"], env=locking_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if line != "ready\n":
            fail(f"kill_writer did not get ready: {line!r} {proc.stderr.read()!r}")
        # While the writer lives, HDF5's file lock keeps readers out (where the
        # file system honours flock), and the message says why.
        rc, out, err = run(ARGS.warmcal, "inspect", path, env=locking_env)
        if flock_works(TMP):
            check(rc == 2 and "locked by a writer" in err, f"live file: {rc} {err!r}")
        else:
            check(rc in (0, 2), f"live file without flock: {rc} {err!r}")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    check(proc.returncode == -signal.SIGKILL, f"writer was killed, got {proc.returncode}")

    rc, out, err = run(ARGS.warmcal, "inspect", "--json", path, env=locking_env)
    check(rc == 0, f"inspect --json after the kill: exit {rc}: {err}")
    t = json.loads(out)[0]
    check(t["complete"] == 0, "a killed writer leaves complete = 0")
    check_phases(t["phases"], n)
    check(t["events"] == 4 * n, f"events of finished phases kept, in-flight ones lost: {t['events']}")
    check(f"warning: {path}: writer did not finish (complete = 0); phases up to the last "
          "flushed one are shown" in err, f"warning expected: {err!r}")

    rc, out, err = inspect(path)
    check(rc == 0, f"text mode on a killed writer's file: exit {rc}")
    rc, out, err = run(ARGS.h5dump, "-H", path)
    check(rc == 0 and 'DATASET "phases"' in out, f"h5dump -H: exit {rc}: {err}")
    with h5py.File(path, "r") as f:
        check(len(f["phases"]) == n and int(f.attrs["complete"]) == 0, "h5py reads it too")


# --- warmcal's files in other readers ------------------------------------------

PHASE_FIELDS = [
    ("label", "|S32"), ("tokens", "<u8"), ("batch", "<u4"), ("begin_ns", "<u8"),
    ("end_ns", "<u8"), ("live_begin", "<u8"), ("live_peak", "<u8"), ("live_end", "<u8"),
    ("device_free_begin", "<u8"), ("device_free_end", "<u8"), ("outcome", "|u1"),
    ("failed_alloc_bytes", "<u8"), ("pinned_peak", "<u8"), ("anomalies", "<u4"),
    ("lower_bound", "<u4"), ("reserved_begin", "<u8"), ("reserved_end", "<u8"),
]
EVENT_FIELDS = [("time_ns", "<u8"), ("kind", "|u1"), ("mem_kind", "|u1"), ("bytes", "<u8"),
                ("address", "<u8"), ("phase", "<i8")]


def case_h5dump_and_h5py_read_writer_files():
    n = 4
    path = writer_file("rank-1.h5", n, "--events")
    with h5py.File(path, "r") as f:
        a = f.attrs
        expect = {"warmcal_schema": 1, "rank": 1, "world_size": 2, "complete": 1, "tp": 2,
                  "gpu_total_bytes": GPU_BYTES}
        for key, value in expect.items():
            check(int(a[key]) == value, f"attribute {key}: {a[key]!r}")
        check(a["gpu_total_bytes"].dtype == np.dtype("<u8"), "gpu_total_bytes is u64")
        for key, value in {"model": "tiny-llama", "source": "simulated", "gpu_name": "Simulated GPU",
                           "host": "node-7", "start_time": "2024-05-01T12:00:00Z"}.items():
            check(a[key].decode() == value, f"attribute {key}: {a[key]!r}")
        check("pp" not in a and "cuda_version" not in a, "unset optional attributes left out")
        ph = f["phases"]
        check([(k, ph.dtype[k].str) for k in ph.dtype.names] == PHASE_FIELDS,
              f"phases fields: {ph.dtype}")
        check(ph.dtype.itemsize == 141, f"phases rows are packed: {ph.dtype.itemsize} bytes")
        check(ph.chunks is not None and ph.maxshape == (None,), "phases is chunked and extendable")
        check(len(ph) == n, "rows")
        for i, row in enumerate(ph[:]):
            want = phase_for(i)
            check(row["label"].decode() == want["label"], f"row {i} label")
            check(int(row["tokens"]) == want["tokens"], f"row {i} tokens")
            free_end = U64_MAX if want["device_free_end"] is None else want["device_free_end"]
            check(int(row["device_free_end"]) == free_end, f"row {i} device_free_end")
            check(int(row["outcome"]) == i % 3, f"row {i} outcome")
        ev = f["events"]
        check([(k, ev.dtype[k].str) for k in ev.dtype.names] == EVENT_FIELDS, f"events: {ev.dtype}")
        check(ev.compression == "gzip", "events are compressed")
        check(len(ev) == 4 * n and int(ev[4]["phase"]) == 1, "event rows")

    rc, out, err = run(ARGS.h5dump, "-H", path)
    check(rc == 0, f"h5dump -H: {err}")
    for text in ['ATTRIBUTE "warmcal_schema"', 'ATTRIBUTE "gpu_total_bytes"', "H5T_STD_U64LE",
                 'H5T_STD_U64LE "tokens"', 'H5T_STD_U32LE "batch"', 'H5T_STD_U8LE "outcome"',
                 "STRPAD H5T_STR_NULLPAD", '"label"', 'DATASET "events"', 'H5T_STD_I64LE "phase"']:
        check(text in out, f"h5dump -H lacks {text!r}")
    rc, out, err = run(ARGS.h5dump, "-a", "/warmcal_schema", path)
    check(rc == 0 and "(0): 1" in out, f"h5dump -a /warmcal_schema: {out}")


# --- the command line itself ---------------------------------------------------

def case_inspect_prints_aligned_table():
    path = writer_file("rank-1.h5", 4, "--events")
    rc, out, err = inspect(path)
    check(rc == 0 and err == "", f"exit {rc}, stderr {err!r}")
    lines = out.splitlines()
    check(lines[0] == path, "the trace's path comes first")
    check(any(l.split() == ["gpu_total_bytes", str(GPU_BYTES), "(80.00", "GiB)"] for l in lines),
          "gpu_total_bytes shown with its size")
    head = next(i for i, l in enumerate(lines) if l.split()[:2] == ["#", "label"])
    table = lines[head:head + 5]
    check(table[0].split() == ["#", "label", "tokens", "batch", "outcome", "live_begin", "live_peak",
                               "peak_delta", "live_end", "free_begin", "free_end", "failed_alloc"],
          f"header: {table[0]!r}")
    check(len({len(l) for l in table}) == 1, f"rows are aligned:\n" + "\n".join(table))
    check(table[2].split() == ["1", "generation", "256", "2", "oom", "1.0", "7.0", "6.0", "1.0",
                               "81919.0", "-", "128.0"], f"row 1: {table[2]!r}")
    check(lines[-1] == "summary: 4 phases (2 ok, 1 oom, 1 aborted), max peak delta 12.0 MiB, "
          "max pinned peak 1.5 MiB, 6 anomalies, 16 events", f"summary: {lines[-1]!r}")

    rc, out2, _ = inspect(path, path)
    check(rc == 0 and out2 == out + "\n" + out, "several traces, separated by a blank line")


def case_inspect_usage_errors_exit_2():
    w = ARGS.warmcal
    for argv, expect in [([], "usage: warmcal"), (["frobnicate"], "unknown subcommand 'frobnicate'"),
                         (["inspect"], "no trace given"), (["inspect", "--bogus", "x.h5"],
                                                           "unknown option '--bogus'")]:
        rc, out, err = run(w, *argv)
        check(rc == 2 and out == "" and expect in err, f"warmcal {argv}: {rc} {out!r} {err!r}")
    rc, out, err = run(w, "--help")
    check(rc == 0 and "inspect" in out and err == "", "--help lists subcommands on stdout")
    rc, out, _ = run(w, "--version")
    check(rc == 0 and out.startswith("warmcal ") and out.count(".") == 2, f"--version: {out!r}")
    rc, out, _ = run(w, "inspect", "--help")
    check(rc == 0 and "--json" in out, "inspect --help")


def main():
    global ARGS, TMP
    parser = argparse.ArgumentParser()
    parser.add_argument("case")
    parser.add_argument("--warmcal", required=True)
    parser.add_argument("--kill-writer", required=True)
    parser.add_argument("--h5dump", required=True)
    parser.add_argument("--workdir", required=True)
    ARGS = parser.parse_args()
    if not os.access(ARGS.h5dump, os.X_OK):
        print("skip: h5dump not found", file=sys.stderr)
        return 77
    fn = globals().get("case_" + ARGS.case)
    if not fn:
        print(f"no case {ARGS.case}", file=sys.stderr)
        return 1
    os.makedirs(ARGS.workdir, exist_ok=True)
    TMP = tempfile.mkdtemp(prefix=ARGS.case + "-", dir=ARGS.workdir)
    try:
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
