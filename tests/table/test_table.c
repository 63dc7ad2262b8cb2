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
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "../../gate/src/table_internal.h"
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

    /* values that do not fit in 64 bits are refused, not wrapped */
    warmcal_estimate big = simple(WARMCAL_FORM_LINEAR);
    big.coef[1] = 1e300;
    warmcal_error_clear(&err);
    CHECK(warmcal_estimate_eval(&big, WARMCAL_ABOVE_REFUSE, 50, &bytes, &err) == WARMCAL_E_RANGE);
    CHECK_STR_CONTAINS(err.text, "64 bits");
    big.coef[1] = 0;
    big.coef[0] = 18446744073709551616.0; /* 2^64 */
    warmcal_error_clear(&err);
    CHECK(warmcal_estimate_eval(&big, WARMCAL_ABOVE_REFUSE, 50, &bytes, &err) == WARMCAL_E_RANGE);
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
    /* rank 0 generation is calibrated to 256, rank -1 to 512 */
    warmcal_error_clear(&err);
    CHECK(warmcal_table_estimate(t, 0, "generation", 300, 1, &via_table, &err) == WARMCAL_E_RANGE);
    CHECK(warmcal_table_estimate(t, 5, "generation", 300, 1, &via_table, &err) == 0);
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
         * once a temporary file exists, so that many kills land between
         * its creation and the rename. */
        double delay = one_write * 3.0 * rand() / (double)RAND_MAX;
        if (r % 2) {
            double give_up = seconds() + 5.0;
            while (!tmp_file_exists(dir, "table.json") && seconds() < give_up)
                ;
            delay = 0.0005 * rand() / (double)RAND_MAX; /* the window is short */
        }
        struct timespec ts = {(time_t)delay, (long)((delay - (double)(time_t)delay) * 1e9)};
        nanosleep(&ts, NULL);
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
        interrupted += left > 0;
    }
    fprintf(stderr, "one write %.1f ms; %d rounds: old %d, new %d + %d; %d killed mid-write\n",
            one_write * 1e3, rounds, saw[0], saw[1], saw[2], interrupted);
    /* the kills did land inside writes, or the test proved nothing */
    CHECK(interrupted > 0);
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

static const struct {
    const char *name;
    void (*fn)(void);
} cases[] = {
    {"round_trip_keeps_every_field", table_round_trip_keeps_every_field},
    {"evaluation_clamps_below_and_applies_the_policy_above",
     evaluation_clamps_below_and_applies_the_policy_above},
    {"envelope_interpolates_and_continues_its_last_slope",
     envelope_interpolates_and_continues_its_last_slope},
    {"hinted_evaluation_equals_the_plain_one", hinted_evaluation_equals_the_plain_one},
    {"find_falls_back_to_the_any_rank_entry", find_falls_back_to_the_any_rank_entry},
    {"estimate_errors_name_the_entry", estimate_errors_name_the_entry},
    {"builder_refuses_what_validation_rejects", builder_refuses_what_validation_rejects},
    {"reader_names_the_file_and_the_kind_of_damage", reader_names_the_file_and_the_kind_of_damage},
    {"write_failures_leave_the_old_table_untouched", write_failures_leave_the_old_table_untouched},
    {"killed_write_leaves_old_or_new_table", killed_write_leaves_old_or_new_table},
    {"sha256_streams_files_of_any_size", sha256_streams_files_of_any_size},
};

int main(int argc, char **argv)
{
    snprintf(dir, sizeof dir, "test_table-XXXXXX");
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
