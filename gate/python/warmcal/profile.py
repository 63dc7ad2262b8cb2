"""warmcal.profile: mark a PyTorch server's warmup passes as phases, and record
them from PyTorch's allocator counters when warmcal's CUPTI profiler is not
injected.

    import warmcal.profile as wp
    with wp.record("traces/", model="llama-3-8b"):      # rank/size from the launcher
        for tokens, batch in shapes:
            with wp.phase(tokens=tokens, batch=batch, label="context"):
                run_warmup_forward(tokens, batch)

phase() always opens the NVTX range of the convention ("warmcal tokens=N
batch=B label=L", docs/calibration.md), so `warmcal profile` measures the pass
when it injected its CUPTI library; record() then writes nothing, so no pass
is recorded twice. Otherwise record() writes one trace per rank,
OUT/rank-<R>.h5 with source "torch", through the project's one trace writer
(the C library, warmcal._trace): per phase the caching allocator's peak of
allocated bytes since the phase began, its allocated and reserved bytes and
the device's free memory at both edges, and an out-of-memory error with the
size PyTorch asked for. Only the device given to record() is read.

torch is imported on first use, not by `import warmcal.profile`: a server's
start-up should not pay for it twice, and the module must load where torch
is absent (its tests, tools that only parse launcher variables).
"""

from __future__ import annotations  # annotations stay strings: no cost at import

import contextlib
import errno
import os
import re
import socket
import threading
import time
from typing import TYPE_CHECKING

from . import _tracefile

if TYPE_CHECKING:  # for the annotations only; torch is never imported here
    from collections.abc import Iterator, Mapping
    from typing import Any

__all__ = ["record", "phase", "phase_message", "launcher_rank", "cupti_profiler_injected",
           "Recording"]

PRODUCER = "warmcal.profile (torch.cuda counters)"
OOM_SIZE_FROM_OBSERVER = "torch OOM observer (exact bytes PyTorch asked the driver for)"
OOM_SIZE_FROM_MESSAGE = ("torch OutOfMemoryError message (\"Tried to allocate X\": rounded to "
                         "0.01 of its unit, KiB/MiB/GiB)")

# --- the NVTX convention: checked by the profiler's own C parser
# (warmcal/phase_message.h, through libwarmcal-convention), so that a phase this
# helper emits is exactly a phase the injected profiler takes

def _integer(name, value):
    # bool is an int in Python, but batch=True is a mistake, not 1
    if not isinstance(value, bool):
        try:
            return value.__index__()    # int, and numpy and torch integers
        except (AttributeError, TypeError):
            pass
    raise ValueError("%s: expected an integer, found %r" % (name, value))


def phase_message(tokens: int, batch: int = 1, label: str = "context") -> str:
    """The NVTX message of a phase, "warmcal tokens=N batch=B label=L".
    Raises ValueError for what the profiler's parser would refuse: tokens
    outside 1..2^40, batch outside 1..2^32-1, a label that is empty, longer
    than 31 bytes of UTF-8, or holds a space or a control character."""
    tokens = _integer("tokens", tokens)
    batch = _integer("batch", batch)
    if not isinstance(label, str):
        raise ValueError("label: expected a string, found %r" % (label,))
    from . import _convention
    try:
        _convention.check_phase(label, tokens, batch)
    except ValueError as e:
        raise ValueError("phase tokens=%d batch=%d label=%r: %s"
                         % (tokens, batch, label, e)) from None
    return "warmcal tokens=%d batch=%d label=%s" % (tokens, batch, label)


# --- rank and world size: the injected profiler's own rule, from its one
# definition in C (warmcal/launcher.h, through libwarmcal-convention)

_INT_MAX = 2**31 - 1


def launcher_rank(environ: Mapping[str, str] | None = None
                  ) -> tuple[int, int, str, str | None]:
    """(rank, world_size, variable, note) from the launcher's environment,
    by the injected profiler's rule: WARMCAL_RANK/WARMCAL_WORLD_SIZE, then
    torchrun's RANK/WORLD_SIZE, Open MPI's OMPI_COMM_WORLD_*, PMIX_RANK,
    PMI_RANK/PMI_SIZE, Slurm's SLURM_PROCID/SLURM_NTASKS; none set: (0, 1,
    "none", None). An empty variable counts as unset. The size comes from the
    rank's own launcher, else from a later one that agrees on the rank; with
    none, it is rank + 1 and note says so. Raises ValueError naming the
    variable for a value that is not a strict decimal number in range."""
    from . import _convention
    return _convention.launcher_rank(environ)


# --- is warmcal's CUPTI profiler in this process?

def cupti_profiler_injected(environ: Mapping[str, str] | None = None) -> bool:
    """True when this process runs under `warmcal profile` (or was set up by
    hand the same way): CUDA_INJECTION64_PATH names libwarmcal-inject and
    WARMCAL_OUT is set. Without WARMCAL_OUT the injected library disables
    itself, so the torch counters must record the passes instead."""
    env = os.environ if environ is None else environ
    lib = os.path.basename(env.get("CUDA_INJECTION64_PATH", ""))
    return lib.startswith("libwarmcal-inject") and bool(env.get("WARMCAL_OUT"))


# --- out-of-memory errors

# PyTorch's OutOfMemoryError text: "Tried to allocate 20.00 MiB" and the
# device, "GPU 0 has a total capacity" (torch >= 2.1) or "(GPU 0; ...)".
_TRIED = re.compile(r"Tried to allocate ([0-9]+(?:\.[0-9]+)?) (bytes|KiB|MiB|GiB)")
_GPU = re.compile(r"\(GPU ([0-9]+);|\bGPU ([0-9]+) has a total capacity")
_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def _size_from_message(text):
    """(bytes asked for or None, device named or None) from PyTorch's
    out-of-memory text. Its sizes have two decimals, so the bytes are
    rounded unless given in bytes."""
    m = _TRIED.search(text)
    size = round(float(m.group(1)) * _UNITS[m.group(2)]) if m else None
    g = _GPU.search(text)
    device = int(g.group(1) or g.group(2)) if g else None
    return size, device


def _find_oom(exc, oom_type):
    """The OutOfMemoryError behind exc (itself, or one it was raised from,
    as servers wrap it in their own errors), or None."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if oom_type is not None and isinstance(exc, oom_type):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


# torch._C._cuda_attach_out_of_memory_observer (torch >= 2.0) has no
# detach: one observer per process, attached once, passes each OOM on to the
# recording that is open.
_observer_lock = threading.Lock()
_observer_attached = False


def _oom_observer(device, alloc, device_limit, device_free):
    # called by the caching allocator just before it raises, with the size
    # it asked the driver for (its rounded segment size, as in the message);
    # device_limit is the allowed maximum or the device's total
    rec = _state.recording
    if rec is not None:
        rec._observed_oom(int(device), int(alloc))


def _attach_oom_observer(torch):
    global _observer_attached
    attach = getattr(torch._C, "_cuda_attach_out_of_memory_observer", None)
    if attach is None:
        return False
    with _observer_lock:
        if not _observer_attached:
            try:
                attach(_oom_observer)
            except RuntimeError:
                # other allocator backends refuse observers (cudaMallocAsync,
                # pluggable allocators): the size then comes from the message
                return False
            _observer_attached = True
    return True


# --- the recording

class _State:
    """What is open in this process: at most one recording, at most one
    phase (phases do not nest, as in the profiler)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.recording = None
        self.phase_open = False


_state = _State()


def _device_index(torch, device):
    if device is None:
        return torch.cuda.current_device()
    if isinstance(device, int) and not isinstance(device, bool):
        return device
    if isinstance(device, str) and device.isdigit():
        return int(device)
    d = torch.device(device)    # "cuda:1", torch.device("cuda", 1)
    if d.type != "cuda":
        raise ValueError("device: expected a CUDA device, found %r" % (device,))
    return torch.cuda.current_device() if d.index is None else d.index


def _utc_now():
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Recording:
    """What record() yields: path (the trace once its first phase is
    written, else None), phases (written so far), device, rank, world_size,
    and injected (True: the CUPTI profiler measures, nothing is written
    here)."""

    path: str | None
    phases: int
    device: int
    rank: int
    world_size: int
    injected: bool

    def __init__(self, torch: Any, injected: bool, rank: int, world_size: int,
                 device: int) -> None:
        self._torch = torch
        self.injected = injected
        self.rank = rank
        self.world_size = world_size
        self.device = device
        self.path = None
        self.phases = 0
        self._writer = None
        self._target = None
        self._notes: list[str] = []
        self._oom_here = None        # size of the last OOM on our device in this phase
        self._oom_elsewhere = False   # an OOM on another device in this phase
        self._observer = False

    def _observed_oom(self, device, alloc):
        if device == self.device:
            self._oom_here = alloc
        else:
            self._oom_elsewhere = True

    def _open(self, out_dir, model, tp, pp, rank_note):
        torch = self._torch
        os.makedirs(out_dir, exist_ok=True)
        self._target = _tracefile.trace_path(out_dir, self.rank)
        _refuse_non_regular(self._target)
        props = torch.cuda.get_device_properties(self.device)
        self._observer = _attach_oom_observer(torch)
        from . import _trace   # loads the C library: only when a trace is written
        # under a temporary name until its first phase: an older trace at the
        # target stays whole until this run has something to replace it with
        partial = _tracefile.new_partial(self._target)
        try:
            from . import __version__
            self._writer = _trace.TraceWriter(
                partial, rank=self.rank, world_size=self.world_size, model=model,
                source="torch", gpu_name=props.name, gpu_total_bytes=int(props.total_memory),
                tp=tp, pp=pp, host=socket.gethostname(), start_time=_utc_now(),
                tool_version=__version__, cuda_version=getattr(torch.version, "cuda", None))
            self._writer.set_attr("producer", PRODUCER)
            self._writer.set_attr("torch_version", str(torch.__version__))
            self._writer.set_attr("device", self.device)
            self._writer.set_attr("oom_size_source", OOM_SIZE_FROM_OBSERVER if self._observer
                                  else OOM_SIZE_FROM_MESSAGE)
        except BaseException:
            if self._writer is not None:
                self._writer.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(partial)
            raise
        if rank_note:
            self._notes.append(rank_note)

    def _write(self, row):
        """One phase, flushed by the writer at once; the first one moves the
        trace to its name."""
        self._writer.add_phase(**row)
        self.phases += 1
        if self.path is None:
            _refuse_non_regular(self._target)
            self._writer.rename(self._target)
            self.path = self._target

    def _close(self):
        w, self._writer = self._writer, None
        if w is None:
            return
        partial = w.path
        try:
            if self._notes and self.path is not None:
                w.set_attr("notes", "\n".join(self._notes))
        finally:
            try:
                w.close()
            finally:
                if self.path is None:
                    # nothing measured, or the target turned out not to be a
                    # regular file: whatever is there stays as it was, and
                    # the temporary goes even when closing it failed
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(partial)


def _refuse_non_regular(path):
    why = _tracefile.not_regular(path)
    if why:
        raise OSError(errno.EEXIST, why, path)


def _add_note(exc, text):
    """Say on exc what else failed while it propagated (PEP 678 notes, Python
    >= 3.11; older Pythons chain nothing rather than hide exc)."""
    add = getattr(exc, "add_note", None)
    if add is not None:
        add(text)


def _no_cuda(torch, out_dir):
    return RuntimeError(
        "warmcal.profile.record: no CUDA device: this torch (%s, CUDA %s) sees none "
        "(torch.cuda.is_available() is False), so there is nothing to measure; nothing "
        "was written to %s" % (torch.__version__, getattr(torch.version, "cuda", None),
                               out_dir))


@contextlib.contextmanager
def record(out_dir: str | os.PathLike[str], *, model: str, rank: int | None = None,
           world_size: int | None = None, device: Any = None, tp: int = 0,
           pp: int = 0) -> Iterator[Recording]:
    """Record the phases opened inside this block on one device (default:
    torch.cuda.current_device()) into out_dir/rank-<rank>.h5, source "torch";
    yields a Recording. rank and world_size default to the launcher's
    variables (launcher_rank). Under `warmcal profile` (CUPTI injected) it
    writes nothing: the injected profiler measures the same phases.

    The trace is created under a temporary name in out_dir and takes its
    name with its first phase, so an older trace there is replaced only by
    one that holds a measurement; each phase is flushed when it ends, so a
    crash loses only the phase in flight. Raises RuntimeError ("no CUDA
    device") where torch sees no GPU, OSError for a target that exists and
    is not a regular file, ValueError for bad arguments or launcher
    variables; warmcal._trace.TraceError when the trace cannot be written."""
    if not isinstance(model, str) or not model:
        raise ValueError("model: expected a non-empty string, found %r" % (model,))
    for name, v in (("tp", tp), ("pp", pp)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError("%s: expected an integer >= 0, found %r" % (name, v))
    note = None
    if rank is None or world_size is None:
        env_rank, env_size, env_from, env_note = launcher_rank()
        if rank is None and world_size is None:
            rank, world_size, note = env_rank, env_size, env_note
        elif rank is None:
            rank = env_rank
        elif env_from != "none" and env_rank == rank:
            world_size, note = env_size, env_note
        elif isinstance(rank, int) and not isinstance(rank, bool) and 0 <= rank < _INT_MAX:
            # as the injected profiler does for a rank without a size
            world_size = rank + 1
            note = ("rank=%d given without world_size, and no launcher variable gives it: "
                    "recorded as %d (rank + 1), the smallest it can be" % (rank, rank + 1))
    for name, value, low in (("rank", rank, 0), ("world_size", world_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _INT_MAX:
            raise ValueError("%s: expected an integer in %d..%d, found %r"
                             % (name, low, _INT_MAX, value))
    assert isinstance(rank, int) and isinstance(world_size, int)  # checked just above
    if rank >= world_size:
        raise ValueError("rank %d is not below world_size %d" % (rank, world_size))

    import torch
    if not torch.cuda.is_available():
        raise _no_cuda(torch, out_dir)
    injected = cupti_profiler_injected()
    if not injected and os.environ.get("PYTORCH_NO_CUDA_MEMORY_CACHING", "0") != "0":
        # without the caching allocator PyTorch keeps no counters: every
        # phase would read 0 bytes
        raise RuntimeError(
            "warmcal.profile.record: PYTORCH_NO_CUDA_MEMORY_CACHING=%s disables PyTorch's "
            "caching allocator and with it the counters this helper reads; unset it, or "
            "measure under `warmcal profile` (CUPTI), which sees every cudaMalloc; nothing "
            "was written to %s" % (os.environ["PYTORCH_NO_CUDA_MEMORY_CACHING"], out_dir))
    index = _device_index(torch, device)
    if not 0 <= index < torch.cuda.device_count():
        raise ValueError("device %r: this process sees %d CUDA device(s)"
                         % (device, torch.cuda.device_count()))
    rec = Recording(torch, injected, rank, world_size, index)
    with _state.lock:
        if _state.recording is not None:
            raise RuntimeError("warmcal.profile.record: a recording is already open in this "
                               "process (record() blocks do not nest)")
        _state.recording = rec
    try:
        if not rec.injected:
            rec._open(os.fspath(out_dir), model, tp, pp, note)
    except BaseException:
        _state.recording = None
        raise
    try:
        yield rec
    except BaseException as body_error:
        # the body's error is the one the caller must see; a failure to
        # close goes with it as a note
        try:
            rec._close()
        except Exception as close_error:
            _add_note(body_error, "warmcal.profile: closing the trace failed too: %s"
                      % close_error)
        raise
    else:
        rec._close()
    finally:
        _state.recording = None


# --- the phase

@contextlib.contextmanager
def phase(tokens: int, batch: int = 1, label: str = "context") -> Iterator[None]:
    """One warmup pass: the NVTX range "warmcal tokens=N batch=B label=L"
    around the block (popped whatever happens), and inside record() without
    the CUPTI profiler, one phase row written from the torch counters of the
    recording's device when the block ends: allocated bytes at begin, peak
    and end, reserved bytes and device free memory at both edges. An
    out-of-memory error on that device inside the block makes the phase
    "oom" with the size PyTorch asked for (then re-raised, unless the block
    caught it itself); any other exception makes it "aborted" (re-raised).
    Outside record() the range alone is opened. A phase belongs to the
    process, not to a thread: an out-of-memory error another thread meets
    on the recording's device while the phase is open is counted in it.
    Raises RuntimeError ("no CUDA device") where torch sees no GPU,
    ValueError for
    tokens, batch or label the convention refuses (before anything runs),
    RuntimeError when a phase is already open (phases do not nest)."""
    message = phase_message(tokens, batch, label)
    import torch
    if not torch.cuda.is_available():
        # torch's own NVTX call would fail with "NVTX functions not installed"
        raise RuntimeError("warmcal.profile.phase(%s): no CUDA device: this torch (%s, CUDA %s) "
                           "sees none (torch.cuda.is_available() is False)"
                           % (message, torch.__version__, getattr(torch.version, "cuda", None)))
    with _state.lock:
        if _state.phase_open:
            raise RuntimeError("warmcal.profile.phase(%s): a phase is already open; phases "
                               "do not nest" % message)
        _state.phase_open = True
        rec = _state.recording
    try:
        if rec is None or rec.injected:
            with _nvtx_range(torch, message, None if rec is None else rec.device):
                yield
        else:
            with _recorded_phase(torch, rec, message, tokens, batch, label):
                yield
    finally:
        _state.phase_open = False


def _synchronize(torch, device):
    """Let the pass's work (and its memory traffic) finish inside the
    phase. Without a recording's device: the current one, if CUDA was used."""
    if device is not None:
        torch.cuda.synchronize(device)
    elif torch.cuda.is_initialized():
        torch.cuda.synchronize()


@contextlib.contextmanager
def _nvtx_range(torch, message, device):
    torch.cuda.nvtx.range_push(message)
    try:
        yield
    except BaseException:
        # the device may be what failed: the pop must still happen
        with contextlib.suppress(Exception):
            _synchronize(torch, device)
        raise
    else:
        _synchronize(torch, device)
    finally:
        torch.cuda.nvtx.range_pop()


@contextlib.contextmanager
def _recorded_phase(torch, rec, message, tokens, batch, label):
    cuda, dev = torch.cuda, rec.device
    # reset after synchronizing: work queued before the phase must not
    # count towards its peak
    cuda.synchronize(dev)
    cuda.reset_peak_memory_stats(dev)
    row = {"label": label, "tokens": int(tokens), "batch": int(batch),
           "live_begin": cuda.memory_allocated(dev),
           "reserved_begin": cuda.memory_reserved(dev),
           "device_free_begin": cuda.mem_get_info(dev)[0]}
    rec._oom_here, rec._oom_elsewhere = None, False
    row["begin_ns"] = time.monotonic_ns()
    body_error = None
    cuda.nvtx.range_push(message)
    try:
        yield
    except BaseException as e:
        body_error = e
        raise
    finally:
        try:
            read_error = _end_counters(torch, rec, row)
        finally:
            cuda.nvtx.range_pop()
        _judge(torch, rec, row, body_error, read_error)
        try:
            rec._write(row)
        except Exception as write_error:
            if body_error is None:
                raise
            _add_note(body_error, "warmcal.profile: the phase could not be written: %s"
                      % write_error)
        if read_error is not None and body_error is None:
            raise read_error


def _end_counters(torch, rec, row):
    """Fill the phase's end from the counters; the error when they cannot be
    read (the device failed), leaving the end as the beginning and free
    memory unknown."""
    cuda, dev = torch.cuda, rec.device
    try:
        cuda.synchronize(dev)
        row["live_peak"] = cuda.max_memory_allocated(dev)
        row["live_end"] = cuda.memory_allocated(dev)
        row["reserved_end"] = cuda.memory_reserved(dev)
        row["device_free_end"] = cuda.mem_get_info(dev)[0]
        error = None
    except Exception as e:
        row.update(live_peak=row["live_begin"], live_end=row["live_begin"],
                   reserved_end=row["reserved_begin"], device_free_end=None)
        error = e
    row["end_ns"] = time.monotonic_ns()
    return error


def _judge(torch, rec, row, body_error, read_error):
    """The phase's outcome and failed_alloc_bytes."""
    oom_type = getattr(torch.cuda, "OutOfMemoryError", None)   # torch >= 1.13
    oom = _find_oom(body_error, oom_type)
    where = "phase %d (tokens=%d batch=%d label=%s)" % (rec.phases, row["tokens"], row["batch"],
                                                        row["label"])
    if rec._oom_here is not None:
        # the observer saw the allocation fail on our device: an OOM even if
        # the pass caught it (or wrapped it in an error of its own)
        row.update(outcome="oom", failed_alloc_bytes=rec._oom_here)
    elif oom is not None:
        size, named = _size_from_message(str(oom))
        if rec._oom_elsewhere or (named is not None and named != rec.device):
            row["outcome"] = "aborted"
            rec._notes.append("%s: out of memory on another device (%s), not on device %d: "
                              "kept as aborted" % (where, "GPU %d" % named if named is not None
                                                   else "seen by the OOM observer", rec.device))
        else:
            row.update(outcome="oom", failed_alloc_bytes=size or 0)
            if size is None:
                rec._notes.append("%s: out of memory, but PyTorch's message names no size: "
                                  "failed_alloc_bytes is 0" % where)
            elif rec._observer:
                rec._notes.append("%s: out of memory that the OOM observer did not see: "
                                  "failed_alloc_bytes is from the message, rounded" % where)
    elif body_error is not None or read_error is not None:
        row["outcome"] = "aborted"
