"""Local gates over a caller's torch.distributed (Gloo) MIN collective decide
exactly what MPI gates decide. Run by run_job.py as
`mpirun -np 4 python3 -m mpi4py test_gate_gloo.py DIR`: every rank opens an
MPI gate on COMM_WORLD and a local gate (rank=, world_size=) reduced through a
Gloo group over TCP, for the same table, shapes and free memory, and the
decisions must be equal field for field, reason text included; so must the
token budgets (max_tokens) of the two.
"""

import datetime
import os
import socket
import sys

from mpi4py import MPI
import torch
import torch.distributed as dist

import warmcal
from gatetest import GiB, MiB, RESERVE, TOKENS_MAX, check, expect_gate_error, write_tables

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()


def say(line):
    sys.stdout.flush()
    os.write(1, (line + "\n").encode())


def allreduce_min(vals):
    """The server's collective: MIN over the Gloo group, on a CPU int64 tensor."""
    t = torch.tensor(vals, dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t.tolist()


SCENARIOS = [
    # (free bytes per rank, shapes)
    ([40 * GiB, 40 * GiB, 5 * GiB, 40 * GiB],
     [(1024, 1, "context"), (8192, 1, "context"), (TOKENS_MAX * 2, 1, "context"),
      (16, 16, "generation"), (64, 64, "context", rank != 1), (2048, 1, None)]),
    ([40 * GiB, 3 * GiB, 40 * GiB, 3 * GiB + 100 * MiB],
     [(512, 1, "context"), (2048, 1, "context"), (4096, 1, "context")]),
    ([40 * GiB] * 4,
     [(1024, 4, "context", rank != 2), (1024, 8, "context", rank < 2), (1024, 16, "context")]),
    ([0, 0, 0, 0], [(1, 1, "context")]),
    ([16 * GiB] * 4, [(t, 1, "context") for t in range(1, 32769, 97)]),
]


def main():
    folder = sys.argv[1]
    if rank == 0:
        write_tables(folder)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    else:
        port = None
    port = comm.bcast(port)
    # the collective's timeout is the process group's own
    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank,
                            world_size=size, timeout=datetime.timedelta(seconds=20))
    table = os.path.join(folder, "a.json")
    for i, (free, shapes) in enumerate(SCENARIOS):
        with warmcal.Gate(table, comm=comm, reserve_bytes=RESERVE, free_bytes=free[rank]) as g:
            over_mpi = g.decide(shapes)
            budget_mpi = g.max_tokens()
        with warmcal.Gate(table, rank=rank, world_size=size, reserve_bytes=RESERVE,
                          free_bytes=lambda: free[rank]) as g:
            over_gloo = g.decide(shapes, allreduce_min=allreduce_min)
            budget_gloo = g.max_tokens(allreduce_min=allreduce_min)
        check(budget_mpi == budget_gloo, "scenario %d: MPI budget %r, Gloo budget %r"
              % (i, budget_mpi, budget_gloo))
        for a, b in zip(over_mpi, over_gloo):
            check(a == b, "scenario %d: MPI and Gloo decisions differ:\n  MPI  %r\n  Gloo %r"
                  % (i, a, b))
        check(len(over_mpi) == len(over_gloo) == len(shapes), "one decision per shape")
        everyone = comm.allgather(over_gloo)
        check(all(e == over_gloo for e in everyone), "Gloo decisions differ between ranks")

    # the consistency checks travel through the caller's collective too
    other = os.path.join(folder, "b.json" if rank == 3 else "a.json")
    with warmcal.Gate(other, rank=rank, world_size=size, free_bytes=40 * GiB) as g:
        expect_gate_error(lambda: g.decide([(1024, 1, "context")], allreduce_min=allreduce_min),
                          warmcal.E_MISMATCH, "different tables")
    with warmcal.Gate(table, rank=rank, world_size=size, free_bytes=40 * GiB) as g:
        expect_gate_error(lambda: g.decide([(1024 + (rank == 1), 1, "context")],
                                           allreduce_min=allreduce_min),
                          warmcal.E_MISMATCH, "different shape lists")
        expect_gate_error(lambda: g.max_tokens("generation" if rank == 1 else "context",
                                               allreduce_min=allreduce_min),
                          warmcal.E_MISMATCH, "different labels")
        expect_gate_error(lambda: g.max_tokens("generation", allreduce_min=allreduce_min),
                          warmcal.E_FIELD, "the table has no generation estimate for rank 0")
    dist.destroy_process_group()
    comm.Barrier()
    say("ok gloo (rank %d)" % rank)


if __name__ == "__main__":
    main()
