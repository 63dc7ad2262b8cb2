"""Memory snapshots built the way PyTorch's caching allocator records them, in
the field sets of several PyTorch versions, for the importer tests.

The generator plays a small allocator: it hands out blocks, frees them
(free_requested, then free_completed at once or a few steps later, as for a
block another stream still uses), grows and releases segments, and keeps its
own account of the bytes live after every step. That account is the truth
the importer's replay must reproduce; it is never computed from the entries.

Field sets (what _snapshot() returned in each version):
  "2.0": segments with blocks {size, requested_size, state} (no address: they
         tile their segment), entries {action, addr|device_free, size, stream,
         frames} without time_us.
  "2.1": blocks and segments with address and frames, is_expandable; entries
         with time_us; segment_map/segment_unmap for expandable segments;
         allocator_settings.
  "2.6": as 2.1, plus entries' compile_context and user_metadata, and
         external_annotations ({name, stage, device, time_us}).
"""

import random

ROUND = 512


def _rounded(size):
    return max(ROUND, (size + ROUND - 1) // ROUND * ROUND)


class Allocator:
    def __init__(self, seed, version="2.1", device=0, preexisting=3):
        self.rng = random.Random(seed)
        self.version = version
        self.device = device
        self.entries = []
        self.time_us = 1000
        self.next_addr = 1 << 32
        self.live = {}          # addr -> requested size (allocated, not yet completed)
        self.pending = []       # addrs whose free_completed is still to come
        self.segments = {}      # addr -> total_size (one block per segment)
        self.live_bytes = 0
        self.reserved = 0
        self.metadata = ""
        self.annotations = []
        # blocks allocated before recording began: live, no entries
        for _ in range(preexisting):
            self._new_block(self.rng.randrange(1, 1 << 20), record=False)
        self.live_at_start = self.live_bytes
        self.reserved_at_start = self.reserved

    def _entry(self, **fields):
        self.time_us += self.rng.randrange(0, 3)
        e = dict(fields)
        e.setdefault("stream", 0)
        e["frames"] = [{"filename": "warmup.py", "line": 7, "name": "forward"}]
        if self.version != "2.0":
            e["time_us"] = self.time_us
        if self.version == "2.6":
            e["compile_context"] = "N/A"
            e["user_metadata"] = self.metadata
        self.entries.append(e)

    def _new_block(self, size, record=True):
        addr = self.next_addr
        self.next_addr += _rounded(size) + (1 << 21)
        if record:
            expandable = self.version != "2.0" and self.rng.random() < 0.2
            self._entry(action="segment_map" if expandable else "segment_alloc", addr=addr,
                        size=_rounded(size))
        self.segments[addr] = _rounded(size)
        self.reserved += _rounded(size)
        if record:
            self._entry(action="alloc", addr=addr, size=size)
        self.live[addr] = size
        self.live_bytes += size
        return addr

    def alloc(self, size):
        self._new_block(size)

    def free(self, addr=None, deferred=False):
        if addr is None:
            choices = sorted(a for a in self.live if a not in self.pending)
            if not choices:
                return
            addr = self.rng.choice(choices)
        self._entry(action="free_requested", addr=addr, size=self.live[addr])
        if deferred:
            self.pending.append(addr)
        else:
            self._complete(addr)

    def _complete(self, addr):
        size = self.live.pop(addr)
        self._entry(action="free_completed", addr=addr, size=size)
        self.live_bytes -= size
        if self.rng.random() < 0.5:   # empty_cache: the segment goes back
            unmap = self.version != "2.0" and self.rng.random() < 0.2
            self._entry(action="segment_unmap" if unmap else "segment_free", addr=addr,
                        size=self.segments[addr])
            self.reserved -= self.segments.pop(addr)

    def complete_pending(self):
        while self.pending:
            self._complete(self.pending.pop(0))

    def oom(self, size, device_free):
        self.time_us += 1
        e = {"action": "oom", "device_free": device_free, "size": size, "stream": 0,
             "frames": []}
        if self.version != "2.0":
            e["time_us"] = self.time_us
        self.entries.append(e)

    def annotate(self, name, stage):
        self.time_us += 1
        self.annotations.append({"name": name, "stage": stage, "device": self.device,
                                 "time_us": self.time_us})
        self.time_us += 1

    def run_pass(self, steps, base):
        """A warmup pass: allocations around base bytes, frees, some
        deferred; returns the highest live bytes seen during the pass and
        the live bytes when it started (the allocator's own account)."""
        begin = self.live_bytes
        peak = begin
        for _ in range(steps):
            r = self.rng.random()
            if r < 0.55:
                self.alloc(self.rng.randrange(1, base))
            elif r < 0.85:
                self.free(deferred=self.rng.random() < 0.3)
            else:
                self.complete_pending()
            peak = max(peak, self.live_bytes)
        return begin, peak

    def snapshot(self):
        """The dict _snapshot() returns, in this version's field set."""
        segs = []
        for addr, total in sorted(self.segments.items()):
            seg = {"device": self.device, "address": addr, "total_size": total, "stream": 0,
                   "segment_type": "large" if total > (1 << 20) else "small",
                   "segment_pool_id": (0, 0), "allocated_size": 0, "active_size": 0,
                   "requested_size": 0}
            blocks = []
            if addr in self.live:
                state = "active_pending_free" if addr in self.pending else "active_allocated"
                block = {"size": total, "requested_size": self.live[addr], "state": state}
            else:
                block = {"size": total, "requested_size": 0, "state": "inactive"}
            if self.version == "2.0":
                block["history"] = [{"addr": addr, "real_size": block["requested_size"],
                                     "frames": []}]
            else:
                block["address"] = addr
                block["frames"] = []
                seg["is_expandable"] = False
                seg["frames"] = []
            blocks.append(block)
            seg["blocks"] = blocks
            segs.append(seg)
        traces = [[] for _ in range(self.device + 1)]
        traces[self.device] = self.entries
        snap = {"segments": segs, "device_traces": traces}
        if self.version != "2.0":
            snap["allocator_settings"] = {"PYTORCH_CUDA_ALLOC_CONF": "", "max_split_size": -1,
                                          "garbage_collection_threshold": 0.0,
                                          "expandable_segments": False,
                                          "roundup_power2_divisions": {"1": 0}}
        if self.version == "2.6":
            snap["external_annotations"] = self.annotations
        return snap
