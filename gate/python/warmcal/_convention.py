"""The conventions a profiled program shares with warmcal's profiler, from
their one definition in C (libwarmcal-convention.so: warmcal/phase_message.h
and warmcal/launcher.h): the NVTX phase message "warmcal tokens=N batch=B
label=L", and the launcher variables that give a process its rank and world
size. The library holds nothing else (no HDF5), so a server that keeps its
phase marks in production loads only this; it is loaded on first use.
"""

import ctypes
import os

from . import _libfind

LIB_ENV = "WARMCAL_CONVENTION_LIB"
LIB_BASE = "warmcal-convention"

LABEL_LEN = 32              # WARMCAL_LABEL_LEN
TOKENS_MAX = 1 << 40        # WARMCAL_TRACE_TOKENS_MAX
BATCH_MAX = (1 << 32) - 1
# warmcal_phase_message_result
MSG_PHASE, MSG_NOT_OURS = 1, 0
MSG_BAD_TOKENS, MSG_BAD_BATCH, MSG_BAD_LABEL = -1, -2, -3
E_FIELD = -5                # warmcal/error.h


class CPhaseMessage(ctypes.Structure):
    """warmcal_phase_message."""
    _fields_ = [("tokens", ctypes.c_uint64), ("batch", ctypes.c_uint32),
                ("label", ctypes.c_char * LABEL_LEN)]


GETENV_FN = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)

_lib = None


def load():
    """The loaded library; raises warmcal._libfind.LibraryNotFound (an
    ImportError) naming every place tried."""
    global _lib
    if _lib is None:
        lib, _ = _libfind.load("convention library", LIB_ENV, LIB_BASE, "profiler",
                               "warmcal_phase_message_parse")
        msg_p = ctypes.POINTER(CPhaseMessage)
        protos = {
            "warmcal_phase_message_parse": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_size_t,
                                                           msg_p]),
            "warmcal_phase_check": (ctypes.c_int, [ctypes.c_char_p, ctypes.c_uint64,
                                                   ctypes.c_uint32, msg_p]),
            "warmcal_phase_message_error": (ctypes.c_char_p, [ctypes.c_int]),
            "warmcal_launcher_rank": (ctypes.c_int, [GETENV_FN, ctypes.c_void_p,
                                                     ctypes.POINTER(ctypes.c_int),
                                                     ctypes.POINTER(ctypes.c_int),
                                                     ctypes.POINTER(ctypes.c_char_p),
                                                     ctypes.c_char_p, ctypes.c_size_t]),
        }
        for name, (res, args) in protos.items():
            f = getattr(lib, name)
            f.restype, f.argtypes = res, args
        _lib = lib
    return _lib


def _message_dict(m):
    return {"tokens": m.tokens, "batch": m.batch, "label": m.label.decode("utf-8")}


def parse_phase_message(text):
    """Parse an NVTX message by the convention. Returns None for a message
    that is not warmcal's, a dict (tokens, batch, label) for a phase; raises
    ValueError with the reason for a malformed one."""
    lib = load()
    raw = text.encode("utf-8", "surrogatepass")
    m = CPhaseMessage()
    r = lib.warmcal_phase_message_parse(raw, len(raw), ctypes.byref(m))
    if r == MSG_NOT_OURS:
        return None
    if r != MSG_PHASE:
        raise ValueError(lib.warmcal_phase_message_error(r).decode())
    return _message_dict(m)


def check_phase(label, tokens, batch):
    """Check a phase by the convention's rules: tokens 1..2^40, batch
    1..2^32-1, label (None: the default) 1..31 bytes of UTF-8 with no space
    or control character. Returns the dict (tokens, batch, label); raises
    ValueError with the reason."""
    lib = load()
    if not 1 <= tokens <= TOKENS_MAX:
        r = MSG_BAD_TOKENS        # also too large for the C call's integer
    elif not 1 <= batch <= BATCH_MAX:
        r = MSG_BAD_BATCH
    else:
        raw = None if label is None else label.encode("utf-8", "surrogatepass")
        if raw is not None and b"\0" in raw:
            r = MSG_BAD_LABEL     # C would stop at the NUL
        else:
            m = CPhaseMessage()
            r = lib.warmcal_phase_check(raw, tokens, batch, ctypes.byref(m))
            if r == MSG_PHASE:
                return _message_dict(m)
    raise ValueError(lib.warmcal_phase_message_error(r).decode())


def launcher_rank(environ=None):
    """(rank, world_size, variable, note) from the launcher's variables in
    environ (default: this process's environment), by warmcal/launcher.h's
    rule; with none set: (0, 1, "none", None). Raises ValueError naming the
    variable for a value that is not a strict decimal number in range."""
    lib = load()
    env = os.environ if environ is None else environ
    keep = []     # the values handed to C stay alive until the call returns

    def get(_user, name):
        value = env.get(name.decode())
        if value is None:
            return None
        buf = ctypes.create_string_buffer(value.encode("utf-8", "surrogateescape"))
        keep.append(buf)
        return ctypes.addressof(buf)

    rank, size, source = ctypes.c_int(), ctypes.c_int(), ctypes.c_char_p()
    msg = ctypes.create_string_buffer(256)
    rc = lib.warmcal_launcher_rank(GETENV_FN(get), None, ctypes.byref(rank), ctypes.byref(size),
                                   ctypes.byref(source), msg, len(msg))
    text = msg.value.decode("utf-8", "replace")
    if rc:
        raise ValueError(text)
    return rank.value, size.value, source.value.decode(), text or None
