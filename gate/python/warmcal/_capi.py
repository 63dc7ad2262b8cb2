"""The C library behind `warmcal`: where it is found, and ctypes mirrors of
warmcal/gate.h (structs field for field, prototypes for every call used).

The library is loaded on first use, not at import, so `import warmcal` works
anywhere (documentation, type checks) and a missing library is reported where
a gate is opened. Nothing here calls MPI: a local gate never needs it.
"""

import ctypes
import os

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
LIB_NAME = "libwarmcal-gate.so"  # the development symlink, installed with the headers
LIB_SONAME = LIB_NAME + ".0"      # the run-time name, what the dynamic loader looks for

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


class LibraryNotFound(ImportError):
    """Raised where the C library cannot be found or loaded (the Gate
    constructor re-raises it as a GateError that is also an ImportError)."""


def _candidates():
    """Where the library may be, in order, with why each place is tried. A
    name without a folder is left to the dynamic loader."""
    env = os.environ.get(LIB_ENV)
    if env:
        # an explicit choice is the only candidate: never fall back silently
        return [(env, "$" + LIB_ENV)]
    here = os.path.dirname(os.path.abspath(__file__))
    # The SONAME before the development symlink everywhere: a run-time
    # install (a distribution's library package) has only the SONAME.
    out = []
    # installed layout: the library copied into (or beside) the package
    for d in (here, os.path.dirname(here)):
        for name in (LIB_SONAME, LIB_NAME):
            out.append((os.path.join(d, name), "next to the package"))
    # source tree: <repo>/gate/python/warmcal -> <repo>/build/gate, the build
    # that matches these modules when they are imported from the source tree
    repo = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    for name in (LIB_SONAME, LIB_NAME):
        out.append((os.path.join(repo, "build", "gate", name), "the source tree's build folder"))
    # an installed library, where ctypes.util.find_library("warmcal-gate")
    # and LD_LIBRARY_PATH lead: the loader's own search (LD_LIBRARY_PATH,
    # the ld.so cache, the system folders)
    search = "the dynamic loader, LD_LIBRARY_PATH=%s" % (os.environ.get("LD_LIBRARY_PATH")
                                                          or "(unset)")
    for name in (LIB_SONAME, LIB_NAME):
        out.append((name, search))
    return out


def _loader_would_open(name):
    """The file the dynamic loader would take for a bare name from
    LD_LIBRARY_PATH, which it searches first; None when it is elsewhere."""
    for d in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
        path = os.path.join(d or ".", name)
        if os.path.isfile(path):
            return path
    return None


def _instrumented_without_runtime(path):
    """Name the sanitizer runtime a library needs but this process lacks.

    An AddressSanitizer-instrumented library dlopen'ed into a process whose
    first library is not libasan makes the ASan runtime end the process
    ("ASan runtime does not come first in initial library list"), so look
    before loading and say how to preload it instead."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    if b"libasan.so" not in blob:
        return None
    try:
        with open("/proc/self/maps") as f:
            if "libasan.so" in f.read():
                return None
    except OSError:
        return None
    return "libasan"


_lib = None
_lib_path = None


class _DlInfo(ctypes.Structure):
    """Dl_info of <dlfcn.h>."""
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _file_of(lib, fallback):
    """The file the dynamic loader mapped lib from, as it opened it."""
    try:
        dladdr = ctypes.CDLL(None).dladdr
    except (OSError, AttributeError):
        return fallback
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    dladdr.restype = ctypes.c_int
    info = _DlInfo()
    if dladdr(ctypes.cast(lib.warmcal_gate_close, ctypes.c_void_p), ctypes.byref(info)) \
            and info.dli_fname:
        return os.fsdecode(info.dli_fname)
    return fallback


def load():
    """The loaded library with prototypes set; raises LibraryNotFound, whose
    message names every place tried and why each failed."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    tried = []
    for path, why in _candidates():
        by_loader = os.sep not in path
        if not by_loader and not os.path.exists(path):
            tried.append("%s (%s): no such file" % (path, why))
            continue
        file = _loader_would_open(path) if by_loader else path
        runtime = file and _instrumented_without_runtime(file)
        if runtime:
            raise LibraryNotFound(
                "%s was built with AddressSanitizer; load it into Python only with the "
                "runtime preloaded: LD_PRELOAD=$(cc -print-file-name=%s.so) "
                "ASAN_OPTIONS=detect_leaks=0 python3 ..." % (file, runtime))
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s): %s" % (path, why, e))
            continue
        _declare(lib)
        _lib, _lib_path = lib, _file_of(lib, path)
        return lib
    raise LibraryNotFound(
        "cannot load the warmcal gate library %s; install it where the dynamic loader finds "
        "it (or add its folder to LD_LIBRARY_PATH), or set %s to its full path (a build's "
        "<build>/gate/%s). Tried: %s" % (LIB_SONAME, LIB_ENV, LIB_NAME, "; ".join(tried)))


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
        "warmcal_gate_last_error": (ctypes.c_char_p, [gate_p]),
        "warmcal_gate_last_code": (ctypes.c_int, [gate_p]),
        "warmcal_gate_close": (None, [gate_p]),
        "warmcal_gate_probe_free": (ctypes.c_int, [gate_p, ctypes.POINTER(ctypes.c_uint64)]),
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
