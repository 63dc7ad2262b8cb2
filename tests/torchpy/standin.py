"""A stand-in for the torch.cuda functions warmcal.profile calls, so that the
helper runs without a GPU: simulated devices, each with a caching allocator
(allocated, reserved and peak counters, segments rounded as PyTorch rounds
them, an out-of-memory error with the size asked for that first calls the
attached OOM observers) and memory used outside the allocator (NCCL, cuBLAS
workspaces), plus a log of NVTX pushes and pops.

The stand-in keeps its own account of every phase: an NVTX push of a
"warmcal tokens=..." message opens a phase on every device, its pop closes
it, and every allocation in between moves that phase's own peak. Those rows
(StandIn.truth) are the truth a trace must equal, field for field.

Two ways to install it:
- install_fake_torch(): a minimal `torch` module in sys.modules (cheap; for
  the unit tests and the 4-rank job). Allocations come from the test itself
  (StandIn.alloc / free).
- patch_real_torch(): onto the real, CPU-only torch; with accounting()
  active, every tensor storage the program creates is an allocation on the
  current simulated device until the storage dies, so a plain PyTorch
  program (tools/examples/torch_warmup.py) drives the simulated memory.
"""

import re
import sys
import types

KiB, MiB, GiB = 2**10, 2**20, 2**30

# PyTorch's caching allocator (c10/cuda/CUDACachingAllocator.cpp): blocks are
# multiples of 512 bytes; up to 1 MiB they come from 2 MiB segments, up to
# 10 MiB from 20 MiB ones, larger ones get a segment of their own rounded up
# to 2 MiB.
MIN_BLOCK = 512
SMALL_SIZE, SMALL_SEGMENT = 1 * MiB, 2 * MiB
MIN_LARGE_ALLOC, LARGE_SEGMENT = 10 * MiB, 20 * MiB
ROUND_LARGE = 2 * MiB

_PHASE = re.compile(r"^warmcal tokens=([0-9]+) batch=([0-9]+) label=(\S+)$")


def round_up(n, to):
    return (n + to - 1) // to * to


def segment_size(block):
    """The size the allocator asks the driver for when no cached segment
    holds a block: what PyTorch's OOM message and observer report."""
    if block <= SMALL_SIZE:
        return SMALL_SEGMENT
    if block < MIN_LARGE_ALLOC:
        return LARGE_SEGMENT
    return round_up(block, ROUND_LARGE)


def format_size(n):
    """Sizes as PyTorch's messages print them: two decimals, binary units."""
    if n <= 1024:
        return "%d bytes" % n
    if n <= MiB:
        return "%.2f KiB" % (n / KiB)
    if n <= GiB:
        return "%.2f MiB" % (n / MiB)
    return "%.2f GiB" % (n / GiB)


class FakeOutOfMemoryError(RuntimeError):
    """torch.cuda.OutOfMemoryError of the fake torch module."""


class Props:
    def __init__(self, name, total_memory):
        self.name = name
        self.total_memory = total_memory


class Block:
    def __init__(self, device, size):
        self.device = device
        self.size = size
        self.live = True


class SimDevice:
    """One device: total memory, memory used outside the allocator, and a
    caching allocator without fragmentation (a freed block's bytes serve any
    later block that fits in what is cached)."""

    def __init__(self, index, total, outside=0, name="Stand-in GPU"):
        self.index = index
        self.total = total
        self.outside = outside
        self.name = name
        self.allocated = 0
        self.reserved = 0
        self.peak = 0            # what max_memory_allocated reports (reset by the caller)
        self.open_truth = None   # the phase the stand-in is accounting, if any

    @property
    def free(self):
        return self.total - self.outside - self.reserved

    def _moved(self):
        self.peak = max(self.peak, self.allocated)
        if self.open_truth is not None:
            t = self.open_truth
            t["live_peak"] = max(t["live_peak"], self.allocated)


class StandIn:
    """Simulated devices and the torch.cuda functions over them.

    devices: [(total_bytes, outside_bytes), ...]. observer: offer
    torch._C._cuda_attach_out_of_memory_observer (torch >= 2.0); False:
    no such function (torch 1.13), "refused": it raises (another allocator
    backend); then the helper must read the size from the error's message. old_message: word
    the message as torch 1.13 does ("(GPU 0; ... total capacity; ...)")."""

    def __init__(self, devices, observer=True, old_message=False, name="Stand-in GPU"):
        self.devices = [SimDevice(i, t, o, name) for i, (t, o) in enumerate(devices)]
        self.current = 0
        self.observer = observer
        self.old_message = old_message
        self.observers = []
        self.nvtx = []          # ("push", message) and ("pop", message) in order
        self.calls = []         # (function, device index) for every counter read
        self.truth = {d.index: [] for d in self.devices}
        self.oom_error = FakeOutOfMemoryError
        self.initialized = False
        self.before_read = None   # accounting(): take dead storages' frees into account
        self._stack = []

    # --- simulation, for tests

    def dev(self, device=None):
        return self.devices[self._index(device)]

    def alloc(self, nbytes, device=None):
        """Allocate like the caching allocator: from the cache when it holds
        the block, else a new segment; when the device lacks the segment,
        release the cache and try again, then fail as PyTorch fails."""
        d = self.dev(device)
        size = round_up(max(int(nbytes), 1), MIN_BLOCK)
        if size > d.reserved - d.allocated:
            grow = segment_size(size)
            if grow > d.free:
                d.reserved = d.allocated   # release_cached_blocks, then retry
            if grow > d.free:
                self._out_of_memory(d, grow)
            d.reserved += grow
        d.allocated += size
        d._moved()
        self.initialized = True
        return Block(d.index, size)

    def free(self, block):
        if block.live:
            block.live = False
            self.devices[block.device].allocated -= block.size

    def grow_outside(self, nbytes, device=None):
        """Memory taken outside the allocator (a library workspace, NCCL)."""
        self.dev(device).outside += nbytes

    def _out_of_memory(self, d, asked):
        if d.open_truth is not None:
            d.open_truth["outcome"] = "oom"
            d.open_truth["failed_alloc_bytes"] = asked
        for fn in list(self.observers):
            fn(d.index, asked, d.total, d.free)
        if self.old_message:
            text = ("CUDA out of memory. Tried to allocate %s (GPU %d; %s total capacity; %s "
                    "already allocated; %s free; %s reserved in total by PyTorch)"
                    % (format_size(asked), d.index, format_size(d.total),
                       format_size(d.allocated), format_size(d.free), format_size(d.reserved)))
        else:
            text = ("CUDA out of memory. Tried to allocate %s. GPU %d has a total capacity of %s "
                    "of which %s is free. Of the allocated memory %s is allocated by PyTorch, "
                    "and %s is reserved by PyTorch but unallocated."
                    % (format_size(asked), d.index, format_size(d.total), format_size(d.free),
                       format_size(d.allocated), format_size(d.reserved - d.allocated)))
        raise self.oom_error(text)

    # --- the torch.cuda functions

    def _index(self, device):
        if device is None:
            return self.current
        if isinstance(device, int):
            i = device
        elif isinstance(device, str):
            i = int(device.split(":")[1]) if ":" in device else self.current
        else:   # torch.device
            i = self.current if device.index is None else device.index
        if not 0 <= i < len(self.devices):
            raise RuntimeError("CUDA error: invalid device ordinal %r" % (device,))
        return i

    def _read(self, what, device):
        if self.before_read is not None:
            self.before_read()
        i = self._index(device)
        self.calls.append((what, i))
        return self.devices[i]

    def is_available(self):
        return True

    def device_count(self):
        return len(self.devices)

    def current_device(self):
        return self.current

    def set_device(self, device):
        self.current = self._index(device)

    def is_initialized(self):
        return self.initialized

    def synchronize(self, device=None):
        self._read("synchronize", device)

    def reset_peak_memory_stats(self, device=None):
        d = self._read("reset_peak_memory_stats", device)
        d.peak = d.allocated

    def memory_allocated(self, device=None):
        return self._read("memory_allocated", device).allocated

    def max_memory_allocated(self, device=None):
        return self._read("max_memory_allocated", device).peak

    def memory_reserved(self, device=None):
        return self._read("memory_reserved", device).reserved

    def mem_get_info(self, device=None):
        d = self._read("mem_get_info", device)
        return d.free, d.total

    def get_device_properties(self, device):
        d = self._read("get_device_properties", device)
        return Props(d.name, d.total)

    def empty_cache(self):
        for d in self.devices:
            d.reserved = d.allocated

    def attach_oom_observer(self, fn):
        if self.observer == "refused":
            # as PyTorch's cudaMallocAsync backend and pluggable allocators do
            raise RuntimeError("cudaMallocAsync does not yet support attachOutOfMemoryObserver. "
                               "If you need it, please file an issue describing your use case.")
        self.observers.append(fn)

    def range_push(self, message):
        self.nvtx.append(("push", message))
        m = _PHASE.match(message)
        if m:
            for d in self.devices:
                d.open_truth = {
                    "label": m.group(3), "tokens": int(m.group(1)), "batch": int(m.group(2)),
                    "live_begin": d.allocated, "live_peak": d.allocated,
                    "reserved_begin": d.reserved, "device_free_begin": d.free,
                    "outcome": "ok", "failed_alloc_bytes": 0}
        self._stack.append(message)
        return len(self._stack) - 1

    def range_pop(self):
        if not self._stack:
            return -1
        message = self._stack.pop()
        self.nvtx.append(("pop", message))
        if _PHASE.match(message):
            for d in self.devices:
                t, d.open_truth = d.open_truth, None
                t.update(live_end=d.allocated, reserved_end=d.reserved, device_free_end=d.free)
                self.truth[d.index].append(t)
        return len(self._stack)

    # --- installing it

    def _cuda_functions(self):
        names = ("is_available", "device_count", "current_device", "set_device",
                 "is_initialized", "synchronize", "reset_peak_memory_stats", "memory_allocated",
                 "max_memory_allocated", "memory_reserved", "mem_get_info",
                 "get_device_properties", "empty_cache")
        return {n: getattr(self, n) for n in names}

    def install_fake_torch(self, version="2.4.0", cuda="12.4"):
        """A minimal torch module (torch, torch.cuda, torch.cuda.nvtx,
        torch._C, torch.version) in sys.modules; returns it. Refused when a
        real torch is already imported."""
        if "torch" in sys.modules:
            raise RuntimeError("a torch module is already imported")
        torch = types.ModuleType("torch")
        torch.__version__ = version
        torch.version = types.ModuleType("torch.version")
        torch.version.cuda = cuda
        cuda_mod = types.ModuleType("torch.cuda")
        for name, fn in self._cuda_functions().items():
            setattr(cuda_mod, name, fn)
        cuda_mod.OutOfMemoryError = FakeOutOfMemoryError
        nvtx = types.ModuleType("torch.cuda.nvtx")
        nvtx.range_push, nvtx.range_pop = self.range_push, self.range_pop
        cuda_mod.nvtx = nvtx
        torch.cuda = cuda_mod
        torch._C = types.ModuleType("torch._C")
        if self.observer:
            torch._C._cuda_attach_out_of_memory_observer = self.attach_oom_observer
        torch.device = _FakeTorchDevice
        sys.modules.update({"torch": torch, "torch.cuda": cuda_mod, "torch.cuda.nvtx": nvtx,
                            "torch._C": torch._C, "torch.version": torch.version})
        self.oom_error = FakeOutOfMemoryError
        return torch

    def patch_real_torch(self):
        """Put the stand-in in place of the real torch.cuda functions (and
        the OOM observer hook when observer is set; torch.version.cuda);
        returns a function that puts the real ones back."""
        import torch
        saved = []

        def put(obj, name, value):
            saved.append((obj, name, getattr(obj, name, _MISSING)))
            setattr(obj, name, value)

        for name, fn in self._cuda_functions().items():
            put(torch.cuda, name, fn)
        put(torch.cuda.nvtx, "range_push", self.range_push)
        put(torch.cuda.nvtx, "range_pop", self.range_pop)
        if self.observer:
            put(torch._C, "_cuda_attach_out_of_memory_observer", self.attach_oom_observer)
        elif hasattr(torch._C, "_cuda_attach_out_of_memory_observer"):
            put(torch._C, "_cuda_attach_out_of_memory_observer", _MISSING)
        put(torch.version, "cuda", "12.4")
        self.oom_error = torch.cuda.OutOfMemoryError

        def undo():
            for obj, name, value in reversed(saved):
                if value is _MISSING:
                    delattr(obj, name)
                else:
                    setattr(obj, name, value)
        return undo

    def accounting(self):
        """A context manager (after patch_real_torch): every tensor storage
        created inside it is a block on the current simulated device until
        the storage dies."""
        return _storage_accounting(self)


class _Missing:
    pass


_MISSING = _Missing()


class _FakeTorchDevice:
    """torch.device of the fake module: "cuda", "cuda:N" or ("cuda", N)."""

    def __init__(self, spec, index=None):
        if isinstance(spec, _FakeTorchDevice):
            spec, index = spec.type, spec.index
        elif ":" in str(spec):
            spec, index = str(spec).split(":")
            index = int(index)
        self.type = str(spec)
        self.index = index


def _storage_accounting(standin):
    # imported here: the fake-torch tests never get this far
    import torch
    from torch.multiprocessing.reductions import StorageWeakRef
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    live = {}   # storage data pointer -> (Block, StorageWeakRef)

    def untyped(t):
        s = t.storage()
        return s.untyped() if hasattr(s, "untyped") else s

    def sweep():
        # a storage's death is seen at the next operation or counter read,
        # before any new allocation, so peaks are those of eager frees
        for ptr, (block, ref) in list(live.items()):
            if ref.expired():
                standin.free(block)
                del live[ptr]

    class Accounting(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            sweep()
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor):
                    s = untyped(t)
                    ptr = s.data_ptr()
                    if s.nbytes() == 0:
                        continue
                    if ptr in live:
                        if not live[ptr][1].expired():
                            continue   # a view or an in-place result: no new memory
                        standin.free(live.pop(ptr)[0])   # died inside this very operation
                    live[ptr] = (standin.alloc(s.nbytes()), StorageWeakRef(s))
            return out

    return _AccountingContext(Accounting(), standin, sweep, live)


class _AccountingContext:
    def __init__(self, mode, standin, sweep, live):
        self.mode = mode
        self.standin = standin
        self.sweep = sweep
        self.live = live

    def __enter__(self):
        self.standin.before_read = self.sweep   # counter reads see frees too
        self.mode.__enter__()
        return self

    def __exit__(self, *exc):
        self.standin.before_read = None
        return self.mode.__exit__(*exc)
