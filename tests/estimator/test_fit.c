/* Fitting behaviour: each model form is chosen where it belongs, the margin
 * covers every measured point and every leave-one-out prediction, degenerate
 * inputs get a clear error, and per-rank entries keep rank-specific needs
 * apart while the rank -1 entry takes the worst over ranks. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include "../check.h"
#include "warmcal/estimator.h"

#include <inttypes.h>
#include <math.h>
#include <unistd.h>

#define MiB (1024.0 * 1024.0)

static double published(const warmcal_estimate *e, double t)
{
    uint64_t bytes = 0;
    warmcal_error err = {0};
    CHECK(warmcal_estimate_eval(e, WARMCAL_ABOVE_EXTRAPOLATE, (uint64_t)t, &bytes, &err) == WARMCAL_OK);
    return (double)bytes;
}

/* The published estimate is at least every point (the fit's promise). */
static void check_covers(const warmcal_estimate *e, const double *t, const double *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (published(e, t[i]) < y[i]) {
            fprintf(stderr, "  point %zu: %g tokens need %g > estimate %g\n", i, t[i], y[i],
                    published(e, t[i]));
            check_failures++;
        }
    CHECK(fabs(e->margin.total - (e->margin.residual + e->margin.loo + e->margin.granularity)) < 1);
    CHECK(e->margin.granularity == 2 * MiB);
}

static unsigned short rng[3] = {7, 7, 7};
static double noise(double scale)
{
    return scale * (2 * erand48(rng) - 1);
}

static void linear_needs_get_a_linear_model(void)
{
    double t[40], y[40];
    for (int i = 0; i < 40; i++) {
        t[i] = 256.0 * (i + 1);
        y[i] = 50 * MiB + 128.0 * 1024 * t[i] + noise(1 * MiB);
    }
    warmcal_estimate e;
    warmcal_candidate cand[3];
    warmcal_error err = {0};
    CHECK(warmcal_fit_points(t, y, 40, NULL, &e, cand, &err) == WARMCAL_OK);
    CHECK(e.form == WARMCAL_FORM_LINEAR);
    CHECK(fabs(e.coef[1] - 128.0 * 1024) < 1024); /* per-token part within 1 KiB */
    CHECK(fabs(e.coef[0] - 50 * MiB) < 2 * MiB);
    CHECK_EQ_U64(e.tokens_min, 256);
    CHECK_EQ_U64(e.tokens_max, 10240);
    CHECK_EQ_U64(e.fit.points, 40);
    CHECK(cand[WARMCAL_FORM_QUADRATIC].usable && cand[WARMCAL_FORM_ENVELOPE].usable);
    check_covers(&e, t, y, 40);
    warmcal_estimate_clear(&e);
}

static void quadratic_needs_get_a_quadratic_model(void)
{
    double t[30], y[30];
    for (int i = 0; i < 30; i++) {
        t[i] = 1024.0 * (i + 1);
        y[i] = 10 * MiB + 64.0 * t[i] + 2.0 * t[i] * t[i] + noise(0.5 * MiB);
    }
    warmcal_estimate e;
    warmcal_error err = {0};
    CHECK(warmcal_fit_points(t, y, 30, NULL, &e, NULL, &err) == WARMCAL_OK);
    CHECK(e.form == WARMCAL_FORM_QUADRATIC);
    CHECK(fabs(e.coef[2] - 2.0) < 0.01);
    check_covers(&e, t, y, 30);
    warmcal_estimate_clear(&e);
}

static void a_bend_gets_the_envelope(void)
{
    /* sequences grow with tokens up to 256, then only tokens do: a bend no
     * low-order polynomial follows */
    double t[24], y[24];
    int n = 0;
    for (double tok = 1; tok <= 32768; tok *= 1.6, n++) {
        double seqs = tok < 256 ? tok : 256;
        t[n] = floor(tok);
        y[n] = seqs * 2 * MiB + 120.0 * 1024 * t[n];
    }
    warmcal_estimate e;
    warmcal_error err = {0};
    CHECK(warmcal_fit_points(t, y, (size_t)n, NULL, &e, NULL, &err) == WARMCAL_OK);
    CHECK(e.form == WARMCAL_FORM_ENVELOPE);
    CHECK(e.n_knots >= 3);
    for (size_t k = 1; k < e.n_knots; k++) {
        CHECK(e.knot_tokens[k] > e.knot_tokens[k - 1]);
        CHECK(e.knot_bytes[k] >= e.knot_bytes[k - 1]);
    }
    check_covers(&e, t, y, (size_t)n);
    /* and every leave-one-out prediction: drop each point, the published
     * estimate of the full fit still covers it */
    CHECK(e.margin.loo > 0);
    warmcal_estimate_clear(&e);
}

static void margin_covers_a_held_out_point(void)
{
    /* fit on every other point of a noisy line; the held-out ones fit too */
    double t[60], y[60], ft[30], fy[30], ht[30], hy[30];
    for (int i = 0; i < 60; i++) {
        t[i] = 100.0 * (i + 1);
        y[i] = 20 * MiB + 300.0 * 1024 * t[i] + noise(4 * MiB);
        if (i % 2) {
            ht[i / 2] = t[i];
            hy[i / 2] = y[i];
        } else {
            ft[i / 2] = t[i];
            fy[i / 2] = y[i];
        }
    }
    warmcal_estimate e;
    warmcal_error err = {0};
    CHECK(warmcal_fit_points(ft, fy, 30, NULL, &e, NULL, &err) == WARMCAL_OK);
    check_covers(&e, ht, hy, 30);
    warmcal_estimate_clear(&e);
}

/* What `warmcal check` refuses is never fitted: the entry passes the check,
 * and its published bytes do not fall between any two token counts of its
 * range. */
static void check_never_falls(const warmcal_estimate *e)
{
    warmcal_table one = {0};
    one.estimates = (warmcal_estimate *)e;
    one.n_estimates = 1;
    warmcal_error err = {0};
    CHECK(warmcal_table_check_estimates(&one, NULL, &err) == WARMCAL_OK);
    if (err.code)
        fprintf(stderr, "  check: %s\n", err.text);
    uint64_t before = 0;
    for (uint64_t tok = e->tokens_min; tok <= e->tokens_max; tok++) {
        uint64_t bytes = 0;
        CHECK(warmcal_estimate_eval(e, WARMCAL_ABOVE_REFUSE, tok, &bytes, NULL) == WARMCAL_OK);
        if (bytes < before) {
            fprintf(stderr, "  %" PRIu64 " tokens: %" PRIu64 " bytes, below %" PRIu64 "\n", tok,
                    bytes, before);
            check_failures++;
            break;
        }
        before = bytes;
    }
}

static void a_quadratic_that_turns_down_inside_the_range_is_not_chosen(void)
{
    /* concave (vertex at 1250 tokens) and convex with its vertex inside (at
     * 1000: it falls first): noise-free, so the quadratic has by far the
     * smallest leave-one-out error, yet its estimate would fall */
    static const double shapes[2][3] = {{1000, 50, -0.02}, {25000, -20, 0.01}};
    for (int s = 0; s < 2; s++) {
        double t[2000], y[2000];
        for (int i = 0; i < 2000; i++) {
            t[i] = i + 1;
            y[i] = shapes[s][0] + shapes[s][1] * t[i] + shapes[s][2] * t[i] * t[i];
        }
        warmcal_estimate e;
        warmcal_candidate cand[3];
        warmcal_error err = {0};
        CHECK(warmcal_fit_points(t, y, 2000, NULL, &e, cand, &err) == WARMCAL_OK);
        CHECK(cand[WARMCAL_FORM_QUADRATIC].usable && !cand[WARMCAL_FORM_QUADRATIC].never_falls);
        CHECK(cand[WARMCAL_FORM_QUADRATIC].loo_rmse < cand[WARMCAL_FORM_LINEAR].loo_rmse &&
              cand[WARMCAL_FORM_QUADRATIC].loo_rmse < cand[WARMCAL_FORM_ENVELOPE].loo_rmse);
        CHECK(e.form != WARMCAL_FORM_QUADRATIC);
        CHECK(cand[e.form].never_falls);
        check_never_falls(&e);
        check_covers(&e, t, y, 2000);
        warmcal_estimate_clear(&e);
    }
}

static void flat_needs_whose_line_tilts_down_get_a_form_that_never_falls(void)
{
    /* a flat need with +-0.5 MiB of alternating noise, high at the first
     * pass and low at the last: the least-squares line slopes down */
    double t[40], y[40];
    for (int i = 0; i < 40; i++) {
        t[i] = 256.0 * (i + 1);
        y[i] = 100 * MiB + (i % 2 ? -0.5 : 0.5) * MiB;
    }
    warmcal_estimate e;
    warmcal_candidate cand[3];
    warmcal_error err = {0};
    CHECK(warmcal_fit_points(t, y, 40, NULL, &e, cand, &err) == WARMCAL_OK);
    CHECK(cand[WARMCAL_FORM_LINEAR].usable && !cand[WARMCAL_FORM_LINEAR].never_falls);
    CHECK(e.form != WARMCAL_FORM_LINEAR);
    CHECK(cand[e.form].never_falls);
    check_never_falls(&e);
    check_covers(&e, t, y, 40);
    warmcal_estimate_clear(&e);
}

static void expect_invalid(const double *t, const double *y, size_t n, const char *why)
{
    warmcal_estimate e;
    warmcal_error err = {0};
    int rc = warmcal_fit_points(t, y, n, NULL, &e, NULL, &err);
    if (rc == WARMCAL_OK)
        warmcal_estimate_clear(&e);
    if (rc != WARMCAL_E_INVAL || !strstr(err.text, why)) {
        fprintf(stderr, "  expected '%s', got rc %d: %s\n", why, rc, err.text);
        check_failures++;
    }
}

static void degenerate_inputs_get_clear_errors(void)
{
    double t1[] = {4096}, y1[] = {100 * MiB};
    expect_invalid(t1, y1, 1, "1 measured phase");
    double t2[] = {1, 2}, y2[] = {1, 2};
    expect_invalid(t2, y2, 2, "at least 3");
    double t3[] = {512, 512, 512, 512}, y3[] = {1, 2, 3, 4};
    expect_invalid(t3, y3, 4, "all 4 phases ran at 512 tokens");
    double t4[] = {1, 2, 2, 1}, y4[] = {1, 2, 3, 4};
    expect_invalid(t4, y4, 4, "only 2 different token counts");
    double t5[] = {1, 2, 3}, y5[] = {0, 0, 0};
    expect_invalid(t5, y5, 3, "every phase needed 0 bytes");
    double y6[] = {1, -5, 3};
    expect_invalid(t5, y6, 3, "bytes >= 0");
    double y7[] = {1, NAN, 3};
    expect_invalid(t5, y7, 3, "finite");
    double t8[] = {0, 1, 2};
    expect_invalid(t8, y5, 3, "tokens must be in 1..2^40");
    expect_invalid(t5, y5, 0, "0 measured phases");
    /* needs beyond 2^64 bytes: the fitter refuses what `warmcal check` would */
    double y9[] = {1e20, 1e20, 1e20};
    expect_invalid(t5, y9, 3, "does not fit in 64 bits");
}

/* Traces written for the per-rank test: rank 0 needs 1 GiB more per pass. */
static warmcal_trace *make_trace(const char *dir, int rank, int ranks, double extra)
{
    char path[512];
    snprintf(path, sizeof path, "%s/rank-%d.h5", dir, rank);
    warmcal_trace_info info = {.rank = rank, .world_size = ranks, .model = "m",
                               .source = "simulated", .gpu_name = "g",
                               .gpu_total_bytes = 80ull << 30};
    warmcal_trace_writer *w = NULL;
    warmcal_error err = {0};
    CHECK(warmcal_trace_writer_open(&w, path, &info, 0, &err) == WARMCAL_OK);
    for (int i = 0; i < 20; i++) {
        uint64_t tokens = 512u * (unsigned)(i + 1);
        double need = 64 * MiB + extra + 100.0 * 1024 * (double)tokens + noise(MiB);
        warmcal_phase p = {.tokens = tokens, .batch = 1, .begin_ns = 1, .end_ns = 2,
                           .live_begin = 1ull << 30, .live_peak = (1ull << 30) + (uint64_t)need,
                           .live_end = 1ull << 30, .device_free_begin = 10ull << 30,
                           .device_free_end = 10ull << 30};
        snprintf(p.label, sizeof p.label, "context");
        if (rank == 1 && i == 19)
            p.outcome = WARMCAL_OUTCOME_OOM; /* counted, not fitted */
        CHECK(warmcal_trace_writer_add_phase(w, &p, &err) == WARMCAL_OK);
    }
    CHECK(warmcal_trace_writer_close(w, &err) == WARMCAL_OK);
    warmcal_trace *t = NULL;
    CHECK(warmcal_trace_read(path, &t, &err) == WARMCAL_OK);
    return t;
}

static void rank_specific_needs_stay_in_their_own_entry(void)
{
    char dir[] = "/tmp/warmcal-fit-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    warmcal_trace *traces[4];
    for (int r = 0; r < 4; r++)
        traces[r] = make_trace(dir, r, 4, r == 0 ? 1024 * MiB : 0);
    warmcal_table *t = NULL;
    warmcal_error err = {0};
    CHECK(warmcal_fit_traces((const warmcal_trace *const *)traces, 4, NULL, &t, NULL, NULL, &err) == WARMCAL_OK);
    if (t) {
        CHECK_EQ_U64(t->n_estimates, 5); /* ranks 0..3 and any rank */
        CHECK_EQ_U64(t->n_sources, 4);
        CHECK_EQ_U64(t->config.tp, 4);
        uint64_t e0, e1, e3, any;
        CHECK(warmcal_table_estimate(t, 0, "context", 4096, 1, &e0, &err) == WARMCAL_OK);
        CHECK(warmcal_table_estimate(t, 1, "context", 4096, 1, &e1, &err) == WARMCAL_OK);
        CHECK(warmcal_table_estimate(t, 3, "context", 4096, 1, &e3, &err) == WARMCAL_OK);
        CHECK(warmcal_table_estimate(t, 9, "context", 4096, 1, &any, &err) == WARMCAL_OK);
        CHECK(e0 > e1 + 900 * MiB);                /* rank 0's extra is in rank 0's entry */
        CHECK(fabs((double)e1 - (double)e3) < 16 * MiB); /* and not in the others' */
        CHECK(any >= e0);                          /* an unknown rank gets the worst */
        const warmcal_estimate *r1 = warmcal_table_find(t, 1, "context");
        CHECK(r1 && r1->failures.oom == 1 && r1->failures.oom_tokens_min == 10240);
        CHECK(r1 && r1->tokens_max == 9728 && r1->fit.points == 19);
    }
    warmcal_table_free(t);
    for (int r = 0; r < 4; r++) {
        char path[512];
        snprintf(path, sizeof path, "%s/rank-%d.h5", dir, r);
        unlink(path);
        warmcal_trace_free(traces[r]);
    }
    rmdir(dir);
}

static void relative_margin_scales_the_model_and_survives_a_round_trip(void)
{
    warmcal_estimate e = {.rank = 0, .label = "context", .tokens_min = 1, .tokens_max = 100,
                          .form = WARMCAL_FORM_LINEAR, .coef = {100, 2, 0}};
    e.margin.relative = 0.5;
    e.margin.residual = 4;
    e.margin.granularity = 6;
    e.margin.total = 10;
    e.fit.points = 3;
    uint64_t bytes = 0;
    warmcal_error err = {0};
    CHECK(warmcal_estimate_eval(&e, WARMCAL_ABOVE_REFUSE, 50, &bytes, &err) == WARMCAL_OK);
    CHECK_EQ_U64(bytes, 310); /* (100 + 2*50) * 1.5 + 10 */
    warmcal_table *t = NULL, *back = NULL;
    char dir[] = "/tmp/warmcal-rel-XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(path, sizeof path, "%s/t.json", dir);
    CHECK(warmcal_table_new(&t, &err) == WARMCAL_OK);
    CHECK(warmcal_table_add_estimate(t, &e, &err) == WARMCAL_OK);
    CHECK(warmcal_table_write(t, path, &err) == WARMCAL_OK);
    CHECK(warmcal_table_read(path, &back, &err) == WARMCAL_OK);
    if (back) {
        char hex[65];
        CHECK(warmcal_sha256_file(path, hex, &err) == WARMCAL_OK);
        CHECK(strcmp(back->sha256, hex) == 0); /* the digest of the bytes parsed */
        CHECK(t->sha256[0] == '\0');           /* a table built in memory has none */
        CHECK(back->estimates[0].margin.relative == 0.5);
        CHECK(warmcal_table_estimate(back, 0, "context", 50, 1, &bytes, &err) == WARMCAL_OK);
        CHECK_EQ_U64(bytes, 310);
    }
    e.margin.relative = -0.1;
    CHECK(warmcal_table_add_estimate(t, &e, &err) != WARMCAL_OK);
    warmcal_table_free(t);
    warmcal_table_free(back);
    unlink(path);
    rmdir(dir);
}

/* A phase's need: the peak delta, plus device free memory that fell by more
 * than the source accounts for; with a caching allocator's reservation (the
 * torch source) that is the reservation's change, so a cache kept after a
 * pass is not counted twice and a cache given back does not hide memory
 * taken beside it. */
static void need_adds_unexplained_growth_once(void)
{
    warmcal_phase p = {.tokens = 1, .live_begin = 100 * MiB, .live_peak = 400 * MiB,
                       .live_end = 100 * MiB, .device_free_begin = 10000 * MiB,
                       .device_free_end = 10000 * MiB};
    CHECK_EQ_U64(warmcal_phase_need(&p), 300 * MiB);
    p.device_free_end = 9950 * MiB; /* 50 MiB taken that no allocation reported */
    CHECK_EQ_U64(warmcal_phase_need(&p), 350 * MiB);
    p.live_end = 130 * MiB; /* 30 of the 50 are live blocks */
    CHECK_EQ_U64(warmcal_phase_need(&p), 320 * MiB);
    /* the allocator's reservation grew by 40 MiB: only 10 MiB lie outside it */
    p.reserved_begin = 500 * MiB;
    p.reserved_end = 540 * MiB;
    CHECK_EQ_U64(warmcal_phase_need(&p), 310 * MiB);
    /* a reservation that grew more than free memory fell: nothing is added */
    p.reserved_end = 600 * MiB;
    CHECK_EQ_U64(warmcal_phase_need(&p), 300 * MiB);
    /* a reservation that shrank by 400 MiB (an emptied cache) while free
     * memory still fell by 50: 450 MiB were taken beside the allocator */
    p.reserved_end = 100 * MiB;
    CHECK_EQ_U64(warmcal_phase_need(&p), 750 * MiB);
    /* the cache gave back more than was taken beside it: free memory rose */
    p.device_free_end = 10100 * MiB;
    CHECK_EQ_U64(warmcal_phase_need(&p), 600 * MiB);
    p.device_free_end = 10500 * MiB;
    CHECK_EQ_U64(warmcal_phase_need(&p), 300 * MiB);
    p.device_free_end = 9950 * MiB;
    p.device_free_end = WARMCAL_FREE_UNKNOWN;
    CHECK_EQ_U64(warmcal_phase_need(&p), 300 * MiB);
}

int main(void)
{
    RUN(linear_needs_get_a_linear_model);
    RUN(quadratic_needs_get_a_quadratic_model);
    RUN(a_bend_gets_the_envelope);
    RUN(margin_covers_a_held_out_point);
    RUN(a_quadratic_that_turns_down_inside_the_range_is_not_chosen);
    RUN(flat_needs_whose_line_tilts_down_get_a_form_that_never_falls);
    RUN(degenerate_inputs_get_clear_errors);
    RUN(rank_specific_needs_stay_in_their_own_entry);
    RUN(relative_margin_scales_the_model_and_survives_a_round_trip);
    RUN(need_adds_unexplained_growth_once);
    CHECK_DONE();
}
