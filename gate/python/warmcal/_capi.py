"""The C library behind `warmcal`: where it is found, and ctypes mirrors of
warmcal/gate.h (structs field for field, prototypes for every call used).

The library is loaded on first use, not at import, so `import warmcal` works
anywhere (documentation, type checks) and a missing library is reported where
a gate is opened. Nothing here calls MPI: a local gate never needs it.
"""

import ctypes

from . import _libfind

# warmcal/error.h
OK = 0
E_INVAL = -1
E_NOMEM = -2
E_IO = -3
E_FORMAT = -4
E_FIELD = -5
E_STATE = -6
E_OOM = -7
E_TIMEOUT = -8
E_MISMATCH = -9
E_UNSUPPORTED = -10
E_RANGE = -11
E_OVERFLOW = -12
E_CANCELED = -13

# warmcal/gate.h enums
PROBE_CUDA, PROBE_VALUE, PROBE_CALLBACK, PROBE_SIMULATED = 0, 1, 2, 3
NEED_TABLE, NEED_CONSTANT = 0, 1
# warmcal/table.h warmcal_above_policy
ABOVE_REFUSE, ABOVE_EXTRAPOLATE = 0, 1
REASON_RUN = 0
REASON_LOW_MEMORY = 1
REASON_INVALID_BATCH = 2
REASON_OUT_OF_RANGE = 3
REASON_NO_ESTIMATE = 4
REASON_ESTIMATE_TOO_LARGE = 5

LIB_ENV = "WARMCAL_GATE_LIB"
LIB_BASE = "warmcal-gate"  # libwarmcal-gate.so.0.MINOR: what the dynamic loader looks for

FREE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64))


class Options(ctypes.Structure):
    """warmcal_gate_options (C enums are ints)."""
    _fields_ = [
        ("reserve_bytes", ctypes.c_uint64),
        ("deadline_s", ctypes.c_double),
        ("probe", ctypes.c_int),
        ("free_bytes", ctypes.c_uint64),
        ("free_fn", FREE_FN),
        ("free_user", ctypes.c_void_p),
        ("above_range", ctypes.c_int),
        ("allow_config_mismatch", ctypes.c_int),
        ("need_policy", ctypes.c_int),
        ("constant_bytes_per_token", ctypes.c_uint64),
        ("constant_min_tokens", ctypes.c_uint64),
    ]


class Shape(ctypes.Structure):
    """warmcal_shape."""
    _fields_ = [
        ("tokens", ctypes.c_uint64),
        ("batch", ctypes.c_uint32),
        ("label", ctypes.c_char_p),
        ("batch_valid", ctypes.c_int),
    ]


DECISION_TEXT_LEN = 192


class CDecision(ctypes.Structure):
    """warmcal_decision."""
    _fields_ = [
        ("run", ctypes.c_int),
        ("reason", ctypes.c_int),
        ("blocking_rank", ctypes.c_int),
        ("short_bytes", ctypes.c_uint64),
        ("min_headroom", ctypes.c_int64),
        ("text", ctypes.c_char * DECISION_TEXT_LEN),
    ]


LibraryNotFound = _libfind.LibraryNotFound

_lib = None
_lib_path = None


def load():
    """The loaded library with prototypes set; raises LibraryNotFound, whose
    message names every place tried and why each failed."""
    global _lib, _lib_path
    if _lib is None:
        lib, path = _libfind.load("gate library", LIB_ENV, LIB_BASE, "gate",
                                  "warmcal_gate_close")
        _declare(lib)
        _lib, _lib_path = lib, path
    return _lib


def library_path():
    """The file the library was loaded from (loading it first); raises
    LibraryNotFound."""
    load()
    return _lib_path


def _declare(lib):
    gate_p = ctypes.c_void_p
    gate_pp = ctypes.POINTER(ctypes.c_void_p)
    opts_p = ctypes.POINTER(Options)
    shapes_p = ctypes.POINTER(Shape)
    dec_p = ctypes.POINTER(CDecision)
    i64_p = ctypes.POINTER(ctypes.c_int64)
    u64_p = ctypes.POINTER(ctypes.c_uint64)
    int_p = ctypes.POINTER(ctypes.c_int)
    protos = {
        "warmcal_gate_options_init": (None, [opts_p]),
        # MPI_Fint is a C int in Open MPI and MPICH alike
        "warmcal_gate_open_f": (ctypes.c_int, [gate_pp, ctypes.c_char_p, ctypes.c_int, opts_p]),
        "warmcal_gate_open_failed_f": (ctypes.c_int, [gate_pp, ctypes.c_int, ctypes.c_int,
                                                      ctypes.c_char_p, ctypes.c_double]),
        "warmcal_gate_open_local": (ctypes.c_int, [gate_pp, ctypes.c_char_p, ctypes.c_int,
                                                   ctypes.c_int, opts_p]),
        "warmcal_gate_decide": (ctypes.c_int, [gate_p, shapes_p, ctypes.c_size_t, dec_p]),
        "warmcal_gate_encoded_count": (ctypes.c_size_t, [ctypes.c_size_t]),
        "warmcal_gate_encode": (ctypes.c_int, [gate_p, shapes_p, ctypes.c_size_t, i64_p]),
        "warmcal_gate_decode": (ctypes.c_int, [gate_p, i64_p, ctypes.c_size_t, dec_p]),
        "warmcal_gate_max_tokens": (ctypes.c_int, [gate_p, ctypes.c_char_p, ctypes.c_uint64,
                                                   u64_p, int_p]),
        "warmcal_gate_max_tokens_encoded_count": (ctypes.c_size_t, []),
        "warmcal_gate_max_tokens_encode": (ctypes.c_int, [gate_p, ctypes.c_char_p,
                                                          ctypes.c_uint64, i64_p]),
        "warmcal_gate_max_tokens_decode": (ctypes.c_int, [gate_p, i64_p, u64_p, int_p]),
        "warmcal_gate_last_error": (ctypes.c_char_p, [gate_p]),
        "warmcal_gate_last_code": (ctypes.c_int, [gate_p]),
        "warmcal_gate_close": (None, [gate_p]),
        "warmcal_gate_probe_free": (ctypes.c_int, [gate_p, u64_p]),
        "warmcal_reason_name": (ctypes.c_char_p, [ctypes.c_int]),
        "warmcal_strerror": (ctypes.c_char_p, [ctypes.c_int]),
    }
    for name, (res, args) in protos.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            raise LibraryNotFound("%s does not export %s: not a warmcal gate library of this "
                                  "version" % (lib._name, name)) from None
        fn.restype = res
        fn.argtypes = args


def text(b):
    """A C string from the library as text (never fails on odd bytes)."""
    return b.decode("utf-8", "replace") if b else ""


if ctypes.sizeof(ctypes.c_void_p) != 8:  # pragma: no cover
    # the library is built and tested for 64-bit platforms only
    raise ImportError("warmcal needs a 64-bit platform")
