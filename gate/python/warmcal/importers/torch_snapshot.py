"""Phases from PyTorch memory snapshots: the pickles that
torch.cuda.memory._dump_snapshot writes (pickle.dump of the dict
torch.cuda.memory._snapshot() returns), which people open in PyTorch's memory
viewer.

A snapshot is someone else's file, so it is read as plain data only: the
opcode stream is checked against an allow-list before anything is built, and
the unpickler refuses every class or function lookup anyway. The allocator's
history (device_traces) is then replayed to give each phase's peak; the
mapping is written out in docs/formats.md ("PyTorch memory snapshots").
"""

from __future__ import annotations  # annotations stay strings: no cost at import

import bisect
import io
import os
import pickle
import pickletools
import stat
import sys
from typing import TYPE_CHECKING

from ._common import InputError, check_label, parse_phase_message, DEFAULT_LABEL
from ._progress import Silent

if TYPE_CHECKING:  # names for the annotations only, never imported at run time
    from collections.abc import Mapping, Sequence
    from typing import Any

    from ._progress import Progress

PRODUCER: str = "torch.cuda.memory._dump_snapshot"
# PyTorch shares frame lists and frame dicts among entries, so a history
# entry costs tens of bytes: a snapshot of a ring of max_entries=100000 is
# tens of MB. 512 MiB leaves room for a ring ten times that with many
# distinct deep stacks, while what the built objects take stays within a
# few GB (OBJECTS_PER_LIMIT_BYTE below). --max-input-bytes raises both.
DEFAULT_MAX_INPUT_BYTES: int = 512 << 20

# Budgets counted while the opcode stream is scanned, before anything is
# built. Each opcode that makes a new object (a container, an integer, a
# string...) costs 1; a Python object takes 30 to 100 bytes, an opcode 1 to
# 10. Snapshots written by pickle.dump make about one object per 10 to 17
# bytes; a stream of one-byte empty dicts makes one per byte and takes ~70
# times its size in memory. Refused: more than one object per
# MIN_BYTES_PER_OBJECT bytes of the file (beyond a small allowance), or
# more than one per OBJECT_LIMIT_BYTES bytes of --max-input-bytes overall
# (32 million objects, about 2 to 3 GB, at the default).
MIN_BYTES_PER_OBJECT: int = 4
OBJECT_ALLOWANCE: int = 1 << 16
OBJECT_LIMIT_BYTES: int = 16
# Opcodes that make a new object in memory. BININT1 (0..255), NONE,
# NEWTRUE, NEWFALSE, EMPTY_TUPLE give shared singletons; GET and DUP
# reference an object already counted.
NEW_OBJECT_OPCODES: frozenset[str] = frozenset("""
    EMPTY_DICT DICT EMPTY_LIST LIST TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_SET FROZENSET
    INT BININT BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT
    STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8
    BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8
""".split())
# A snapshot's numbers fit in 64 bits; a wider integer (LONG1/LONG4 take up
# to 2^32 bytes) only makes work for whoever prints it.
MAX_INTEGER_BYTES: int = 16
# Real snapshots nest about 6 levels (snapshot, device_traces, a device's
# list, an entry, frames, a frame); 64 is far above that and keeps every
# path short.
MAX_DEPTH: int = 64

# WARMCAL_LOWER_BOUND_DROPPED (profiler/include/warmcal/spool.h): records were
# lost, here from the allocator's history ring, so the peak may be higher.
LOWER_BOUND_HISTORY_LOST: int = 1
# WARMCAL_LOWER_BOUND_ABORTED: the phase never ended before the snapshot.
LOWER_BOUND_NEVER_ENDED: int = 8

# Opcodes that only build plain data (numbers, strings, containers) or manage
# the stack and memo. Everything else names a global (GLOBAL, STACK_GLOBAL,
# INST), calls one (REDUCE, OBJ, NEWOBJ, NEWOBJ_EX, BUILD), reaches the
# extension registry (EXT1/2/4), asks the caller for objects (PERSID,
# BINPERSID) or for buffers (NEXT_BUFFER, READONLY_BUFFER): refused. An
# allow-list, so an opcode added to a future protocol is refused too.
SAFE_OPCODES: frozenset[str] = frozenset("""
    PROTO FRAME STOP MARK POP POP_MARK DUP
    PUT BINPUT LONG_BINPUT MEMOIZE GET BINGET LONG_BINGET
    NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT
    STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8
    BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8
    EMPTY_DICT DICT SETITEM SETITEMS EMPTY_LIST LIST APPEND APPENDS
    EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_SET ADDITEMS FROZENSET
""".split())

# What a snapshot may hold once loaded: JSON-like data plus tuples
# (segment_pool_id is a tuple of two integers).
PLAIN_TYPES: tuple[type, ...] = (dict, list, tuple, str, int, float, bool, type(None))

# Actions that change allocated or reserved bytes; others ("snapshot",
# "annotate", actions of later versions) are read past.
MEMORY_ACTIONS: tuple[str, ...] = ("alloc", "free_requested", "free_completed", "segment_alloc",
                                   "segment_free", "segment_map", "segment_unmap")
ACTIVE_STATES: tuple[str, ...] = ("active_allocated", "active_pending_free", "active_awaiting_free")


class _NoGlobals(pickle.Unpickler):
    """An unpickler that can never obtain a class or a function. The opcode
    scan already refused such pickles; this is the second lock."""

    def __init__(self, data, path):
        super().__init__(io.BytesIO(data))
        self._path = path

    def find_class(self, module, name):
        raise InputError("%s: refused: the pickle asks for %s.%s (a snapshot holds plain data "
                         "only; nothing was run)" % (self._path, module, name))

    def persistent_load(self, pid):
        raise InputError("%s: refused: the pickle asks for a persistent object (a snapshot "
                         "holds plain data only; nothing was run)" % self._path)


def _scan_opcodes(data, path, max_bytes=DEFAULT_MAX_INPUT_BYTES):
    """Refuse any opcode outside SAFE_OPCODES, naming it, its byte offset and
    the module.name it asks for where it names one. pickletools parses the
    stream without building or running anything; a stream it cannot parse
    (truncated, an unknown opcode) is refused here too. The objects the
    stream would build are counted against the budgets above, so a small
    file cannot make the unpickler take many times its size in memory."""
    recent_strings = []  # the operands STACK_GLOBAL would take
    memo_size = 0
    objects = 0
    object_budget = min(len(data) // MIN_BYTES_PER_OBJECT + OBJECT_ALLOWANCE,
                        max_bytes // OBJECT_LIMIT_BYTES + OBJECT_ALLOWANCE)
    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(data)):
            if op.name in SAFE_OPCODES:
                if op.name in NEW_OBJECT_OPCODES:
                    objects += 1
                    if objects > object_budget:
                        raise InputError(
                            "%s: refused: more than %d objects by byte %d of %d (a snapshot "
                            "makes about one per 10 bytes; the limit is one per %d bytes, and "
                            "one per %d bytes of --max-input-bytes): nothing was built"
                            % (path, object_budget, pos, len(data), MIN_BYTES_PER_OBJECT,
                               OBJECT_LIMIT_BYTES))
                if op.name in ("INT", "LONG", "LONG1", "LONG4") and \
                        (arg.bit_length() + 8) // 8 > MAX_INTEGER_BYTES:
                    raise InputError("%s: refused: an integer of %d bits at byte %d (a snapshot's "
                                     "numbers fit in 64 bits)" % (path, arg.bit_length(), pos))
                if isinstance(arg, str):
                    recent_strings = (recent_strings + [arg])[-2:]
                if op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    # Pickler numbers memo slots 0, 1, 2, ...; CPython's
                    # unpickler sizes its memo array by the largest index,
                    # so one far beyond the count would take all memory.
                    if arg > memo_size:
                        raise InputError("%s: malformed pickle: memo index %d at byte %d, "
                                         "beyond the %d entries so far"
                                         % (path, arg, pos, memo_size))
                    memo_size = max(memo_size, arg + 1)
                elif op.name == "MEMOIZE":
                    memo_size += 1
                continue
            what = op.name
            if op.name in ("GLOBAL", "INST") and isinstance(arg, str):
                what += " asking for %s" % arg.replace(" ", ".", 1)
            elif op.name == "STACK_GLOBAL" and len(recent_strings) == 2:
                what += " asking for %s.%s" % tuple(recent_strings)
            raise InputError("%s: refused: opcode %s at byte %d (a snapshot holds plain data "
                             "only; nothing was run)" % (path, what, pos))
    except InputError:
        raise
    except ValueError as e:
        if "integer string conversion" in str(e):  # a decimal INT/LONG operand
            raise InputError("%s: refused: an integer of more than %d decimal digits (a "
                             "snapshot's numbers fit in 64 bits)"
                             % (path, sys.get_int_max_str_digits()))
        raise InputError("%s: not a complete pickle: %s" % (path, _reason(e)))
    except Exception as e:  # the parser runs no code: any fault is the file's
        raise InputError("%s: not a complete pickle: %s" % (path, _reason(e)))


def _reason(e):
    text = str(e).strip()
    if "not enough data" in text or "exhausted" in text or "expected" in text and "bytes" in text:
        return "truncated (%s)" % text
    return text or type(e).__name__


def _check_plain(obj, path):
    """Refuse anything but PLAIN_TYPES anywhere in the loaded object, naming
    the path to it, and containers nested deeper than MAX_DEPTH. Iterative,
    and each container is visited once: pickles share objects through the
    memo (PyTorch shares frame lists and frame dicts among entries), and a
    hostile one may nest deeper than Python's recursion limit. A container
    is reached through a (parent link, key) link; the path text is built
    only for an error, so the walk stays linear in the object's size."""
    if type(obj) not in PLAIN_TYPES:
        _plain_error(path, None, obj)
    seen = set()
    # (container, link to it, depth); a scalar at the top has nothing inside
    stack = [(obj, None, 0)] if type(obj) in (dict, list, tuple) else []
    while stack:
        value, link, depth = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if depth >= MAX_DEPTH:
            raise InputError("%s: %s: nested deeper than %d levels (a snapshot nests about 6)"
                             % (path, _link_path(link), MAX_DEPTH))
        if isinstance(value, dict):
            for k, v in value.items():
                if type(k) not in (str, int):
                    raise InputError("%s: %s: expected string keys, found a %s key"
                                     % (path, _link_path(link), type(k).__name__))
                _check_child(path, stack, link, k, v, depth)
        else:
            for i, v in enumerate(value):
                _check_child(path, stack, link, i, v, depth)


def _check_child(path, stack, link, key, value, depth):
    kind = type(value)
    if kind in (dict, list, tuple):
        stack.append((value, (link, key), depth + 1))
    elif kind not in PLAIN_TYPES:
        _plain_error(path, (link, key), value)


def _plain_error(path, link, value):
    raise InputError("%s: %s: expected plain data (dict, list, string, number, boolean, None), "
                     "found %s" % (path, _link_path(link), type(value).__name__))


def _link_path(link):
    """'a.b[3].c' from the chain of (parent link, key): string keys are
    dotted, integer positions bracketed, as the field errors name them."""
    keys = []
    while link is not None:
        link, key = link
        keys.append(key)
    keys.reverse()
    if len(keys) > 12:  # a path 64 levels deep says no more than its ends
        keys = keys[:6] + ["...(%d levels)..." % (len(keys) - 9)] + keys[-3:]
    text = ""
    for key in keys:
        if isinstance(key, int):
            text += "[%d]" % key
        else:
            text += ("." if text else "") + str(key)
    return text or "top level"


def load(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_INPUT_BYTES) -> Any:
    """The snapshot at path as plain data, or InputError."""
    # Any: a dict in every snapshot worth reading, but the file decides, and
    # _parse_snapshot names what is wrong with it
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise InputError("%s: not a regular file" % path)
            if st.st_size > max_bytes:
                raise InputError("%s: %d bytes, above the limit of %d (--max-input-bytes)"
                                 % (path, st.st_size, max_bytes))
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise InputError("%s: %s" % (path, e.strerror))
    if len(data) > max_bytes:
        raise InputError("%s: above the limit of %d bytes (--max-input-bytes)" % (path, max_bytes))
    if not data:
        raise InputError("%s: empty file (expected a pickle from %s)" % (path, PRODUCER))
    _scan_opcodes(data, path, max_bytes)
    try:
        obj = _NoGlobals(data, path).load()
    except InputError:
        raise
    except Exception as e:  # no foreign code can run (no globals): the file's fault
        raise InputError("%s: not a readable pickle: %s" % (path, _reason(e)))
    _check_plain(obj, path)
    return obj


# --- field checks: every field used, with the path to it ----------------------

class _Fields:
    def __init__(self, path):
        self.path = path

    def fail(self, where, expected, value):
        found = "missing" if value is _MISSING else "found %s" % _describe(value)
        raise InputError("%s: %s: expected %s, %s" % (self.path, where, expected, found))

    def get(self, d, key, where):
        return d.get(key, _MISSING) if isinstance(d, dict) else _MISSING

    def integer(self, d, key, where, lo=None, hi=None, optional=False):
        v = self.get(d, key, where)
        if v is _MISSING and optional:
            return None
        if type(v) is not int or (lo is not None and v < lo) or (hi is not None and v > hi):
            bounds = ("an integer" if lo is None else
                      "an integer >= %d" % lo if hi is None else "an integer in %d..%d" % (lo, hi))
            self.fail("%s.%s" % (where, key), bounds, v)
        return v

    def text(self, d, key, where, optional=False):
        v = self.get(d, key, where)
        if v is _MISSING and optional:
            return None
        if type(v) is not str:
            self.fail("%s.%s" % (where, key), "a string", v)
        return v

    def seq(self, v, where):
        if type(v) not in (list, tuple):
            self.fail(where, "a list", v)
        return v

    def mapping(self, v, where):
        if type(v) is not dict:
            self.fail(where, "a dict", v)
        return v


class _Missing:
    pass


_MISSING = _Missing()


def _describe(v):
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "the integer %d" % v
    return {str: "a string", float: "a number with a fraction", type(None): "None",
            list: "a list", tuple: "a tuple", dict: "a dict"}.get(type(v), type(v).__name__)


SIZE_MAX: int = (1 << 63) - 1


class _Records:
    """PyTorch writes every segment, block, history entry and annotation as
    its own dict. A pickle may reference one object many times through the
    memo, so a file of a few MB could stand for billions of entries; such a
    repeat is refused, which keeps the walk below as long as the objects
    the file really holds (bounded by the opcode scan's budget)."""

    def __init__(self, path):
        self.path = path
        self.first = {}   # id -> (format, arguments) of the first place seen

    def distinct(self, obj, fmt, *args):
        earlier = self.first.setdefault(id(obj), (fmt, args))
        if earlier != (fmt, args):
            raise InputError("%s: %s: the same object as %s (a snapshot writes each record "
                             "once; a pickle that repeats one would multiply its size)"
                             % (self.path, fmt % args, earlier[0] % earlier[1]))


def _parse_snapshot(snap, path, device=None):
    """The fields the replay uses, checked: segments (per device: active
    block bytes, reserved bytes), the chosen device's history (entries),
    annotations. The device is chosen first (choose_device), so only its
    history is read. Returns (device, active, reserved, entries,
    annotations)."""
    f = _Fields(path)
    records = _Records(path)
    if isinstance(snap, (list, tuple)):
        raise InputError("%s: a list of segments without allocation history (what "
                         "torch.cuda.memory_snapshot() returns, and snapshots of torch < 2.0): "
                         "record with torch.cuda.memory._record_memory_history() and dump with "
                         "%s" % (path, PRODUCER))
    f.mapping(snap, "top level")
    if "device_traces" not in snap:
        f.fail("device_traces", "a list of per-device histories (record with "
               "torch.cuda.memory._record_memory_history())", _MISSING)
    segments = f.seq(snap.get("segments", _MISSING), "segments")
    device_traces = f.seq(snap["device_traces"], "device_traces")
    for d, trace in enumerate(device_traces):
        f.seq(trace, "device_traces[%d]" % d)
    device = choose_device(path, device_traces, device)
    active, reserved = {}, {}   # device -> {addr: bytes}, device -> bytes
    for i, seg in enumerate(segments):
        where = "segments[%d]" % i
        f.mapping(seg, where)
        records.distinct(seg, "segments[%d]", i)
        seg_device = f.integer(seg, "device", where, lo=0, optional=True)
        # -1: not said, counts for every device
        seg_device = -1 if seg_device is None else seg_device
        address = f.integer(seg, "address", where)
        total = f.integer(seg, "total_size", where, lo=0, hi=SIZE_MAX)
        reserved[seg_device] = reserved.get(seg_device, 0) + total
        blocks = active.setdefault(seg_device, {})
        # Before 2.1 blocks carry no address: they tile the segment in order
        # (the allocator itself numbers them so).
        offset = address
        for j, block in enumerate(f.seq(seg.get("blocks", _MISSING), where + ".blocks")):
            bwhere = "%s.blocks[%d]" % (where, j)
            f.mapping(block, bwhere)
            records.distinct(block, "segments[%d].blocks[%d]", i, j)
            size = f.integer(block, "size", bwhere, lo=0, hi=SIZE_MAX)
            requested = f.integer(block, "requested_size", bwhere, lo=0, hi=SIZE_MAX,
                                  optional=True)
            baddr = f.integer(block, "address", bwhere, optional=True)
            state = f.text(block, "state", bwhere)
            if state in ACTIVE_STATES:
                # trace entries carry the size asked for: count blocks alike
                blocks[offset if baddr is None else baddr] = size if requested is None \
                    else requested
            offset += size
    entries = []
    for i, e in enumerate(device_traces[device]):
        where = "device_traces[%d][%d]" % (device, i)
        f.mapping(e, where)
        records.distinct(e, "device_traces[%d][%d]", device, i)
        action = f.text(e, "action", where)
        entry = {"action": action, "index": i,
                 "time_us": f.integer(e, "time_us", where, optional=True),
                 "user_metadata": f.text(e, "user_metadata", where, optional=True)}
        if action in MEMORY_ACTIONS:
            entry["addr"] = f.integer(e, "addr", where)
            entry["size"] = f.integer(e, "size", where, lo=0, hi=SIZE_MAX)
        elif action == "oom":
            entry["size"] = f.integer(e, "size", where, lo=0, hi=SIZE_MAX)
            entry["device_free"] = f.integer(e, "device_free", where, lo=0, hi=SIZE_MAX,
                                             optional=True)
        entries.append(entry)
    annotations = []
    if "external_annotations" in snap:
        for i, a in enumerate(f.seq(snap["external_annotations"], "external_annotations")):
            where = "external_annotations[%d]" % i
            f.mapping(a, where)
            records.distinct(a, "external_annotations[%d]", i)
            annotations.append({"where": where, "name": f.text(a, "name", where),
                                "stage": f.text(a, "stage", where),
                                "device": f.integer(a, "device", where, optional=True),
                                "time_us": f.integer(a, "time_us", where, optional=True)})
    return device, active, reserved, entries, annotations


# --- replay -------------------------------------------------------------------

class Replay:
    """One device's history replayed. A block lives from its "alloc" to its
    "free_completed": PyTorch's allocator records "free_requested" when the
    program lets go of a tensor, but a block used by another stream stays
    "active_pending_free" until those streams' events complete, and only
    "free_completed" returns it to the cache for reuse. Until then it still
    occupies the device, so a pass needs it (it counts in the allocator's
    active bytes and in the snapshot's active blocks alike). A history
    without any "free_completed" (skip_actions) ends lives at
    "free_requested" instead, and says so."""

    entries: list[dict[str, Any]]  # as _parse_snapshot checked them
    notes: list[str]               # warnings for stderr and the trace
    end_action: str                # "free_completed", or "free_requested" without any
    inconsistent: int              # entries the snapshot's segments contradict
    pairs_cut: int                 # free_completed entries without their free_requested
    live_start: int                # live bytes before the first entry
    reserved_start: int            # reserved bytes before the first entry
    totals: list[int]              # live bytes after each entry
    reserved: list[int]            # reserved bytes after each entry
    anomalies: list[int]           # anomalies up to and including each entry
    orphan_frees: int              # blocks freed in the history, allocated before it
    orphan_bytes: int              # their bytes

    def __init__(self, entries: list[dict[str, Any]], active_at_snapshot: Mapping[int, int],
                 reserved_at_snapshot: int, path: str | os.PathLike[str], device: int) -> None:
        self.entries = entries
        self.notes = []
        has_completed = any(e["action"] == "free_completed" for e in entries)
        has_requested = any(e["action"] == "free_requested" for e in entries)
        self.end_action = "free_completed" if has_completed or not has_requested \
            else "free_requested"
        if self.end_action == "free_requested":
            self.notes.append("%s: device %d: the history has no free_completed entries; blocks "
                              "end at free_requested" % (path, device))
        self.inconsistent = 0
        self.pairs_cut = 0
        start_live = self._live_before_history(dict(active_at_snapshot), has_completed and
                                               has_requested)
        self.live_start = sum(start_live.values())
        seg_net = 0
        for e in entries:
            if e["action"] in ("segment_alloc", "segment_map"):
                seg_net += e["size"]
            elif e["action"] in ("segment_free", "segment_unmap"):
                seg_net -= e["size"]
        self.reserved_start = reserved_at_snapshot - seg_net
        if self.reserved_start < 0:
            self.notes.append("%s: device %d: the history releases %d bytes of segments more than "
                              "the snapshot's segments explain; reserved bytes start at 0"
                              % (path, device, -self.reserved_start))
            self.reserved_start = 0
        self._forward(start_live)

    def _live_before_history(self, live, check_pairs):
        """Blocks live before the first entry: the snapshot's active blocks
        with the history undone from the end (an allocation undone removes
        its block, a completed free puts it back). Equals the active bytes
        at the snapshot minus the history's net change whenever the history
        is consistent with the segments; entries that contradict it are
        counted in self.inconsistent."""
        for e in reversed(self.entries):
            if e["action"] == "alloc":
                if live.pop(e["addr"], None) is None:
                    self.inconsistent += 1
            elif e["action"] == self.end_action:
                if e["addr"] in live:
                    self.inconsistent += 1
                live[e["addr"]] = e["size"]
        if check_pairs:
            # The allocator records free_requested then, at once or once the
            # streams using the block are done, free_completed: a completion
            # without its request lost the request off the ring's old end.
            requested = set()
            for e in self.entries:
                if e["action"] == "free_requested":
                    requested.add(e["addr"])
                elif e["action"] == "free_completed":
                    if e["addr"] in requested:
                        requested.discard(e["addr"])
                    else:
                        self.pairs_cut += 1
        return live

    def _forward(self, start_live):
        live = dict(start_live)
        total, reserved = sum(live.values()), self.reserved_start
        self.totals, self.reserved, self.anomalies = [], [], []
        self.orphan_frees, self.orphan_bytes = 0, 0
        anomalies = 0
        for e in self.entries:
            a = e["action"]
            if a == "alloc":
                if e["addr"] in live:  # reused while live: the older block is gone
                    anomalies += 1
                    total -= live[e["addr"]]
                live[e["addr"]] = e["size"]
                total += e["size"]
            elif a == self.end_action:
                size = live.pop(e["addr"], None)
                if size is None:
                    anomalies += 1
                else:
                    total -= size
                    if e["addr"] in start_live and start_live[e["addr"]] is not None:
                        self.orphan_frees += 1
                        self.orphan_bytes += size
                        start_live[e["addr"]] = None  # counted once
            elif a in ("segment_alloc", "segment_map"):
                reserved += e["size"]
            elif a in ("segment_free", "segment_unmap"):
                reserved = max(0, reserved - e["size"])
            self.totals.append(total)
            self.reserved.append(reserved)
            self.anomalies.append(anomalies)

    def state_before(self, i: int) -> tuple[int, int, int]:
        """(live bytes, reserved bytes, anomalies so far) before entry i."""
        if i == 0:
            return self.live_start, self.reserved_start, 0
        return self.totals[i - 1], self.reserved[i - 1], self.anomalies[i - 1]

    def phase(self, i0: int, i1: int) -> dict[str, Any]:
        """The phase over entries i0..i1-1: edges, peak, out-of-memory."""
        live_begin, reserved_begin, anomalies_begin = self.state_before(i0)
        live_end, reserved_end, anomalies_end = self.state_before(i1)
        peak = max([live_begin] + self.totals[i0:i1])
        row = {"live_begin": live_begin, "live_peak": peak, "live_end": live_end,
               "reserved_begin": reserved_begin, "reserved_end": reserved_end,
               "anomalies": min(anomalies_end - anomalies_begin, (1 << 32) - 1),
               "outcome": "ok", "failed_alloc_bytes": 0, "lower_bound": 0}
        for e in self.entries[i0:i1]:
            if e["action"] == "oom":
                row["outcome"] = "oom"
                row["failed_alloc_bytes"] = e["size"]
                row["device_free_end"] = e.get("device_free")
                break
        times = [e["time_us"] for e in self.entries[i0:i1] if e["time_us"] is not None]
        if times:
            row["begin_ns"] = max(0, min(times)) * 1000
            row["end_ns"] = max(row["begin_ns"], max(times) * 1000)
        return row


# --- phases -----------------------------------------------------------------

def _annotation_phases(path, replay, annotations, device, history_lost, notes):
    """One phase per START/END pair of external annotations (record_function
    names recorded by _record_memory_history) that follow the NVTX
    convention. Entries whose time_us lies within [START, END] belong to the
    phase, ties included: a microsecond cannot order an entry and an
    annotation stamped alike, and docs/formats.md states this rule.

    history_lost: there is evidence the history ring lost its oldest
    entries; then a phase starting at or before the first entry kept is a
    lower bound. Without evidence, recording simply began before the phase
    (the usual _record_memory_history() then record_function order) and
    nothing is marked. PyTorch keeps annotations in a ring of the same
    max_entries that drops its oldest first, so an END whose START is gone
    is a phase from the first history entry, a lower bound, with a warning
    in notes."""
    entries = replay.entries
    ours = []
    for a in annotations:
        if a["device"] is not None and a["device"] != device:
            continue
        try:
            message = parse_phase_message(a["name"])
        except ValueError as e:
            raise InputError("%s: %s.name: '%s' is a malformed warmcal phase name: %s"
                             % (path, a["where"], a["name"], e))
        if message is not None:
            if a["stage"] not in ("START", "END"):
                raise InputError("%s: %s.stage: expected START or END, found '%s'"
                                 % (path, a["where"], a["stage"]))
            if a["time_us"] is None:
                raise InputError("%s: %s.time_us: missing (needed to place the phase)"
                                 % (path, a["where"]))
            ours.append((a, message))
    if not ours:
        return None
    times = [e["time_us"] for e in entries]
    if any(t is None for t in times):
        raise InputError("%s: device_traces[%d]: entries without time_us cannot be matched with "
                         "the phase annotations" % (path, device))
    phases, open_phases = [], {}
    # (start time or None when the START was lost, end time or None, message, never ended)
    for a, message in sorted(ours, key=lambda am: am[0]["time_us"]):
        key = a["name"]
        if a["stage"] == "START":
            open_phases.setdefault(key, []).append((a, message))
            continue
        if not open_phases.get(key):
            notes.append("%s: device %d: %s: END of '%s' without its START (the annotation "
                         "ring, as long as the history's, lost it): a phase from the first "
                         "history entry, its peak a lower bound"
                         % (path, device, a["where"], key))
            phases.append((None, a["time_us"], message, False))
            continue
        start, message = open_phases[key].pop()
        phases.append((start["time_us"], a["time_us"], message, False))
    for key, still in open_phases.items():
        for start, message in still:
            phases.append((start["time_us"], None, message, True))
    first_time = times[0] if times else None
    phases.sort(key=lambda p: (p[0] if p[0] is not None else
                               min(p[1], first_time) if first_time is not None else p[1]))
    # The first entry at or after t: the allocator stamps entries in order,
    # but should a clock step back, "the first index whose time is >= t" is
    # the first index whose running maximum is >= t, and the running
    # maximum is sorted: one pass, then a binary search per phase.
    running_max, highest = [], None
    for t in times:
        highest = t if highest is None or t > highest else highest
        running_max.append(highest)
    rows = []
    for t0, t1, message, never_ended in phases:
        start_lost = t0 is None
        i0 = 0 if start_lost else bisect.bisect_left(running_max, t0)
        i1 = len(times) if t1 is None else bisect.bisect_right(running_max, t1)
        row = replay.phase(i0, max(i0, i1))
        row.update(message)
        if start_lost:
            t0 = t1 if first_time is None else min(first_time, t1)
        row["begin_ns"] = max(0, t0) * 1000
        row["end_ns"] = max(row["begin_ns"], (t1 if t1 is not None else
                                              (times[-1] if times else t0)) * 1000)
        if start_lost or history_lost and (first_time is None or t0 <= first_time):
            row["lower_bound"] |= LOWER_BOUND_HISTORY_LOST
        if start_lost:
            row["_start_lost"] = True
        if never_ended:
            row["outcome"] = "aborted"
            row["lower_bound"] |= LOWER_BOUND_NEVER_ENDED
        rows.append(row)
    return rows


def _metadata_phases(path, replay, device):
    """One phase per run of consecutive entries whose user_metadata
    (torch.cuda.memory._set_memory_metadata) is a convention name."""
    rows, run_start, run_name, run_message = [], None, None, None
    entries = replay.entries
    for i in range(len(entries) + 1):
        name = entries[i]["user_metadata"] if i < len(entries) else None
        if name != run_name:
            if run_name is not None:
                row = replay.phase(run_start, i)
                row.update(run_message)
                row["_from_first_entry"] = run_start == 0
                rows.append(row)
            run_name, run_start, run_message = None, None, None
            if name:
                try:
                    message = parse_phase_message(name)
                except ValueError as e:
                    raise InputError("%s: device_traces[%d][%d].user_metadata: '%s' is a "
                                     "malformed warmcal phase name: %s"
                                     % (path, device, entries[i]["index"], name, e))
                if message is not None:
                    run_name, run_start, run_message = name, i, message
    return rows or None


DEVICES_NAMED: int = 8


def choose_device(path: str | os.PathLike[str], traces: Sequence[Any], device: int | None) -> int:
    if device is not None:
        if device >= len(traces):
            raise InputError("%s: --device %d: the snapshot has histories for %d device(s)"
                             % (path, device, len(traces)))
        return device
    used = [d for d, t in enumerate(traces) if t]
    if len(used) > 1:
        # a hostile file may list a million devices: name a few, count the rest
        shown = ", ".join(map(str, used[:DEVICES_NAMED]))
        if len(used) > DEVICES_NAMED:
            shown += " and %d more" % (len(used) - DEVICES_NAMED)
        raise InputError("%s: devices %s all have allocation history: choose one with --device D"
                         % (path, shown))
    if not used:
        raise InputError("%s: device_traces: no allocation history on any device (record with "
                         "torch.cuda.memory._record_memory_history() before the snapshot)" % path)
    return used[0]


def import_file(path: str | os.PathLike[str], device: int | None = None,
                max_entries: int | None = None, max_bytes: int = DEFAULT_MAX_INPUT_BYTES
                ) -> tuple[list[dict[str, Any]], bool, dict[str, Any]]:
    """Read one snapshot. Returns (rows, needs_tokens, info): rows are phase
    dicts when the snapshot names its phases (annotations), else one row
    for the whole history without tokens/batch/label (needs_tokens True);
    info carries the notes and figures for the trace's attributes."""
    snap = load(path, max_bytes)
    device, active, reserved, entries, annotations = _parse_snapshot(snap, path, device)
    del snap  # what follows needs only the parsed fields
    live_at_snapshot = dict(active.get(-1, {}))
    live_at_snapshot.update(active.get(device, {}))
    replay = Replay(entries, live_at_snapshot, reserved.get(device, 0) + reserved.get(-1, 0),
                    path, device)
    notes = list(replay.notes)
    # Evidence that the history ring lost its oldest entries.
    lost = []
    if max_entries is not None and len(entries) >= max_entries:
        lost.append("it holds %d entries, the --max-entries limit: the ring was full"
                    % len(entries))
    if replay.pairs_cut:
        lost.append("%d free_completed entries lack their free_requested" % replay.pairs_cut)
    if replay.inconsistent:
        lost.append("%d entries disagree with the snapshot's segments" % replay.inconsistent)
    # Blocks freed in the history but allocated before it are normal (the
    # weights, allocated before recording began): counted in attributes,
    # and named in the warning only when the history is known to be cut.
    if lost:
        orphans = ""
        if replay.orphan_frees:
            orphans = "; %d blocks (%d bytes) freed in it were allocated before its first " \
                "entry" % (replay.orphan_frees, replay.orphan_bytes)
        notes.append("%s: device %d: the allocation history does not reach back to its start "
                     "(%s%s): a phase from its first entry is a lower bound"
                     % (path, device, "; ".join(lost), orphans))
    rows = _annotation_phases(path, replay, annotations, device, bool(lost), notes)
    if rows is None:
        rows = _metadata_phases(path, replay, device)
        if rows is not None:
            for row in rows:
                if row.pop("_from_first_entry") and lost:
                    row["lower_bound"] |= LOWER_BOUND_HISTORY_LOST
    needs_tokens = rows is None
    if needs_tokens:
        row = replay.phase(0, len(entries))
        if lost:
            row["lower_bound"] |= LOWER_BOUND_HISTORY_LOST
        rows = [row]
    cut = [row for row in rows if not row.pop("_start_lost", False)
           and row["lower_bound"] & LOWER_BOUND_HISTORY_LOST]
    if cut and not needs_tokens:
        notes.append("%s: device %d: %d phase(s) begin at or before the first history entry "
                     "of a cut history: their peaks are lower bounds" % (path, device, len(cut)))
    info = {"device": device, "entries": len(entries), "orphan_frees": replay.orphan_frees,
            "orphan_free_bytes": replay.orphan_bytes, "history_lost": bool(lost),
            "notes": notes}
    return rows, needs_tokens, info


def build_trace(files: Sequence[str | os.PathLike[str]], tokens: Sequence[int],
                batches: Sequence[int], label: str | None, rank: int, world_size: int,
                model: str, device: int | None, max_entries: int | None, max_bytes: int,
                progress: Progress | None = None) -> tuple[dict[str, Any], list[str]]:
    """The one trace (dict for _common.write_traces) and the warnings for
    stderr. Phases: per file in order, its annotated phases, or one phase
    for the whole history taking the next --tokens value."""
    if label is not None and check_label(label):
        raise InputError("--label '%s': %s" % (label, check_label(label)))
    progress = progress or Silent()
    results = []
    for i, p in enumerate(files):
        progress.step("warmcal import: reading snapshots", i + 1, len(files),
                      os.path.basename(p))
        results.append(import_file(p, device, max_entries, max_bytes))
    per_file = sum(1 for _, needs, _ in results if needs)
    if len(tokens) != per_file:
        raise InputError("--tokens: given %d time(s), but %d of the %d snapshot(s) have no "
                         "warmcal phase annotations and need one each, in file order"
                         % (len(tokens), per_file, len(files)))
    if len(batches) not in (0, 1, per_file):
        raise InputError("--batch: given %d times; give it once (for every file) or once per "
                         "file that takes --tokens (%d)" % (len(batches), per_file))
    phases, notes, k = [], [], 0
    lost_any, orphans, orphan_bytes, entries = False, 0, 0, 0
    for path, (rows, needs_tokens, info) in zip(files, results):
        if needs_tokens:
            rows[0].update({"tokens": tokens[k],
                            "batch": batches[0] if len(batches) == 1 else
                            batches[k] if batches else 1,
                            "label": label or DEFAULT_LABEL})
            k += 1
        phases.extend(rows)
        notes.extend(info["notes"])
        lost_any |= info["history_lost"] or any(r["lower_bound"] & LOWER_BOUND_HISTORY_LOST
                                                for r in rows)
        orphans += info["orphan_frees"]
        orphan_bytes += info["orphan_free_bytes"]
        entries += info["entries"]
    attrs = {"import_format": "torch-snapshot", "producer": PRODUCER,
             "import_files": ",".join(os.path.basename(p) for p in files),
             "snapshot_device": results[0][2]["device"] if results else 0,
             "history_entries": entries, "history_orphan_frees": orphans,
             "history_orphan_free_bytes": orphan_bytes,
             "history_incomplete": int(lost_any)}
    if notes:
        # at most 16 KiB, as the profiler's notes, cut on a character boundary
        attrs["notes"] = "\n".join(notes).encode("utf-8", "surrogateescape")[:16384] \
            .decode("utf-8", "ignore")
    trace = {"rank": rank, "phases": phases, "attrs": attrs,
             "info": {"rank": rank, "world_size": world_size, "model": model,
                      "source": "import", "gpu_name": "unknown"}}
    return trace, notes
