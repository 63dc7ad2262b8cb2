/* Validation of an in-memory estimate table: every rule of docs/formats.md
 * that a single entry or the whole table must meet. The reader, the builder
 * (warmcal_table_add_estimate) and the writer all check through here. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/table.h"
#include "table_private.h"
#include "warmcal/text.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHERE_LEN WARMCAL_ERROR_WHERE_LEN
/* A relative margin above this (the model scaled by 1 + 10) means a broken fit. */
#define MAX_RELATIVE_MARGIN 10.0
/* margin.bytes must equal the sum of its parts within this relative error */
#define MARGIN_SUM_TOLERANCE 1e-6

/* A text field held in a fixed array: NUL-terminated inside it, valid UTF-8,
 * non-empty when required. */
static int check_text(const char *s, size_t cap, int required, const char *file, const char *where,
                      warmcal_error *err)
{
    if (!memchr(s, '\0', cap))
        return warmcal_error_set(err, WARMCAL_E_FIELD, file, where, "longer than %zu bytes",
                                 cap - 1);
    if (required && !s[0])
        return warmcal_error_set(err, WARMCAL_E_FIELD, file, where, "empty");
    if (!warmcal_utf8_valid(s))
        return warmcal_error_set(err, WARMCAL_E_FIELD, file, where, "not valid UTF-8");
    return WARMCAL_OK;
}

int warmcal__check_sha256(const char *hex, const char *file, const char *where, warmcal_error *err)
{
    for (int i = 0; i < 64; i++)
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
            return warmcal_error_set(err, WARMCAL_E_FIELD, file, where,
                                     "expected 64 lowercase hexadecimal digits");
    if (hex[64] != '\0')
        return warmcal_error_set(err, WARMCAL_E_FIELD, file, where,
                                 "expected 64 lowercase hexadecimal digits");
    return WARMCAL_OK;
}

/* A byte amount or statistic: finite and >= 0. */
static int check_amount(double v, const char *file, const char *base, const char *field,
                        warmcal_error *err)
{
    if (isfinite(v) && v >= 0)
        return WARMCAL_OK;
    char where[WHERE_LEN];
    snprintf(where, sizeof where, "%s.%s", base, field);
    return warmcal_error_set(err, WARMCAL_E_FIELD, file, where,
                             "expected a finite non-negative number, found %g", v);
}

static int check_count(uint64_t v, const char *file, const char *base, const char *field,
                       warmcal_error *err)
{
    if (v <= INT64_MAX)
        return WARMCAL_OK;
    char where[WHERE_LEN];
    snprintf(where, sizeof where, "%s.%s", base, field);
    return warmcal_error_set(err, WARMCAL_E_FIELD, file, where,
                             "overflowing: %" PRIu64 " is above 2^63-1", v);
}

/* Every rule for one entry except uniqueness; `i` is its index in the file. */
int warmcal__check_estimate(const warmcal_estimate *e, size_t i, const char *file, warmcal_error *err)
{
    char base[40], where[WHERE_LEN];
    snprintf(base, sizeof base, "estimates[%zu]", i);
#define AT(field) (snprintf(where, sizeof where, "%s.%s", base, field), where)
    if (e->rank < WARMCAL_TABLE_ANY_RANK)
        return warmcal_error_set(err, WARMCAL_E_FIELD, file, AT("rank"),
                                 "expected -1 (any rank) or a rank >= 0, found %d", e->rank);
    int rc = check_text(e->label, sizeof e->label, 1, file, AT("label"), err);
    if (rc)
        return rc;
    if (e->tokens_min == 0)
        return warmcal_error_set(err, WARMCAL_E_FIELD, file, AT("tokens_min"),
                                 "expected a positive integer, found 0");
    if ((rc = check_count(e->tokens_min, file, base, "tokens_min", err)) ||
        (rc = check_count(e->tokens_max, file, base, "tokens_max", err)))
        return rc;
    if (e->tokens_min > e->tokens_max)
        return warmcal_error_set(err, WARMCAL_E_FIELD, file, AT("tokens_max"),
                                 "%" PRIu64 " is below tokens_min %" PRIu64, e->tokens_max,
                                 e->tokens_min);
    if ((unsigned)e->form > WARMCAL_FORM_ENVELOPE)
        return warmcal_error_set(err, WARMCAL_E_FIELD, file, AT("model.form"),
                                 "unknown model form %d", (int)e->form);
    if (e->form == WARMCAL_FORM_ENVELOPE) {
        if (e->n_knots < 2 || e->n_knots > WARMCAL_TABLE_MAX_KNOTS)
            return warmcal_error_set(err, WARMCAL_E_FIELD, file, AT("model.knots"),
                                     "expected 2 to %d knots, found %zu", WARMCAL_TABLE_MAX_KNOTS,
                                     e->n_knots);
        if (!e->knot_tokens || !e->knot_bytes)
            return warmcal_error_set(err, WARMCAL_E_FIELD, file, AT("model.knots"),
                                     "knot arrays missing");
        for (size_t k = 0; k < e->n_knots; k++) {
            char at[WHERE_LEN];
            snprintf(at, sizeof at, "%s.model.knots[%zu]", base, k);
            if (e->knot_tokens[k] > INT64_MAX)
                return warmcal_error_set(err, WARMCAL_E_FIELD, file, at,
                                         "overflowing: tokens %" PRIu64 " is above 2^63-1",
                                         e->knot_tokens[k]);
            if (!isfinite(e->knot_bytes[k]) || e->knot_bytes[k] < 0)
                return warmcal_error_set(err, WARMCAL_E_FIELD, file, at,
                                         "expected finite non-negative bytes, found %g",
                                         e->knot_bytes[k]);
            if (k > 0 && e->knot_tokens[k] <= e->knot_tokens[k - 1])
                return warmcal_error_set(err, WARMCAL_E_FIELD, file, at,
                                         "tokens %" PRIu64 " not above the previous knot's %" PRIu64
                                         " (knots must be strictly increasing in tokens)",
                                         e->knot_tokens[k], e->knot_tokens[k - 1]);
            if (k > 0 && e->knot_bytes[k] < e->knot_bytes[k - 1])
                return warmcal_error_set(err, WARMCAL_E_FIELD, file, at,
                                         "bytes %.17g below the previous knot's %.17g (an envelope "
                                         "never decreases)",
                                         e->knot_bytes[k], e->knot_bytes[k - 1]);
        }
    } else {
        int n = e->form == WARMCAL_FORM_LINEAR ? 2 : 3;
        for (int k = 0; k < n; k++)
            if (!isfinite(e->coef[k])) {
                char at[WHERE_LEN];
                snprintf(at, sizeof at, "%s.model.coefficients[%d]", base, k);
                return warmcal_error_set(err, WARMCAL_E_FIELD, file, at,
                                         "expected a finite number, found %g", e->coef[k]);
            }
    }
    if (!(e->margin.relative >= 0 && e->margin.relative <= MAX_RELATIVE_MARGIN))
        return warmcal_error_set(err, WARMCAL_E_FIELD, file, AT("margin.relative"),
                                 "expected a fraction in [0, %g], found %g", MAX_RELATIVE_MARGIN,
                                 e->margin.relative);
    if ((rc = check_amount(e->margin.total, file, base, "margin.bytes", err)) ||
        (rc = check_amount(e->margin.residual, file, base, "margin.residual", err)) ||
        (rc = check_amount(e->margin.loo, file, base, "margin.loo", err)) ||
        (rc = check_amount(e->margin.granularity, file, base, "margin.granularity", err)))
        return rc;
    double sum = e->margin.residual + e->margin.loo + e->margin.granularity;
    if (!isfinite(sum) ||
        fabs(e->margin.total - sum) > MARGIN_SUM_TOLERANCE * fmax(fabs(sum), 1.0))
        return warmcal_error_set(err, WARMCAL_E_FIELD, file, AT("margin.bytes"),
                                 "%.17g is not residual + loo + granularity = %.17g",
                                 e->margin.total, sum);
    if ((rc = check_count(e->fit.points, file, base, "fit.points", err)) ||
        (rc = check_amount(e->fit.rmse, file, base, "fit.rmse", err)) ||
        (rc = check_amount(e->fit.max_residual, file, base, "fit.max_residual", err)) ||
        (rc = check_amount(e->fit.loo_rmse, file, base, "fit.loo_rmse", err)) ||
        (rc = check_count(e->failures.oom, file, base, "failures.oom", err)) ||
        (rc = check_count(e->failures.oom_tokens_min, file, base, "failures.oom_tokens_min", err)) ||
        (rc = check_count(e->failures.aborted, file, base, "failures.aborted", err)) ||
        (rc = check_count(e->calibration.device_free_min, file, base,
                          "calibration.device_free_min", err)))
        return rc;
    if (e->failures.oom == 0 && e->failures.oom_tokens_min != 0)
        return warmcal_error_set(err, WARMCAL_E_FIELD, file, AT("failures.oom_tokens_min"),
                                 "expected 0 when failures.oom is 0, found %" PRIu64,
                                 e->failures.oom_tokens_min);
#undef AT
    return WARMCAL_OK;
}

typedef struct {
    int rank;
    const char *label;
    size_t index;
} entry_key;

static int compare_keys(const void *a, const void *b)
{
    const entry_key *x = a, *y = b;
    if (x->rank != y->rank)
        return x->rank < y->rank ? -1 : 1;
    int c = strcmp(x->label, y->label);
    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

/* No two entries for the same (rank, label); names the later of the first
 * such pair in file order. Sorting keeps this fast on large tables. */
static int check_unique(const warmcal_table *t, const char *file, warmcal_error *err)
{
    if (t->n_estimates < 2)
        return WARMCAL_OK;
    entry_key *keys = malloc(t->n_estimates * sizeof *keys);
    if (!keys)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, file, NULL, "out of memory");
    for (size_t i = 0; i < t->n_estimates; i++)
        keys[i] = (entry_key){t->estimates[i].rank, t->estimates[i].label, i};
    qsort(keys, t->n_estimates, sizeof *keys, compare_keys);
    /* sorted by (rank, label, index): a group's first two members are the
     * entry and its first duplicate in file order */
    size_t dup = SIZE_MAX, first = 0;
    for (size_t i = 1; i < t->n_estimates; i++) {
        int same = keys[i].rank == keys[i - 1].rank && strcmp(keys[i].label, keys[i - 1].label) == 0;
        int starts_group = i < 2 || keys[i - 1].rank != keys[i - 2].rank ||
                           strcmp(keys[i - 1].label, keys[i - 2].label) != 0;
        if (same && starts_group && keys[i].index < dup) {
            dup = keys[i].index;
            first = keys[i - 1].index;
        }
    }
    free(keys);
    if (dup == SIZE_MAX)
        return WARMCAL_OK;
    char where[WHERE_LEN];
    snprintf(where, sizeof where, "estimates[%zu]", dup);
    const warmcal_estimate *e = &t->estimates[dup];
    return warmcal_error_set(err, WARMCAL_E_FIELD, file, where,
                             "duplicate entry for rank %d, label '%s' (also estimates[%zu])",
                             e->rank, e->label, first);
}

int warmcal_table_validate(const warmcal_table *t, const char *path, warmcal_error *err)
{
    if (!t)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "table_validate: no table");
    int rc;
    if (t->version != WARMCAL_TABLE_VERSION)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "version",
                                 "expected %d, found %d", WARMCAL_TABLE_VERSION, t->version);
    if ((rc = check_text(t->config.model, sizeof t->config.model, 0, path, "configuration.model", err)) ||
        (rc = check_text(t->config.gpu_name, sizeof t->config.gpu_name, 0, path,
                         "configuration.gpu_name", err)) ||
        (rc = check_text(t->tool_version, sizeof t->tool_version, 0, path, "tool_version", err)) ||
        (rc = check_text(t->created, sizeof t->created, 0, path, "created", err)))
        return rc;
    if (t->config.tp < 1)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "configuration.tp",
                                 "expected a positive integer, found %d", t->config.tp);
    if ((rc = check_count(t->config.gpu_total_bytes, path, "configuration", "gpu_total_bytes", err)))
        return rc;
    if ((unsigned)t->above_range > WARMCAL_ABOVE_EXTRAPOLATE)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "policy.above_range",
                                 "unknown policy %d", (int)t->above_range);
    if (t->n_sources && !t->sources)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "sources", "source array missing");
    for (size_t i = 0; i < t->n_sources; i++) {
        char where[WHERE_LEN];
        snprintf(where, sizeof where, "sources[%zu].name", i);
        rc = check_text(t->sources[i].name, sizeof t->sources[i].name, 1, path, where, err);
        snprintf(where, sizeof where, "sources[%zu].sha256", i);
        if (rc || (rc = warmcal__check_sha256(t->sources[i].sha256, path, where, err)))
            return rc;
    }
    if (t->n_estimates == 0)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "estimates",
                                 "no estimates (expected at least one entry)");
    if (!t->estimates)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "estimates", "estimate array missing");
    for (size_t i = 0; i < t->n_estimates; i++)
        if ((rc = warmcal__check_estimate(&t->estimates[i], i, path, err)))
            return rc;
    return check_unique(t, path, err);
}
