"""The Python gate over real MPI ranks, driven by mpi4py. Run by run_job.py as
`mpirun -np 4 python3 -m mpi4py test_gate_mpi.py CASE DIR` (python -m mpi4py
aborts the whole job on an uncaught exception, so a failed check on one rank
never leaves the others waiting). Every rank prints "ok CASE (rank R)" when
its case passed; the absent, stall and kill cases end the job on purpose and
are judged by run_job.py from what the ranks report.
"""

import os
import signal
import sys
import time

from mpi4py import MPI

import warmcal
from gatetest import (GiB, MiB, RESERVE, TOKENS_MAX, check, expect_gate_error, need,
                      nothing_printed, write_tables)

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
folder = None
# A deadline that a failing rank's "at once" cannot be confused with: a call
# that waited it out would take 60 s, so "under 30 s" is a wide margin on a
# loaded machine.
LONG_DEADLINE_S = 60.0
AT_ONCE_S = 30.0


def say(line):
    """One line in one write, so mpirun does not mix it with other ranks'."""
    sys.stdout.flush()
    os.write(1, (line + "\n").encode())


def path(name):
    return os.path.join(folder, name)


def gate(name="a.json", free=40 * GiB, **kw):
    kw.setdefault("reserve_bytes", RESERVE)
    kw.setdefault("deadline_s", 5.0)
    return warmcal.Gate(name and path(name), comm=comm, free_bytes=free, **kw)


def same_on_every_rank(value, what):
    everyone = comm.allgather(value)
    check(all(v == everyone[0] for v in everyone), "%s differ between ranks: %r" % (what, everyone))


def error_on_every_rank(fn, code, *needles):
    """fn raises GateError(code) with the needles on this rank, and every
    rank saw the same code."""
    e = expect_gate_error(fn, code, *needles)
    same_on_every_rank(e.code, "error codes")
    return e


def decisions_are_identical_on_every_rank():
    # rank 2 has 5 GiB free, the others 40 GiB; ranks 2 and 3 report it
    # through a callable, 0 and 1 as a number; rank 1 cannot run batch 64
    free = 5 * GiB if rank == 2 else 40 * GiB
    g = gate(free=(lambda: free) if rank >= 2 else free)
    shapes = [(1024, 1, "context"), (8192, 1, "context"), (TOKENS_MAX * 2, 1, "context"),
              (16, 16, "generation"), (64, 64, "context", rank != 1), (2048, 1, None)]
    d = g.decide(shapes)
    same_on_every_rank(d, "decisions")
    check(len(d) == 6, "one decision per shape")
    check(d[0].run and d[0].reason_code == warmcal.REASON_RUN and d[0].blocking_rank == -1
          and d[0].short_bytes == 0, "1024 tokens run: %r" % d[0])
    check(d[0].min_headroom == 5 * GiB - need(1024), "least headroom is rank 2's: %r" % d[0])
    check(not d[1].run and d[1].reason_code == warmcal.REASON_LOW_MEMORY
          and d[1].blocking_rank == 2 and d[1].short_bytes == need(8192) - 5 * GiB
          and "rank 2 is short of" in d[1].reason, "8192 tokens blocked by rank 2: %r" % d[1])
    check(not d[2].run and d[2].reason_code == warmcal.REASON_OUT_OF_RANGE
          and "outside the calibrated range" in d[2].reason, "above the range: %r" % d[2])
    check(not d[3].run and d[3].reason_code == warmcal.REASON_NO_ESTIMATE
          and d[3].blocking_rank == 0 and "generation" in d[3].reason, "no estimate: %r" % d[3])
    check(not d[4].run and d[4].reason_code == warmcal.REASON_INVALID_BATCH
          and d[4].blocking_rank == 1, "invalid batch: %r" % d[4])
    check(d[5].run and d[5].label == "context", "label None is context: %r" % d[5])
    check((d[1].tokens, d[1].batch, d[1].label) == (8192, 1, "context"), "shape kept")
    check(d[1].reason_name == "low memory", "reason name")
    # deciding again on the same gate gives the same answer; so does an empty list
    check(g.decide(shapes) == d, "a second decision agrees with the first")
    check(g.decide([]) == [], "no shapes, no decisions")
    g.close()
    g.close()


def one_short_rank_blocks_the_shape_for_everyone():
    # rank 1 has 3 GiB, rank 3 3.1 GiB (short too, by less), the others 40 GiB
    free = {1: 3 * GiB, 3: 3 * GiB + 100 * MiB}.get(rank, 40 * GiB)
    with gate(free=lambda: free) as g:
        d = g.decide([(512, 1, "context"), (2048, 1, "context"), (4096, 1, "context")])
    same_on_every_rank(d, "decisions")
    check(d[0].run, "512 tokens fit on every rank: %r" % d[0])
    for i, t in ((1, 2048), (2, 4096)):
        check(not d[i].run and d[i].blocking_rank == 1
              and d[i].reason_code == warmcal.REASON_LOW_MEMORY
              and d[i].short_bytes == need(t) - 3 * GiB, "rank 1 blocks %d tokens: %r" % (t, d[i]))
    check("rank 1 is short of 256.00 MiB for 2048 tokens" in d[1].reason, d[1].reason)


def an_invalid_batch_on_one_rank_skips_on_every_rank():
    with gate() as g:
        d = g.decide([(1024, 4, "context", rank != 2), (1024, 8, "context", rank < 2),
                      (1024, 16, "context")])
    same_on_every_rank(d, "decisions")
    check(not d[0].run and d[0].reason_code == warmcal.REASON_INVALID_BATCH
          and d[0].blocking_rank == 2 and "rank 2 cannot run batch 4" in d[0].reason,
          "rank 2's invalid batch skips everywhere: %r" % d[0])
    check(not d[1].run and d[1].blocking_rank == 2, "the lowest invalid rank is named: %r" % d[1])
    check(d[2].run, "a valid batch runs: %r" % d[2])


def different_tables_raise_on_every_rank():
    g = gate("b.json" if rank == 3 else "a.json")
    error_on_every_rank(lambda: g.decide([(1024, 1, "context")]), warmcal.E_MISMATCH,
                        "different tables", "3")
    g.close()


def different_shape_lists_raise_on_every_rank():
    with gate(deadline_s=LONG_DEADLINE_S) as g:
        error_on_every_rank(lambda: g.decide([(1024, 1, "context"),
                                              (4096 if rank == 1 else 2048, 1, "context")]),
                            warmcal.E_MISMATCH, "different shape lists")
        error_on_every_rank(lambda: g.decide([(1024, 1, "generation" if rank == 2 else "context")]),
                            warmcal.E_MISMATCH, "different shape lists")
        # a list of another length on one rank: an error on every rank at once
        longer = [(t, 1, "context") for t in range(1, 65)]
        t0 = time.monotonic()
        error_on_every_rank(lambda: g.decide(longer if rank == 1 else longer[:3]),
                            warmcal.E_MISMATCH, "rank 0 asked about 3 shapes and rank 1 about 64")
        took = time.monotonic() - t0
        check(took < AT_ONCE_S, "the length mismatch took %.1f s (deadline 60 s)" % took)
        # the gate stays usable once the ranks agree again
        d = g.decide([(1024, 1, "context"), (2048, 1, "context")])
        check(d[0].run and d[1].run, "agreeing ranks decide again: %r" % d)


def bad_tables_options_and_missing_driver_raise_clear_errors():
    E = warmcal
    with nothing_printed("open and decide failures"):
        # bad tables: the same on every rank, and on one rank only
        error_on_every_rank(lambda: gate("missing/table.json"), E.E_IO, "missing/table.json")
        error_on_every_rank(lambda: gate("not-a-table.json"), E.E_FORMAT, "not-a-table.json")
        e = expect_gate_error(lambda: gate("missing.json" if rank == 1 else "a.json"),
                              E.E_IO, "missing.json")
        if rank != 1:
            check("rank 1 could not open the gate" in str(e), str(e))
        # a table for another TP size, unless overridden
        half = comm.Split(rank % 2, rank)
        error_on_every_rank(lambda: warmcal.Gate(path("a.json"), comm=half, free_bytes=GiB),
                            E.E_MISMATCH, "calibrated for tp 4, this gate has 2 ranks")
        with warmcal.Gate(path("a.json"), comm=half, free_bytes=40 * GiB,
                          allow_config_mismatch=True) as g:
            check(g.decide([(1024, 1, "context")])[0].run, "an overridden TP mismatch decides")
            check(g.world_size == 2 and g.rank == rank // 2, "the gate's own rank and size")
        half.Free()
        # bad options, caught in Python or by the C library
        for kw, needle in ((dict(above_range="sideways"), "above_range"),
                           (dict(deadline_s=0), "deadline_s"),
                           (dict(deadline_s=float("nan")), "deadline_s"),
                           (dict(reserve_bytes=-1), "reserve_bytes"),
                           (dict(free=-5), "free_bytes"),
                           (dict(free="lots"), "free_bytes"),
                           (dict(probe="bogus"), "probe"),
                           (dict(probe="simulated"), "leave free_bytes None"),
                           (dict(need_policy="constant"), "bytes per token"),
                           (dict(need_policy="guess"), "need_policy")):
            error_on_every_rank(lambda: gate(**kw), E.E_INVAL, needle)
        # arguments bad on one rank only: every rank raises
        e = expect_gate_error(lambda: gate(free=-1 if rank == 2 else GiB), E.E_INVAL)
        check(("rank 2 could not open" in str(e)) == (rank != 2), str(e))
        expect_gate_error(lambda: warmcal.Gate(path("a.json"), comm="world"), E.E_INVAL,
                          "mpi4py communicator")
        expect_gate_error(lambda: warmcal.Gate(path("a.json"), comm=comm, rank=0, world_size=4),
                          E.E_INVAL, "not both")
        # the CUDA probe without a driver (or, on a GPU machine, without a context)
        e = error_on_every_rank(lambda: gate(free=None), E.E_UNSUPPORTED)
        check("libcuda.so.1" in str(e) or "CUDA context" in str(e), str(e))
        # the simulated probe: WARMCAL_SIM_FREE_BYTES missing, then set per rank
        os.environ.pop("WARMCAL_SIM_FREE_BYTES", None)
        with gate(free=None, probe="simulated") as g:
            e = error_on_every_rank(lambda: g.decide([(1024, 1, "context")]), E.E_UNSUPPORTED,
                                    "rank 0 could not probe its free memory")
            if rank == 0:
                check("WARMCAL_SIM_FREE_BYTES" in str(e), str(e))
            os.environ["WARMCAL_SIM_FREE_BYTES"] = "2GiB" if rank == 3 else "40GiB"
            d = g.decide([(1024, 1, "context")])
            check(not d[0].run and d[0].blocking_rank == 3, "rank 3 is short: %r" % d[0])
        # a callback that raises on rank 0 fails every rank; rank 0 keeps the cause
        def free():
            if rank == 0:
                raise ValueError("no device")
            return 40 * GiB
        with gate(free=free) as g:
            e = error_on_every_rank(lambda: g.decide([(1024, 1, "context")]), E.E_UNSUPPORTED,
                                    "rank 0 could not probe its free memory")
            if rank == 0:
                check(isinstance(e.__cause__, ValueError) and "no device" in str(e), str(e))
        with gate(free=lambda: 1.5) as g:
            error_on_every_rank(lambda: g.decide([(1024, 1, "context")]), E.E_UNSUPPORTED)
        # bad shapes (the same on every rank), misuse, a closed gate
        g = gate(deadline_s=LONG_DEADLINE_S)
        for shapes, needle in (([(0, 1, "context")], "tokens"), ([(1, 1, 5)], "label"),
                               ([(1, 1)], "shapes[0]"), (5, "shapes"),
                               ([(1, 1, "context", "yes")], "batch_valid")):
            expect_gate_error(lambda: g.decide(shapes), E.E_INVAL, needle)
        expect_gate_error(lambda: g.decide([(1, 1, None)], allreduce_min=lambda v: v),
                          E.E_INVAL, "allreduce_min")
        # malformed on one rank only: that rank still takes part, so every
        # rank raises at once, not at the 60 s deadline
        t0 = time.monotonic()
        e = error_on_every_rank(lambda: g.decide([(0, 1, "context")] if rank == 3
                                                 else [(1, 1, "context")]), E.E_INVAL)
        if rank == 3:
            check("tokens" in str(e), str(e))
        else:
            check("rank 3 could not take part in the decision" in str(e), str(e))
        took = time.monotonic() - t0
        check(took < AT_ONCE_S, "took %.1f s (deadline 60 s)" % took)
        check(g.decide([(1, 1, "context")])[0].run, "the gate decides again")
        g.close()
        expect_gate_error(lambda: g.decide([(1, 1, None)]), E.E_STATE, "closed")
        # the original fix's constant policy, as a baseline
        with gate(None, free=300 * MiB if rank == 1 else 4 * GiB, reserve_bytes=0,
                  need_policy="constant", constant_bytes_per_token=MiB,
                  constant_min_tokens=256) as g:
            d = g.decide([(200, 1, None), (512, 1, None)])
        check(d[0].run, "unchecked at or below 256 tokens")
        check(not d[1].run and d[1].blocking_rank == 1 and d[1].short_bytes == 212 * MiB,
              "512 tokens blocked by rank 1: %r" % d[1])
        comm.Barrier()


class _Unreadable:
    """A shape whose length cannot be taken."""

    def __len__(self):
        raise RuntimeError("no length today")


class _BadIndex:
    """An integer argument that fails in an unexpected way."""

    def __index__(self):
        raise RuntimeError("no value today")


def at_once(fn, code, *needles):
    """fn raises GateError(code) on every rank, not at the 60 s deadline."""
    t0 = time.monotonic()
    e = error_on_every_rank(fn, code, *needles)
    took = time.monotonic() - t0
    check(took < AT_ONCE_S, "took %.1f s (deadline %.0f s): %s" % (took, LONG_DEADLINE_S, e))
    return e


def a_rank_with_bad_arguments_or_shapes_fails_every_rank_at_once():
    E = warmcal
    # arguments invalid on rank 2 only: it takes part in the C library's
    # open, flagged, and every rank raises its words at once
    e = at_once(lambda: gate(free=-1 if rank == 2 else GiB, deadline_s=LONG_DEADLINE_S),
                E.E_INVAL, "free_bytes: -1 is outside")
    check(("rank 2 could not open the gate: " in str(e)) == (rank != 2), str(e))
    # any exception while reading the arguments, not only a GateError
    e = at_once(lambda: gate(reserve_bytes=_BadIndex() if rank == 1 else 0,
                             deadline_s=LONG_DEADLINE_S),
                E.E_INVAL, "RuntimeError: no value today")
    if rank == 1:
        check(isinstance(e.__cause__, RuntimeError), "the cause is kept: %r" % e.__cause__)
    else:
        check("rank 1 could not open the gate: " in str(e), str(e))
    e = at_once(lambda: gate("\ud800.json" if rank == 3 else "a.json",
                             deadline_s=LONG_DEADLINE_S),
                E.E_INVAL, "cannot be encoded as a file name")
    # even a bad deadline on one rank: it takes part with the default one
    e = at_once(lambda: gate(deadline_s=float("nan") if rank == 0 else LONG_DEADLINE_S),
                E.E_INVAL, "deadline_s")
    with gate(deadline_s=LONG_DEADLINE_S) as g:
        # a label that cannot be encoded, on rank 3 only
        e = at_once(lambda: g.decide([(1024, 1, "\ud800" if rank == 3 else "context")]),
                    E.E_INVAL)
        check(("label" in str(e) and "UTF-8" in str(e)) if rank == 3
              else "rank 3 could not take part in the decision" in str(e), str(e))
        # a shape whose length raises, on rank 0 only
        e = at_once(lambda: g.decide([_Unreadable() if rank == 0 else (1024, 1, "context")]),
                    E.E_INVAL)
        if rank == 0:
            check(isinstance(e.__cause__, RuntimeError) and "no length today" in str(e), str(e))
        else:
            check("rank 0 could not take part in the decision" in str(e), str(e))
        check(g.decide([(1024, 1, "context")])[0].run, "the gate decides again")


def a_rank_late_by_less_than_the_deadline_opens_normally():
    """Rank 2 reaches the open a second late, well within the 5 s deadline:
    every rank opens and decides as usual."""
    if rank == 2:
        time.sleep(1.0)
    with gate(free=5 * GiB if rank == 2 else 40 * GiB) as g:
        d = g.decide([(1024, 1, "context"), (8192, 1, "context")])
        same_on_every_rank(d, "decisions")
        check(d[0].run and not d[1].run and d[1].blocking_rank == 2, "decisions: %r" % d)


def budget_of(free, reserve=RESERVE):
    """One rank's budget on table "a" with free bytes: the largest count
    whose need fits, within the calibrated range (gatetest.need's arithmetic)."""
    room = free - GiB - reserve
    return max(0, min(TOKENS_MAX, room // MiB))


def budgets_are_the_same_on_every_rank_and_agree_with_decide():
    # rank 3 has 2.5 GiB + 123 bytes (room for 1280 tokens), rank 2 5 GiB,
    # the others 40 GiB; ranks 1 and 3 report it through a callable
    free = {3: 5 * GiB // 2 + 123, 2: 5 * GiB}.get(rank, 40 * GiB)
    with gate(free=(lambda: free) if rank % 2 else free) as g:
        b = g.max_tokens()
        same_on_every_rank(b, "budgets")
        everyone = comm.allgather(free)
        want = min(budget_of(f) for f in everyone)
        check(b == (want, everyone.index(min(everyone))) == (1280, 3),
              "the smallest budget and its rank: %r" % (b,))
        tokens, limiting = b  # a (tokens, limiting_rank) pair
        check(isinstance(b, warmcal.gate.Budget) and b.tokens == tokens
              and b.limiting_rank == limiting, repr(b))
        # decide runs that many tokens and skips one more, naming the same rank
        d = g.decide([(tokens, 1, "context"), (tokens + 1, 1, "context")])
        check(d[0].run and not d[1].run and d[1].blocking_rank == limiting
              and d[1].reason_code == warmcal.REASON_LOW_MEMORY, "decide agrees: %r" % d)
        # the call's reserve adds to the gate's; a label None is "context"
        b = g.max_tokens(None, reserve_bytes=100 * MiB)
        same_on_every_rank(b, "budgets with a reserve")
        check(b == (1180, 3), "100 MiB more reserve, 100 tokens less: %r" % (b,))
        # every rank's budget reaches the range's end: all tie, rank 0 is named
    with gate(free=40 * GiB) as g:
        b = g.max_tokens("context")
        check(b == (TOKENS_MAX, 0), "the calibrated range ends it: %r" % (b,))
        d = g.decide([(TOKENS_MAX + 1, 1, "context")])
        check(d[0].reason_code == warmcal.REASON_OUT_OF_RANGE and d[0].blocking_rank == 0,
              "decide agrees: %r" % d)
    with gate(free=40 * GiB if rank != 2 else 40 * GiB - 1, above_range="extrapolate") as g:
        b = g.max_tokens()
        check(b == ((40 * GiB - 1 - GiB - RESERVE) // MiB, 2), "extrapolated: %r" % (b,))
    with gate(free=GiB if rank == 1 else 40 * GiB) as g:
        check(g.max_tokens() == (0, 1), "nothing fits rank 1")


def budget_mismatches_and_bad_arguments_raise_on_every_rank():
    E = warmcal
    with gate("b.json" if rank == 3 else "a.json") as g:
        error_on_every_rank(g.max_tokens, E.E_MISMATCH, "different tables")
    with gate(deadline_s=LONG_DEADLINE_S) as g:
        t0 = time.monotonic()
        error_on_every_rank(lambda: g.max_tokens("generation" if rank == 2 else "context"),
                            E.E_MISMATCH, "different labels")
        # a label no rank has an estimate for: the lowest rank is named
        e = error_on_every_rank(lambda: g.max_tokens("generation"), E.E_FIELD,
                                "the table has no generation estimate for rank 0")
        # bad arguments on rank 2 only: it takes part, flagged
        e = error_on_every_rank(lambda: g.max_tokens(reserve_bytes=-1 if rank == 2 else 0),
                                E.E_INVAL)
        check(("reserve_bytes" in str(e)) if rank == 2
              else "rank 2 could not take part in the token budget" in str(e), str(e))
        e = error_on_every_rank(lambda: g.max_tokens("\ud800" if rank == 0 else "context"),
                                E.E_INVAL)
        check(("UTF-8" in str(e)) if rank == 0
              else "rank 0 could not take part in the token budget" in str(e), str(e))
        # rank 1 decides where the others ask for a budget
        e = error_on_every_rank(lambda: g.decide([(1024, 1, "context")]) if rank == 1
                                else g.max_tokens(), E.E_MISMATCH,
                                "rank 0 asked about a token budget and rank 1 about 1 shape")
        took = time.monotonic() - t0
        check(took < AT_ONCE_S, "took %.1f s (deadline 60 s)" % took)
        error_on_every_rank(lambda: g.max_tokens(allreduce_min=lambda v: v), E.E_INVAL,
                            "allreduce_min")
        check(g.max_tokens() == (TOKENS_MAX, 0), "the gate answers again")
    expect_gate_error(g.max_tokens, E.E_STATE, "closed")
    # a callback that raises on rank 0 fails every rank; rank 0 keeps the cause
    def free():
        if rank == 0:
            raise ValueError("no device")
        return 40 * GiB
    with gate(free=free) as g:
        e = error_on_every_rank(g.max_tokens, E.E_UNSUPPORTED,
                                "rank 0 could not probe its free memory")
        if rank == 0:
            check(isinstance(e.__cause__, ValueError), repr(e.__cause__))


def report_then_abort(line):
    """Rank 0 prints every waiting rank's report (rank 2 is the missing one)
    in one write, then ends the job: no line can be lost to the abort, and no
    sleep has to guess how long the others need to report. Reports travel
    point to point on COMM_WORLD, which a pending collective does not block."""
    if rank != 0:
        comm.send(line, dest=0, tag=77)
        while True:
            time.sleep(1.0)  # until rank 0 aborts the job
    reqs = {r: comm.irecv(source=r, tag=77) for r in (1, 3)}
    lines = {0: line}
    give_up = time.monotonic() + AT_ONCE_S  # a rank that never reports fails, never hangs
    while len(lines) < 3 and time.monotonic() < give_up:
        for r, req in reqs.items():
            if r not in lines:
                done, msg = req.test()
                if done:
                    lines[r] = msg
        time.sleep(0.01)
    say("\n".join(lines.get(r, "rank %d never reported" % r) for r in (0, 1, 3)))
    comm.Abort(3)


def a_rank_that_never_opens():
    """Rank 2 never calls Gate(...); the others report what the constructor
    raised, after how long, and the CPU time it used, then end the job."""
    if rank == 2:
        say("rank 2: never opening the gate")
        while True:
            time.sleep(1.0)  # the others give up after their deadline and abort
    t0, c0 = time.monotonic(), time.process_time()
    try:
        gate(deadline_s=5.0)
        line = "rank %d: opened the gate" % rank
    except warmcal.GateError as e:
        line = "rank %d: GateError %d after %.2f s, cpu %.3f s: %s" % (
            rank, e.code, time.monotonic() - t0, time.process_time() - c0, e)
    report_then_abort(line)


def a_rank_that_never_asks_for_the_budget():
    """Rank 2 never calls max_tokens; the others report what it raised, how
    long it took and its CPU time, then end the job."""
    g = gate(deadline_s=2.0)
    comm.Barrier()
    if rank == 2:
        say("rank 2: never asking for the budget")
        while True:
            time.sleep(1.0)  # the others give up after their deadline and abort
    t0, c0 = time.monotonic(), time.process_time()
    try:
        g.max_tokens()
        line = "rank %d: max_tokens returned" % rank
    except warmcal.GateError as e:
        line = "rank %d: GateError %d after %.2f s, cpu %.3f s: %s" % (
            rank, e.code, time.monotonic() - t0, time.process_time() - c0, e)
    report_then_abort(line)


def a_rank_that_stops_calling_decide(kill_it):
    """Rank 2 never decides (it sleeps, or dies); the others report what
    decide raised, how long it took and its CPU time, then end the job."""
    g = gate(deadline_s=2.0)
    say("rank %d: opened the gate" % rank)
    comm.Barrier()
    if rank == 2:
        say("rank 2: %s" % ("killing itself" if kill_it else "never deciding"))
        if kill_it:
            os.kill(os.getpid(), signal.SIGKILL)
        while True:
            time.sleep(1.0)  # the others give up after their deadline and abort
    t0, c0 = time.monotonic(), time.process_time()
    try:
        g.decide([(1024, 1, "context")])
        line = "rank %d: decide returned" % rank
    except warmcal.GateError as e:
        line = "rank %d: GateError %d after %.2f s, cpu %.3f s: %s" % (
            rank, e.code, time.monotonic() - t0, time.process_time() - c0, e)
    report_then_abort(line)


CASES = {
    "identical": decisions_are_identical_on_every_rank,
    "short": one_short_rank_blocks_the_shape_for_everyone,
    "invalid": an_invalid_batch_on_one_rank_skips_on_every_rank,
    "tables": different_tables_raise_on_every_rank,
    "shapes": different_shape_lists_raise_on_every_rank,
    "errors": bad_tables_options_and_missing_driver_raise_clear_errors,
    "onefails": a_rank_with_bad_arguments_or_shapes_fails_every_rank_at_once,
    "late": a_rank_late_by_less_than_the_deadline_opens_normally,
    "budget": budgets_are_the_same_on_every_rank_and_agree_with_decide,
    "budgetfail": budget_mismatches_and_bad_arguments_raise_on_every_rank,
    "budgetstall": a_rank_that_never_asks_for_the_budget,
    "absent": a_rank_that_never_opens,
    "stall": lambda: a_rank_that_stops_calling_decide(False),
    "kill": lambda: a_rank_that_stops_calling_decide(True),
}


def main():
    global folder
    if len(sys.argv) != 3 or sys.argv[1] not in CASES or size != 4:
        if rank == 0:
            print("usage: mpirun -np 4 python3 -m mpi4py test_gate_mpi.py CASE DIR (CASE: %s)"
                  % ", ".join(CASES), file=sys.stderr)
        comm.Abort(2)
    case, folder = sys.argv[1], sys.argv[2]
    if rank == 0:
        write_tables(folder)
    comm.Barrier()
    CASES[case]()
    comm.Barrier()
    say("ok %s (rank %d)" % (case, rank))


if __name__ == "__main__":
    main()
