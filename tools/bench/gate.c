/* Gate decision cost under mpirun: the time of one warmcal_gate_decide over
 * 1, 64 and 1024 shapes against (a) one bare MPI_Allreduce MINLOC of the
 * same n (long, int) pairs — the floor the issue sets — and (b) n
 * MPI_Allreduce calls of one pair each — the original fix's one collective
 * per shape — plus, to tell the gate's own work from its collectives, the
 * collectives alone: bare MPI_Iallreduce MINs of the packed int64 values it
 * sends (71, and n - 64 more when n > 64), each with MPI_Wait. One run,
 * interleaved.
 * Usage: mpirun -np 4 bench-gate [--table TABLE] [--reps N]
 * Without a table the gate uses the constant need (the original policy). */
#include "warmcal/gate.h"
#include "warmcal/units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The gate's collectives (gate.c): a first of the count check, 5 checks and
 * up to 64 shapes, always GATE_FIRST values; the rest of a longer list in a
 * second. */
#define GATE_FIRST_SHAPES 64
#define GATE_FIRST (7 + GATE_FIRST_SHAPES)

enum { DECIDE, BARE, PACKED, PER_SHAPE, METHODS };
static const char *const method_name[METHODS] = {
    "decide", "bare MINLOC allreduce of n pairs",
    "the gate's collectives alone (MIN iallreduce of 71 int64, then of n - 64 when n > 64)",
    "per-shape allreduces"};

typedef struct {
    long value;
    int rank;
} long_int;

typedef struct {
    warmcal_gate *gate;
    MPI_Comm comm;
    int rank;
    size_t n;
    warmcal_shape *shapes;
    warmcal_decision *out;
    long_int *in, *res;
    int64_t *packed, *packed_res; /* n + 5 */
} bench;

/* One operation of the given method; returns non-zero on failure. */
static int run_once(bench *b, int method)
{
    switch (method) {
    case DECIDE: return warmcal_gate_decide(b->gate, b->shapes, b->n, b->out);
    case BARE:
        return MPI_Allreduce(b->in, b->res, (int)b->n, MPI_LONG_INT, MPI_MINLOC, b->comm);
    case PACKED: { /* as gate.c sends them: FIRST values, then the rest of a long list */
        MPI_Request req;
        int rc = MPI_Iallreduce(b->packed, b->packed_res, GATE_FIRST, MPI_INT64_T, MPI_MIN,
                                b->comm, &req);
        if (!rc)
            rc = MPI_Wait(&req, MPI_STATUS_IGNORE);
        if (!rc && b->n > GATE_FIRST_SHAPES) {
            int rest = (int)(b->n - GATE_FIRST_SHAPES);
            rc = MPI_Iallreduce(b->packed + GATE_FIRST, b->packed_res + GATE_FIRST, rest,
                                MPI_INT64_T, MPI_MIN, b->comm, &req);
            if (!rc)
                rc = MPI_Wait(&req, MPI_STATUS_IGNORE);
        }
        return rc;
    }
    default:
        for (size_t i = 0; i < b->n; i++) {
            int rc = MPI_Allreduce(&b->in[i], &b->res[i], 1, MPI_LONG_INT, MPI_MINLOC, b->comm);
            if (rc)
                return rc;
        }
        return 0;
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Medians (seconds per operation, over reps, each the slowest rank's) of
 * every method for n shapes; rank 0 gets them in med[]. */
static int measure(bench *b, int reps, double med[METHODS])
{
    /* operations per timed block, so a block is long against the clock and
     * the barrier's exit skew; the per-shape pattern is long enough alone */
    int per_block = b->n <= 1 ? 50 : b->n <= 64 ? 20 : 5;
    double *t = calloc((size_t)reps * METHODS, sizeof *t);
    double *tmax = calloc((size_t)reps * METHODS, sizeof *tmax);
    if (!t || !tmax) {
        free(t), free(tmax);
        return 1;
    }
    for (int warm = 0; warm < 5; warm++)
        for (int m = 0; m < METHODS; m++)
            if (run_once(b, m))
                goto failed;
    for (int r = 0; r < reps; r++) {
        for (int k = 0; k < METHODS; k++) {
            int m = (r + k) % METHODS; /* rotate the order: no method always goes first */
            int ops = m == PER_SHAPE && b->n > 1 ? 1 : per_block;
            MPI_Barrier(b->comm);
            double t0 = MPI_Wtime();
            for (int i = 0; i < ops; i++)
                if (run_once(b, m))
                    goto failed;
            t[m * reps + r] = (MPI_Wtime() - t0) / ops;
        }
    }
    MPI_Reduce(t, tmax, reps * METHODS, MPI_DOUBLE, MPI_MAX, 0, b->comm);
    if (b->rank == 0)
        for (int m = 0; m < METHODS; m++)
            med[m] = median(&tmax[m * reps], reps);
    free(t), free(tmax);
    return 0;
failed:
    fprintf(stderr, "bench-gate: rank %d: %s\n", b->rank, warmcal_gate_last_error(b->gate));
    free(t), free(tmax);
    return 1;
}

static warmcal_gate *open_or_abort(const char *table, MPI_Comm comm,
                                   const warmcal_gate_options *o, int rank)
{
    warmcal_gate *g = NULL;
    if (warmcal_gate_open(&g, table, comm, o) != WARMCAL_OK) {
        fprintf(stderr, "bench-gate: rank %d: %s\n", rank, warmcal_gate_last_error(g));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return g;
}

int main(int argc, char **argv)
{
    const char *table = NULL;
    int reps = 200;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--table") == 0 && i + 1 < argc)
            table = argv[++i];
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: mpirun -np 4 bench-gate [--table TABLE] [--reps N]\n");
            return 2;
        }
    }
    if (reps < 9)
        reps = 9;
    MPI_Init(&argc, &argv);
    bench b = {0};
    int size;
    MPI_Comm_dup(MPI_COMM_WORLD, &b.comm);
    MPI_Comm_rank(b.comm, &b.rank);
    MPI_Comm_size(b.comm, &size);

    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    o.free_bytes = 70ull << 30;
    o.allow_config_mismatch = 1;
    if (!table) {
        o.need_policy = WARMCAL_NEED_CONSTANT;
        o.constant_bytes_per_token = 128 << 10;
    }
    warmcal_gate *all_run = open_or_abort(table, b.comm, &o, b.rank);

    /* The cases: ascending shapes that all run (a server's usual list), and
     * 1024 shapes once more shuffled, where rank 1's (alone: rank 0's) memory is the need of
     * the median shape so that half skip — the envelope hint then misses
     * and every skip writes its text. */
    enum { CASES = 4 };
    static const size_t sizes[CASES] = {1, 64, 1024, 1024};
    static const char *const case_name[CASES] = {"1", "64", "1024", "1024 shuffled, half skip"};
    double med[CASES][METHODS] = {{0}};
    int failed = 0;
    warmcal_gate *half_skip = NULL;
    for (size_t c = 0; c < CASES && !failed; c++) {
        size_t n = sizes[c];
        int worst = c == CASES - 1;
        b.n = n;
        b.shapes = calloc(n, sizeof *b.shapes);
        b.out = calloc(n, sizeof *b.out);
        b.in = calloc(n, sizeof *b.in);
        b.res = calloc(n, sizeof *b.res);
        size_t packed_n = GATE_FIRST + (n > GATE_FIRST_SHAPES ? n - GATE_FIRST_SHAPES : 0);
        b.packed = calloc(packed_n, sizeof *b.packed);
        b.packed_res = calloc(packed_n, sizeof *b.packed_res);
        if (!b.shapes || !b.out || !b.in || !b.res || !b.packed || !b.packed_res)
            MPI_Abort(MPI_COMM_WORLD, 1);
        for (size_t i = 0; i < n; i++) {
            /* spread over a calibrated range (1..16384 tokens in the demo tables) */
            uint64_t tokens = n == 1 ? 4096 : 1 + i * 16383 / (n - 1);
            b.shapes[i] = (warmcal_shape){.tokens = tokens, .batch = 1, .label = "context",
                                          .batch_valid = 1};
            b.in[i] = (long_int){(long)((70ull << 30) - tokens * (128 << 10)), b.rank};
            b.packed[7 + i] = b.in[i].value * 65536 + b.rank;
        }
        b.gate = all_run;
        if (worst) {
            /* the median shape's need, read from a decision with no memory at all */
            warmcal_gate_options none = o;
            none.free_bytes = 0;
            warmcal_gate *probe = open_or_abort(table, b.comm, &none, b.rank);
            if (warmcal_gate_decide(probe, &b.shapes[n / 2], 1, b.out) != WARMCAL_OK)
                MPI_Abort(MPI_COMM_WORLD, 1);
            warmcal_gate_close(probe);
            warmcal_gate_options half = o;
            if (b.rank == (size > 1 ? 1 : 0))
                half.free_bytes = b.out[0].short_bytes;
            b.gate = half_skip = open_or_abort(table, b.comm, &half, b.rank);
            uint64_t seed = 42; /* the same order on every rank */
            for (size_t i = n - 1; i > 0; i--) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                size_t j = (size_t)((seed >> 33) % (i + 1));
                warmcal_shape t = b.shapes[i];
                b.shapes[i] = b.shapes[j];
                b.shapes[j] = t;
            }
        }
        failed = measure(&b, reps, med[c]);
        if (!failed && worst) {
            size_t skipped = 0;
            for (size_t i = 0; i < n; i++)
                skipped += !b.out[i].run;
            if (skipped < n / 3 || skipped > 2 * n / 3) {
                fprintf(stderr, "bench-gate: %zu of %zu shapes skipped, expected about half\n",
                        skipped, n);
                failed = 1;
            }
        }
        free(b.shapes), free(b.out), free(b.in), free(b.res);
        free(b.packed), free(b.packed_res);
    }
    if (!failed && b.rank == 0) {
        printf("gate decision cost: %d ranks, %d repetitions, need from %s\n", size, reps,
               table ? table : "a constant 128 KiB per token");
        printf("%-25s  %10s  %10s  %11s  %12s  %11s  %10s  %13s\n", "shapes", "decide us",
               "bare us", "own coll us", "per-shape us", "decide/bare", "decide/own",
               "per-shape/dec");
        for (size_t c = 0; c < CASES; c++) {
            double *m = med[c];
            printf("%-25s  %10.2f  %10.2f  %11.2f  %12.2f  %10.2fx  %9.2fx  %12.1fx\n",
                   case_name[c], m[DECIDE] * 1e6, m[BARE] * 1e6, m[PACKED] * 1e6,
                   m[PER_SHAPE] * 1e6, m[DECIDE] / m[BARE], m[DECIDE] / m[PACKED],
                   m[PER_SHAPE] / m[DECIDE]);
        }
        double r = med[2][DECIDE] / med[2][BARE], rw = med[3][DECIDE] / med[3][BARE];
        printf("1024 shapes: decide costs %.2fx one bare MINLOC allreduce of the same pairs "
               "(target <= 1.5x: %s; shuffled with half skipped: %.2fx); %.0f per-shape "
               "allreduces cost %.1fx one decision\n",
               r, r <= 1.5 ? "met" : "NOT met", rw, (double)sizes[2],
               med[2][PER_SHAPE] / med[2][DECIDE]);
        printf("(medians of the slowest rank's time per operation; columns: %s; %s; %s; %s)\n",
               method_name[DECIDE], method_name[BARE], method_name[PACKED],
               method_name[PER_SHAPE]);
    }
    warmcal_gate_close(all_run);
    warmcal_gate_close(half_skip);
    MPI_Comm_free(&b.comm);
    MPI_Finalize();
    return failed;
}
