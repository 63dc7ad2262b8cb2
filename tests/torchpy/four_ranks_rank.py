"""One rank of the 4-rank job of four_ranks.py: a server's warmup loop on the
stand-in for torch.cuda, wrapped with warmcal.profile in the three lines of
the issue (rank and world size from Open MPI's variables). Rank 0 has less
free memory (more taken outside the allocator), so its largest context pass
runs out of memory and is skipped, as a server skips it. After the
recording, the rank compares its trace with the stand-in's truth and prints
"ok rank R ..." or what differs.

    four_ranks_rank.py OUT_DIR TRUTH_DIR
"""

import json
import os
import sys

import standin
import tracecheck
from standin import GiB, KiB, MiB

out_dir, truth_dir = sys.argv[1], sys.argv[2]

sim = standin.StandIn([(16 * GiB, 0)], name="Stand-in GPU 16GB")
torch = sim.install_fake_torch()

import warmcal.profile as wp   # noqa: E402 - after the stand-in became `torch`

rank, world_size, _, _ = wp.launcher_rank()
# what the rank holds outside the caching allocator: the context, NCCL, and
# on rank 0 the orchestrator's buffers
sim.grow_outside((6 if rank == 0 else 1) * GiB)
weights = sim.alloc(4 * GiB)


def run_warmup_forward(tokens, batch, label):
    """A pass's activations: linear and (unfused attention) quadratic in the
    tokens of a sequence; the first generation pass makes a library
    workspace, outside the allocator."""
    if label == "generation" and batch == 1:
        sim.grow_outside(32 * MiB)
    seq = tokens // batch
    blocks = [sim.alloc(tokens * 64 * KiB), sim.alloc(batch * seq * seq * 32),
              sim.alloc(tokens * 16 * KiB)]
    for b in blocks:
        sim.free(b)


shapes = ([(t, 1, "context") for t in (512, 1024, 2048, 4096, 6144, 8192, 12288, 16384)]
          + [(b, b, "generation") for b in (1, 2, 4, 8, 16, 32, 64)])

# --- the three lines
with wp.record(out_dir, model="stand-in-llm", tp=world_size):
    for tokens, batch, label in shapes:
        try:
            with wp.phase(tokens=tokens, batch=batch, label=label):
                run_warmup_forward(tokens, batch, label)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()   # a server logs the skipped shape and goes on
# ---

path = os.path.join(out_dir, "rank-%d.h5" % rank)
attrs, phases = tracecheck.read(path)
problems = tracecheck.mismatches(phases, sim.truth[0])
if (attrs["rank"], attrs["world_size"], attrs["source"]) != (rank, world_size, "torch"):
    problems.append("attributes %r" % attrs)
ooms = [p["tokens"] for p in phases if p["outcome"] == "oom"]
if (rank == 0) != bool(ooms):
    problems.append("out-of-memory passes %r on rank %d" % (ooms, rank))
with open(os.path.join(truth_dir, "rank-%d.json" % rank), "w") as f:
    json.dump(sim.truth[0], f)
for line in problems:
    print("rank %d: FAIL: %s" % (rank, line))
if not problems:
    print("ok rank %d of %d: %d phases, out of memory at %r" % (rank, world_size, len(phases),
                                                                 ooms))
sys.exit(1 if problems else 0)
