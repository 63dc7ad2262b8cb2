/* The gate over real MPI ranks (run under mpirun -np 4). Each case is named
 * on the command line; a case prints "ok CASE" on every rank that passed.
 * Cases that end the job (a rank that never opens, stalls or dies) are
 * checked by gate_faults.sh from what the ranks report. */
#define _POSIX_C_SOURCE 200809L
#include "../check.h"
#include "test_table.h"
#include "warmcal/gate.h"

#include <mpi.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

/* A deadline that a failing rank's "at once" cannot be confused with: a
 * call that waited it out would take 60 s, so "under 30 s" is a wide margin
 * on a loaded machine. */
#define LONG_DEADLINE_S 60.0
#define AT_ONCE_S 30.0

#define GiB (1ull << 30)
#define MiB (1ull << 20)

static int rank, size;
static char dir[256];

static void table_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", dir, name);
}

static warmcal_gate *open_gate_with_deadline(const char *name, uint64_t free_bytes,
                                             double deadline_s)
{
    char path[512];
    table_path(path, sizeof path, name);
    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    o.free_bytes = free_bytes;
    o.reserve_bytes = 256 * MiB;
    o.deadline_s = deadline_s;
    warmcal_gate *g = NULL;
    int rc = warmcal_gate_open(&g, path, MPI_COMM_WORLD, &o);
    if (rc != WARMCAL_OK)
        fprintf(stderr, "rank %d: open: %s\n", rank, warmcal_gate_last_error(g));
    CHECK(rc == WARMCAL_OK);
    return g;
}

static warmcal_gate *open_gate(const char *name, uint64_t free_bytes)
{
    return open_gate_with_deadline(name, free_bytes, 5);
}

/* CPU seconds this process used (every thread, MPI's included). */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Every rank's decisions equal rank 0's, field by field (the text after its
 * NUL is not part of a decision). */
static void check_identical(const warmcal_decision *d, size_t n)
{
    size_t bytes = n * sizeof *d;
    warmcal_decision *all = rank == 0 ? malloc(bytes * (size_t)size) : NULL;
    MPI_Gather(d, (int)bytes, MPI_BYTE, all, (int)bytes, MPI_BYTE, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        for (int r = 1; r < size; r++)
            for (size_t i = 0; i < n; i++) {
                const warmcal_decision *a = &all[i], *b = &all[(size_t)r * n + i];
                CHECK(a->run == b->run && a->reason == b->reason &&
                      a->blocking_rank == b->blocking_rank && a->short_bytes == b->short_bytes &&
                      a->min_headroom == b->min_headroom && strcmp(a->text, b->text) == 0);
            }
        free(all);
    }
}

static void decisions_are_identical_and_name_the_blocking_rank(void)
{
    /* rank 2 has 5 GiB free, the others 40 GiB; rank 1 cannot run batch 64 */
    warmcal_gate *g = open_gate("a.json", rank == 2 ? 5 * GiB : 40 * GiB);
    warmcal_shape s[5] = {
        {.tokens = 1024, .batch = 1, .label = "context", .batch_valid = 1},
        {.tokens = 8192, .batch = 1, .label = "context", .batch_valid = 1},
        {.tokens = 65536, .batch = 1, .label = "context", .batch_valid = 1},
        {.tokens = 16, .batch = 16, .label = "generation", .batch_valid = 1},
        {.tokens = 64, .batch = 64, .label = "context", .batch_valid = rank != 1},
    };
    warmcal_decision d[5];
    CHECK(warmcal_gate_decide(g, s, 5, d) == WARMCAL_OK);
    check_identical(d, 5);
    CHECK(d[0].run && d[0].reason == WARMCAL_REASON_RUN && d[0].blocking_rank == -1);
    /* least headroom is on rank 2: 5 GiB - (1 GiB + 1024 MiB + 256 MiB) */
    CHECK(d[0].min_headroom == (int64_t)(5 * GiB - GiB - 1024 * MiB - 256 * MiB));
    CHECK(!d[1].run && d[1].reason == WARMCAL_REASON_LOW_MEMORY && d[1].blocking_rank == 2);
    CHECK_EQ_U64(d[1].short_bytes, GiB + 8192 * MiB + 256 * MiB - 5 * GiB);
    CHECK_STR_CONTAINS(d[1].text, "rank 2 is short of");
    CHECK(!d[2].run && d[2].reason == WARMCAL_REASON_OUT_OF_RANGE);
    CHECK(!d[3].run && d[3].reason == WARMCAL_REASON_NO_ESTIMATE && d[3].blocking_rank == 0);
    CHECK(!d[4].run && d[4].reason == WARMCAL_REASON_INVALID_BATCH && d[4].blocking_rank == 1);
    CHECK_STR_CONTAINS(d[4].text, "invalid batch");
    /* a list longer than the first collective carries (64 shapes): the rest
     * comes from the second, decided alike */
    enum { LONG = 300 };
    warmcal_shape *ls = calloc(LONG, sizeof *ls);
    warmcal_decision *ld = calloc(LONG, sizeof *ld);
    for (int i = 0; i < LONG; i++)
        ls[i] = (warmcal_shape){.tokens = 100 * (uint64_t)(i + 1), .batch = 1, .label = "context",
                                .batch_valid = !(rank == 1 && i == 250)};
    CHECK(warmcal_gate_decide(g, ls, LONG, ld) == WARMCAL_OK);
    check_identical(ld, LONG);
    for (int i = 0; i < LONG; i++) {
        uint64_t need = GiB + ls[i].tokens * MiB + 256 * MiB;
        if (i == 250)
            CHECK(!ld[i].run && ld[i].reason == WARMCAL_REASON_INVALID_BATCH &&
                  ld[i].blocking_rank == 1);
        else if (need <= 5 * GiB)
            CHECK(ld[i].run && ld[i].min_headroom == (int64_t)(5 * GiB - need));
        else
            CHECK(!ld[i].run && ld[i].blocking_rank == 2 && ld[i].short_bytes == need - 5 * GiB);
    }
    free(ls);
    free(ld);
    /* the texts a server logs, whole */
    CHECK(strcmp(d[0].text, "run") == 0);
    CHECK(strcmp(d[1].text, "skip: rank 2 is short of 4.25 GiB for 8192 tokens (context)") == 0);
    CHECK(strcmp(d[2].text, "skip: 65536 tokens is outside the calibrated range of rank 0's "
                            "context estimate") == 0);
    CHECK(strcmp(d[3].text, "skip: the table has no generation estimate for rank 0") == 0);
    CHECK(strcmp(d[4].text, "skip: rank 1 cannot run batch 64 (invalid batch)") == 0);
    for (int i = 0; i < 5; i++)
        if (rank == 0)
            printf("  %s\n", d[i].text);
    /* the same decisions through a caller's MIN collective (a local gate) */
    warmcal_gate *local = NULL;
    char path[512];
    table_path(path, sizeof path, "a.json");
    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    o.free_bytes = rank == 2 ? 5 * GiB : 40 * GiB;
    o.reserve_bytes = 256 * MiB;
    CHECK(warmcal_gate_open_local(&local, path, rank, size, &o) == WARMCAL_OK);
    size_t count = warmcal_gate_encoded_count(5);
    int64_t vals[16], red[16];
    CHECK(warmcal_gate_encode(local, s, 5, vals) == WARMCAL_OK);
    MPI_Allreduce(vals, red, (int)count, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
    warmcal_decision l[5];
    CHECK(warmcal_gate_decode(local, red, 5, l) == WARMCAL_OK);
    for (int i = 0; i < 5; i++) {
        CHECK(l[i].run == d[i].run && l[i].reason == d[i].reason);
        CHECK(l[i].blocking_rank == d[i].blocking_rank && l[i].short_bytes == d[i].short_bytes);
    }
    CHECK(warmcal_gate_decide(local, s, 5, l) == WARMCAL_E_STATE);
    warmcal_gate_close(local);
    warmcal_gate_close(g);
}

static void different_tables_fail_on_every_rank(void)
{
    warmcal_gate *g = open_gate(rank == 3 ? "b.json" : "a.json", 40 * GiB);
    warmcal_shape s = {.tokens = 1024, .batch = 1, .label = "context", .batch_valid = 1};
    warmcal_decision d;
    CHECK(warmcal_gate_decide(g, &s, 1, &d) == WARMCAL_E_MISMATCH);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "different tables");
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "3");
    warmcal_gate_close(g);
}

static void different_shape_lists_fail_on_every_rank(void)
{
    warmcal_gate *g = open_gate_with_deadline("a.json", 40 * GiB, LONG_DEADLINE_S);
    warmcal_shape s[2] = {{.tokens = 1024, .batch = 1, .label = "context", .batch_valid = 1},
                          {.tokens = rank == 1 ? 4096 : 2048, .batch = 1, .label = "context",
                           .batch_valid = 1}};
    warmcal_decision d[2];
    CHECK(warmcal_gate_decide(g, s, 2, d) == WARMCAL_E_MISMATCH);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "different shape lists");
    /* the gate stays usable once the ranks agree again */
    s[1].tokens = 2048;
    CHECK(warmcal_gate_decide(g, s, 2, d) == WARMCAL_OK);
    /* the same shapes in another order, another batch or another label on
     * one rank are other lists too */
    warmcal_shape swapped[2] = {s[1], s[0]};
    CHECK(warmcal_gate_decide(g, rank == 2 ? swapped : s, 2, d) == WARMCAL_E_MISMATCH);
    warmcal_shape other[2] = {s[0], s[1]};
    other[0].batch = 2;
    CHECK(warmcal_gate_decide(g, rank == 0 ? other : s, 2, d) == WARMCAL_E_MISMATCH);
    other[0] = s[0];
    other[1].label = "generation";
    CHECK(warmcal_gate_decide(g, rank == 3 ? other : s, 2, d) == WARMCAL_E_MISMATCH);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "different shape lists");
    /* lists of other lengths, longer and shorter, on one rank: an error on
     * every rank at once, naming both counts, and the gate stays usable
     * (before the count check, Open MPI aborted the job or crashed here) */
    warmcal_shape many[200];
    for (int i = 0; i < 200; i++)
        many[i] = (warmcal_shape){.tokens = (uint64_t)i + 1, .batch = 1, .label = "context",
                                  .batch_valid = 1};
    warmcal_decision dm[200];
    for (int round = 0; round < 3; round++) {
        size_t mine = round == 0 ? (rank == 3 ? 200 : 2) : round == 1 ? (rank == 0 ? 1 : 2)
                                                                      : (rank == 2 ? 0 : 2);
        double t0 = MPI_Wtime();
        CHECK(warmcal_gate_decide(g, many, mine, dm) == WARMCAL_E_MISMATCH);
        CHECK(MPI_Wtime() - t0 < AT_ONCE_S); /* at once, not at the 60 s deadline */
        const char *want[] = {"rank 0 asked about 2 shapes and rank 3 about 200",
                              "rank 0 asked about 1 shape and rank 1 about 2",
                              "rank 2 asked about 0 shapes and rank 0 about 2"};
        CHECK_STR_CONTAINS(warmcal_gate_last_error(g), want[round]);
    }
    CHECK(warmcal_gate_decide(g, many, 2, dm) == WARMCAL_OK && dm[1].run);
    /* equal labels from different pointers are the same list */
    char label[] = "context";
    other[1] = s[1];
    other[1].label = label;
    CHECK(warmcal_gate_decide(g, rank == 1 ? other : s, 2, d) == WARMCAL_OK);
    warmcal_gate_close(g);
}

/* The reduction is MINLOC carried in one packed integer per shape: ties go to
 * the lowest rank, lacks are exact to the byte, and beyond +-64 TiB values
 * saturate (a lack of that much is reported as UINT64_MAX, never wraps). */
static void ties_exact_bytes_and_saturation(void)
{
    /* need at 1024 tokens: 1 GiB + 1024 MiB + 256 MiB reserve = 2.25 GiB */
    uint64_t need = GiB + 1024 * MiB + 256 * MiB;
    warmcal_shape s = {.tokens = 1024, .batch = 1, .label = "context", .batch_valid = 1};
    warmcal_decision d;

    /* ranks 1 and 3 both lack exactly one byte: rank 1 is named */
    warmcal_gate *g = open_gate("a.json", rank % 2 ? need - 1 : 40 * GiB);
    CHECK(warmcal_gate_decide(g, &s, 1, &d) == WARMCAL_OK);
    check_identical(&d, 1);
    CHECK(!d.run && d.blocking_rank == 1 && d.short_bytes == 1 && d.min_headroom == -1);
    warmcal_gate_close(g);

    /* exactly enough on every rank runs, with no headroom to spare */
    g = open_gate("a.json", need);
    CHECK(warmcal_gate_decide(g, &s, 1, &d) == WARMCAL_OK);
    CHECK(d.run && d.min_headroom == 0);
    warmcal_gate_close(g);

    /* 100 TiB free everywhere: runs, headroom saturated at 64 TiB - 1 */
    g = open_gate("a.json", 100ull << 40);
    CHECK(warmcal_gate_decide(g, &s, 1, &d) == WARMCAL_OK);
    check_identical(&d, 1);
    CHECK(d.run && d.min_headroom == (INT64_C(1) << 46) - 1);
    warmcal_gate_close(g);

    /* rank 2 lacks 1 EiB (a huge reserve), rank 0 lacks 1 GiB: rank 2 blocks,
     * its lack reported as UINT64_MAX with words that say so */
    char path[512];
    table_path(path, sizeof path, "a.json");
    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    o.free_bytes = rank == 0 ? need - GiB : 40 * GiB;
    o.reserve_bytes = rank == 2 ? 1ull << 60 : 256 * MiB;
    o.deadline_s = 5;
    CHECK(warmcal_gate_open(&g, path, MPI_COMM_WORLD, &o) == WARMCAL_OK);
    warmcal_shape two[2] = {s, s};
    two[1].tokens = 1;
    warmcal_decision dd[2];
    CHECK(warmcal_gate_decide(g, two, 2, dd) == WARMCAL_OK);
    check_identical(dd, 2);
    for (int i = 0; i < 2; i++) {
        CHECK(!dd[i].run && dd[i].reason == WARMCAL_REASON_LOW_MEMORY);
        CHECK(dd[i].blocking_rank == 2 && dd[i].short_bytes == UINT64_MAX);
        CHECK(dd[i].min_headroom == -(INT64_C(1) << 46));
        CHECK_STR_CONTAINS(dd[i].text, "rank 2 is short of 64 TiB or more");
    }
    /* a label longer than the text: cut at the text's end, terminated */
    char long_label[400];
    memset(long_label, 'x', sizeof long_label - 1);
    long_label[sizeof long_label - 1] = '\0';
    warmcal_shape odd = {.tokens = 1, .batch = 1, .label = long_label, .batch_valid = 1};
    CHECK(warmcal_gate_decide(g, &odd, 1, &d) == WARMCAL_OK);
    CHECK(d.reason == WARMCAL_REASON_NO_ESTIMATE && strlen(d.text) == sizeof d.text - 1);
    CHECK(strncmp(d.text, "skip: the table has no xxx", 26) == 0);
    warmcal_gate_close(g);
}

/* One rank that cannot open (its table is missing) or cannot decide (bad
 * arguments) fails every rank at once, never leaving them to wait out the
 * deadline; the failing rank keeps its own words, the others name it. */
static void a_rank_that_cannot_open_or_decide_fails_every_rank_at_once(void)
{
    char path[512];
    table_path(path, sizeof path, rank == 2 ? "missing.json" : "a.json");
    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    o.free_bytes = 40 * GiB;
    o.deadline_s = LONG_DEADLINE_S;
    warmcal_gate *g = NULL;
    double t0 = MPI_Wtime();
    CHECK(warmcal_gate_open(&g, path, MPI_COMM_WORLD, &o) == WARMCAL_E_IO);
    CHECK(MPI_Wtime() - t0 < AT_ONCE_S); /* at once, not at the 60 s deadline */
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "missing.json");
    if (rank != 2)
        CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "rank 2 could not open the gate: ");
    warmcal_shape s = {.tokens = 1024, .batch = 1, .label = "context", .batch_valid = 1};
    warmcal_decision d;
    CHECK(warmcal_gate_decide(g, &s, 1, &d) == WARMCAL_E_STATE); /* on every rank, no collective */
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "did not open");
    warmcal_gate_close(g);

    /* a rank with no place for the handle still takes part, failed */
    t0 = MPI_Wtime();
    table_path(path, sizeof path, "a.json");
    int rc = rank == 3 ? warmcal_gate_open(NULL, path, MPI_COMM_WORLD, &o)
                       : warmcal_gate_open(&g, path, MPI_COMM_WORLD, &o);
    CHECK(rc == WARMCAL_E_INVAL);
    CHECK(MPI_Wtime() - t0 < AT_ONCE_S);
    if (rank != 3) {
        CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "rank 3 could not open the gate: ");
        CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "out is NULL");
        warmcal_gate_close(g);
    }
    /* a binding's rank whose arguments were invalid takes part, flagged,
     * and every rank fails at once with its code and words */
    t0 = MPI_Wtime();
    rc = rank == 0 ? warmcal_gate_open_failed(&g, MPI_COMM_WORLD, WARMCAL_E_FIELD,
                                              "free_bytes: -1 is not a byte count", 0)
                   : warmcal_gate_open(&g, path, MPI_COMM_WORLD, &o);
    CHECK(rc == WARMCAL_E_FIELD);
    CHECK(MPI_Wtime() - t0 < AT_ONCE_S);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "free_bytes: -1 is not a byte count");
    if (rank != 0)
        CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "rank 0 could not open the gate: ");
    CHECK(warmcal_gate_decide(g, &s, 1, &d) == WARMCAL_E_STATE);
    warmcal_gate_close(g);

    g = open_gate_with_deadline("a.json", 40 * GiB, LONG_DEADLINE_S);
    for (int round = 0; round < 2; round++) {
        t0 = MPI_Wtime();
        /* rank 1 passes no shapes array, then (round 1) no decisions array */
        rc = rank == 1 ? warmcal_gate_decide(g, round ? &s : NULL, 1, round ? NULL : &d)
                       : warmcal_gate_decide(g, &s, 1, &d);
        CHECK(rc == WARMCAL_E_INVAL);
        CHECK(MPI_Wtime() - t0 < AT_ONCE_S); /* at once, not at the 60 s deadline */
        CHECK_STR_CONTAINS(warmcal_gate_last_error(g), rank == 1
                                                           ? "decide: bad shapes or decisions array"
                                                           : "rank 1 could not take part in the "
                                                             "decision");
    }
    CHECK(warmcal_gate_decide(g, &s, 1, &d) == WARMCAL_OK && d.run); /* still usable */
    warmcal_gate_close(g);
}

static void wrong_tp_and_bad_options_are_refused(void)
{
    MPI_Comm half;
    MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &half);
    char path[512];
    table_path(path, sizeof path, "a.json");
    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    warmcal_gate *g = NULL;
    CHECK(warmcal_gate_open(&g, path, half, &o) == WARMCAL_E_MISMATCH);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "calibrated for tp 4, this gate has 2 ranks");
    warmcal_gate_close(g);
    o.allow_config_mismatch = 1;
    CHECK(warmcal_gate_open(&g, path, half, &o) == WARMCAL_OK);
    warmcal_gate_close(g);
    MPI_Comm_free(&half);
    o.probe = WARMCAL_PROBE_CALLBACK; /* without a function */
    CHECK(warmcal_gate_open(&g, path, MPI_COMM_WORLD, &o) == WARMCAL_E_INVAL);
    warmcal_gate_close(g);
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    CHECK(warmcal_gate_open(&g, "/nonexistent/table.json", MPI_COMM_WORLD, &o) == WARMCAL_E_IO);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "/nonexistent/table.json");
    warmcal_decision d;
    warmcal_shape s = {.tokens = 1, .batch = 1, .batch_valid = 1};
    CHECK(warmcal_gate_decide(g, &s, 1, &d) == WARMCAL_E_STATE);
    warmcal_gate_close(g);
}

static int failing_probe(void *user, uint64_t *free_bytes)
{
    (void)user;
    (void)free_bytes;
    return rank == 0 ? -1 : 0;
}

static void a_failed_probe_fails_every_rank_and_the_original_policy_works(void)
{
    char path[512];
    table_path(path, sizeof path, "a.json");
    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_CALLBACK;
    o.free_fn = failing_probe;
    warmcal_gate *g = NULL;
    CHECK(warmcal_gate_open(&g, path, MPI_COMM_WORLD, &o) == WARMCAL_OK);
    warmcal_shape s = {.tokens = 1, .batch = 1, .batch_valid = 1};
    warmcal_decision d;
    CHECK(warmcal_gate_decide(g, &s, 1, &d) == WARMCAL_E_UNSUPPORTED);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "rank 0 could not probe");
    warmcal_gate_close(g);
    /* the original fix: 1 MiB per token, checked above 256 tokens only */
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    o.free_bytes = rank == 1 ? 300 * MiB : 4 * GiB;
    o.need_policy = WARMCAL_NEED_CONSTANT;
    o.constant_bytes_per_token = MiB;
    o.constant_min_tokens = 256;
    CHECK(warmcal_gate_open(&g, NULL, MPI_COMM_WORLD, &o) == WARMCAL_OK);
    warmcal_shape t[2] = {{.tokens = 200, .batch = 1, .batch_valid = 1},
                          {.tokens = 512, .batch = 1, .batch_valid = 1}};
    warmcal_decision e[2];
    CHECK(warmcal_gate_decide(g, t, 2, e) == WARMCAL_OK);
    CHECK(e[0].run);                   /* unchecked below 256 tokens, as the original fix */
    CHECK(!e[1].run && e[1].blocking_rank == 1 && e[1].short_bytes == 212 * MiB);
    warmcal_gate_close(g);
}

/* Rank 0 prints every waiting rank's report in one write, then ends the
 * job: no rank's line can be lost to the abort, and no sleep has to guess
 * how long the others need to report. The reports travel point to point
 * on MPI_COMM_WORLD, which a pending collective does not block. */
static void report_then_abort(const char *line, int code)
{
    enum { REPORT = 1024, TAG = 77 };
    char mine[REPORT];
    snprintf(mine, sizeof mine, "%s", line);
    if (rank != 0) {
        MPI_Send(mine, REPORT, MPI_CHAR, 0, TAG, MPI_COMM_WORLD);
        for (;;)
            pause(); /* until rank 0 aborts the job */
    }
    static char reports[4][REPORT];
    MPI_Request req[2];
    int from[2] = {1, 3}; /* rank 2 is the one that went missing */
    for (int i = 0; i < 2; i++)
        MPI_Irecv(reports[from[i]], REPORT, MPI_CHAR, from[i], TAG, MPI_COMM_WORLD, &req[i]);
    /* bounded, so that a rank that never reports fails the test, not hangs it */
    double give_up = MPI_Wtime() + AT_ONCE_S;
    int done = 0;
    while (!done && MPI_Wtime() < give_up) {
        MPI_Testall(2, req, &done, MPI_STATUSES_IGNORE);
        if (!done)
            nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    char all[4 * REPORT + 64];
    int len = snprintf(all, sizeof all, "%s\n", mine);
    for (int i = 0; i < 2; i++)
        len += snprintf(all + len, sizeof all - (size_t)len, "%s\n",
                        done ? reports[from[i]] : "rank 0: a waiting rank never reported");
    fflush(stdout);
    if (write(1, all, (size_t)len) < 0)
        perror("write");
    MPI_Abort(MPI_COMM_WORLD, code);
}

/* For gate_faults.sh: rank 2 never calls decide (stall) or dies (kill).
 * The others report what decide returned, how long it took and the CPU
 * time it used. */
static void a_rank_that_stops_calling_decide(int kill_it)
{
    warmcal_gate *g = open_gate("a.json", 40 * GiB);
    printf("rank %d: opened the gate\n", rank);
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD); /* every rank has printed before rank 2 goes */
    warmcal_shape s = {.tokens = 1024, .batch = 1, .label = "context", .batch_valid = 1};
    warmcal_decision d;
    if (rank == 2) {
        printf("rank 2: %s\n", kill_it ? "killing itself" : "never deciding");
        fflush(stdout);
        if (kill_it)
            raise(SIGKILL);
        for (;;)
            pause(); /* the others give up after their deadline and abort the job */
    }
    double t0 = MPI_Wtime(), c0 = cpu_s();
    int rc = warmcal_gate_decide(g, &s, 1, &d);
    char line[1024];
    snprintf(line, sizeof line, "rank %d: decide returned %d after %.2f s, cpu %.3f s: %s", rank,
             rc, MPI_Wtime() - t0, cpu_s() - c0, warmcal_gate_last_error(g));
    warmcal_gate_close(g);
    report_then_abort(line, rc == WARMCAL_E_TIMEOUT ? 3 : 4);
}

/* For gate_faults.sh: rank 2 never opens the gate. The others report what
 * open returned, after how long, and the CPU time its wait used. */
static void a_rank_that_never_opens(void)
{
    if (rank == 2) {
        printf("rank 2: never opening the gate\n");
        fflush(stdout);
        for (;;)
            pause(); /* the others give up after their deadline and abort the job */
    }
    char path[512];
    table_path(path, sizeof path, "a.json");
    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    o.free_bytes = 40 * GiB;
    o.deadline_s = 5;
    warmcal_gate *g = NULL;
    double t0 = MPI_Wtime(), c0 = cpu_s();
    int rc = warmcal_gate_open(&g, path, MPI_COMM_WORLD, &o);
    char line[1024];
    snprintf(line, sizeof line, "rank %d: open returned %d after %.2f s, cpu %.3f s: %s", rank,
             rc, MPI_Wtime() - t0, cpu_s() - c0, warmcal_gate_last_error(g));
    /* the gate that did not open still answers, without a collective */
    warmcal_shape s = {.tokens = 1024, .batch = 1, .label = "context", .batch_valid = 1};
    warmcal_decision d;
    if (warmcal_gate_decide(g, &s, 1, &d) != WARMCAL_E_STATE)
        snprintf(line, sizeof line, "rank %d: decide on a gate that timed out did not fail",
                 rank);
    warmcal_gate_close(g);
    report_then_abort(line, rc == WARMCAL_E_TIMEOUT ? 3 : 4);
}

/* Rank 2 reaches open a second late, well within the 5 s deadline: every
 * rank opens and decides as usual. */
static void a_rank_late_by_less_than_the_deadline_opens_normally(void)
{
    if (rank == 2)
        sleep(1);
    warmcal_gate *g = open_gate("a.json", rank == 2 ? 5 * GiB : 40 * GiB);
    warmcal_shape s[2] = {{.tokens = 1024, .batch = 1, .label = "context", .batch_valid = 1},
                          {.tokens = 8192, .batch = 1, .label = "context", .batch_valid = 1}};
    warmcal_decision d[2];
    CHECK(warmcal_gate_decide(g, s, 2, d) == WARMCAL_OK);
    check_identical(d, 2);
    CHECK(d[0].run);
    CHECK(!d[1].run && d[1].blocking_rank == 2 && d[1].reason == WARMCAL_REASON_LOW_MEMORY);
    /* late to a decision too, by less than its deadline */
    if (rank == 1)
        sleep(1);
    CHECK(warmcal_gate_decide(g, s, 2, d) == WARMCAL_OK && d[0].run);
    warmcal_gate_close(g);
}

/* The original bug's table: rank 0 ran out of memory above 16384 tokens
 * during calibration, so its own context entry ends there (1 GiB + 100 KiB
 * per token), while the any-rank entry covers 1..32768 with the largest
 * need any rank showed (1 GiB + 120 KiB per token). `huge` makes rank 2's
 * own entry (1..32768) absurd: beyond 64 bits from 1000 tokens on. Written
 * by rank 0, atomically, under a name of its own. */
static void write_rank0_short_table(const char *name, int huge)
{
    char path[512];
    table_path(path, sizeof path, name);
    warmcal_table *t = new_test_table();
    warmcal_error err = {0};
    warmcal_estimate e = {.rank = 0, .label = "context", .tokens_min = 1, .tokens_max = 16384,
                          .form = WARMCAL_FORM_LINEAR,
                          .coef = {(double)GiB, 100.0 * 1024}};
    e.fit.points = 10;
    CHECK(warmcal_table_add_estimate(t, &e, &err) == WARMCAL_OK);
    e.rank = -1;
    e.tokens_max = 32768;
    e.coef[1] = 120.0 * 1024;
    CHECK(warmcal_table_add_estimate(t, &e, &err) == WARMCAL_OK);
    if (huge) {
        e.rank = 2;
        e.coef[1] = 1.845e16; /* 2^64 is 1.8447e19 bytes: past it from 1000 tokens on */
        CHECK(warmcal_table_add_estimate(t, &e, &err) == WARMCAL_OK);
    }
    CHECK(warmcal_table_write(t, path, &err) == WARMCAL_OK);
    warmcal_table_free(t);
}

/* Above rank 0's own range the any-rank entry decides, so the pass is a
 * memory question: skipped naming rank 0 and its lack when rank 0 is
 * short, run when it has the memory. Out of range only above every entry. */
static void a_rank_above_its_own_range_is_decided_on_its_memory(void)
{
    if (rank == 0)
        write_rank0_short_table("rank0-short.json", 0);
    MPI_Barrier(MPI_COMM_WORLD);
    /* needs with the 256 MiB reserve: 16384 tokens on rank 0's own entry
     * 2.8125 GiB; 24576 tokens on the any-rank entry 4.0625 GiB */
    uint64_t need_16k = GiB + 16384 * 100 * 1024ull + 256 * MiB;
    uint64_t need_24k = GiB + 24576 * 120 * 1024ull + 256 * MiB;
    warmcal_shape s[3] = {{.tokens = 16384, .batch = 1, .label = "context", .batch_valid = 1},
                          {.tokens = 24576, .batch = 1, .label = "context", .batch_valid = 1},
                          {.tokens = 40000, .batch = 1, .label = "context", .batch_valid = 1}};
    warmcal_decision d[3];
    warmcal_gate *g = open_gate("rank0-short.json", rank == 0 ? 3 * GiB : 40 * GiB);
    CHECK(warmcal_gate_decide(g, s, 3, d) == WARMCAL_OK);
    check_identical(d, 3);
    CHECK(d[0].run && d[0].min_headroom == (int64_t)(3 * GiB - need_16k));
    CHECK(!d[1].run && d[1].reason == WARMCAL_REASON_LOW_MEMORY && d[1].blocking_rank == 0);
    CHECK_EQ_U64(d[1].short_bytes, need_24k - 3 * GiB);
    CHECK(strncmp(d[1].text, "skip: rank 0 is short of ", 25) == 0);
    CHECK_STR_CONTAINS(d[1].text, " for 24576 tokens (context)");
    CHECK(!d[2].run && d[2].reason == WARMCAL_REASON_OUT_OF_RANGE);
    CHECK_STR_CONTAINS(d[2].text, "40000 tokens is outside the calibrated range");
    if (rank == 0)
        printf("  %s\n  %s\n", d[1].text, d[2].text);
    warmcal_gate_close(g);

    /* rank 0 with the memory: the pass runs in production */
    g = open_gate("rank0-short.json", rank == 0 ? 8 * GiB : 40 * GiB);
    CHECK(warmcal_gate_decide(g, s, 2, d) == WARMCAL_OK);
    check_identical(d, 2);
    CHECK(d[0].run && d[1].run);
    CHECK(d[1].min_headroom == (int64_t)(8 * GiB - need_24k));
    warmcal_gate_close(g);
}

/* A decision's words are true: an estimate beyond 64 bits inside its range
 * is said to be too large (not "outside the calibrated range"), and a shape
 * of 0 tokens is refused on every rank at once, as warmcal_table_estimate
 * and Python refuse it. */
static void too_large_estimates_and_zero_tokens_are_named_as_such(void)
{
    if (rank == 0)
        write_rank0_short_table("too-large.json", 1);
    MPI_Barrier(MPI_COMM_WORLD);
    warmcal_gate *g = open_gate_with_deadline("too-large.json", 40 * GiB, LONG_DEADLINE_S);
    warmcal_shape s[2] = {{.tokens = 999, .batch = 1, .label = "context", .batch_valid = 1},
                          {.tokens = 1000, .batch = 1, .label = "context", .batch_valid = 1}};
    warmcal_decision d[2];
    CHECK(warmcal_gate_decide(g, s, 2, d) == WARMCAL_OK);
    check_identical(d, 2);
    /* 1.8432e19 bytes fits in 64 bits: rank 2 lacks that much memory */
    CHECK(!d[0].run && d[0].reason == WARMCAL_REASON_LOW_MEMORY && d[0].blocking_rank == 2);
    CHECK(d[0].short_bytes == UINT64_MAX); /* 64 TiB or more */
    CHECK(!d[1].run && d[1].reason == WARMCAL_REASON_ESTIMATE_TOO_LARGE);
    CHECK(d[1].blocking_rank == 2 && d[1].short_bytes == 0 && d[1].min_headroom == INT64_MIN);
    CHECK(strcmp(d[1].text, "skip: rank 2's context estimate at 1000 tokens does not fit in "
                            "64 bits") == 0);
    CHECK(strcmp(warmcal_reason_name(d[1].reason), "estimate too large") == 0);

    warmcal_shape z[2] = {s[0], s[0]};
    z[1].tokens = 0;
    double t0 = MPI_Wtime();
    CHECK(warmcal_gate_decide(g, z, 2, d) == WARMCAL_E_INVAL);
    CHECK(MPI_Wtime() - t0 < AT_ONCE_S); /* at once, not at the 60 s deadline */
    /* every rank flagged it; each names the lowest such rank, rank 0 in its words */
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g),
                       rank == 0 ? "decide: shapes[1]: tokens must be at least 1, found 0"
                                 : "rank 0 could not take part in the decision (invalid argument)");
    CHECK(warmcal_gate_decide(g, s, 1, d) == WARMCAL_OK); /* still usable */
    warmcal_gate_close(g);
}

/* Every rank's budget equals rank 0's. */
static void check_same_budget(uint64_t tokens, int limiting_rank)
{
    uint64_t mine[2] = {tokens, (uint64_t)limiting_rank}, all[8];
    MPI_Allgather(mine, 2, MPI_UINT64_T, all, 2, MPI_UINT64_T, MPI_COMM_WORLD);
    for (int r = 1; r < size; r++)
        CHECK(all[2 * r] == all[0] && all[2 * r + 1] == all[1]);
}

/* The smallest of every rank's own budget by the table function, and the
 * lowest rank that has it: what max_tokens must answer. */
static uint64_t min_of_table_budgets(const char *name, uint64_t free_bytes, uint64_t reserve,
                                     int above, int *limiting_rank)
{
    char path[512];
    table_path(path, sizeof path, name);
    warmcal_table *t = NULL;
    warmcal_error err = {0};
    CHECK(warmcal_table_read(path, &t, &err) == WARMCAL_OK);
    uint64_t mine = 0, all[4];
    CHECK(warmcal_table_max_tokens(t, rank, "context", 1, above, free_bytes, reserve, &mine, NULL,
                                   &err) == WARMCAL_OK);
    warmcal_table_free(t);
    MPI_Allgather(&mine, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD);
    *limiting_rank = 0;
    for (int r = 1; r < size; r++)
        if (all[r] < all[*limiting_rank])
            *limiting_rank = r;
    return all[*limiting_rank];
}

/* A gate on table `name` with this rank's free memory and the gate's
 * reserve of 256 MiB; above: -1 or a policy. */
static warmcal_gate *open_budget_gate(const char *name, uint64_t free_bytes, int above)
{
    char path[512];
    table_path(path, sizeof path, name);
    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    o.free_bytes = free_bytes;
    o.reserve_bytes = 256 * MiB;
    o.above_range = above;
    o.deadline_s = LONG_DEADLINE_S;
    warmcal_gate *g = NULL;
    CHECK(warmcal_gate_open(&g, path, MPI_COMM_WORLD, &o) == WARMCAL_OK);
    return g;
}

/* max_tokens answers the same on every rank: the smallest per-rank budget
 * of the table function and its rank; decide runs a pass of that many
 * tokens and skips one token more, naming the same rank and the reason the
 * budget stops at. */
static void budget_agrees_with_the_table_and_with_decide(const char *name, uint64_t free_bytes,
                                                          int above, uint64_t call_reserve,
                                                          uint64_t want_tokens, int want_rank,
                                                          int want_reason)
{
    warmcal_gate *g = open_budget_gate(name, free_bytes, above);
    uint64_t tokens = 0;
    int limiting = -5;
    int rc = warmcal_gate_max_tokens(g, "context", call_reserve, &tokens, &limiting);
    if (rc != WARMCAL_OK)
        fprintf(stderr, "rank %d: max_tokens: %s\n", rank, warmcal_gate_last_error(g));
    CHECK(rc == WARMCAL_OK && strcmp(warmcal_gate_last_error(g), "") == 0);
    check_same_budget(tokens, limiting);
    int table_rank = -5;
    uint64_t table_tokens =
        min_of_table_budgets(name, free_bytes, 256 * MiB + call_reserve, above, &table_rank);
    CHECK_EQ_U64(tokens, table_tokens);
    CHECK(limiting == table_rank);
    CHECK_EQ_U64(tokens, want_tokens);
    CHECK(limiting == want_rank);
    if (rank == 0)
        printf("  %s: %" PRIu64 " tokens, limited by rank %d\n", name, tokens, limiting);
    /* decide with the same need: the call's reserve on top of the gate's */
    if (call_reserve) {
        warmcal_gate_close(g);
        char path[512];
        table_path(path, sizeof path, name);
        warmcal_gate_options o;
        warmcal_gate_options_init(&o);
        o.probe = WARMCAL_PROBE_VALUE;
        o.free_bytes = free_bytes;
        o.reserve_bytes = 256 * MiB + call_reserve;
        o.above_range = above;
        CHECK(warmcal_gate_open(&g, path, MPI_COMM_WORLD, &o) == WARMCAL_OK);
    }
    warmcal_shape s[2] = {{.tokens = tokens, .batch = 1, .label = "context", .batch_valid = 1},
                          {.tokens = tokens + 1, .batch = 1, .label = "context", .batch_valid = 1}};
    warmcal_decision d[2];
    CHECK(warmcal_gate_decide(g, tokens ? s : s + 1, tokens ? 2 : 1, d) == WARMCAL_OK);
    const warmcal_decision *next = tokens ? &d[1] : &d[0];
    if (tokens)
        CHECK(d[0].run);
    CHECK(!next->run && next->blocking_rank == limiting && next->reason == want_reason);
    warmcal_gate_close(g);
}

static void budgets_are_the_same_on_every_rank_and_agree_with_decide(void)
{
    /* table "a" (1 GiB + 1 MiB per token, 1..32768), gate reserve 256 MiB:
     * rank 3 has 2.5 GiB + 123 bytes, room for 1280 tokens; rank 2 has
     * 5 GiB, the others 40 GiB */
    uint64_t free_bytes = rank == 3 ? 5 * GiB / 2 + 123 : rank == 2 ? 5 * GiB : 40 * GiB;
    budget_agrees_with_the_table_and_with_decide("a.json", free_bytes, -1, 0, 1280, 3,
                                                 WARMCAL_REASON_LOW_MEMORY);
    /* the call's reserve adds to the gate's: 100 MiB more, 100 tokens less */
    budget_agrees_with_the_table_and_with_decide("a.json", free_bytes, -1, 100 * MiB, 1180, 3,
                                                 WARMCAL_REASON_LOW_MEMORY);
    /* ranks 1 and 3 tie: the lower one is named */
    free_bytes = rank % 2 ? 3 * GiB : 40 * GiB;
    budget_agrees_with_the_table_and_with_decide("a.json", free_bytes, -1, 0, 1792, 1,
                                                 WARMCAL_REASON_LOW_MEMORY);
    /* plenty everywhere: the calibrated range ends it (every rank ties) */
    budget_agrees_with_the_table_and_with_decide("a.json", 40 * GiB, -1, 0, 32768, 0,
                                                 WARMCAL_REASON_OUT_OF_RANGE);
    /* ... unless the gate extrapolates: 40 GiB hold (40 GiB - 1 GiB - 256 MiB) / 1 MiB tokens */
    budget_agrees_with_the_table_and_with_decide("a.json", rank == 2 ? 40 * GiB : 41 * GiB,
                                                 WARMCAL_ABOVE_EXTRAPOLATE, 0, 39680, 2,
                                                 WARMCAL_REASON_LOW_MEMORY);
    /* nothing fits on rank 1: 0 tokens, and decide skips even one */
    free_bytes = rank == 1 ? GiB : 40 * GiB;
    budget_agrees_with_the_table_and_with_decide("a.json", free_bytes, -1, 0, 0, 1,
                                                 WARMCAL_REASON_LOW_MEMORY);
    /* the original bug's table: rank 0, short of memory, is served by its
     * own entry up to 16384 tokens (2.8125 GiB with the reserve), and above
     * it by the any-rank entry, which needs more than its 3 GiB: its budget
     * ends at its own range's end, for want of memory, not of range */
    if (rank == 0)
        write_rank0_short_table("budget-rank0-short.json", 0);
    MPI_Barrier(MPI_COMM_WORLD);
    budget_agrees_with_the_table_and_with_decide("budget-rank0-short.json",
                                                 rank == 0 ? 3 * GiB : 40 * GiB, -1, 0, 16384, 0,
                                                 WARMCAL_REASON_LOW_MEMORY);
    /* with 3.5 GiB rank 0 goes past its own range on the any-rank entry:
     * (3.5 GiB - 256 MiB - 1 GiB) / 120 KiB */
    budget_agrees_with_the_table_and_with_decide(
        "budget-rank0-short.json", rank == 0 ? 7 * GiB / 2 : 40 * GiB, -1, 0,
        (7 * GiB / 2 - 256 * MiB - GiB) / (120 * 1024), 0, WARMCAL_REASON_LOW_MEMORY);

    /* the original fix's constant need: 1 MiB per token above 256 tokens */
    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    o.free_bytes = rank == 2 ? 300 * MiB : 4 * GiB;
    o.need_policy = WARMCAL_NEED_CONSTANT;
    o.constant_bytes_per_token = MiB;
    o.constant_min_tokens = 256;
    warmcal_gate *g = NULL;
    CHECK(warmcal_gate_open(&g, NULL, MPI_COMM_WORLD, &o) == WARMCAL_OK);
    uint64_t tokens = 0;
    int limiting = -5;
    CHECK(warmcal_gate_max_tokens(g, NULL, 0, &tokens, &limiting) == WARMCAL_OK);
    CHECK(tokens == 300 && limiting == 2);
    warmcal_shape s[2] = {{.tokens = 300, .batch = 1, .batch_valid = 1},
                          {.tokens = 301, .batch = 1, .batch_valid = 1}};
    warmcal_decision d[2];
    CHECK(warmcal_gate_decide(g, s, 2, d) == WARMCAL_OK);
    CHECK(d[0].run && !d[1].run && d[1].blocking_rank == 2);
    /* under 256 tokens passes run unchecked: rank 2 with 100 MiB still gets 256 */
    warmcal_gate_close(g);
    o.free_bytes = rank == 2 ? 100 * MiB : 4 * GiB;
    CHECK(warmcal_gate_open(&g, NULL, MPI_COMM_WORLD, &o) == WARMCAL_OK);
    CHECK(warmcal_gate_max_tokens(g, NULL, 0, &tokens, &limiting) == WARMCAL_OK);
    CHECK(tokens == 256 && limiting == 2);
    warmcal_gate_close(g);

    /* the caller-collective form: a local gate's values reduced with MIN
     * here give the same budget as the MPI gate */
    free_bytes = rank == 3 ? 5 * GiB / 2 + 123 : rank == 2 ? 5 * GiB : 40 * GiB;
    char path[512];
    table_path(path, sizeof path, "a.json");
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    o.free_bytes = free_bytes;
    o.reserve_bytes = 256 * MiB;
    warmcal_gate *local = NULL;
    CHECK(warmcal_gate_open_local(&local, path, rank, size, &o) == WARMCAL_OK);
    size_t count = warmcal_gate_max_tokens_encoded_count();
    CHECK(count == 6);
    int64_t vals[6], red[6];
    CHECK(warmcal_gate_max_tokens_encode(local, "context", 0, vals) == WARMCAL_OK);
    MPI_Allreduce(vals, red, (int)count, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
    CHECK(warmcal_gate_max_tokens_decode(local, red, &tokens, &limiting) == WARMCAL_OK);
    CHECK(tokens == 1280 && limiting == 3);
    /* the local gate has no communicator; the MPI gate no encoder */
    CHECK(warmcal_gate_max_tokens(local, "context", 0, &tokens, &limiting) == WARMCAL_E_STATE);
    g = open_budget_gate("a.json", free_bytes, -1);
    CHECK(warmcal_gate_max_tokens_encode(g, "context", 0, vals) == WARMCAL_E_STATE);
    CHECK(warmcal_gate_max_tokens_decode(g, red, &tokens, &limiting) == WARMCAL_E_STATE);
    warmcal_gate_close(g);
    /* a label no rank has, through the caller's collective too */
    CHECK(warmcal_gate_max_tokens_encode(local, "generation", 0, vals) == WARMCAL_OK);
    MPI_Allreduce(vals, red, (int)count, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
    CHECK(warmcal_gate_max_tokens_decode(local, red, &tokens, &limiting) == WARMCAL_E_FIELD);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(local),
                       "max_tokens: the table has no generation estimate for rank 0");
    /* a label on one rank only: a mismatch */
    CHECK(warmcal_gate_max_tokens_encode(local, rank == 1 ? "generation" : "context", 0, vals) ==
          WARMCAL_OK);
    MPI_Allreduce(vals, red, (int)count, MPI_INT64_T, MPI_MIN, MPI_COMM_WORLD);
    CHECK(warmcal_gate_max_tokens_decode(local, red, &tokens, &limiting) == WARMCAL_E_MISMATCH);
    warmcal_gate_close(local);
}

/* What the ranks must agree on, they agree on, at once and on every rank:
 * the table, the label, the call itself; a rank with bad arguments or a
 * failed probe fails them all; a label without an estimate is an error
 * naming the rank. Afterwards the gate answers again. */
static void budget_mismatches_and_failures_reach_every_rank_at_once(void)
{
    uint64_t tokens = 0;
    int limiting = -5;
    /* rank 3 loaded another table */
    warmcal_gate *g = open_budget_gate(rank == 3 ? "b.json" : "a.json", 40 * GiB, -1);
    CHECK(warmcal_gate_max_tokens(g, "context", 0, &tokens, &limiting) == WARMCAL_E_MISMATCH);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "different tables");
    warmcal_gate_close(g);

    g = open_budget_gate("a.json", 40 * GiB, -1);
    double t0 = MPI_Wtime();
    /* rank 2 asks about another label */
    CHECK(warmcal_gate_max_tokens(g, rank == 2 ? "generation" : "context", 0, &tokens,
                                  &limiting) == WARMCAL_E_MISMATCH);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "different labels");
    /* rank 1 decides where the others ask for a budget (a collective of the
     * same size, so no erroneous MPI pair: a mismatch on every rank) */
    warmcal_shape s = {.tokens = 1024, .batch = 1, .label = "context", .batch_valid = 1};
    warmcal_decision d;
    int rc = rank == 1 ? warmcal_gate_decide(g, &s, 1, &d)
                       : warmcal_gate_max_tokens(g, "context", 0, &tokens, &limiting);
    CHECK(rc == WARMCAL_E_MISMATCH);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g),
                       "rank 0 asked about a token budget and rank 1 about 1 shape");
    /* rank 3 gives no place for the result: it takes part, flagged */
    rc = rank == 3 ? warmcal_gate_max_tokens(g, "context", 0, NULL, &limiting)
                   : warmcal_gate_max_tokens(g, "context", 0, &tokens, &limiting);
    CHECK(rc == WARMCAL_E_INVAL);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g),
                       rank == 3 ? "max_tokens: no place for the result"
                                 : "rank 3 could not take part in the token budget");
    /* no rank has a generation estimate: an error naming the lowest rank */
    CHECK(warmcal_gate_max_tokens(g, "generation", 0, &tokens, &limiting) == WARMCAL_E_FIELD);
    CHECK(tokens == 0 && limiting == 0);
    CHECK(strcmp(warmcal_gate_last_error(g),
                 "max_tokens: the table has no generation estimate for rank 0") == 0);
    CHECK(MPI_Wtime() - t0 < AT_ONCE_S); /* all at once, not at the 60 s deadline */
    /* the gate still answers */
    CHECK(warmcal_gate_max_tokens(g, NULL, 0, &tokens, &limiting) == WARMCAL_OK);
    CHECK(tokens == 32768 && limiting == 0);
    warmcal_gate_close(g);

    /* a rank-specific table: rank 2 alone has no entry for "decode" */
    if (rank == 0) {
        char path[512];
        table_path(path, sizeof path, "decode-only.json");
        warmcal_table *t = new_test_table();
        warmcal_error err = {0};
        for (int r = 0; r < 4; r++) {
            if (r == 2)
                continue;
            warmcal_estimate e = {.rank = r, .label = "decode", .tokens_min = 1,
                                  .tokens_max = 4096, .form = WARMCAL_FORM_LINEAR,
                                  .coef = {(double)GiB, (double)MiB}};
            e.fit.points = 10;
            CHECK(warmcal_table_add_estimate(t, &e, &err) == WARMCAL_OK);
        }
        CHECK(warmcal_table_write(t, path, &err) == WARMCAL_OK);
        warmcal_table_free(t);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    g = open_budget_gate("decode-only.json", 40 * GiB, -1);
    CHECK(warmcal_gate_max_tokens(g, "decode", 0, &tokens, &limiting) == WARMCAL_E_FIELD);
    CHECK(tokens == 0 && limiting == 2);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "no decode estimate for rank 2");
    warmcal_gate_close(g);

    /* rank 0's probe fails */
    char path[512];
    table_path(path, sizeof path, "a.json");
    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_CALLBACK;
    o.free_fn = failing_probe;
    CHECK(warmcal_gate_open(&g, path, MPI_COMM_WORLD, &o) == WARMCAL_OK);
    CHECK(warmcal_gate_max_tokens(g, "context", 0, &tokens, &limiting) == WARMCAL_E_UNSUPPORTED);
    CHECK_STR_CONTAINS(warmcal_gate_last_error(g), "rank 0 could not probe");
    warmcal_gate_close(g);
}

/* For gate_faults.sh: rank 2 never asks for the budget; the others report
 * what max_tokens returned, how long it took and its CPU time. */
static void a_rank_that_never_asks_for_the_budget(void)
{
    warmcal_gate *g = open_gate_with_deadline("a.json", 40 * GiB, 2);
    printf("rank %d: opened the gate\n", rank);
    fflush(stdout);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 2) {
        printf("rank 2: never asking for the budget\n");
        fflush(stdout);
        for (;;)
            pause(); /* the others give up after their deadline and abort the job */
    }
    double t0 = MPI_Wtime(), c0 = cpu_s();
    uint64_t tokens = 0;
    int limiting = -1;
    int rc = warmcal_gate_max_tokens(g, "context", 0, &tokens, &limiting);
    char line[1024];
    snprintf(line, sizeof line, "rank %d: max_tokens returned %d after %.2f s, cpu %.3f s: %s",
             rank, rc, MPI_Wtime() - t0, cpu_s() - c0, warmcal_gate_last_error(g));
    /* the gate is unusable now, on this rank, without a collective */
    if (warmcal_gate_max_tokens(g, "context", 0, &tokens, &limiting) != WARMCAL_E_STATE)
        snprintf(line, sizeof line, "rank %d: max_tokens after a timeout did not fail", rank);
    warmcal_gate_close(g);
    report_then_abort(line, rc == WARMCAL_E_TIMEOUT ? 3 : 4);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 3 || size != 4) {
        fprintf(stderr, "usage: mpirun -np 4 test_gate_mpi CASE DIR\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    snprintf(dir, sizeof dir, "%s", argv[2]);
    if (rank == 0) {
        char path[512];
        table_path(path, sizeof path, "a.json");
        write_test_table(path, 0);
        table_path(path, sizeof path, "b.json");
        write_test_table(path, 64 * MiB);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    const char *c = argv[1];
    if (strcmp(c, "identical") == 0)
        decisions_are_identical_and_name_the_blocking_rank();
    else if (strcmp(c, "tables") == 0)
        different_tables_fail_on_every_rank();
    else if (strcmp(c, "shapes") == 0)
        different_shape_lists_fail_on_every_rank();
    else if (strcmp(c, "extremes") == 0)
        ties_exact_bytes_and_saturation();
    else if (strcmp(c, "onefails") == 0)
        a_rank_that_cannot_open_or_decide_fails_every_rank_at_once();
    else if (strcmp(c, "config") == 0)
        wrong_tp_and_bad_options_are_refused();
    else if (strcmp(c, "probe") == 0)
        a_failed_probe_fails_every_rank_and_the_original_policy_works();
    else if (strcmp(c, "late") == 0)
        a_rank_late_by_less_than_the_deadline_opens_normally();
    else if (strcmp(c, "anyrank") == 0)
        a_rank_above_its_own_range_is_decided_on_its_memory();
    else if (strcmp(c, "truth") == 0)
        too_large_estimates_and_zero_tokens_are_named_as_such();
    else if (strcmp(c, "budget") == 0)
        budgets_are_the_same_on_every_rank_and_agree_with_decide();
    else if (strcmp(c, "budgetfail") == 0)
        budget_mismatches_and_failures_reach_every_rank_at_once();
    else if (strcmp(c, "budgetstall") == 0)
        a_rank_that_never_asks_for_the_budget();
    else if (strcmp(c, "absent") == 0)
        a_rank_that_never_opens();
    else if (strcmp(c, "stall") == 0 || strcmp(c, "kill") == 0)
        a_rank_that_stops_calling_decide(strcmp(c, "kill") == 0);
    else
        check_failures++;
    int failed = check_failures, any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (!failed)
        printf("ok %s (rank %d)\n", c, rank);
    MPI_Finalize();
    return any ? 1 : 0;
}
