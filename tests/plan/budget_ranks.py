"""Token budgets from the gate itself on every rank (run under mpirun with
mpi4py): for each scenario of SPEC (free memory per rank, a reserve), each
rank opens warmcal.Gate over MPI.COMM_WORLD with its own free memory by the
value probe and asks Gate.max_tokens for every label. Every rank must get
the same answer; rank 0 writes them to OUT as
[{label: {"tokens": N, "limiting_rank": R}}, ...], one per scenario.

usage: mpirun -np 4 python3 -m mpi4py budget_ranks.py SPEC OUT
"""

import json
import sys

from mpi4py import MPI

import warmcal


def main():
    spec_path, out_path = sys.argv[1:3]
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    with open(spec_path) as f:
        spec = json.load(f)
    answers = []
    for scenario in spec["scenarios"]:
        gate = warmcal.Gate(spec["table"], comm=comm, free_bytes=scenario["free"][rank],
                            reserve_bytes=scenario["reserve"], deadline_s=30.0)
        try:
            mine = {}
            for label in spec["labels"]:
                budget = gate.max_tokens(label)
                mine[label] = {"tokens": budget.tokens, "limiting_rank": budget.limiting_rank}
        finally:
            gate.close()
        everyone = comm.allgather(mine)
        if any(other != mine for other in everyone):
            print("rank %d: budgets differ between ranks: %r" % (rank, everyone), flush=True)
            comm.Abort(1)
        answers.append(mine)
    if rank == 0:
        with open(out_path, "w") as f:
            json.dump(answers, f)
    print("ok budgets (rank %d)" % rank, flush=True)


if __name__ == "__main__":
    main()
