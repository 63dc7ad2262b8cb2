"""The Python examples of docs/integration.md, cut from the document and run
as written on 4 ranks (`mpirun -np 4 python3 -m mpi4py test_doc_examples.py
DIR`), with a fake engine standing in for the server: the mpi4py example over
COMM_WORLD, then the budget example (max_tokens capping the engine's
max_num_tokens), then the torch.distributed example over a Gloo group
(CUDA's free-memory call answered by the fake engine, as there is no GPU
here).
Rank 2 has 5 GiB free, the others 40 GiB, on a TP-4 table that needs 1 GiB +
1 MiB per context token: every rank runs and skips the same passes.
"""

import datetime
import logging
import os
import re
import socket
import sys

from mpi4py import MPI
import torch
import torch.distributed as dist

import warmcal
from gatetest import GiB, check, table

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
GUIDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "docs",
                     "integration.md")
FREE = 5 * GiB if rank == 2 else 40 * GiB


def say(line):
    sys.stdout.flush()
    os.write(1, (line + "\n").encode())


class Engine:
    """What the examples call on the server's engine."""

    def __init__(self):
        self.ran = []
        self.max_num_tokens = 8192

    def batch_ok(self, batch):
        return True

    batch_is_valid = batch_ok

    def free_device_bytes(self):
        return FREE

    def warmup(self, tokens, batch, label):
        self.ran.append((tokens, batch, label))

    warmup_pass = warmup

    def context_warmup_tokens(self):
        return [1024, 8192]

    def graph_batch_sizes(self):
        return [1, 8]


class Recorder(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def examples():
    with open(GUIDE) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    check(len(blocks) == 3, "docs/integration.md has %d python examples, expected 3"
          % len(blocks))
    return blocks


def main():
    folder = sys.argv[1]
    mpi_example, torch_example, budget_example = examples()
    if rank == 0:
        import json
        with open(os.path.join(folder, "table.json"), "w") as f:
            json.dump(table(), f)
    comm.Barrier()
    os.chdir(folder)  # the mpi4py example opens "table.json"
    log = logging.getLogger("warmup")
    log.propagate = False
    rec = Recorder()
    log.addHandler(rec)

    # 1. mpi4py: 1024 tokens fit everywhere; 4096, 8192 and 32768 do not fit rank 2
    engine = Engine()
    exec(compile(mpi_example, "docs/integration.md (mpi4py example)", "exec"),
         {"replica_index": 0, "engine": engine})
    check(engine.ran == [(1024, 1, "context")], "mpi4py example ran %r" % engine.ran)
    check(len(rec.lines) == 3 and all("skipped on every rank: skip: rank 2 is short of" in line
                                      for line in rec.lines), "mpi4py example logged %r" % rec.lines)
    everyone = comm.allgather((engine.ran, rec.lines))
    check(all(e == everyone[0] for e in everyone), "the ranks did not run the same passes")

    # 2. the budget: rank 2's 5 GiB less the 512 MiB reserve and 1 GiB hold
    # 3584 context tokens, below the engine's 8192, on every rank alike
    rec.lines.clear()
    engine = Engine()
    exec(compile(budget_example, "docs/integration.md (budget example)", "exec"),
         {"engine": engine})
    check(engine.max_num_tokens == (5 * GiB - (512 << 20) - GiB) >> 20 == 3584,
          "budget example capped max_num_tokens to %d" % engine.max_num_tokens)
    check(rec.lines == ["max_num_tokens capped from 8192 to 3584: rank 2 has no room for more"],
          "budget example logged %r" % rec.lines)

    # 3. torch.distributed: a Gloo group, the CUDA free-memory call answered here
    port = None
    if rank == 0:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    port = comm.bcast(port)
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank,
                            world_size=size, timeout=datetime.timedelta(seconds=20))
    torch.cuda.mem_get_info = lambda device=None: (FREE, 80 * GiB)
    torch.cuda.empty_cache = lambda: None
    rec.lines.clear()
    engine = Engine()
    namespace = {}
    exec(compile(torch_example, "docs/integration.md (torch example)", "exec"), namespace)
    namespace["warmup_with_gate"](engine, os.path.join(folder, "table.json"), list(range(size)))
    # 8192 context tokens do not fit rank 2; the table has no generation entry
    check(engine.ran == [(1024, 1, "context")], "torch example ran %r" % engine.ran)
    check(len(rec.lines) == 3, "torch example logged %r" % rec.lines)
    check("rank 2 is short of" in rec.lines[0] and "tokens=8192" in rec.lines[0], rec.lines[0])
    check(all("no generation estimate" in line for line in rec.lines[1:]), "%r" % rec.lines)
    everyone = comm.allgather((engine.ran, rec.lines))
    check(all(e == everyone[0] for e in everyone), "the ranks did not run the same passes")
    dist.destroy_process_group()
    comm.Barrier()
    say("ok docs (rank %d)" % rank)


if __name__ == "__main__":
    main()
