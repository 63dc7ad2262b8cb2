"""warmcal.Gate: the start-up gate of warmcal/gate.h for Python servers.

A gate opened on an mpi4py communicator decides a list of warmup shapes in
one MPI collective, and answers the largest token count every rank can run
(max_tokens) in one more; a gate opened with rank= and world_size= (no MPI
at all) does both through the caller's own MIN collective, e.g.
torch.distributed.
Every failure is a GateError carrying the C library's message and code, and
a failure that concerns several ranks is raised on all of them.
"""

from __future__ import annotations  # annotations stay strings: no cost at import

import ctypes
import operator
import os
import sys
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # names for the annotations only, never imported at run time
    from collections.abc import Callable, Iterable, Sequence
    from types import TracebackType
    from typing import Any, Literal, Union

    # a shape: (tokens, batch, label) or (tokens, batch, label, batch_valid);
    # label None means "context"
    Shape = Union[tuple[int, int, "str | None"], tuple[int, int, "str | None", bool]]
    # the caller's MIN collective over a list of signed 64-bit ints
    AllreduceMin = Callable[[list[int]], Sequence[int]]
    PathArg = Union[str, bytes, os.PathLike[str], os.PathLike[bytes]]

from . import _capi

_U64_MAX = (1 << 64) - 1
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1


class GateError(Exception):
    """A gate failure. .code is the C library's warmcal_code (a negative
    int, e.g. warmcal.E_TIMEOUT), .message its text."""

    message: str
    code: int

    def __init__(self, message: str, code: int = _capi.E_INVAL) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class LibraryNotFoundError(GateError, ImportError):
    """The C library could not be found or loaded."""

    def __init__(self, message: str) -> None:
        GateError.__init__(self, message, _capi.E_UNSUPPORTED)


class Decision:
    """One shape's decision, the same on every rank.

    run           True: run this shape on every rank
    reason        the reason in words (log it)
    reason_code   warmcal.REASON_RUN, REASON_LOW_MEMORY, REASON_INVALID_BATCH,
                  REASON_OUT_OF_RANGE, REASON_NO_ESTIMATE or
                  REASON_ESTIMATE_TOO_LARGE (the estimate does not fit in 64 bits)
    blocking_rank the rank that blocked the shape, -1 when it runs
    short_bytes   bytes blocking_rank lacks (low memory; 2**64 - 1 for 64 TiB or more), else 0
    min_headroom  lowest headroom over the ranks, saturated to -2**46..2**46-1
                  (+-64 TiB); -2**63 for the other reasons
    tokens, batch, label  the shape asked about
    """

    __slots__ = ("run", "reason", "reason_code", "blocking_rank", "short_bytes",
                 "min_headroom", "tokens", "batch", "label")

    run: bool
    reason: str
    reason_code: int
    blocking_rank: int
    short_bytes: int
    min_headroom: int
    tokens: int
    batch: int
    label: str

    def __init__(self, run: bool, reason: str, reason_code: int, blocking_rank: int,
                 short_bytes: int, min_headroom: int, tokens: int, batch: int,
                 label: str) -> None:
        self.run = run
        self.reason = reason
        self.reason_code = reason_code
        self.blocking_rank = blocking_rank
        self.short_bytes = short_bytes
        self.min_headroom = min_headroom
        self.tokens = tokens
        self.batch = batch
        self.label = label

    def _key(self):
        return tuple(getattr(self, k) for k in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decision):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self):  # picklable, so ranks can gather and compare decisions
        return (Decision, self._key())

    @property
    def reason_name(self) -> str:
        """"run", "low memory", "invalid batch", "outside the calibrated
        range", "no estimate" or "estimate too large"."""
        return _REASON_NAMES.get(self.reason_code, "?")

    def __repr__(self) -> str:
        return ("Decision(run=%r, tokens=%d, batch=%d, label=%r, blocking_rank=%d, "
                "short_bytes=%d, reason=%r)" % (self.run, self.tokens, self.batch, self.label,
                                                 self.blocking_rank, self.short_bytes,
                                                 self.reason))


class Budget(NamedTuple):
    """The largest token count every rank can run now, the same on every rank
    (Gate.max_tokens). Unpacks as (tokens, limiting_rank).

    tokens         every pass of 1..tokens tokens fits on every rank; 0 when not
                   even one token does
    limiting_rank  the rank with the smallest budget, the lowest on ties
    """
    tokens: int
    limiting_rank: int


_REASON_NAMES = {
    _capi.REASON_RUN: "run",
    _capi.REASON_LOW_MEMORY: "low memory",
    _capi.REASON_INVALID_BATCH: "invalid batch",
    _capi.REASON_OUT_OF_RANGE: "outside the calibrated range",
    _capi.REASON_NO_ESTIMATE: "no estimate",
    _capi.REASON_ESTIMATE_TOO_LARGE: "estimate too large",
}


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    """value as a Python int in [lo, hi] (ints and numpy/torch integers;
    never bools or floats), else GateError naming it."""
    if isinstance(value, bool):
        raise GateError("%s: expected an integer, found a bool (%r)" % (name, value))
    try:
        v = operator.index(value)
    except TypeError:
        raise GateError("%s: expected an integer, found %s (%r)"
                        % (name, type(value).__name__, value)) from None
    if not lo <= v <= hi:
        raise GateError("%s: %d is outside %d..%d" % (name, v, lo, hi))
    return v


class _FreeProbe:
    """The caller's free-memory function as a C callback. ctypes would print
    and swallow an exception raised inside it, so it is kept here and
    re-raised once the C call has returned."""

    def __init__(self, fn):
        self.fn = fn
        self.error = None
        self.c_fn = _capi.FREE_FN(self._call)  # alive as long as the gate

    def _call(self, user, out):
        try:
            out[0] = _int("free_bytes() result", self.fn(), 0, _U64_MAX)
            return 0
        except BaseException as e:  # noqa: B036 — nothing may cross the C frames
            self.error = e
            return 1

    def take_error(self):
        e, self.error = self.error, None
        return e


def _label_bytes(what, label):
    """label (None: "context") as the C library's UTF-8 bytes, else GateError
    naming what."""
    if label is None:
        label = "context"
    if not isinstance(label, str) or not label or "\0" in label:
        raise GateError("%s: expected a non-empty string or None, found %r" % (what, label))
    try:
        return label.encode("utf-8")
    except UnicodeEncodeError:
        raise GateError("%s: %r cannot be encoded as UTF-8" % (what, label)) from None


def _mpi_module():
    """mpi4py.MPI when it is imported (it initialises MPI), else None."""
    return sys.modules.get("mpi4py.MPI")


def _failure(e):
    """The code and words another rank reports for this rank's exception."""
    if isinstance(e, GateError):
        return e.code, str(e)
    return _capi.E_INVAL, "%s: %s" % (type(e).__name__, e)


def _usable_deadline(deadline_s):
    """deadline_s for the C library when it is a usable number, else 0 (its
    default), so that even a rank with a bad deadline takes part."""
    if isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float)):
        return 0.0
    try:
        d = float(deadline_s)
    except OverflowError:
        return 0.0
    return d if 0 < d <= 1e7 else 0.0


class Gate:
    """gate = Gate(table_path, comm=MPI.COMM_WORLD, reserve_bytes=0,
                   deadline_s=60.0, free_bytes=None, ...)

    comm         an mpi4py intracommunicator (import mpi4py.MPI first); opening
                 is collective over it. Or, for servers that are not MPI
                 programs, no comm but rank= and world_size=: a local gate,
                 whose decide() takes the caller's MIN collective.
    reserve_bytes  added to every shape's need.
    deadline_s   bound on opening and on one decision, collectives included
                 (MPI gates; a local gate's bound is the caller's collective's
                 own timeout). A rank that does not join within it is a
                 GateError with code E_TIMEOUT on the others: end the job.
    free_bytes   this rank's free device memory: an int, a callable returning
                 an int (e.g. lambda: torch.cuda.mem_get_info()[0]), or None
                 for the CUDA driver's probe (cuMemGetInfo on the current
                 context).
    probe        "simulated" reads WARMCAL_SIM_FREE_BYTES instead (tests, dry
                 runs); by default derived from free_bytes.
    above_range  None (the table's policy), "refuse" or "extrapolate".
    allow_config_mismatch  accept a table calibrated for another TP size or GPU.
    need_policy  "table", or "constant" (the original fix's baseline:
                 constant_bytes_per_token per token, shapes at or below
                 constant_min_tokens unchecked; table_path may be None).

    Raises GateError; on an MPI gate, a failure to open on any rank is raised
    on every rank at once (a rank whose arguments are invalid still takes
    part in the C library's open, flagged), and opening never blocks longer
    than deadline_s. Not thread-safe: one decision at a time per gate.
    """

    def __init__(self, table_path: PathArg | None, comm: Any = None, reserve_bytes: int = 0,
                 deadline_s: float = 60.0,
                 free_bytes: int | Callable[[], int] | None = None, *,
                 rank: int | None = None, world_size: int | None = None,
                 probe: Literal["cuda", "value", "callback", "simulated"] | None = None,
                 above_range: Literal["refuse", "extrapolate"] | None = None,
                 allow_config_mismatch: bool = False,
                 need_policy: Literal["table", "constant"] = "table",
                 constant_bytes_per_token: int = 0, constant_min_tokens: int = 0) -> None:
        self._handle: int | None = None
        self._probe: _FreeProbe | None = None
        self._local = comm is None
        self._lib: Any = None   # the ctypes library, once loaded
        self._rank: int
        self._size: int
        if comm is not None:
            self._open_mpi(comm, rank, world_size, table_path, reserve_bytes, deadline_s,
                           free_bytes, probe, above_range, allow_config_mismatch, need_policy,
                           constant_bytes_per_token, constant_min_tokens)
        else:
            if rank is None or world_size is None:
                raise GateError("Gate: pass comm= (an mpi4py communicator) or, without MPI, "
                                "rank= and world_size=")
            rank = _int("rank", rank, 0, (1 << 31) - 1)
            world_size = _int("world_size", world_size, 1, (1 << 31) - 1)
            lib = self._load()
            opts, path = self._options(lib, table_path, reserve_bytes, deadline_s, free_bytes,
                                       probe, above_range, allow_config_mismatch, need_policy,
                                       constant_bytes_per_token, constant_min_tokens)
            h = ctypes.c_void_p()
            rc = lib.warmcal_gate_open_local(ctypes.byref(h), path, rank, world_size,
                                             ctypes.byref(opts))
            self._adopt(h, rc)
            self._rank, self._size = rank, world_size

    # -- opening -----------------------------------------------------------

    def _load(self):
        try:
            self._lib = _capi.load()
        except _capi.LibraryNotFound as e:
            raise LibraryNotFoundError(str(e)) from None
        return self._lib

    def _options(self, lib, table_path, reserve_bytes, deadline_s, free_bytes, probe,
                 above_range, allow_config_mismatch, need_policy, constant_bytes_per_token,
                 constant_min_tokens):
        """The C options and table path from the keyword arguments."""
        o = _capi.Options()
        lib.warmcal_gate_options_init(ctypes.byref(o))
        o.reserve_bytes = _int("reserve_bytes", reserve_bytes, 0, _U64_MAX)
        if isinstance(deadline_s, bool) or not isinstance(deadline_s, (int, float)):
            raise GateError("deadline_s: expected a number of seconds, found %r" % (deadline_s,))
        if not deadline_s > 0:  # also NaN
            raise GateError("deadline_s: expected a positive number of seconds, found %r"
                            % (deadline_s,))
        o.deadline_s = float(deadline_s)

        if probe is None:
            probe = "cuda" if free_bytes is None else "callback" if callable(free_bytes) \
                else "value"
        kinds = {"cuda": _capi.PROBE_CUDA, "value": _capi.PROBE_VALUE,
                 "callback": _capi.PROBE_CALLBACK, "simulated": _capi.PROBE_SIMULATED}
        if probe not in kinds:
            raise GateError("probe: expected one of %s, found %r" % (", ".join(kinds), probe))
        o.probe = kinds[probe]
        if probe in ("cuda", "simulated") and free_bytes is not None:
            raise GateError("probe %r reads free memory itself: leave free_bytes None" % probe)
        if probe == "value":
            o.free_bytes = _int("free_bytes", free_bytes, 0, _U64_MAX)
        elif probe == "callback":
            if not callable(free_bytes):
                raise GateError("probe 'callback' needs free_bytes to be a callable returning "
                                "an int")
            self._probe = _FreeProbe(free_bytes)
            o.free_fn = self._probe.c_fn

        policies = {None: -1, "refuse": _capi.ABOVE_REFUSE,
                    "extrapolate": _capi.ABOVE_EXTRAPOLATE}
        if not isinstance(above_range, (str, type(None))) or above_range not in policies:
            raise GateError("above_range: expected None, 'refuse' or 'extrapolate', found %r"
                            % (above_range,))
        o.above_range = policies[above_range]
        o.allow_config_mismatch = 1 if allow_config_mismatch else 0
        needs = {"table": _capi.NEED_TABLE, "constant": _capi.NEED_CONSTANT}
        if not isinstance(need_policy, str) or need_policy not in needs:
            raise GateError("need_policy: expected 'table' or 'constant', found %r"
                            % (need_policy,))
        o.need_policy = needs[need_policy]
        o.constant_bytes_per_token = _int("constant_bytes_per_token", constant_bytes_per_token,
                                          0, _U64_MAX)
        o.constant_min_tokens = _int("constant_min_tokens", constant_min_tokens, 0, _U64_MAX)

        if table_path is None:
            path = None
        else:
            try:
                path = os.fsencode(table_path)
            except TypeError:
                raise GateError("table_path: expected a path, found %r" % (table_path,)) from None
            except UnicodeEncodeError:
                raise GateError("table_path: %r cannot be encoded as a file name"
                                % (table_path,)) from None
            if b"\0" in path:
                raise GateError("table_path: contains a NUL byte")
        return o, path

    def _open_mpi(self, comm, rank, world_size, table_path, reserve_bytes, deadline_s, *args):
        MPI = _mpi_module()
        py2f = getattr(comm, "py2f", None)
        if not callable(py2f):
            raise GateError("comm: expected an mpi4py communicator, found %s"
                            % type(comm).__name__)
        if MPI is None or not MPI.Is_initialized() or MPI.Is_finalized():
            raise GateError("comm: MPI is not initialised (import mpi4py.MPI before opening a "
                            "gate on a communicator) or already finalised", _capi.E_STATE)
        if comm == MPI.COMM_NULL or comm.Is_inter():
            raise GateError("comm: expected an intracommunicator, found %s"
                            % ("MPI.COMM_NULL" if comm == MPI.COMM_NULL else
                               "an intercommunicator"))
        lib = self._load()  # without it this rank cannot take part: the others time out
        fint = py2f()
        # Arguments may be invalid on one rank only (free memory, say). That
        # rank still takes part in the C library's open, flagged with its
        # error, so that every rank fails at once and no rank blocks in
        # Python: the whole open is bounded by the deadline.
        try:
            if rank is not None or world_size is not None:
                raise GateError("Gate: pass comm= (an MPI gate) or rank= and world_size= (a "
                                "local gate), not both")
            opts, path = self._options(lib, table_path, reserve_bytes, deadline_s, *args)
            own = None
        except BaseException as e:  # noqa: B036 — every rank must learn of it
            own = e
        h = ctypes.c_void_p()
        if own is None:
            rc = lib.warmcal_gate_open_f(ctypes.byref(h), path, fint, ctypes.byref(opts))
        else:
            code, text = _failure(own)
            rc = lib.warmcal_gate_open_failed_f(ctypes.byref(h), fint, code,
                                                text.encode("utf-8", "backslashreplace")
                                                .replace(b"\0", b"?"),
                                                _usable_deadline(deadline_s))
        if rc == _capi.OK:
            self._handle = h
            self._rank, self._size = comm.Get_rank(), comm.Get_size()
            return
        msg = _capi.text(lib.warmcal_gate_last_error(h)) if h else "out of memory"
        code = (lib.warmcal_gate_last_code(h) if h else 0) or rc
        lib.warmcal_gate_close(h)
        if own is not None and not isinstance(own, Exception):
            raise own  # KeyboardInterrupt, SystemExit: never turned into a GateError
        if own is not None and code != _capi.E_TIMEOUT:  # this rank's own error first
            if isinstance(own, GateError):
                raise own
            raise GateError(_failure(own)[1], _capi.E_INVAL) from own
        raise GateError(msg or self._strerror(code), code)

    def _adopt(self, h, rc):
        """Keep the C handle of a successful open, else raise its error."""
        if rc == _capi.OK:
            self._handle = h
            return
        msg = _capi.text(self._lib.warmcal_gate_last_error(h)) if h else "out of memory"
        rc = (self._lib.warmcal_gate_last_code(h) if h else 0) or rc
        self._lib.warmcal_gate_close(h)
        raise GateError(msg or self._strerror(rc), rc)

    # -- deciding ----------------------------------------------------------

    def decide(self, shapes: Iterable[Shape],
               allreduce_min: AllreduceMin | None = None) -> list[Decision]:
        """Decide every shape at once (over MPI one collective, two above 64
        shapes; with allreduce_min one call of it); the same list of Decision
        on every rank.

        shapes: (tokens, batch, label) or (tokens, batch, label, batch_valid)
        items, the same on every rank in the same order (batch_valid may
        differ: False skips the shape on every rank); label None means
        "context". tokens is at least 1: a shape of 0 tokens is no pass and
        raises E_INVAL, as in the C library.

        A local gate needs allreduce_min: a function taking a list of ints
        (signed 64-bit) and returning that list reduced with MIN over the
        server's group, called exactly once.

        Raises GateError: .code E_MISMATCH (ranks loaded different tables or
        passed different shape lists; raised on every rank), E_TIMEOUT (a
        rank did not join within deadline_s: the communicator is unusable,
        end the job), E_UNSUPPORTED (a rank could not probe its free memory),
        E_INVAL (malformed shapes, or any exception while reading them: on an
        MPI gate this rank still takes part in the collective, flagged, so the
        other ranks raise too, at once, naming this rank).
        """
        h = self._check_open()
        lib = self._lib
        try:
            if not self._local and allreduce_min is not None:
                raise GateError("decide: allreduce_min is for gates opened with rank=/"
                                "world_size=; this gate reduces over its MPI communicator")
            cshapes, keep = self._c_shapes(shapes)
        except BaseException as e:  # noqa: B036 — whatever failed, the others must learn of it
            if not self._local:
                # take part in the decision's collective, flagged, so that the
                # other ranks fail at once instead of at the deadline
                lib.warmcal_gate_decide(h, None, 1, None)
            if isinstance(e, Exception) and not isinstance(e, GateError):
                raise GateError("decide: shapes: %s" % _failure(e)[1]) from e
            raise
        n = len(cshapes)
        out = (_capi.CDecision * n)()
        if self._local:
            if allreduce_min is None or not callable(allreduce_min):
                raise GateError("decide: a gate opened with rank=/world_size= needs "
                                "allreduce_min=, a function reducing a list of ints with MIN "
                                "over the server's group")
            count = lib.warmcal_gate_encoded_count(n)
            vals = (ctypes.c_int64 * count)()
            rc = lib.warmcal_gate_encode(h, cshapes, n, vals)
            # a failed probe is flagged in vals, for every rank to see after
            # the reduction: its exception waits until then
            cause = self._take_cause()
            self._check(rc, cause if rc else None)
            reduced = self._reduce_min("decide", allreduce_min, list(vals))
            rc = lib.warmcal_gate_decode(h, (ctypes.c_int64 * count)(*reduced), n, out)
            self._check(rc, cause)
        else:
            rc = lib.warmcal_gate_decide(h, cshapes, n, out)
            self._check(rc, self._take_cause())
        del keep
        return [self._decision(out[i], cshapes[i]) for i in range(n)]

    def max_tokens(self, label: str | None = "context", reserve_bytes: int = 0,
                   allreduce_min: AllreduceMin | None = None) -> Budget:
        """The largest token count every rank can run now, so a server caps
        its scheduler (max_num_tokens) there instead of meeting the limit as
        an out-of-memory error: a Budget(tokens, limiting_rank), the same on
        every rank, taken in one collective (over MPI, decide's: bounded by
        deadline_s, checked alike).

        Each rank's budget is the largest T such that every pass of 1..T
        tokens (batch 1) of this label fits its free memory by the table:
        estimate + the gate's reserve_bytes + this call's reserve_bytes (they
        add up; either may differ between ranks), above the calibrated range
        as above_range says. tokens is the smallest over the ranks and
        limiting_rank the rank that has it (the lowest on ties), so decide()
        runs a pass of `tokens` tokens and skips one of `tokens + 1`. label
        None means "context"; it must be the same on every rank.

        A local gate needs allreduce_min, as decide() does (called once, with
        6 ints).

        Raises GateError: .code E_FIELD (the table has no estimate for label
        serving some rank; the message names it), E_MISMATCH (ranks loaded
        different tables, asked about different labels, or one rank decided
        meanwhile), E_TIMEOUT (a rank did not join within deadline_s: end
        the job), E_UNSUPPORTED (a rank could not probe its free memory),
        E_INVAL (bad arguments: on an MPI gate this rank still takes part,
        flagged, so the others raise at once, naming it).
        """
        h = self._check_open()
        lib = self._lib
        try:
            if not self._local and allreduce_min is not None:
                raise GateError("max_tokens: allreduce_min is for gates opened with rank=/"
                                "world_size=; this gate reduces over its MPI communicator")
            lb = _label_bytes("max_tokens: label", label)
            reserve = _int("max_tokens: reserve_bytes", reserve_bytes, 0, _U64_MAX)
        except BaseException as e:  # noqa: B036 — whatever failed, the others must learn of it
            if not self._local:
                # no place for the result: the C library takes part, flagged
                lib.warmcal_gate_max_tokens(h, None, 0, None, None)
            if isinstance(e, Exception) and not isinstance(e, GateError):
                raise GateError("max_tokens: %s" % _failure(e)[1]) from e
            raise
        tokens, rank = ctypes.c_uint64(), ctypes.c_int()
        if self._local:
            if allreduce_min is None or not callable(allreduce_min):
                raise GateError("max_tokens: a gate opened with rank=/world_size= needs "
                                "allreduce_min=, a function reducing a list of ints with MIN "
                                "over the server's group")
            count = lib.warmcal_gate_max_tokens_encoded_count()
            vals = (ctypes.c_int64 * count)()
            rc = lib.warmcal_gate_max_tokens_encode(h, lb, reserve, vals)
            cause = self._take_cause()  # flagged in vals, raised after the reduction
            self._check(rc, cause if rc else None)
            reduced = self._reduce_min("max_tokens", allreduce_min, list(vals))
            rc = lib.warmcal_gate_max_tokens_decode(h, (ctypes.c_int64 * count)(*reduced),
                                                    ctypes.byref(tokens), ctypes.byref(rank))
            self._check(rc, cause)
        else:
            rc = lib.warmcal_gate_max_tokens(h, lb, reserve, ctypes.byref(tokens),
                                             ctypes.byref(rank))
            self._check(rc, self._take_cause())
        return Budget(tokens.value, rank.value)

    def probe_free(self) -> int:
        """This rank's free device memory as the gate's probe sees it."""
        h = self._check_open()
        v = ctypes.c_uint64()
        rc = self._lib.warmcal_gate_probe_free(h, ctypes.byref(v))
        self._check(rc, self._take_cause())
        return v.value

    @staticmethod
    def _c_shapes(shapes):
        """The C array of shapes, and the label bytes it points to."""
        try:
            items = list(shapes)
        except TypeError:
            raise GateError("shapes: expected a list of (tokens, batch, label[, batch_valid]), "
                            "found %s" % type(shapes).__name__) from None
        arr = (_capi.Shape * len(items))()
        keep = []
        for i, s in enumerate(items):
            if isinstance(s, (str, bytes)) or not hasattr(s, "__len__") or len(s) not in (3, 4):
                raise GateError("shapes[%d]: expected (tokens, batch, label[, batch_valid]), "
                                "found %r" % (i, s))
            tokens = _int("shapes[%d] tokens" % i, s[0], 1, _U64_MAX)
            batch = _int("shapes[%d] batch" % i, s[1], 0, (1 << 32) - 1)
            lb = _label_bytes("shapes[%d] label" % i, s[2])
            keep.append(lb)
            valid = True if len(s) == 3 else s[3]
            if not isinstance(valid, bool) and type(valid).__name__ != "bool_":  # numpy's
                try:
                    ok = operator.index(valid) in (0, 1)
                except TypeError:
                    ok = False
                if not ok:
                    raise GateError("shapes[%d] batch_valid: expected a bool, found %r"
                                    % (i, valid))
            arr[i].tokens = tokens
            arr[i].batch = batch
            arr[i].label = lb
            arr[i].batch_valid = 1 if valid else 0
        return arr, keep

    @staticmethod
    def _reduce_min(call, allreduce_min, local):
        """The caller's MIN collective over this rank's values, called once,
        its result checked: as many ints as given, none above this rank's."""
        try:
            reduced = allreduce_min(list(local))
        except Exception as e:
            raise GateError("%s: allreduce_min raised %s: %s (the server's collective failed; "
                            "its group may be unusable)" % (call, type(e).__name__, e),
                            _capi.E_STATE) from e
        n = len(local)
        try:
            vals = list(reduced)
        except TypeError:
            raise GateError("%s: allreduce_min returned %s, expected a list of %d ints"
                            % (call, type(reduced).__name__, n)) from None
        if len(vals) != n:
            raise GateError("%s: allreduce_min returned %d values for %d: it must return "
                            "the whole list reduced element-wise" % (call, len(vals), n))
        out = []
        for i, v in enumerate(vals):
            v = _int("%s: allreduce_min result[%d]" % (call, i), v, _I64_MIN, _I64_MAX)
            if v > local[i]:
                raise GateError("%s: allreduce_min result[%d] is %d, above this rank's own "
                                "%d: not a MIN reduction" % (call, i, v, local[i]))
            out.append(v)
        return out

    def _decision(self, d, s):
        return Decision(run=bool(d.run), reason=_capi.text(d.text), reason_code=d.reason,
                        blocking_rank=d.blocking_rank, short_bytes=d.short_bytes,
                        min_headroom=d.min_headroom, tokens=s.tokens, batch=s.batch,
                        label=s.label.decode("utf-8"))

    def _check_open(self):
        if self._handle is None:
            raise GateError("the gate is closed", _capi.E_STATE)
        return self._handle

    def _strerror(self, rc):
        return _capi.text(self._lib.warmcal_strerror(rc))

    def _take_cause(self):
        """The exception the free-memory callback raised during the last C
        call, if any."""
        return self._probe.take_error() if self._probe else None

    def _check(self, rc, cause=None):
        """Raise the C failure rc, with the free-memory callback's exception
        (cause) where that is what failed."""
        if cause is not None and not isinstance(cause, Exception):
            raise cause  # KeyboardInterrupt, SystemExit: never turned into a GateError
        if rc == _capi.OK:
            return
        msg = _capi.text(self._lib.warmcal_gate_last_error(self._handle)) or self._strerror(rc)
        rc = self._lib.warmcal_gate_last_code(self._handle) or rc
        if isinstance(cause, GateError):  # the callback's result was no byte count
            msg = "%s: %s" % (msg, cause)
        elif cause is not None:
            msg = "%s: free_bytes() raised %s: %s" % (msg, type(cause).__name__, cause)
        raise GateError(msg, rc) from cause

    # -- lifetime ----------------------------------------------------------

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def world_size(self) -> int:
        return self._size

    @property
    def local(self) -> bool:
        """True for a gate opened with rank=/world_size=."""
        return self._local

    @property
    def closed(self) -> bool:
        return self._handle is None

    def close(self) -> None:
        """Release the gate (not collective); safe to call twice."""
        h, self._handle = self._handle, None
        if h is not None and self._lib is not None:
            self._lib.warmcal_gate_close(h)
        self._probe = None

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> Literal[False]:
        self.close()
        return False

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return "<warmcal.Gate %s rank %s of %s%s>" % (
            "local" if self._local else "MPI", getattr(self, "_rank", "?"),
            getattr(self, "_size", "?"), " closed" if self.closed else "")
