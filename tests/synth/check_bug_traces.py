#!/usr/bin/python3
"""Reads the traces of the original-bug deployment with Debian's h5py and
checks what a user relies on: the documented attributes and fields, rank 0
with less free memory than the others, the whole schedule covered, and the
largest context passes out of memory on rank 0 only."""
import sys

import h5py
import numpy as np

out, ranks, max_tokens = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
FIELDS = ["label", "tokens", "batch", "begin_ns", "end_ns", "live_begin", "live_peak",
          "live_end", "device_free_begin", "device_free_end", "outcome", "failed_alloc_bytes"]
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


tables = {}
for r in range(ranks):
    path = f"{out}/rank-{r}.h5"
    with h5py.File(path, "r") as f:
        a = f.attrs
        check(int(a["warmcal_schema"]) == 1, f"{path}: warmcal_schema")
        check(int(a["rank"]) == r, f"{path}: rank")
        check(int(a["world_size"]) == ranks, f"{path}: world_size")
        check(int(a["complete"]) == 1, f"{path}: complete")
        for name in ("model", "source", "gpu_name"):
            v = a[name]
            check(isinstance(v, (bytes, str, np.bytes_)), f"{path}: {name} is a string")
        src = a["source"].decode() if isinstance(a["source"], bytes) else str(a["source"])
        check(src == "simulated", f"{path}: source is {src}")
        check(a["gpu_total_bytes"].dtype == np.uint64, f"{path}: gpu_total_bytes is u64")
        ph = f["phases"]
        check(ph.ndim == 1 and ph.chunks is not None and ph.maxshape == (None,),
              f"{path}: /phases is chunked and extendable")
        for field in FIELDS:
            check(field in ph.dtype.names, f"{path}: /phases has {field}")
        check(ph.dtype["label"].itemsize == 32, f"{path}: label is 32 bytes")
        check(ph.dtype["tokens"] == np.uint64 and ph.dtype["batch"] == np.uint32
              and ph.dtype["outcome"] == np.uint8, f"{path}: field widths")
        tables[r] = ph[()]

ctx = {r: t[t["label"] == b"context"] for r, t in tables.items()}
for r, t in ctx.items():
    tokens = sorted(int(x) for x in t["tokens"])
    check(tokens[0] == 1 and tokens[-1] == max_tokens, f"rank {r}: context tokens span 1..{max_tokens}")
    check(len(tokens) >= 20, f"rank {r}: {len(tokens)} context passes")
    gen = tables[r][tables[r]["label"] == b"generation"]
    check(len(gen) > 0, f"rank {r}: generation passes present")

free0 = int(tables[0]["device_free_begin"][0])
for r in range(1, ranks):
    free_r = int(tables[r]["device_free_begin"][0])
    check(free0 < free_r, f"rank 0 free {free0} < rank {r} free {free_r}")
    check(all(ctx[r]["outcome"] == 0), f"rank {r}: every pass fits")

largest = ctx[0][ctx[0]["tokens"] == max_tokens]
check(len(largest) == 1 and int(largest["outcome"][0]) == 1, "rank 0: largest pass is OOM")
check(int(largest["failed_alloc_bytes"][0]) > 0, "rank 0: failed allocation size recorded")
small = ctx[0][ctx[0]["tokens"] <= 1024]
check(all(small["outcome"] == 0), "rank 0: small passes fit")

if failures:
    print("\n".join("FAIL: " + f for f in failures))
    sys.exit(1)
print(f"ok: {ranks} traces, rank 0 free {free0 / 2**30:.2f} GiB, "
      f"{int((ctx[0]['outcome'] == 1).sum())} OOM passes on rank 0")
