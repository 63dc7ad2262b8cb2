"""A server that is not an MPI program: 4 processes started by
torch.multiprocessing.spawn, a Gloo group, local gates (rank=, world_size=)
whose one collective per decision is the caller's all_reduce(MIN) on a CPU
int64 tensor. MPI is never imported nor initialised. Also: what happens when
the caller's collective misbehaves (wrong length, not ints, not a MIN, an
exception) — a clear GateError, on every rank alike.

    python3 test_gate_torch.py DIR
"""

import datetime
import os
import socket
import sys


def worker(rank, world, folder, port):
    import torch
    import torch.distributed as dist

    import warmcal
    from gatetest import GiB, MiB, RESERVE, check, expect_gate_error, need

    dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port, rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=15))
    calls = []

    def allreduce_min(vals):
        calls.append(len(vals))
        t = torch.tensor(vals, dtype=torch.int64)
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
        return t.tolist()

    table = os.path.join(folder, "a.json")
    free = 3 * GiB if rank == 0 else 40 * GiB  # rank 0 holds more (the original bug)
    shapes = [(256, 1, "context"), (2048, 1, "context"), (4096, 8, "context", rank != 3)]
    with warmcal.Gate(table, rank=rank, world_size=world, reserve_bytes=RESERVE,
                      free_bytes=lambda: free) as g:
        check(g.local and g.rank == rank and g.world_size == world, repr(g))
        d = g.decide(shapes, allreduce_min=allreduce_min)
        check(calls == [len(shapes) + 5], "one collective per decision: %r" % calls)
        check(d[0].run and d[0].min_headroom == 3 * GiB - need(256), repr(d[0]))
        check(not d[1].run and d[1].blocking_rank == 0 and d[1].short_bytes == need(2048) - 3 * GiB
              and d[1].reason_code == warmcal.REASON_LOW_MEMORY, repr(d[1]))
        check(not d[2].run and d[2].blocking_rank == 3
              and d[2].reason_code == warmcal.REASON_INVALID_BATCH, repr(d[2]))
        # the largest pass every rank can run: rank 0's 3 GiB, in one more call of
        # the same collective (6 values); decide agrees at it and one token above
        b = g.max_tokens("context", allreduce_min=allreduce_min)
        check(calls[-1] == 6 and len(calls) == 2, "one collective per budget: %r" % calls)
        check(b == ((3 * GiB - GiB - RESERVE) // MiB, 0), repr(b))
        d2 = g.decide([(b.tokens, 1, "context"), (b.tokens + 1, 1, "context")],
                      allreduce_min=allreduce_min)
        check(d2[0].run and not d2[1].run and d2[1].blocking_rank == b.limiting_rank, repr(d2))
        expect_gate_error(lambda: g.max_tokens(), warmcal.E_INVAL, "needs allreduce_min")
        expect_gate_error(lambda: g.max_tokens(allreduce_min=lambda v: v[:-1]), warmcal.E_INVAL,
                          "max_tokens: allreduce_min returned 5 values for 6")
        # a warmup loop: every rank skips the same shapes
        ran = [s[0] for s, x in zip(shapes, d) if x.run]
        everyone = [None] * world
        dist.all_gather_object(everyone, ran)
        check(all(e == ran for e in everyone), "ranks ran different shapes: %r" % everyone)

        # the caller's collective misbehaving: each rank raises, none hangs
        s1 = [(1024, 1, "context")]
        expect_gate_error(lambda: g.decide(s1, allreduce_min=lambda v: v[:-1]), warmcal.E_INVAL,
                          "returned 5 values for 6")
        expect_gate_error(lambda: g.decide(s1, allreduce_min=lambda v: [float(x) for x in v]),
                          warmcal.E_INVAL, "expected an integer, found float")
        expect_gate_error(lambda: g.decide(s1, allreduce_min=lambda v: None), warmcal.E_INVAL,
                          "returned NoneType")

        def allreduce_max(vals):
            t = torch.tensor(vals, dtype=torch.int64)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            return t
        if rank == 3:  # holds every maximum here: nothing this rank can see is wrong
            g.decide(s1, allreduce_min=allreduce_max)
        else:
            expect_gate_error(lambda: g.decide(s1, allreduce_min=allreduce_max),
                              warmcal.E_INVAL, "not a MIN reduction")
        dist.barrier()

        def broken(vals):
            raise RuntimeError("Gloo connection closed")
        e = expect_gate_error(lambda: g.decide(s1, allreduce_min=broken), warmcal.E_STATE,
                              "allreduce_min raised RuntimeError: Gloo connection closed")
        check(isinstance(e.__cause__, RuntimeError), "the cause is kept")
        expect_gate_error(lambda: g.decide(s1), warmcal.E_INVAL, "needs allreduce_min")
        # the tensor itself works as well as a list

        def allreduce_min_tensor(vals):
            t = torch.tensor(vals, dtype=torch.int64)
            dist.all_reduce(t, op=dist.ReduceOp.MIN)
            return t
        d = g.decide(s1, allreduce_min=allreduce_min_tensor)
        check(d[0].run and d[0].min_headroom == 3 * GiB - need(1024), repr(d))

    # the original fix's baseline over the same collective
    with warmcal.Gate(None, rank=rank, world_size=world, free_bytes=300 * MiB if rank == 1
                      else 4 * GiB, need_policy="constant", constant_bytes_per_token=MiB,
                      constant_min_tokens=256) as g:
        d = g.decide([(200, 1, None), (512, 1, None)], allreduce_min=allreduce_min)
        check(d[0].run and not d[1].run and d[1].blocking_rank == 1
              and d[1].short_bytes == 212 * MiB, repr(d))
    check("mpi4py.MPI" not in sys.modules and "mpi4py" not in sys.modules,
          "a local gate needs no MPI")
    dist.destroy_process_group()


def main():
    folder = sys.argv[1]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gatetest import write_tables
    import torch.multiprocessing as mp

    write_tables(folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # a failure in one process ends the others (spawn terminates them)
    mp.spawn(worker, args=(4, folder, port), nprocs=4, join=True)
    print("ok torch (4 processes)")


if __name__ == "__main__":
    main()
