/* The estimate table in C: every field survives a write and a read bit for
 * bit; the evaluation rule (clamp below, policy above, envelope segments,
 * rank -1 fallback, overflow) gives the documented numbers; a write that
 * fails or is killed leaves the old table whole.
 *
 * usage: test_table [CASE]   (no CASE: run them all; ctest runs one each) */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../alloc_fail.h"
#include "../check.h"
#include "../../gate/src/table_internal.h"
#include "../../gate/src/table_private.h"
#include "sample_table.h"

static char dir[64];

/* A path inside this run's temporary folder. */
static const char *tmp_path(const char *name)
{
    static char buf[4][160];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", dir, name);
    return b;
}

/* The whole file, NUL-terminated; NULL if unreadable. Caller frees. */
static char *file_bytes(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, f)) > 0;) {
        n += got;
        if (cap - n - 1 == 0) {
            char *grown = realloc(buf, cap *= 2);
            if (!grown)
                free(buf);
            buf = grown;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    if (len)
        *len = n;
    return buf;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int same_double(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* Every field equal, doubles bit for bit. */
static int tables_equal(const warmcal_table *a, const warmcal_table *b)
{
    if (a->version != b->version || strcmp(a->config.model, b->config.model) ||
        a->config.tp != b->config.tp || strcmp(a->config.gpu_name, b->config.gpu_name) ||
        a->config.gpu_total_bytes != b->config.gpu_total_bytes ||
        strcmp(a->tool_version, b->tool_version) || strcmp(a->created, b->created) ||
        a->above_range != b->above_range || a->n_sources != b->n_sources ||
        a->n_estimates != b->n_estimates)
        return 0;
    for (size_t i = 0; i < a->n_sources; i++)
        if (strcmp(a->sources[i].name, b->sources[i].name) ||
            strcmp(a->sources[i].sha256, b->sources[i].sha256))
            return 0;
    for (size_t i = 0; i < a->n_estimates; i++) {
        const warmcal_estimate *x = &a->estimates[i], *y = &b->estimates[i];
        if (x->rank != y->rank || strcmp(x->label, y->label) || x->tokens_min != y->tokens_min ||
            x->tokens_max != y->tokens_max || x->form != y->form || x->n_knots != y->n_knots)
            return 0;
        for (int k = 0; k < 3; k++)
            if (!same_double(x->coef[k], y->coef[k]))
                return 0;
        for (size_t k = 0; k < x->n_knots; k++)
            if (x->knot_tokens[k] != y->knot_tokens[k] || !same_double(x->knot_bytes[k], y->knot_bytes[k]))
                return 0;
        if (!same_double(x->margin.total, y->margin.total) ||
            !same_double(x->margin.residual, y->margin.residual) ||
            !same_double(x->margin.loo, y->margin.loo) ||
            !same_double(x->margin.granularity, y->margin.granularity) ||
            x->fit.points != y->fit.points || !same_double(x->fit.rmse, y->fit.rmse) ||
            !same_double(x->fit.max_residual, y->fit.max_residual) ||
            !same_double(x->fit.loo_rmse, y->fit.loo_rmse) || x->failures.oom != y->failures.oom ||
            x->failures.oom_tokens_min != y->failures.oom_tokens_min ||
            x->failures.aborted != y->failures.aborted)
            return 0;
    }
    return 1;
}

/* Only `name` itself and "name.tmp-*" leftovers may be in the folder;
 * leftovers are removed and counted. Returns -1 on a stranger. */
static int sweep_leftovers(const char *folder, const char *name)
{
    DIR *d = opendir(folder);
    if (!d)
        return -1;
    char prefix[96];
    snprintf(prefix, sizeof prefix, "%s.tmp-", name);
    int count = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") || !strcmp(de->d_name, name))
            continue;
        if (strncmp(de->d_name, prefix, strlen(prefix)) != 0) {
            fprintf(stderr, "unexpected file %s/%s\n", folder, de->d_name);
            count = -1;
            break;
        }
        char p[512];
        if (snprintf(p, sizeof p, "%s/%s", folder, de->d_name) < (int)sizeof p)
            unlink(p);
        count++;
    }
    closedir(d);
    return count;
}

/* --- cases ------------------------------------------------------------------- */

static void table_round_trip_keeps_every_field(void)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_table *t = NULL, *back = NULL, *again = NULL;
    CHECK(sample_table(&t, &err) == 0);
    if (!t)
        return;
    t->above_range = WARMCAL_ABOVE_EXTRAPOLATE;
    const char *path = tmp_path("round-trip.json"), *path2 = tmp_path("round-trip-2.json");
    CHECK(warmcal_table_write(t, path, &err) == 0);
    CHECK(warmcal_table_read(path, &back, &err) == 0);
    if (err.code)
        fprintf(stderr, "%s: %s: %s\n", err.source, err.where, err.text);
    CHECK(back && tables_equal(t, back));
    CHECK(back && back->estimates[4].rank == -1 && back->estimates[4].form == WARMCAL_FORM_ENVELOPE);
    CHECK(back && back->above_range == WARMCAL_ABOVE_EXTRAPOLATE);
    /* what was read writes the same bytes again */
    CHECK(back && warmcal_table_write(back, path2, &err) == 0);
    CHECK(warmcal_table_read(path2, &again, &err) == 0);
    CHECK(again && tables_equal(t, again));
    char *a = file_bytes(path, NULL), *b = file_bytes(path2, NULL);
    CHECK(a && b && strcmp(a, b) == 0);
    CHECK_STR_CONTAINS(a, "\"format\": \"warmcal-table\"");
    CHECK_STR_CONTAINS(a, "\"below_range\": \"clamp\"");
    /* a table is readable by others, as the servers that load it need */
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0644);
    free(a);
    free(b);
    unlink(path2);
    CHECK(sweep_leftovers(dir, "round-trip.json") == 0);
    unlink(path);
    warmcal_table_free(t);
    warmcal_table_free(back);
    warmcal_table_free(again);
}

static warmcal_estimate simple(warmcal_form form)
{
    warmcal_estimate e;
    memset(&e, 0, sizeof e);
    e.rank = 0;
    snprintf(e.label, sizeof e.label, "context");
    e.tokens_min = 10;
    e.tokens_max = 100;
    e.form = form;
    return e;
}

static uint64_t eval_ok(const warmcal_estimate *e, warmcal_above_policy p, uint64_t tokens)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    uint64_t bytes = UINT64_MAX;
    int rc = warmcal_estimate_eval(e, p, tokens, &bytes, &err);
    if (rc)
        fprintf(stderr, "eval(%" PRIu64 "): %d %s: %s\n", tokens, rc, err.where, err.text);
    return rc ? UINT64_MAX - 1 : bytes;
}

static void evaluation_clamps_below_and_applies_the_policy_above(void)
{
    warmcal_estimate e = simple(WARMCAL_FORM_LINEAR);
    e.coef[0] = 1000;
    e.coef[1] = 10;
    e.margin.total = e.margin.residual = 0.5;
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_REFUSE, 50), 1501);  /* 1500.5 rounded up */
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_REFUSE, 3), 1101);   /* clamped to tokens_min 10 */
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_REFUSE, 10), 1101);
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_REFUSE, 100), 2001);
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_EXTRAPOLATE, 101), 2011);
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_EXTRAPOLATE, 1000), 11001);

    warmcal_error err;
    warmcal_error_clear(&err);
    uint64_t bytes = 7;
    CHECK(warmcal_estimate_eval(&e, WARMCAL_ABOVE_REFUSE, 101, &bytes, &err) == WARMCAL_E_RANGE);
    CHECK(bytes == 7);
    CHECK_STR_CONTAINS(err.text, "10..100");
    CHECK_STR_CONTAINS(err.where, "rank 0, label context");
    warmcal_error_clear(&err);
    CHECK(warmcal_estimate_eval(&e, WARMCAL_ABOVE_REFUSE, 0, &bytes, &err) == WARMCAL_E_INVAL);

    /* quadratic, exactly representable: 100 + 2*10 + 0.5*100 = 170 */
    warmcal_estimate q = simple(WARMCAL_FORM_QUADRATIC);
    q.coef[0] = 100;
    q.coef[1] = 2;
    q.coef[2] = 0.5;
    CHECK_EQ_U64(eval_ok(&q, WARMCAL_ABOVE_REFUSE, 10), 170);
    CHECK_EQ_U64(eval_ok(&q, WARMCAL_ABOVE_EXTRAPOLATE, 200), 100 + 400 + 20000);
    /* a model below zero counts as zero: the margin alone remains */
    q.coef[0] = -1e9;
    q.margin.total = q.margin.granularity = 2097152;
    CHECK_EQ_U64(eval_ok(&q, WARMCAL_ABOVE_REFUSE, 10), 2097152);

    /* values that do not fit in 64 bits are refused, not wrapped, and said
     * to be too large (inside the range, not outside it) */
    warmcal_estimate big = simple(WARMCAL_FORM_LINEAR);
    big.coef[1] = 1e300;
    warmcal_error_clear(&err);
    CHECK(warmcal_estimate_eval(&big, WARMCAL_ABOVE_REFUSE, 50, &bytes, &err) ==
          WARMCAL_E_OVERFLOW);
    CHECK_STR_CONTAINS(err.text, "64 bits");
    big.coef[1] = 0;
    big.coef[0] = 18446744073709551616.0; /* 2^64 */
    warmcal_error_clear(&err);
    CHECK(warmcal_estimate_eval(&big, WARMCAL_ABOVE_REFUSE, 50, &bytes, &err) ==
          WARMCAL_E_OVERFLOW);
    big.coef[0] = 18446744073709549568.0; /* the largest double below 2^64 */
    CHECK_EQ_U64(eval_ok(&big, WARMCAL_ABOVE_REFUSE, 50), 18446744073709549568ull);
}

static void envelope_interpolates_and_continues_its_last_slope(void)
{
    uint64_t kt[] = {10, 20, 30};
    double kb[] = {100, 200, 260};
    warmcal_estimate e = simple(WARMCAL_FORM_ENVELOPE);
    e.tokens_min = 1;
    e.tokens_max = 40; /* beyond the last knot: inside the range */
    e.n_knots = 3;
    e.knot_tokens = kt;
    e.knot_bytes = kb;
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_REFUSE, 1), 100);  /* below the first knot */
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_REFUSE, 10), 100);
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_REFUSE, 15), 150);
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_REFUSE, 20), 200);
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_REFUSE, 25), 230);
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_REFUSE, 30), 260);
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_REFUSE, 35), 290);  /* last slope, 6 bytes/token */
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_REFUSE, 40), 320);
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_EXTRAPOLATE, 50), 380);
    warmcal_error err;
    warmcal_error_clear(&err);
    uint64_t bytes;
    CHECK(warmcal_estimate_eval(&e, WARMCAL_ABOVE_REFUSE, 41, &bytes, &err) == WARMCAL_E_RANGE);
    CHECK_STR_CONTAINS(err.text, "1..40");
    /* margin added on top, rounded up */
    e.margin.total = e.margin.loo = 0.25;
    CHECK_EQ_U64(eval_ok(&e, WARMCAL_ABOVE_REFUSE, 15), 151);
    /* many knots: binary search lands in the right segment */
    enum { N = 1000 };
    static uint64_t mt[N];
    static double mb[N];
    for (size_t i = 0; i < N; i++) {
        mt[i] = 1 + 4 * i;
        mb[i] = 1000.0 * (double)i;
    }
    warmcal_estimate m = simple(WARMCAL_FORM_ENVELOPE);
    m.tokens_min = 1;
    m.tokens_max = mt[N - 1];
    m.n_knots = N;
    m.knot_tokens = mt;
    m.knot_bytes = mb;
    for (uint64_t t = 1; t <= mt[N - 1]; t += 7)
        CHECK_EQ_U64(eval_ok(&m, WARMCAL_ABOVE_REFUSE, t), 250 * (t - 1));
}

/* The estimator sizes its margins on the model alone: at every token count
 * of the range the published bytes are that very model, scaled and
 * margined; below tokens_min the model is the form's own value (the clamp is
 * the range rule's); a malformed estimate is refused. */
static void the_model_alone_is_what_the_published_bytes_are_made_from(void)
{
    uint64_t kt[] = {10, 20, 30};
    double kb[] = {100, 200, 260};
    warmcal_estimate forms[3] = {simple(WARMCAL_FORM_LINEAR), simple(WARMCAL_FORM_QUADRATIC),
                                 simple(WARMCAL_FORM_ENVELOPE)};
    forms[0].coef[0] = 1000;
    forms[0].coef[1] = 10.25;
    forms[1].coef[0] = 100;
    forms[1].coef[1] = 2;
    forms[1].coef[2] = 0.5;
    forms[2].n_knots = 3;
    forms[2].knot_tokens = kt;
    forms[2].knot_bytes = kb;
    warmcal_error err;
    double model = -1;
    for (size_t f = 0; f < 3; f++) {
        warmcal_estimate *e = &forms[f];
        e->margin.relative = 0.125;
        e->margin.total = e->margin.residual = 3.5;
        for (uint64_t t = e->tokens_min; t <= e->tokens_max; t++) {
            warmcal_error_clear(&err);
            CHECK(warmcal_estimate_model(e, t, &model, &err) == WARMCAL_OK);
            CHECK_EQ_U64(eval_ok(e, WARMCAL_ABOVE_REFUSE, t),
                         (uint64_t)ceil(fmax(0, model) * 1.125 + 3.5));
        }
    }
    CHECK(warmcal_estimate_model(&forms[0], 5, &model, &err) == WARMCAL_OK && model == 1051.25);
    CHECK(warmcal_estimate_model(&forms[1], 10, &model, &err) == WARMCAL_OK && model == 170);
    CHECK(warmcal_estimate_model(&forms[2], 5, &model, &err) == WARMCAL_OK && model == 100);
    CHECK(warmcal_estimate_model(&forms[2], 15, &model, &err) == WARMCAL_OK && model == 150);
    CHECK(warmcal_estimate_model(&forms[2], 35, &model, &err) == WARMCAL_OK && model == 290);

    warmcal_estimate bad = forms[0];
    bad.form = (warmcal_form)7;
    warmcal_error_clear(&err);
    CHECK(warmcal_estimate_model(&bad, 50, &model, &err) == WARMCAL_E_INVAL);
    CHECK_STR_CONTAINS(err.text, "unknown model form 7");
    bad = forms[2];
    bad.n_knots = 0;
    warmcal_error_clear(&err);
    CHECK(warmcal_estimate_model(&bad, 50, &model, &err) == WARMCAL_E_INVAL);
    CHECK_STR_CONTAINS(err.text, "without knots");
    CHECK(warmcal_estimate_model(&forms[0], 50, NULL, NULL) == WARMCAL_E_INVAL);
}

/* The gate's evaluation carries the last envelope segment as a hint; for
 * any order of tokens (ascending, descending, random, repeated, on knots,
 * outside them) and any stale hint it gives the plain evaluation's bytes. */
static void hinted_evaluation_equals_the_plain_one(void)
{
    enum { N = 57 };
    static uint64_t kt[N];
    static double kb[N];
    uint64_t state = 12345;
    uint64_t t = 3;
    double b = 1e9;
    for (size_t i = 0; i < N; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        t += 1 + (state >> 33) % 700; /* irregular spacing */
        b += (double)((state >> 20) % 5000000) + 0.37;
        kt[i] = t;
        kb[i] = b;
    }
    warmcal_estimate e = simple(WARMCAL_FORM_ENVELOPE);
    e.tokens_min = 1;
    e.tokens_max = kt[N - 1] + 500;
    e.n_knots = N;
    e.knot_tokens = kt;
    e.knot_bytes = kb;
    e.margin.relative = 0.137;
    e.margin.total = 3.3e7;
    uint64_t top = kt[N - 1] + 2000;
    int compared = 0;
    for (int order = 0; order < 4; order++) {
        size_t seg = order == 3 ? (size_t)-1 : 0; /* a nonsense hint must be safe too */
        for (uint64_t k = 0; k < 3 * top; k += 3) {
            uint64_t tok;
            switch (order) {
            case 0: tok = 1 + k / 3; break;            /* ascending through every token */
            case 1: tok = top - k / 3; break;          /* descending */
            case 2:                                    /* random */
                state = state * 6364136223846793005ull + 1442695040888963407ull;
                tok = 1 + (state >> 20) % top;
                break;
            default: tok = kt[(k / 3) % N] + (k / 3 / N) % 2; break; /* on knots, just after */
            }
            for (int policy = 0; policy < 2; policy++) {
                warmcal_above_policy above = policy ? WARMCAL_ABOVE_EXTRAPOLATE : WARMCAL_ABOVE_REFUSE;
                uint64_t plain = 0, hinted = 0;
                int rp = warmcal_estimate_eval(&e, above, tok, &plain, NULL);
                double value;
                int rh = warmcal__estimate_bytes(&e, above, tok, &seg, &hinted, &value);
                CHECK((rp == WARMCAL_OK) == (rh == WARMCAL__EVAL_OK));
                if (rp == WARMCAL_OK && plain != hinted) {
                    fprintf(stderr, "order %d, %" PRIu64 " tokens: %" PRIu64 " != %" PRIu64 "\n",
                            order, tok, plain, hinted);
                    CHECK(plain == hinted);
                    return;
                }
                compared += rp == WARMCAL_OK;
            }
        }
    }
    CHECK(compared > 4 * (int)top);
}

static void find_falls_back_to_the_any_rank_entry(void)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_table *t = NULL;
    CHECK(sample_table(&t, &err) == 0);
    if (!t)
        return;
    /* exact entries first */
    CHECK(warmcal_table_find(t, 0, "context") == &t->estimates[0]);
    CHECK(warmcal_table_find(t, 1, "context") == &t->estimates[1]);
    CHECK(warmcal_table_find(t, 0, "generation") == &t->estimates[2]);
    /* ranks without their own entry use rank -1's */
    CHECK(warmcal_table_find(t, 2, "context") == &t->estimates[4]);
    CHECK(warmcal_table_find(t, 17, "generation") == &t->estimates[3]);
    CHECK(warmcal_table_find(t, -1, "context") == &t->estimates[4]);
    CHECK(warmcal_table_find(t, 0, "prefill") == NULL);
    CHECK(warmcal_table_find(t, 0, NULL) == NULL);

    /* warmcal_table_estimate agrees with the entry it finds */
    uint64_t via_table = 0, direct = 0;
    CHECK(warmcal_table_estimate(t, 3, "generation", 100, 8, &via_table, &err) == 0);
    CHECK(warmcal_estimate_eval(&t->estimates[3], t->above_range, 100, &direct, &err) == 0);
    CHECK_EQ_U64(via_table, direct);
    CHECK_EQ_U64(direct, (uint64_t)ceil(3 * SAMPLE_GIB + 2e6 * 100 + t->estimates[3].margin.total));
    CHECK(warmcal_table_estimate(t, 0, "generation", 100, 1, &via_table, &err) == 0);
    CHECK_EQ_U64(via_table, (uint64_t)ceil(2.5 * SAMPLE_GIB + 1e6 * 100 + t->estimates[2].margin.total));
    /* rank 0 generation is calibrated to 256, rank -1 to 512: above its own
     * range rank 0 is served by the rank -1 entry, as rank 5 is */
    CHECK(warmcal_table_find_for(t, 0, "generation", 256) == &t->estimates[2]);
    CHECK(warmcal_table_find_for(t, 0, "generation", 257) == &t->estimates[3]);
    CHECK(warmcal_table_find_for(t, 5, "generation", 100) == &t->estimates[3]);
    uint64_t for_five = 0;
    warmcal_error_clear(&err);
    CHECK(warmcal_table_estimate(t, 0, "generation", 300, 1, &via_table, &err) == 0);
    CHECK(warmcal_table_estimate(t, 5, "generation", 300, 1, &for_five, &err) == 0);
    CHECK_EQ_U64(via_table, for_five);
    /* above every range that could serve it: refused, naming the range */
    CHECK(warmcal_table_estimate(t, 0, "generation", 513, 1, &via_table, &err) == WARMCAL_E_RANGE);
    CHECK_STR_CONTAINS(err.text, "1..512");
    warmcal_table_free(t);
}

static void estimate_errors_name_the_entry(void)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_table *t = NULL;
    CHECK(sample_table(&t, &err) == 0);
    if (!t)
        return;
    uint64_t bytes = 42;
    CHECK(warmcal_table_estimate(t, 0, "context", 0, 1, &bytes, &err) == WARMCAL_E_INVAL);
    CHECK(bytes == 42);
    warmcal_error_clear(&err);
    CHECK(warmcal_table_estimate(t, 0, "prefill", 100, 1, &bytes, &err) == WARMCAL_E_FIELD);
    CHECK(strcmp(err.where, "rank 0, label prefill") == 0);
    warmcal_error_clear(&err);
    CHECK(warmcal_table_estimate(t, -2, "context", 100, 1, &bytes, &err) == WARMCAL_E_INVAL);
    warmcal_error_clear(&err);
    CHECK(warmcal_table_estimate(t, 0, "context", 40000, 1, &bytes, &err) == WARMCAL_E_RANGE);
    CHECK_STR_CONTAINS(err.text, "1..32784");
    CHECK(strcmp(err.where, "rank 0, label context") == 0);
    t->above_range = WARMCAL_ABOVE_EXTRAPOLATE;
    CHECK(warmcal_table_estimate(t, 0, "context", 40000, 1, &bytes, &err) == 0);
    /* the first error wins: a later one does not overwrite it */
    warmcal_error_clear(&err);
    CHECK(warmcal_table_estimate(t, 0, "prefill", 1, 1, &bytes, &err) == WARMCAL_E_FIELD);
    CHECK(warmcal_table_estimate(t, 0, "context", 0, 1, &bytes, &err) == WARMCAL_E_INVAL);
    CHECK(err.code == WARMCAL_E_FIELD);
    CHECK(warmcal_table_estimate(NULL, 0, "context", 1, 1, &bytes, NULL) == WARMCAL_E_INVAL);
    warmcal_table_free(t);
}

static void builder_refuses_what_validation_rejects(void)
{
    warmcal_error err;
    warmcal_table *t = NULL;
    warmcal_error_clear(&err);
    CHECK(warmcal_table_new(&t, &err) == 0);
    if (!t)
        return;
    CHECK(t->version == 1 && t->above_range == WARMCAL_ABOVE_REFUSE && t->n_estimates == 0);
    CHECK(strlen(t->created) == 20 && t->created[19] == 'Z');
    /* an empty table is not a table */
    CHECK(warmcal_table_validate(t, "x.json", &err) == WARMCAL_E_FIELD);
    CHECK(strcmp(err.where, "estimates") == 0);

    warmcal_estimate e = simple(WARMCAL_FORM_LINEAR);
    e.coef[2] = 99; /* unused by a linear model: dropped */
    warmcal_error_clear(&err);
    CHECK(warmcal_table_add_estimate(t, &e, &err) == 0);
    CHECK(t->n_estimates == 1 && t->estimates[0].coef[2] == 0);
    warmcal_error_clear(&err);
    CHECK(warmcal_table_add_estimate(t, &e, &err) == WARMCAL_E_INVAL);
    CHECK_STR_CONTAINS(err.text, "duplicate");
    CHECK(t->n_estimates == 1);

    /* one spoiled field at a time: refused with its path */
    static const char *const paths[] = {
        "estimates[1].rank",          "estimates[1].label",        "estimates[1].tokens_min",
        "estimates[1].tokens_max",    "estimates[1].tokens_max",   "estimates[1].model.form",
        "estimates[1].model.coefficients[1]", "estimates[1].model.knots", "estimates[1].model.knots[1]",
        "estimates[1].model.knots[2]", "estimates[1].margin.bytes", "estimates[1].margin.loo",
        "estimates[1].fit.rmse",      "estimates[1].failures.oom_tokens_min",
        "estimates[1].label",
    };
    uint64_t kt[] = {10, 20, 20};
    double kb[] = {5, 4, 6};
    for (size_t c = 0; c < sizeof paths / sizeof paths[0]; c++) {
        warmcal_estimate b = simple(WARMCAL_FORM_LINEAR);
        b.rank = 1;
        switch (c) {
        case 0: b.rank = -2; break;
        case 1: b.label[0] = '\0'; break;
        case 2: b.tokens_min = 0; break;
        case 3: b.tokens_max = 5; break;
        case 4: b.tokens_max = (uint64_t)INT64_MAX + 1; break;
        case 5: b.form = (warmcal_form)7; break;
        case 6: b.coef[1] = NAN; break;
        case 7: b.form = WARMCAL_FORM_ENVELOPE; b.n_knots = 1; b.knot_tokens = kt; b.knot_bytes = kb; break;
        case 8: b.form = WARMCAL_FORM_ENVELOPE; b.n_knots = 3; b.knot_tokens = kt; b.knot_bytes = kb; break;
        case 9: b.form = WARMCAL_FORM_ENVELOPE; b.n_knots = 3; b.knot_tokens = kt; b.knot_bytes = kb;
                kb[1] = 5; break;
        case 10: b.margin.total = 1; break;
        case 11: b.margin.loo = -1; break;
        case 12: b.fit.rmse = INFINITY; break;
        case 13: b.failures.oom_tokens_min = 5; break;
        case 14: memset(b.label, 'x', sizeof b.label); break;
        }
        warmcal_error_clear(&err);
        CHECK(warmcal_table_add_estimate(t, &b, &err) == WARMCAL_E_INVAL);
        if (strcmp(err.where, paths[c]) != 0)
            fprintf(stderr, "case %zu: where '%s' (%s), expected '%s'\n", c, err.where, err.text,
                    paths[c]);
        CHECK(strcmp(err.where, paths[c]) == 0);
        CHECK(t->n_estimates == 1);
    }
    kb[1] = 4;

    warmcal_error_clear(&err);
    CHECK(warmcal_table_add_source(t, "a.h5", "E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
                                   &err) == WARMCAL_E_INVAL);
    warmcal_error_clear(&err);
    CHECK(warmcal_table_add_source(t, "a.h5", "e3b0", &err) == WARMCAL_E_INVAL);
    warmcal_error_clear(&err);
    CHECK(warmcal_table_add_source(t, "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                                   &err) == WARMCAL_E_INVAL);
    CHECK(t->n_sources == 0);

    /* fields set directly are checked by validate, and so before any write */
    const char *path = tmp_path("never.json");
    t->config.tp = 0;
    warmcal_error_clear(&err);
    CHECK(warmcal_table_write(t, path, &err) == WARMCAL_E_FIELD);
    CHECK(strcmp(err.where, "configuration.tp") == 0);
    CHECK_STR_CONTAINS(err.source, "never.json");
    CHECK(access(path, F_OK) != 0);
    t->config.tp = 2;
    t->config.gpu_total_bytes = UINT64_MAX;
    warmcal_error_clear(&err);
    CHECK(warmcal_table_write(t, path, &err) == WARMCAL_E_FIELD);
    CHECK(strcmp(err.where, "configuration.gpu_total_bytes") == 0);
    CHECK_STR_CONTAINS(err.text, "overflowing");
    t->config.gpu_total_bytes = 0;
    t->above_range = (warmcal_above_policy)5;
    warmcal_error_clear(&err);
    CHECK(warmcal_table_validate(t, path, &err) == WARMCAL_E_FIELD);
    CHECK(strcmp(err.where, "policy.above_range") == 0);
    t->above_range = WARMCAL_ABOVE_REFUSE;
    /* duplicates made behind the builder's back are caught by validate */
    t->estimates[0].rank = 1;
    warmcal_estimate other = simple(WARMCAL_FORM_LINEAR);
    warmcal_error_clear(&err);
    CHECK(warmcal_table_add_estimate(t, &other, &err) == 0);
    t->estimates[1].rank = 1;
    warmcal_error_clear(&err);
    CHECK(warmcal_table_validate(t, path, &err) == WARMCAL_E_FIELD);
    CHECK(strcmp(err.where, "estimates[1]") == 0);
    CHECK_STR_CONTAINS(err.text, "estimates[0]");
    t->estimates[1].rank = 0;
    warmcal_error_clear(&err);
    CHECK(warmcal_table_validate(t, path, &err) == 0);
    CHECK(sweep_leftovers(dir, "never.json") == 0);
    warmcal_table_free(t);
}

static void reader_names_the_file_and_the_kind_of_damage(void)
{
    warmcal_error err;
    warmcal_table *t = NULL;
    const struct {
        const char *name, *text;
        int code;
        const char *where, *says;
    } cases[] = {
        {"empty.json", "", WARMCAL_E_FORMAT, "line 1, column 0", "not valid JSON"},
        {"cut.json", "{\"format\": \"warmcal-table\", \"version\": 1, \"configuration\": {",
         WARMCAL_E_FORMAT, "line 1", "not valid JSON"},
        {"array.json", "[1, 2]", WARMCAL_E_FORMAT, "", "expected a JSON object"},
        {"other.json", "{\"format\": \"trace\", \"version\": 1}", WARMCAL_E_FORMAT, "format", "trace"},
        {"v2.json", "{\"format\": \"warmcal-table\", \"version\": 2}", WARMCAL_E_FORMAT, "version",
         "unsupported version 2"},
        {"vreal.json", "{\"format\": \"warmcal-table\", \"version\": 1.5}", WARMCAL_E_FORMAT, "version",
         "not an integer"},
        {"noconf.json", "{\"format\": \"warmcal-table\", \"version\": 1}", WARMCAL_E_FIELD,
         "configuration", "missing"},
        {"huge.json", "{\"format\": \"warmcal-table\", \"version\": 1,\n \"configuration\": {\"model\": \"m\", "
                      "\"tp\": 18446744073709551616}}",
         WARMCAL_E_FIELD, "configuration.tp", "overflowing"},
        {"huge-real.json", "{\"format\": \"warmcal-table\",\n \"version\": 1e400}", WARMCAL_E_FORMAT,
         "line 2", "number out of range"},
        {"dupkey.json", "{\"format\": \"warmcal-table\", \"format\": \"warmcal-table\"}",
         WARMCAL_E_FORMAT, "line 1", "duplicate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = tmp_path(cases[i].name);
        write_text(path, cases[i].text);
        warmcal_error_clear(&err);
        t = (warmcal_table *)&err; /* must come back NULL */
        int rc = warmcal_table_read(path, &t, &err);
        if (rc != cases[i].code || !strstr(err.where, cases[i].where) || !strstr(err.text, cases[i].says))
            fprintf(stderr, "%s: got %d '%s' '%s'\n", cases[i].name, rc, err.where, err.text);
        CHECK(rc == cases[i].code);
        CHECK(t == NULL);
        CHECK_STR_CONTAINS(err.source, cases[i].name);
        CHECK_STR_CONTAINS(err.where, cases[i].where);
        CHECK_STR_CONTAINS(err.text, cases[i].says);
        unlink(path);
    }
    warmcal_error_clear(&err);
    CHECK(warmcal_table_read(tmp_path("missing.json"), &t, &err) == WARMCAL_E_IO);
    warmcal_error_clear(&err);
    CHECK(warmcal_table_read(dir, &t, &err) == WARMCAL_E_IO);
    CHECK_STR_CONTAINS(err.text, "not a regular file");
    CHECK(t == NULL);
}

/* Bytes of a file before and after must match: "the old table untouched". */
static void write_failures_leave_the_old_table_untouched(void)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_table *t = NULL;
    CHECK(sample_table(&t, &err) == 0);
    if (!t)
        return;
    /* a missing folder, a folder that is a file, a path that is a folder */
    const char *missing = tmp_path("no-such-folder/table.json");
    CHECK(warmcal_table_write(t, missing, &err) == WARMCAL_E_IO);
    CHECK_STR_CONTAINS(err.source, "table.json");
    const char *file = tmp_path("plain-file");
    write_text(file, "x");
    char inside[200];
    snprintf(inside, sizeof inside, "%s/table.json", file);
    warmcal_error_clear(&err);
    CHECK(warmcal_table_write(t, inside, &err) == WARMCAL_E_IO);
    unlink(file);
    const char *folder = tmp_path("a-folder");
    CHECK(mkdir(folder, 0755) == 0);
    warmcal_error_clear(&err);
    CHECK(warmcal_table_write(t, folder, &err) == WARMCAL_E_IO);
    CHECK_STR_CONTAINS(err.text, "old file is unchanged");
    struct stat st;
    CHECK(stat(folder, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(sweep_leftovers(dir, "a-folder") == 0); /* the temporary file was removed */
    rmdir(folder);

    /* a read-only folder holding an old table */
    const char *ro = tmp_path("read-only");
    CHECK(mkdir(ro, 0755) == 0);
    char old_path[200];
    snprintf(old_path, sizeof old_path, "%s/table.json", ro);
    CHECK(warmcal_table_write(t, old_path, &err) == 0);
    size_t old_len = 0;
    char *before = file_bytes(old_path, &old_len);
    CHECK(chmod(ro, 0555) == 0);
    if (access(ro, W_OK) == 0) {
        fprintf(stderr, "note: running with privileges that ignore folder permissions; "
                        "read-only folder case not exercised\n");
    } else {
        t->config.tp = 8;
        warmcal_error_clear(&err);
        CHECK(warmcal_table_write(t, old_path, &err) == WARMCAL_E_IO);
        CHECK_STR_CONTAINS(err.text, "temporary file");
        size_t after_len = 0;
        char *after = file_bytes(old_path, &after_len);
        CHECK(before && after && old_len == after_len && memcmp(before, after, old_len) == 0);
        free(after);
    }
    chmod(ro, 0755);
    CHECK(sweep_leftovers(ro, "table.json") == 0);
    unlink(old_path);
    rmdir(ro);
    free(before);
    warmcal_table_free(t);
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int tmp_file_exists(const char *folder, const char *name)
{
    DIR *d = opendir(folder);
    if (!d)
        return 0;
    char prefix[96];
    snprintf(prefix, sizeof prefix, "%s.tmp-", name);
    int found = 0;
    for (struct dirent *de; !found && (de = readdir(d));)
        found = strncmp(de->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return found;
}

/* Stop the writer while its temporary file exists, that is between creating
 * it and renaming it over the path, so that a kill lands inside a write
 * however fast or loaded the machine. 1: the child is stopped there; 0: no
 * temporary file was seen in 60 s (a writer that makes none). */
static int stop_inside_a_write(pid_t pid, const char *name)
{
    struct timespec nap = {0, 50000};
    for (double give_up = seconds() + 60.0; seconds() < give_up; nanosleep(&nap, NULL)) {
        if (!tmp_file_exists(dir, name))
            continue;
        int status = 0;
        if (kill(pid, SIGSTOP) != 0 || waitpid(pid, &status, WUNTRACED) != pid ||
            !WIFSTOPPED(status))
            return 0;
        if (tmp_file_exists(dir, name))
            return 1;
        kill(pid, SIGCONT); /* it renamed in between: try again */
    }
    return 0;
}

/* A child rewrites the path over and over with two large tables and is
 * killed with SIGKILL at random moments; after each kill the path must read
 * as one of the three tables exactly, and only "*.tmp-*" files may be left. */
static void killed_write_leaves_old_or_new_table(void)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_table *old = NULL, *b = NULL, *c = NULL;
    CHECK(sample_table(&old, &err) == 0);
    CHECK(sample_table_sized(&b, 1024, 4, &err) == 0);
    CHECK(sample_table_sized(&c, 1024, 4, &err) == 0);
    if (!old || !b || !c)
        return;
    snprintf(c->created, sizeof c->created, "2027-01-01T00:00:00Z");
    const char *path = tmp_path("table.json");
    double t0 = seconds();
    CHECK(warmcal_table_write(b, path, &err) == 0);
    double one_write = seconds() - t0;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    int rounds = 50, interrupted = 0, saw[3] = {0, 0, 0};
    for (int r = 0; r < rounds; r++) {
        CHECK(warmcal_table_write(old, path, &err) == 0);
        int ready[2];
        CHECK(pipe(ready) == 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(ready[0]);
            if (write(ready[1], "x", 1) != 1)
                _exit(3);
            for (unsigned n = 0;; n++) {
                warmcal_error e;
                warmcal_error_clear(&e);
                if (warmcal_table_write(n % 2 ? c : b, path, &e) != 0)
                    _exit(4);
            }
        }
        close(ready[1]);
        char x;
        CHECK(read(ready[0], &x, 1) == 1);
        close(ready[0]);
        /* Even rounds: anywhere within the first three writes. Odd rounds:
         * between a temporary file's creation and its rename, for sure. */
        if (r % 2) {
            CHECK(stop_inside_a_write(pid, "table.json"));
        } else {
            double delay = one_write * 3.0 * rand() / (double)RAND_MAX;
            struct timespec ts = {(time_t)delay,
                                  (long)((delay - (double)(time_t)delay) * 1e9)};
            nanosleep(&ts, NULL);
        }
        kill(pid, SIGKILL);
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

        warmcal_table *got = NULL;
        warmcal_error_clear(&err);
        int rc = warmcal_table_read(path, &got, &err);
        if (rc)
            fprintf(stderr, "round %d: %s: %s: %s\n", r, err.source, err.where, err.text);
        CHECK(rc == 0);
        int which = !got ? -1 : tables_equal(got, old) ? 0 : tables_equal(got, b) ? 1
                                                       : tables_equal(got, c) ? 2 : -1;
        CHECK(which >= 0);
        if (which >= 0)
            saw[which]++;
        warmcal_table_free(got);
        int left = sweep_leftovers(dir, "table.json");
        CHECK(left >= 0);
        if (r % 2)
            CHECK(left > 0); /* the kill landed inside a write, or it proved nothing */
        interrupted += left > 0;
    }
    fprintf(stderr, "one write %.1f ms; %d rounds: old %d, new %d + %d; %d killed mid-write\n",
            one_write * 1e3, rounds, saw[0], saw[1], saw[2], interrupted);
    unlink(path);
    warmcal_table_free(old);
    warmcal_table_free(b);
    warmcal_table_free(c);
}

static void sha256_streams_files_of_any_size(void)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    char hex[65];
    const char *path = tmp_path("data.bin");
    write_text(path, "");
    CHECK(warmcal_sha256_file(path, hex, &err) == 0);
    CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0);
    write_text(path, "abc");
    CHECK(warmcal_sha256_file(path, hex, &err) == 0);
    CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0);
    /* one million 'a' (FIPS 180-2 test vector): many chunks */
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    for (int i = 0; f && i < 1000000; i++)
        fputc('a', f);
    if (f)
        fclose(f);
    CHECK(warmcal_sha256_file(path, hex, &err) == 0);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0);
    unlink(path);
    CHECK(warmcal_sha256_file(path, hex, &err) == WARMCAL_E_IO);
    CHECK_STR_CONTAINS(err.source, "data.bin");
    warmcal_error_clear(&err);
    CHECK(warmcal_sha256_file(dir, hex, &err) == WARMCAL_E_IO);
}

/* --- allocation failures during a write ---------------------------------------
 * The test binary wraps malloc/calloc/realloc at link time (../alloc_fail.h)
 * and hands the same failing allocator to jansson, so that every allocation
 * a write makes, in the library or in jansson, can be made to fail in turn. */


/* jansson 2.14's dumper can lose a key when an allocation fails and still
 * return text: a write that runs out of memory must then fail and leave the
 * old table byte for byte, or have written the new table whole. */
static void write_out_of_memory_leaves_the_old_table_or_the_new_one(void)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_table *old = NULL, *t = NULL;
    CHECK(sample_table(&old, &err) == 0);
    CHECK(sample_table(&t, &err) == 0);
    if (!old || !t)
        return;
    t->config.tp = 8;
    snprintf(t->created, sizeof t->created, "2027-02-03T04:05:06Z");
    const char *path = tmp_path("oom.json");
    json_set_alloc_funcs(__wrap_malloc, free);
    int nomem = 0, wrote_new = 0, corrupt = 0;
    long n = 0;
    CHECK(warmcal_table_write(old, path, &err) == 0);
    size_t old_len = 0;
    char *before = file_bytes(path, &old_len);
    for (;; n++) {
        size_t now_len = 0;
        long failed_before = alloc_fail_count;
        warmcal_error_clear(&err);
        alloc_fail_countdown = n;
        int rc = warmcal_table_write(t, path, &err);
        alloc_fail_countdown = -1;
        int injected = alloc_fail_count > failed_before;
        char *now = file_bytes(path, &now_len);
        int unchanged = before && now && old_len == now_len && memcmp(before, now, old_len) == 0;
        warmcal_table *back = NULL;
        warmcal_error read_err;
        warmcal_error_clear(&read_err);
        int reads_new = !unchanged && warmcal_table_read(path, &back, &read_err) == 0 &&
                        tables_equal(back, t);
        warmcal_table_free(back);
        if (!unchanged && !reads_new) {
            fprintf(stderr, "allocation %ld failed: write returned %d (%s) and left a table that "
                            "is neither the old one nor the new one (%s)\n",
                    n, rc, err.text, read_err.text[0] ? read_err.text : "fields differ");
            corrupt++;
        }
        if (rc != WARMCAL_OK) {
            /* a failed write says so, with a code a caller can act on */
            CHECK(rc == WARMCAL_E_NOMEM || rc == WARMCAL_E_IO);
            CHECK(err.text[0] != '\0');
            CHECK_STR_CONTAINS(err.source, "oom.json");
            nomem += rc == WARMCAL_E_NOMEM;
        } else if (!unchanged) {
            wrote_new++;
        } else {
            fprintf(stderr, "allocation %ld failed: write returned success but the file is the "
                            "old table\n", n);
            CHECK(!"a successful write left the old table");
        }
        CHECK(sweep_leftovers(dir, "oom.json") == 0);
        free(now);
        if (!injected)
            break; /* the write needed fewer than n + 1 allocations: all were failed */
        if (!unchanged) /* the old table again, for the next allocation to fail */
            CHECK(warmcal_table_write(old, path, &err) == 0);
    }
    free(before);
    json_set_alloc_funcs(malloc, free);
    fprintf(stderr, "%ld allocations failed in turn: %d out of memory, %d new table, %d corrupt\n",
            n, nomem, wrote_new, corrupt);
    CHECK(corrupt == 0);
    CHECK(n > 50 && nomem > 0 && wrote_new > 0); /* the writes did allocate and did fail */
    unlink(path);
    warmcal_table_free(old);
    warmcal_table_free(t);
}

/* --- errors that tell the truth, and the entry that serves a rank ---------------- */

/* A table of one label whose rank 0 entry ends at 16384 tokens (rank 0 ran
 * out of memory above it during calibration) while the any-rank entry and
 * rank 1's reach 32768: the demo's shape. Linear, no margins, so the bytes
 * are exact: rank 0 1 GiB + 100 KiB/token, rank 1 1 GiB + 110 KiB/token,
 * any rank 1 GiB + 120 KiB/token. */
static warmcal_table *rank0_short_table(int with_any_rank)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_table *t = NULL;
    CHECK(warmcal_table_new(&t, &err) == 0);
    if (!t)
        return NULL;
    t->config.tp = 4;
    for (int r = -1; r <= 1; r++) {
        if (r == -1 && !with_any_rank)
            continue;
        warmcal_estimate e = simple(WARMCAL_FORM_LINEAR);
        e.rank = r;
        e.tokens_min = 1;
        e.tokens_max = r == 0 ? 16384 : 32768;
        e.coef[0] = 1073741824.0;
        e.coef[1] = r == 0 ? 102400.0 : r == 1 ? 112640.0 : 122880.0;
        CHECK(warmcal_table_add_estimate(t, &e, &err) == 0);
    }
    return t;
}

static void a_rank_above_its_own_range_is_served_by_the_any_rank_entry(void)
{
    warmcal_table *t = rank0_short_table(1);
    if (!t)
        return;
    warmcal_error err;
    warmcal_error_clear(&err);
    uint64_t bytes = 0;
    const warmcal_estimate *own = warmcal_table_find(t, 0, "context");
    const warmcal_estimate *any = warmcal_table_find(t, -1, "context");
    CHECK(own && own->rank == 0 && any && any->rank == -1);
    /* inside its own range, rank 0's own entry */
    CHECK(warmcal_table_find_for(t, 0, "context", 16384) == own);
    CHECK(warmcal_table_estimate(t, 0, "context", 16384, 1, &bytes, &err) == 0);
    CHECK_EQ_U64(bytes, 1073741824ull + 16384ull * 102400);
    /* above it, the any-rank entry: the largest need any rank showed there */
    CHECK(warmcal_table_find_for(t, 0, "context", 16385) == any);
    CHECK(warmcal_table_estimate(t, 0, "context", 24576, 1, &bytes, &err) == 0);
    CHECK_EQ_U64(bytes, 1073741824ull + 24576ull * 122880);
    /* a rank whose own range covers the pass keeps its own entry */
    CHECK(warmcal_table_estimate(t, 1, "context", 24576, 1, &bytes, &err) == 0);
    CHECK_EQ_U64(bytes, 1073741824ull + 24576ull * 112640);
    /* above every entry that could serve: refused, naming the range that
     * reached furthest; extrapolated from it under that policy */
    CHECK(warmcal_table_estimate(t, 0, "context", 40000, 1, &bytes, &err) == WARMCAL_E_RANGE);
    CHECK_STR_CONTAINS(err.text, "above the calibrated range 1..32768");
    t->above_range = WARMCAL_ABOVE_EXTRAPOLATE;
    CHECK(warmcal_table_find_for(t, 0, "context", 40000) == any);
    CHECK(warmcal_table_estimate(t, 0, "context", 40000, 1, &bytes, &err) == 0);
    CHECK_EQ_U64(bytes, 1073741824ull + 40000ull * 122880);
    /* the any-rank entry never lowers a rank's need above its own range: with
     * rank 0's own entry steeper than it, rank 0 just above 16384 tokens
     * needs at least what its own entry publishes at 16384 */
    t->above_range = WARMCAL_ABOVE_REFUSE;
    t->estimates[1].coef[1] = 204800.0; /* rank 0: 1 GiB + 200 KiB/token */
    CHECK(warmcal_table_find_for(t, 0, "context", 16385) == any);
    CHECK(warmcal_table_estimate(t, 0, "context", 16385, 1, &bytes, &err) == 0);
    CHECK_EQ_U64(bytes, 1073741824ull + 16384ull * 204800);
    CHECK(warmcal_table_estimate(t, 0, "context", 32768, 1, &bytes, &err) == 0);
    CHECK_EQ_U64(bytes, 1073741824ull + 32768ull * 122880); /* above the floor there */
    warmcal_table_free(t);

    /* without an any-rank entry, rank 0's own range is all there is */
    t = rank0_short_table(0);
    if (!t)
        return;
    warmcal_error_clear(&err);
    CHECK(warmcal_table_find_for(t, 0, "context", 24576) == &t->estimates[0]);
    CHECK(warmcal_table_estimate(t, 0, "context", 24576, 1, &bytes, &err) == WARMCAL_E_RANGE);
    CHECK_STR_CONTAINS(err.text, "1..16384");
    CHECK(warmcal_table_find_for(t, 7, "context", 100) == NULL);
    warmcal_table_free(t);
}

static void an_estimate_beyond_64_bits_is_too_large_not_out_of_range(void)
{
    warmcal_table *t = rank0_short_table(1);
    if (!t)
        return;
    CHECK(t->estimates[1].rank == 0);
    t->estimates[1].coef[1] = 1e300; /* rank 0's own entry: absurd inside its range */
    warmcal_error err;
    warmcal_error_clear(&err);
    uint64_t bytes = 7;
    CHECK(warmcal_table_estimate(t, 0, "context", 1000, 1, &bytes, &err) == WARMCAL_E_OVERFLOW);
    CHECK(bytes == 7);
    CHECK_STR_CONTAINS(err.text, "does not fit in 64 bits");
    CHECK(strstr(err.text, "range") == NULL);
    CHECK(strcmp(err.where, "rank 0, label context") == 0);
    CHECK(strcmp(warmcal_strerror(WARMCAL_E_OVERFLOW), warmcal_strerror(WARMCAL_E_RANGE)) != 0);
    warmcal_table_free(t);
}

/* One entry's table, checked beyond validation. */
static int check_one(const warmcal_estimate *e, warmcal_error *err)
{
    warmcal_table *t = NULL;
    warmcal_error_clear(err);
    int rc = warmcal_table_new(&t, err);
    rc = rc ? rc : warmcal_table_add_estimate(t, e, err);
    rc = rc ? rc : warmcal_table_check_estimates(t, "one.json", err);
    warmcal_table_free(t);
    return rc;
}

static void check_refuses_estimates_that_overflow_or_fall_inside_their_range(void)
{
    warmcal_error err;
    warmcal_table *t = NULL;
    warmcal_error_clear(&err);
    CHECK(sample_table(&t, &err) == 0);
    CHECK(t && warmcal_table_check_estimates(t, "sample.json", &err) == 0);
    warmcal_table_free(t);

    warmcal_estimate e = simple(WARMCAL_FORM_LINEAR); /* 10..100 tokens */
    e.coef[0] = 1e9;
    e.coef[1] = 1e3;
    CHECK(check_one(&e, &err) == 0);
    /* a line that falls */
    e.coef[1] = -1e3;
    CHECK(check_one(&e, &err) == WARMCAL_E_FIELD);
    CHECK(strcmp(err.where, "estimates[0].model") == 0);
    CHECK_STR_CONTAINS(err.source, "one.json");
    CHECK_STR_CONTAINS(err.text, "falls from 999990000 bytes at 10 tokens to 999900000 bytes at "
                                 "100 tokens");
    /* ... but not once it is below zero everywhere: then the margin alone,
     * the same at every token count */
    e.coef[0] = -1e9;
    CHECK(check_one(&e, &err) == 0);

    /* a quadratic that rises from tokens_min to tokens_max but turns down
     * inside: peak at 60 tokens, higher than at either end */
    warmcal_estimate q = simple(WARMCAL_FORM_QUADRATIC);
    q.coef[0] = 1e9;
    q.coef[1] = 1200.0;
    q.coef[2] = -10.0; /* vertex at 1200 / 20 = 60 */
    q.tokens_min = 10;
    q.tokens_max = 100;
    CHECK(check_one(&q, &err) == WARMCAL_E_FIELD);
    CHECK_STR_CONTAINS(err.text, "at 60 tokens to");
    CHECK_STR_CONTAINS(err.text, "at 100 tokens");
    /* the same curve, its range ending at the vertex: it only rises */
    q.tokens_max = 60;
    CHECK(check_one(&q, &err) == 0);
    /* a quadratic that dips first (convex, vertex inside) */
    q.coef[1] = -1200.0;
    q.coef[2] = 10.0;
    q.tokens_max = 100;
    CHECK(check_one(&q, &err) == WARMCAL_E_FIELD);
    CHECK_STR_CONTAINS(err.text, "falls from");
    CHECK_STR_CONTAINS(err.text, "at 10 tokens to");
    /* a vertex between two whole token counts: both sides are looked at */
    q.coef[0] = 1e12;
    q.coef[1] = 1e7 * 121;
    q.coef[2] = -1e7; /* vertex at 60.5 */
    q.tokens_min = 1;
    q.tokens_max = 121;
    CHECK(check_one(&q, &err) == WARMCAL_E_FIELD);
    q.tokens_max = 60;
    CHECK(check_one(&q, &err) == 0);

    /* beyond 64 bits at tokens_max, or already at tokens_min */
    e = simple(WARMCAL_FORM_LINEAR);
    e.coef[1] = 1e18;
    CHECK(check_one(&e, &err) == WARMCAL_E_FIELD);
    CHECK_STR_CONTAINS(err.text, "at 100 tokens");
    CHECK_STR_CONTAINS(err.text, "does not fit in 64 bits");
    e.coef[1] = 0;
    e.margin.total = e.margin.residual = 3e19;
    CHECK(check_one(&e, &err) == WARMCAL_E_FIELD);
    CHECK_STR_CONTAINS(err.text, "at 10 tokens");
    /* an envelope whose last slope, continued to tokens_max, goes past 2^64 */
    uint64_t kt[] = {10, 20};
    double kb[] = {0, 1e19};
    warmcal_estimate v = simple(WARMCAL_FORM_ENVELOPE);
    v.n_knots = 2;
    v.knot_tokens = kt;
    v.knot_bytes = kb;
    v.tokens_max = 20;
    CHECK(check_one(&v, &err) == 0);
    v.tokens_max = 100;
    CHECK(check_one(&v, &err) == WARMCAL_E_FIELD);

    /* the table reader still reads such a table: the gate serves its other
     * shapes and names the ones it cannot */
    const char *path = tmp_path("falls.json");
    warmcal_table *w = NULL;
    warmcal_error_clear(&err);
    CHECK(warmcal_table_new(&w, &err) == 0);
    e = simple(WARMCAL_FORM_LINEAR);
    e.coef[0] = 1e9;
    e.coef[1] = -1e3;
    CHECK(w && warmcal_table_add_estimate(w, &e, &err) == 0);
    CHECK(w && warmcal_table_write(w, path, &err) == 0);
    warmcal_table *back = NULL;
    CHECK(warmcal_table_read(path, &back, &err) == 0);
    CHECK(back && warmcal_table_check_estimates(back, path, &err) == WARMCAL_E_FIELD);
    warmcal_table_free(back);
    warmcal_table_free(w);
    unlink(path);
}

/* Every allocation a read makes, in the library or in jansson, fails in
 * turn: the read then fails with WARMCAL_E_NOMEM naming the file, never as
 * a damaged table ("not valid JSON"), or succeeds whole. */
static void reader_reports_every_failed_allocation_as_out_of_memory(void)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_table *t = NULL;
    CHECK(sample_table_sized(&t, 9, 2, &err) == 0);
    if (!t)
        return;
    const char *path = tmp_path("read-oom.json");
    CHECK(warmcal_table_write(t, path, &err) == 0);
    json_set_alloc_funcs(__wrap_malloc, free);
    long n = 0;
    int nomem = 0, wrong = 0;
    for (;; n++) {
        long failed_before = alloc_fail_count;
        warmcal_table *back = NULL;
        warmcal_error_clear(&err);
        alloc_fail_countdown = n;
        int rc = warmcal_table_read(path, &back, &err);
        alloc_fail_countdown = -1;
        int injected = alloc_fail_count > failed_before;
        if (rc == WARMCAL_E_NOMEM && back == NULL && strstr(err.source, "read-oom.json") &&
            strstr(err.text, "out of memory"))
            nomem++;
        else if (rc != WARMCAL_OK || !back || !tables_equal(back, t)) {
            if (wrong++ < 5)
                fprintf(stderr, "allocation %ld failed: read returned %d: %s: %s: %s\n", n, rc,
                        err.source, err.where, err.text);
        }
        warmcal_table_free(back);
        if (!injected)
            break; /* the read needed fewer than n + 1 allocations: all were failed */
    }
    json_set_alloc_funcs(malloc, free);
    fprintf(stderr, "%ld allocations failed in turn: %d out of memory, %d otherwise\n", n, nomem,
            wrong);
    CHECK(wrong == 0);
    CHECK(n > 50 && nomem > 0);
    unlink(path);
    warmcal_table_free(t);
}

/* The checks that tell jansson's allocation failures from damaged text,
 * against jansson itself on text damaged at random: the syntax check never
 * calls text well-formed that jansson refuses for its syntax, nor refuses
 * text jansson parses; every document jansson parses matches its text; and
 * a document that lost a character does not. */
static void json_syntax_check_agrees_with_jansson_on_damaged_text(void)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_table *t = NULL;
    CHECK(sample_table(&t, &err) == 0);
    const char *path = tmp_path("syntax.json");
    CHECK(t && warmcal_table_write(t, path, &err) == 0);
    warmcal_table_free(t);
    size_t len = 0;
    char *good = file_bytes(path, &len);
    unlink(path);
    if (!good)
        return;
    static const char *const pieces[] = {
        "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "\\uD800", "\\uDC00", "\\uD83D\\uDE00",
        "\\u0000", "0", "01", "-", "1.", "1e", "1e+5", "-0.5", "true", "fals", "nullx", " ",
        "\n", "\x01", "\x80", "\xc3\xa9", "x", "1.5.3", "[]", "{}", "\"a\"", "\\x", "\\/", "\0"};
    char *buf = malloc(len + 64);
    uint64_t state = 42;
    int parsed = 0, syntax = 0, disagree = 0;
    for (int round = 0; buf && round < 20000; round++) {
        memcpy(buf, good, len);
        size_t n = len;
        for (int edit = 0; edit < 1 + round % 3; edit++) {
            state = state * 6364136223846793005ull + 1442695040888963407ull;
            size_t at = (size_t)(state >> 33) % (n + 1);
            const char *p = pieces[(state >> 20) % (sizeof pieces / sizeof pieces[0])];
            size_t k = p[0] ? strlen(p) : 1;
            if ((state >> 8) % 3 == 0 && n > at) { /* delete up to 4 bytes */
                k = 1 + (state >> 12) % 4 < n - at ? 1 + (state >> 12) % 4 : n - at;
                memmove(buf + at, buf + at + k, n - at - k);
                n -= k;
            } else if (n + k <= len + 60) { /* insert a piece */
                memmove(buf + at + k, buf + at, n - at);
                memcpy(buf + at, p, k);
                n += k;
            }
        }
        json_error_t jerr;
        memset(&jerr, 0, sizeof jerr);
        json_t *root = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
        int code = json_error_code(&jerr);
        int bad_syntax = !root && (code == json_error_invalid_syntax ||
                                   code == json_error_premature_end_of_input ||
                                   code == json_error_end_of_input_expected);
        int well_formed = warmcal__json_well_formed(buf, n);
        parsed += root != NULL;
        syntax += bad_syntax;
        if ((root && !well_formed) || (bad_syntax && well_formed) ||
            (root && !warmcal__json_same_as_text(root, buf, n))) {
            if (disagree++ < 3)
                fprintf(stderr, "round %d: jansson %s (%s), the check says %s\n", round,
                        root ? "parsed" : "refused", jerr.text,
                        well_formed ? "well-formed" : "malformed");
        }
        json_decref(root);
    }
    fprintf(stderr, "20000 damaged texts: %d parsed, %d syntax errors, %d disagreements\n", parsed,
            syntax, disagree);
    CHECK(disagree == 0);
    CHECK(parsed > 100 && syntax > 1000); /* both kinds were tried */

    /* what a failed allocation inside jansson's lexer leaves: a token short
     * of a character, in a key, a string, an integer or a real */
    static const char *const text = "{\"key\": [\"caf\\u00e9 \\ud83d\\ude00\", 123456, 1234.5, "
                                    "-7, true, null, {}]}";
    static const char *const cut[] = {
        "{\"ke\": [\"caf\\u00e9 \\ud83d\\ude00\", 123456, 1234.5, -7, true, null, {}]}",
        "{\"key\": [\"ca\\u00e9 \\ud83d\\ude00\", 123456, 1234.5, -7, true, null, {}]}",
        "{\"key\": [\"caf\\u00e9 \\ud83d\\ude00\", 12456, 1234.5, -7, true, null, {}]}",
        "{\"key\": [\"caf\\u00e9 \\ud83d\\ude00\", 123456, 124.5, -7, true, null, {}]}",
        "{\"key\": [\"caf\\u00e9 \\ud83d\\ude00\", 123456, 1234.5, 7, true, null, {}]}"};
    json_t *whole = json_loads(text, 0, NULL);
    CHECK(whole && warmcal__json_same_as_text(whole, text, strlen(text)));
    for (size_t i = 0; whole && i < sizeof cut / sizeof cut[0]; i++) {
        json_t *short_one = json_loads(cut[i], 0, NULL);
        CHECK(short_one && warmcal__json_same_as_text(short_one, cut[i], strlen(cut[i])));
        CHECK(!warmcal__json_same_as_text(short_one, text, strlen(text)));
        json_decref(short_one);
    }
    json_decref(whole);
    free(buf);
    free(good);
}

/* What is at the path decides how a table is written: a link's target is
 * replaced and the link kept (through a chain of links, or a dangling one);
 * a FIFO is written through, and refused at once when nothing reads it; each
 * is left what it was. (Character devices: test_estimator_cli.py, which
 * makes one as root.) */
static void write_keeps_links_and_fifos_what_they_are(void)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_table *t = NULL, *back = NULL;
    CHECK(sample_table(&t, &err) == 0);
    if (!t)
        return;
    char target[160], hop[160], link[160], dangling[160], created[160]; /* tmp_path's own rotate */
    snprintf(target, sizeof target, "%s", tmp_path("target.json"));
    snprintf(hop, sizeof hop, "%s", tmp_path("hop.json"));
    snprintf(link, sizeof link, "%s", tmp_path("link.json"));
    snprintf(dangling, sizeof dangling, "%s", tmp_path("dangling.json"));
    snprintf(created, sizeof created, "%s", tmp_path("created.json"));
    write_text(target, "old\n");
    CHECK(symlink("target.json", hop) == 0);
    CHECK(symlink("hop.json", link) == 0);
    CHECK(warmcal_table_write(t, link, &err) == 0);
    char text[64];
    struct stat st;
    ssize_t n = readlink(link, text, sizeof text - 1);
    CHECK(n == (ssize_t)strlen("hop.json") && lstat(link, &st) == 0 && S_ISLNK(st.st_mode));
    n = readlink(hop, text, sizeof text - 1);
    CHECK(n == (ssize_t)strlen("target.json") && lstat(hop, &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(lstat(target, &st) == 0 && S_ISREG(st.st_mode));
    CHECK(warmcal_table_read(target, &back, &err) == 0 && back && tables_equal(back, t));
    warmcal_table_free(back);
    back = NULL;
    CHECK(symlink("created.json", dangling) == 0);
    CHECK(warmcal_table_write(t, dangling, &err) == 0);
    CHECK(lstat(dangling, &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(warmcal_table_read(created, &back, &err) == 0 && back && tables_equal(back, t));
    warmcal_table_free(back);
    unlink(created);
    unlink(dangling);
    unlink(link);
    unlink(hop);
    CHECK(sweep_leftovers(dir, "target.json") == 0);
    unlink(target);

    const char *fifo = tmp_path("fifo");
    CHECK(mkfifo(fifo, 0600) == 0);
    warmcal_error_clear(&err);
    CHECK(warmcal_table_write(t, fifo, &err) == WARMCAL_E_IO);
    CHECK_STR_CONTAINS(err.text, "nothing reads it");
    CHECK(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    int reader = open(fifo, O_RDONLY | O_NONBLOCK);
    CHECK(reader >= 0);
    CHECK(warmcal_table_write(t, fifo, &err) == 0); /* the table fits in the pipe's buffer */
    char got[32] = "";
    CHECK(read(reader, got, sizeof got - 1) > 0);
    CHECK_STR_CONTAINS(got, "\"format\": \"warmcal-table\"");
    close(reader);
    CHECK(lstat(fifo, &st) == 0 && S_ISFIFO(st.st_mode));
    unlink(fifo);

    CHECK(sweep_leftovers(dir, "none") == 0);
    warmcal_table_free(t);
}

static const struct {
    const char *name;
    void (*fn)(void);
} cases[] = {
    {"round_trip_keeps_every_field", table_round_trip_keeps_every_field},
    {"evaluation_clamps_below_and_applies_the_policy_above",
     evaluation_clamps_below_and_applies_the_policy_above},
    {"envelope_interpolates_and_continues_its_last_slope",
     envelope_interpolates_and_continues_its_last_slope},
    {"the_model_alone_is_what_the_published_bytes_are_made_from",
     the_model_alone_is_what_the_published_bytes_are_made_from},
    {"hinted_evaluation_equals_the_plain_one", hinted_evaluation_equals_the_plain_one},
    {"find_falls_back_to_the_any_rank_entry", find_falls_back_to_the_any_rank_entry},
    {"estimate_errors_name_the_entry", estimate_errors_name_the_entry},
    {"builder_refuses_what_validation_rejects", builder_refuses_what_validation_rejects},
    {"reader_names_the_file_and_the_kind_of_damage", reader_names_the_file_and_the_kind_of_damage},
    {"write_failures_leave_the_old_table_untouched", write_failures_leave_the_old_table_untouched},
    {"killed_write_leaves_old_or_new_table", killed_write_leaves_old_or_new_table},
    {"sha256_streams_files_of_any_size", sha256_streams_files_of_any_size},
    {"write_out_of_memory_leaves_the_old_table_or_the_new_one",
     write_out_of_memory_leaves_the_old_table_or_the_new_one},
    {"write_keeps_links_and_fifos_what_they_are",
     write_keeps_links_and_fifos_what_they_are},
    {"a_rank_above_its_own_range_is_served_by_the_any_rank_entry",
     a_rank_above_its_own_range_is_served_by_the_any_rank_entry},
    {"an_estimate_beyond_64_bits_is_too_large_not_out_of_range",
     an_estimate_beyond_64_bits_is_too_large_not_out_of_range},
    {"check_refuses_estimates_that_overflow_or_fall_inside_their_range",
     check_refuses_estimates_that_overflow_or_fall_inside_their_range},
    {"reader_reports_every_failed_allocation_as_out_of_memory",
     reader_reports_every_failed_allocation_as_out_of_memory},
    {"json_syntax_check_agrees_with_jansson_on_damaged_text",
     json_syntax_check_agrees_with_jansson_on_damaged_text},
};

int main(int argc, char **argv)
{
    /* under $TMPDIR (else /tmp), never in the folder the test runs from */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !tmp[0] || strlen(tmp) > sizeof dir - sizeof "/test_table-XXXXXX")
        tmp = "/tmp";
    snprintf(dir, sizeof dir, "%s/test_table-XXXXXX", tmp);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    int ran = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
            continue;
        fprintf(stderr, "-- %s\n", cases[i].name);
        cases[i].fn();
        ran++;
    }
    if (rmdir(dir) != 0) {
        fprintf(stderr, "test_table: %s not empty after the tests\n", dir);
        check_failures++;
    }
    if (!ran) {
        fprintf(stderr, "test_table: no case named '%s'\n", argv[1]);
        return 1;
    }
    CHECK_DONE();
}
