"""The project's one trace writer (warmcal/trace.h in libwarmcal-trace.so),
for the Python programs that write traces: the torch phase helper
(warmcal.profile) and the importers. ctypes mirrors of the C structs, field
for field (tests/trace checks them against the compiler's layout), and a
small writer class; the reader is for tests and tools that check traces.

The library is loaded on first use, not at import: `import warmcal` must
stay cheap and work where only the gate is installed.
"""

import ctypes

from . import _libfind

LIB_ENV = "WARMCAL_TRACE_LIB"
LIB_BASE = "warmcal-trace"

# warmcal/recorder.h
LABEL_LEN = 32
FREE_UNKNOWN = 2**64 - 1
OUTCOMES = {"ok": 0, "oom": 1, "aborted": 2}
OUTCOME_NAMES = {v: k for k, v in OUTCOMES.items()}

# warmcal/error.h
E_INVAL = -1
_SOURCE_LEN, _WHERE_LEN, _TEXT_LEN = 160, 96, 256


class CError(ctypes.Structure):
    """warmcal_error."""
    _fields_ = [("code", ctypes.c_int), ("source", ctypes.c_char * _SOURCE_LEN),
                ("where", ctypes.c_char * _WHERE_LEN), ("text", ctypes.c_char * _TEXT_LEN)]


class CPhase(ctypes.Structure):
    """warmcal_phase."""
    _fields_ = [
        ("label", ctypes.c_char * LABEL_LEN),
        ("tokens", ctypes.c_uint64),
        ("batch", ctypes.c_uint32),
        ("begin_ns", ctypes.c_uint64),
        ("end_ns", ctypes.c_uint64),
        ("live_begin", ctypes.c_uint64),
        ("live_peak", ctypes.c_uint64),
        ("live_end", ctypes.c_uint64),
        ("device_free_begin", ctypes.c_uint64),
        ("device_free_end", ctypes.c_uint64),
        ("outcome", ctypes.c_uint8),
        ("failed_alloc_bytes", ctypes.c_uint64),
        ("pinned_peak", ctypes.c_uint64),
        ("anomalies", ctypes.c_uint32),
        ("lower_bound", ctypes.c_uint32),
        ("reserved_begin", ctypes.c_uint64),
        ("reserved_end", ctypes.c_uint64),
    ]


class CTraceInfo(ctypes.Structure):
    """warmcal_trace_info."""
    _fields_ = [
        ("rank", ctypes.c_int), ("world_size", ctypes.c_int),
        ("model", ctypes.c_char_p), ("source", ctypes.c_char_p), ("gpu_name", ctypes.c_char_p),
        ("gpu_total_bytes", ctypes.c_uint64),
        ("tp", ctypes.c_int), ("pp", ctypes.c_int),
        ("host", ctypes.c_char_p), ("start_time", ctypes.c_char_p),
        ("tool_version", ctypes.c_char_p), ("driver_version", ctypes.c_char_p),
        ("cuda_version", ctypes.c_char_p),
    ]


class CTraceAttr(ctypes.Structure):
    """warmcal_trace_attr."""
    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p)]


class CTrace(ctypes.Structure):
    """warmcal_trace."""
    _fields_ = [
        ("path", ctypes.c_char_p), ("schema", ctypes.c_int),
        ("rank", ctypes.c_int), ("world_size", ctypes.c_int),
        ("model", ctypes.c_char_p), ("source", ctypes.c_char_p), ("gpu_name", ctypes.c_char_p),
        ("gpu_total_bytes", ctypes.c_uint64),
        ("complete", ctypes.c_int),
        ("phases", ctypes.POINTER(CPhase)), ("n_phases", ctypes.c_size_t),
        ("n_events", ctypes.c_size_t),
        ("attrs", ctypes.POINTER(CTraceAttr)), ("n_attrs", ctypes.c_size_t),
    ]


# Every phase field a caller may give, with its default: device free memory
# not sampled unless given; everything else 0.
PHASE_DEFAULTS = {
    "label": "context", "tokens": None, "batch": 1, "begin_ns": 0, "end_ns": 0,
    "live_begin": 0, "live_peak": 0, "live_end": 0,
    "device_free_begin": None, "device_free_end": None,
    "outcome": "ok", "failed_alloc_bytes": 0, "pinned_peak": 0, "anomalies": 0,
    "lower_bound": 0, "reserved_begin": 0, "reserved_end": 0,
}


class TraceError(Exception):
    """A trace could not be written or read. code is the C library's code
    (warmcal/error.h); the message names the file and the field."""

    def __init__(self, message, code=E_INVAL):
        super().__init__(message)
        self.code = code


_lib = None


def _load():
    global _lib
    if _lib is None:
        lib, _ = _libfind.load("trace library", LIB_ENV, LIB_BASE, "profiler",
                               "warmcal_trace_writer_open")
        p, err_p = ctypes.c_void_p, ctypes.POINTER(CError)
        protos = {
            "warmcal_trace_writer_open": (ctypes.c_int, [ctypes.POINTER(p), ctypes.c_char_p,
                                                         ctypes.POINTER(CTraceInfo), ctypes.c_int,
                                                         err_p]),
            "warmcal_trace_writer_add_phases": (ctypes.c_int, [p, ctypes.POINTER(CPhase),
                                                               ctypes.c_size_t, err_p]),
            "warmcal_trace_writer_close": (ctypes.c_int, [p, err_p]),
            "warmcal_trace_writer_rename": (ctypes.c_int, [p, ctypes.c_char_p, err_p]),
            "warmcal_trace_writer_set_attr_string": (ctypes.c_int, [p, ctypes.c_char_p,
                                                                    ctypes.c_char_p, err_p]),
            "warmcal_trace_writer_set_attr_u64": (ctypes.c_int, [p, ctypes.c_char_p,
                                                                 ctypes.c_uint64, err_p]),
            "warmcal_trace_read": (ctypes.c_int, [ctypes.c_char_p, ctypes.POINTER(
                ctypes.POINTER(CTrace)), err_p]),
            "warmcal_trace_free": (None, [ctypes.POINTER(CTrace)]),
            "warmcal_error_format": (ctypes.c_char_p, [err_p, ctypes.c_char_p, ctypes.c_size_t]),
        }
        for name, (res, args) in protos.items():
            f = getattr(lib, name)
            f.restype, f.argtypes = res, args
        _lib = lib
    return _lib


def load():
    """The loaded library; raises warmcal._libfind.LibraryNotFound (an
    ImportError) naming every place tried."""
    return _load()


def _fail(lib, rc, err):
    buf = ctypes.create_string_buffer(_SOURCE_LEN + _WHERE_LEN + _TEXT_LEN + 64)
    lib.warmcal_error_format(ctypes.byref(err), buf, len(buf))
    return TraceError(buf.value.decode("utf-8", "replace") or "error %d" % rc, rc)


def _text(value):
    return None if value is None else str(value).encode("utf-8", "surrogateescape")


def _u64(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
        raise TraceError("phase field %s: expected an integer in 0..2^64-1, found %r"
                         % (name, value))
    return value


def to_cphase(fields):
    """A CPhase from a dict of phase fields (PHASE_DEFAULTS names; tokens
    required). Raises TraceError naming an unknown or ill-typed field."""
    unknown = sorted(set(fields) - set(PHASE_DEFAULTS))
    if unknown:
        raise TraceError("phase field %s: unknown (known: %s)"
                         % (unknown[0], ", ".join(PHASE_DEFAULTS)))
    f = dict(PHASE_DEFAULTS)
    f.update(fields)
    c = CPhase()
    label = _text(f["label"])
    if len(label) >= LABEL_LEN:
        raise TraceError("phase field label: expected at most %d bytes, found %r"
                         % (LABEL_LEN - 1, f["label"]))
    c.label = label
    outcome = f["outcome"]
    if isinstance(outcome, str):
        if outcome not in OUTCOMES:
            raise TraceError("phase field outcome: expected ok, oom or aborted, found %r"
                             % outcome)
        outcome = OUTCOMES[outcome]
    if f["tokens"] is None:
        raise TraceError("phase field tokens: missing")
    for name in ("device_free_begin", "device_free_end"):
        if f[name] is None:
            f[name] = FREE_UNKNOWN
    for name in PHASE_DEFAULTS:
        if name in ("label", "outcome"):
            continue
        setattr(c, name, _u64(name, f[name]))
    if outcome not in OUTCOME_NAMES:
        raise TraceError("phase field outcome: expected 0, 1 or 2, found %r" % outcome)
    c.outcome = outcome
    return c


def from_cphase(c):
    """The dict of a CPhase (outcome by name, free memory None when not
    sampled)."""
    out = {name: getattr(c, name) for name, _ in CPhase._fields_}
    out["label"] = c.label.decode("utf-8", "replace")
    out["outcome"] = OUTCOME_NAMES.get(c.outcome, str(c.outcome))
    for name in ("device_free_begin", "device_free_end"):
        if out[name] == FREE_UNKNOWN:
            out[name] = None
    return out


class TraceWriter:
    """One trace file being written: created (truncated) at open with
    complete = 0; each add_phase/add_phases call appends rows and flushes the
    file, so a process that dies keeps every phase written before; close()
    sets complete = 1. Not thread-safe."""

    def __init__(self, path, *, rank, world_size, model, source, gpu_name,
                 gpu_total_bytes=0, tp=0, pp=0, host=None, start_time=None,
                 tool_version=None, driver_version=None, cuda_version=None, with_events=False):
        self._lib = _load()
        self._h = ctypes.c_void_p()
        self.path = str(path)
        keep = [_text(v) for v in (model, source, gpu_name, host, start_time, tool_version,
                                   driver_version, cuda_version)]
        info = CTraceInfo(rank, world_size, *keep[:3], _u64("gpu_total_bytes", gpu_total_bytes),
                          tp, pp, *keep[3:])
        err = CError()
        rc = self._lib.warmcal_trace_writer_open(ctypes.byref(self._h), _text(self.path),
                                                 ctypes.byref(info), int(bool(with_events)),
                                                 ctypes.byref(err))
        if rc:
            self._h = None
            raise _fail(self._lib, rc, err)

    def _check_open(self):
        if not self._h:
            raise TraceError("%s: the trace writer is closed" % self.path)

    def set_attr(self, name, value):
        """A root attribute beyond the run description: str -> UTF-8 string,
        int -> unsigned 64-bit integer."""
        self._check_open()
        err = CError()
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TraceError("%s: attribute %s: expected a string or an integer, found %r"
                             % (self.path, name, value))
        if isinstance(value, int):
            rc = self._lib.warmcal_trace_writer_set_attr_u64(self._h, _text(name),
                                                             _u64(name, value), ctypes.byref(err))
        else:
            rc = self._lib.warmcal_trace_writer_set_attr_string(self._h, _text(name),
                                                                _text(value), ctypes.byref(err))
        if rc:
            raise _fail(self._lib, rc, err)

    def add_phase(self, **fields):
        """Append one phase (fields as in PHASE_DEFAULTS) and flush."""
        self.add_phases([fields])

    def add_phases(self, phases):
        """Append many phases (dicts) with one flush; every row is checked
        before any is written."""
        self._check_open()
        rows = [to_cphase(p) for p in phases]
        arr = (CPhase * max(len(rows), 1))(*rows)
        err = CError()
        rc = self._lib.warmcal_trace_writer_add_phases(self._h, arr, len(rows), ctypes.byref(err))
        if rc:
            raise _fail(self._lib, rc, err)

    def rename(self, path):
        """Move the open trace to path (same file system; replaces what is
        there); the writer goes on writing it."""
        self._check_open()
        err = CError()
        rc = self._lib.warmcal_trace_writer_rename(self._h, _text(path), ctypes.byref(err))
        if rc:
            raise _fail(self._lib, rc, err)
        self.path = str(path)

    def close(self):
        """Mark the trace complete and close it (the handle is released even
        when this fails). A second close does nothing."""
        if not self._h:
            return
        h, self._h = self._h, None
        err = CError()
        rc = self._lib.warmcal_trace_writer_close(h, ctypes.byref(err))
        if rc:
            raise _fail(self._lib, rc, err)

    @property
    def closed(self):
        return not self._h

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        # a writer dropped without close() keeps what it flushed (complete = 0)
        try:
            if self._h:
                self.close()
        except Exception:
            pass


def read(path):
    """Read a trace through the C reader (the same checks every warmcal
    command applies). Returns a dict: path, schema, rank, world_size, model,
    source, gpu_name, gpu_total_bytes, complete (bool), n_events, attrs
    (name -> text, file order) and phases (dicts). Raises TraceError."""
    lib = _load()
    t = ctypes.POINTER(CTrace)()
    err = CError()
    rc = lib.warmcal_trace_read(_text(path), ctypes.byref(t), ctypes.byref(err))
    if rc:
        raise _fail(lib, rc, err)
    try:
        c = t.contents

        def s(b):
            return None if b is None else b.decode("utf-8", "replace")
        return {
            "path": s(c.path), "schema": c.schema, "rank": c.rank, "world_size": c.world_size,
            "model": s(c.model), "source": s(c.source), "gpu_name": s(c.gpu_name),
            "gpu_total_bytes": c.gpu_total_bytes, "complete": bool(c.complete),
            "n_events": c.n_events,
            "attrs": {s(c.attrs[i].name): s(c.attrs[i].value) for i in range(c.n_attrs)},
            "phases": [from_cphase(c.phases[i]) for i in range(c.n_phases)],
        }
    finally:
        lib.warmcal_trace_free(t)
