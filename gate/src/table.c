/* The estimate table (see warmcal/table.h and docs/formats.md, "Estimate
 * table"): read and validate with jansson, write atomically (temporary file,
 * fsync, rename, fsync of the folder), evaluate. The evaluation rule lives
 * here and nowhere else: the CLI, the estimator and the gate all call it. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/table.h"
#include "warmcal/units.h"
#include "table_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <nettle/sha2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define WHERE_LEN WARMCAL_ERROR_WHERE_LEN
#define TWO_POW_63 9223372036854775808.0
/* A relative margin above this (the model scaled by 1 + 10) means a broken fit. */
#define MAX_RELATIVE_MARGIN 10.0
/* margin.bytes must equal the sum of its parts within this relative error */
#define MARGIN_SUM_TOLERANCE 1e-6

/* --- names ------------------------------------------------------------------ */

static const char *const form_names[] = {"linear", "quadratic", "envelope"};
static const char *const above_names[] = {"refuse", "extrapolate"};

const char *warmcal_form_name(warmcal_form f)
{
    return (unsigned)f < 3 ? form_names[f] : "unknown";
}

const char *warmcal_above_policy_name(warmcal_above_policy p)
{
    return (unsigned)p < 2 ? above_names[p] : "unknown";
}

/* --- validation of the in-memory table --------------------------------------- */

/* Well-formed UTF-8 (no overlong forms, no surrogates, at most U+10FFFF):
 * jansson refuses to hold anything else, so the writer checks it first. */
static int utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1, cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2, cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3, cp = c & 0x07;
        } else {
            return 0;
        }
        for (size_t k = 1; k <= n; k++) {
            if ((p[k] & 0xC0) != 0x80)
                return 0;
            cp = (cp << 6) | (p[k] & 0x3F);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        p += n + 1;
    }
    return 1;
}

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
    if (!utf8_ok(s))
        return warmcal_error_set(err, WARMCAL_E_FIELD, file, where, "not valid UTF-8");
    return WARMCAL_OK;
}

static int check_sha256(const char *hex, const char *file, const char *where, warmcal_error *err)
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
static int check_estimate(const warmcal_estimate *e, size_t i, const char *file, warmcal_error *err)
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
        if (rc || (rc = check_sha256(t->sources[i].sha256, path, where, err)))
            return rc;
    }
    if (t->n_estimates == 0)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "estimates",
                                 "no estimates (expected at least one entry)");
    if (!t->estimates)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "estimates", "estimate array missing");
    for (size_t i = 0; i < t->n_estimates; i++)
        if ((rc = check_estimate(&t->estimates[i], i, path, err)))
            return rc;
    return check_unique(t, path, err);
}

/* --- building a table in memory ----------------------------------------------- */

int warmcal_table_new(warmcal_table **out, warmcal_error *err)
{
    if (!out)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "table_new: no output pointer");
    *out = NULL;
    warmcal_table *t = calloc(1, sizeof *t);
    if (!t)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "out of memory");
    t->version = WARMCAL_TABLE_VERSION;
    t->above_range = WARMCAL_ABOVE_REFUSE;
    t->config.tp = 1;
#ifdef WARMCAL_VERSION
    snprintf(t->tool_version, sizeof t->tool_version, "%s", WARMCAL_VERSION);
#endif
    warmcal_utc_now(t->created, sizeof t->created);
    *out = t;
    return WARMCAL_OK;
}

static void estimate_release(warmcal_estimate *e)
{
    free(e->knot_tokens);
    free(e->knot_bytes);
    e->knot_tokens = NULL;
    e->knot_bytes = NULL;
}

void warmcal_table_free(warmcal_table *t)
{
    if (!t)
        return;
    for (size_t i = 0; t->estimates && i < t->n_estimates; i++)
        estimate_release(&t->estimates[i]);
    free(t->estimates);
    free(t->sources);
    free(t);
}

/* Re-file a validation error as the caller's mistake (E_INVAL), keeping its text. */
static int as_inval(warmcal_error *err, const warmcal_error *found)
{
    return warmcal_error_set(err, WARMCAL_E_INVAL, found->source[0] ? found->source : NULL,
                             found->where[0] ? found->where : NULL, "%s", found->text);
}

int warmcal_table_add_estimate(warmcal_table *t, const warmcal_estimate *e, warmcal_error *err)
{
    if (!t || !e)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "table_add_estimate: bad argument");
    warmcal_error found;
    warmcal_error_clear(&found);
    size_t i = t->n_estimates;
    if (check_estimate(e, i, NULL, &found))
        return as_inval(err, &found);
    if (memchr(e->label, '\0', sizeof e->label))
        for (size_t k = 0; k < i; k++)
            if (t->estimates[k].rank == e->rank && strcmp(t->estimates[k].label, e->label) == 0)
                return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                         "duplicate entry for rank %d, label '%s' (estimates[%zu])",
                                         e->rank, e->label, k);
    warmcal_estimate copy = *e;
    copy.knot_tokens = NULL;
    copy.knot_bytes = NULL;
    /* unused parts are zeroed, so a table reads back exactly as it was added */
    if (e->form == WARMCAL_FORM_ENVELOPE) {
        memset(copy.coef, 0, sizeof copy.coef);
        copy.knot_tokens = malloc(e->n_knots * sizeof *copy.knot_tokens);
        copy.knot_bytes = malloc(e->n_knots * sizeof *copy.knot_bytes);
        if (!copy.knot_tokens || !copy.knot_bytes) {
            estimate_release(&copy);
            return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "out of memory");
        }
        memcpy(copy.knot_tokens, e->knot_tokens, e->n_knots * sizeof *copy.knot_tokens);
        memcpy(copy.knot_bytes, e->knot_bytes, e->n_knots * sizeof *copy.knot_bytes);
    } else {
        copy.n_knots = 0;
        if (e->form == WARMCAL_FORM_LINEAR)
            copy.coef[2] = 0;
    }
    warmcal_estimate *grown = realloc(t->estimates, (i + 1) * sizeof *grown);
    if (!grown) {
        estimate_release(&copy);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "out of memory");
    }
    grown[i] = copy;
    t->estimates = grown;
    t->n_estimates = i + 1;
    return WARMCAL_OK;
}

int warmcal_table_add_source(warmcal_table *t, const char *name, const char *sha256_hex,
                             warmcal_error *err)
{
    if (!t || !name || !sha256_hex)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "table_add_source: bad argument");
    warmcal_table_source s;
    memset(&s, 0, sizeof s);
    char where[WHERE_LEN];
    snprintf(where, sizeof where, "sources[%zu].name", t->n_sources);
    if (strlen(name) >= sizeof s.name || !name[0] || !utf8_ok(name))
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where,
                                 "expected non-empty UTF-8 text of at most %zu bytes",
                                 sizeof s.name - 1);
    snprintf(where, sizeof where, "sources[%zu].sha256", t->n_sources);
    if (strlen(sha256_hex) != 64)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where,
                                 "expected 64 lowercase hexadecimal digits");
    memcpy(s.name, name, strlen(name) + 1);
    memcpy(s.sha256, sha256_hex, 65);
    warmcal_error found;
    warmcal_error_clear(&found);
    if (check_sha256(s.sha256, NULL, where, &found))
        return as_inval(err, &found);
    warmcal_table_source *grown = realloc(t->sources, (t->n_sources + 1) * sizeof *grown);
    if (!grown)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "out of memory");
    grown[t->n_sources] = s;
    t->sources = grown;
    t->n_sources++;
    return WARMCAL_OK;
}

/* --- reading ------------------------------------------------------------------ */

typedef struct {
    const char *file;
    /* Second pass over a file jansson refused for an integer beyond 64 bits:
     * integers were decoded as reals, so that the field holding the too-big
     * one can be named. Integral reals then stand for integers. */
    int ints_as_reals;
    warmcal_error *err;
} reader;

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Field paths: the error record shortens a path too long for it, so
 * truncation here is harmless (vsnprintf keeps gcc from warning of it). */
static void pathf(char *out, const char *fmt, ...) WARMCAL_PRINTF(2, 3);
static void pathf(char *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, WHERE_LEN, fmt, ap);
    va_end(ap);
}

static void join(char *out, const char *base, const char *key)
{
    if (base[0])
        pathf(out, "%s.%s", base, key);
    else
        pathf(out, "%s", key);
}

static int field_error(reader *r, const char *where, const char *fmt, ...) WARMCAL_PRINTF(3, 4);
static int field_error(reader *r, const char *where, const char *fmt, ...)
{
    char text[WARMCAL_ERROR_TEXT_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    return warmcal_error_set(r->err, WARMCAL_E_FIELD, r->file, where, "%s", text);
}

/* obj[key], which must be present and of JSON type `type`. */
static int member(reader *r, json_t *obj, const char *base, const char *key, json_type type,
                  const char *expect, json_t **out)
{
    char where[WHERE_LEN];
    join(where, base, key);
    json_t *v = json_object_get(obj, key);
    if (!v)
        return field_error(r, where, "missing (expected %s)", expect);
    if (json_typeof(v) != type)
        return field_error(r, where, "expected %s, found %s", expect, json_kind(v));
    *out = v;
    return WARMCAL_OK;
}

static int integer_value(reader *r, json_t *v, const char *where, int64_t min, int64_t max,
                         int64_t *out)
{
    const char *expect = min > 0 ? "a positive integer" : min == 0 ? "a non-negative integer"
                                                                  : "an integer";
    int64_t i;
    if (json_is_integer(v)) {
        i = (int64_t)json_integer_value(v);
    } else if (json_is_real(v) && r->ints_as_reals) {
        double d = json_real_value(v);
        if (d != floor(d))
            return field_error(r, where, "expected %s, found %.17g", expect, d);
        if (d >= TWO_POW_63 || d < -TWO_POW_63)
            return field_error(r, where, "overflowing: %.17g does not fit in a signed 64-bit integer",
                               d);
        i = (int64_t)d;
    } else if (json_is_real(v)) {
        return field_error(r, where, "expected %s, found a real number (%.17g)", expect,
                           json_real_value(v));
    } else {
        return field_error(r, where, "expected %s, found %s", expect, json_kind(v));
    }
    if (i < min)
        return field_error(r, where, "expected %s, found %" PRId64, expect, i);
    if (i > max)
        return field_error(r, where, "expected at most %" PRId64 ", found %" PRId64, max, i);
    *out = i;
    return WARMCAL_OK;
}

static int get_integer(reader *r, json_t *obj, const char *base, const char *key, int64_t min,
                       int64_t max, int64_t *out)
{
    char where[WHERE_LEN];
    join(where, base, key);
    json_t *v = json_object_get(obj, key);
    if (!v)
        return field_error(r, where, "missing (expected %s)",
                           min > 0 ? "a positive integer" : "a non-negative integer");
    return integer_value(r, v, where, min, max, out);
}

static int get_u64(reader *r, json_t *obj, const char *base, const char *key, int positive,
                   uint64_t *out)
{
    int64_t i;
    int rc = get_integer(r, obj, base, key, positive ? 1 : 0, INT64_MAX, &i);
    if (!rc)
        *out = (uint64_t)i;
    return rc;
}

static int get_size(reader *r, json_t *obj, const char *base, const char *key, size_t *out)
{
    int64_t i;
    int rc = get_integer(r, obj, base, key, 0, SIZE_MAX < INT64_MAX ? (int64_t)SIZE_MAX : INT64_MAX,
                         &i);
    if (!rc)
        *out = (size_t)i;
    return rc;
}

/* A number: a JSON real or integer (jansson holds no NaN or infinity). */
static int number_value(reader *r, json_t *v, const char *where, int non_negative, double *out)
{
    const char *expect = non_negative ? "a non-negative number" : "a number";
    if (!json_is_number(v))
        return field_error(r, where, "expected %s, found %s", expect, json_kind(v));
    double d = json_number_value(v);
    if (!isfinite(d))
        return field_error(r, where, "expected a finite number");
    if (non_negative && d < 0)
        return field_error(r, where, "expected %s, found %.17g", expect, d);
    *out = d;
    return WARMCAL_OK;
}

static int get_number(reader *r, json_t *obj, const char *base, const char *key, int non_negative,
                      double *out)
{
    char where[WHERE_LEN];
    join(where, base, key);
    json_t *v = json_object_get(obj, key);
    if (!v)
        return field_error(r, where, "missing (expected %s)",
                           non_negative ? "a non-negative number" : "a number");
    return number_value(r, v, where, non_negative, out);
}

static int get_text(reader *r, json_t *obj, const char *base, const char *key, int required,
                    char *out, size_t cap)
{
    json_t *v;
    int rc = member(r, obj, base, key, JSON_STRING, "a string", &v);
    if (rc)
        return rc;
    char where[WHERE_LEN];
    join(where, base, key);
    size_t n = json_string_length(v);
    if (n >= cap)
        return field_error(r, where, "longer than %zu bytes (%zu)", cap - 1, n);
    if (required && n == 0)
        return field_error(r, where, "empty");
    memcpy(out, json_string_value(v), n + 1);
    return WARMCAL_OK;
}

static int read_model(reader *r, json_t *entry, const char *base, warmcal_estimate *e)
{
    json_t *model, *v;
    char mbase[WHERE_LEN], where[WHERE_LEN];
    int rc = member(r, entry, base, "model", JSON_OBJECT, "an object", &model);
    if (rc)
        return rc;
    join(mbase, base, "model");
    if ((rc = member(r, model, mbase, "form", JSON_STRING, "a string", &v)))
        return rc;
    const char *form = json_string_value(v);
    int f = -1;
    for (int k = 0; k < 3; k++)
        if (strcmp(form, form_names[k]) == 0)
            f = k;
    if (f < 0) {
        join(where, mbase, "form");
        return field_error(r, where,
                           "unknown model form '%.40s' (expected linear, quadratic or envelope)",
                           form);
    }
    e->form = (warmcal_form)f;
    if (e->form != WARMCAL_FORM_ENVELOPE) {
        size_t want = e->form == WARMCAL_FORM_LINEAR ? 2 : 3;
        if ((rc = member(r, model, mbase, "coefficients", JSON_ARRAY, "an array of numbers", &v)))
            return rc;
        join(where, mbase, "coefficients");
        if (json_array_size(v) != want)
            return field_error(r, where, "a %s model has %zu coefficients, found %zu", form, want,
                               json_array_size(v));
        for (size_t k = 0; k < want; k++) {
            pathf(where, "%s.coefficients[%zu]", mbase, k);
            if ((rc = number_value(r, json_array_get(v, k), where, 0, &e->coef[k])))
                return rc;
        }
        return WARMCAL_OK;
    }
    json_t *knots;
    if ((rc = member(r, model, mbase, "knots", JSON_ARRAY, "an array of [tokens, bytes] pairs",
                     &knots)))
        return rc;
    size_t n = json_array_size(knots);
    if (n < 2 || n > WARMCAL_TABLE_MAX_KNOTS) {
        join(where, mbase, "knots");
        return field_error(r, where, "expected 2 to %d knots, found %zu", WARMCAL_TABLE_MAX_KNOTS, n);
    }
    e->knot_tokens = malloc(n * sizeof *e->knot_tokens);
    e->knot_bytes = malloc(n * sizeof *e->knot_bytes);
    if (!e->knot_tokens || !e->knot_bytes)
        return warmcal_error_set(r->err, WARMCAL_E_NOMEM, r->file, NULL, "out of memory");
    e->n_knots = n;
    for (size_t k = 0; k < n; k++) {
        json_t *pair = json_array_get(knots, k);
        pathf(where, "%s.knots[%zu]", mbase, k);
        if (!json_is_array(pair) || json_array_size(pair) != 2)
            return field_error(r, where, "expected a [tokens, bytes] pair, found %s",
                               json_is_array(pair) ? "an array of another length" : json_kind(pair));
        int64_t tokens;
        if ((rc = integer_value(r, json_array_get(pair, 0), where, 0, INT64_MAX, &tokens)) ||
            (rc = number_value(r, json_array_get(pair, 1), where, 1, &e->knot_bytes[k])))
            return rc;
        e->knot_tokens[k] = (uint64_t)tokens;
    }
    return WARMCAL_OK;
}

static int read_estimate(reader *r, json_t *entry, size_t i, warmcal_estimate *e)
{
    char base[40], sub[WHERE_LEN];
    snprintf(base, sizeof base, "estimates[%zu]", i);
    if (!json_is_object(entry))
        return field_error(r, base, "expected an object, found %s", json_kind(entry));
    int64_t rank;
    json_t *o;
    int rc = get_integer(r, entry, base, "rank", -1, INT_MAX, &rank);
    if (rc || (rc = get_text(r, entry, base, "label", 1, e->label, sizeof e->label)) ||
        (rc = get_u64(r, entry, base, "tokens_min", 1, &e->tokens_min)) ||
        (rc = get_u64(r, entry, base, "tokens_max", 1, &e->tokens_max)) ||
        (rc = read_model(r, entry, base, e)))
        return rc;
    e->rank = (int)rank;
    if ((rc = member(r, entry, base, "margin", JSON_OBJECT, "an object", &o)))
        return rc;
    join(sub, base, "margin");
    if ((rc = get_number(r, o, sub, "bytes", 1, &e->margin.total)) ||
        (rc = get_number(r, o, sub, "residual", 1, &e->margin.residual)) ||
        (rc = get_number(r, o, sub, "loo", 1, &e->margin.loo)) ||
        (rc = get_number(r, o, sub, "granularity", 1, &e->margin.granularity)) ||
        (rc = get_number(r, o, sub, "relative", 1, &e->margin.relative)) ||
        (rc = member(r, entry, base, "fit", JSON_OBJECT, "an object", &o)))
        return rc;
    join(sub, base, "fit");
    if ((rc = get_size(r, o, sub, "points", &e->fit.points)) ||
        (rc = get_number(r, o, sub, "rmse", 1, &e->fit.rmse)) ||
        (rc = get_number(r, o, sub, "max_residual", 1, &e->fit.max_residual)) ||
        (rc = get_number(r, o, sub, "loo_rmse", 1, &e->fit.loo_rmse)) ||
        (rc = member(r, entry, base, "failures", JSON_OBJECT, "an object", &o)))
        return rc;
    join(sub, base, "failures");
    if ((rc = get_size(r, o, sub, "oom", &e->failures.oom)) ||
        (rc = get_u64(r, o, sub, "oom_tokens_min", 0, &e->failures.oom_tokens_min)) ||
        (rc = get_size(r, o, sub, "aborted", &e->failures.aborted)))
        return rc;
    /* optional: tables written before it existed read as "not sampled" */
    if (json_object_get(entry, "calibration")) {
        if ((rc = member(r, entry, base, "calibration", JSON_OBJECT, "an object", &o)))
            return rc;
        join(sub, base, "calibration");
        if ((rc = get_u64(r, o, sub, "device_free_min", 0, &e->calibration.device_free_min)))
            return rc;
    }
    return WARMCAL_OK;
}

static int read_policy(reader *r, json_t *root, warmcal_table *t)
{
    json_t *policy, *v;
    int rc = member(r, root, "", "policy", JSON_OBJECT, "an object", &policy);
    if (rc || (rc = member(r, policy, "policy", "above_range", JSON_STRING, "a string", &v)))
        return rc;
    const char *above = json_string_value(v);
    if (strcmp(above, "refuse") == 0)
        t->above_range = WARMCAL_ABOVE_REFUSE;
    else if (strcmp(above, "extrapolate") == 0)
        t->above_range = WARMCAL_ABOVE_EXTRAPOLATE;
    else
        return field_error(r, "policy.above_range",
                           "unknown policy '%.40s' (expected refuse or extrapolate)", above);
    if ((rc = member(r, policy, "policy", "below_range", JSON_STRING, "a string", &v)))
        return rc;
    if (strcmp(json_string_value(v), "clamp") != 0)
        return field_error(r, "policy.below_range", "unknown policy '%.40s' (expected clamp)",
                           json_string_value(v));
    return WARMCAL_OK;
}

/* The table in `root` (an object whose format and version were checked). */
static int read_body(reader *r, json_t *root, warmcal_table *t)
{
    json_t *config, *arr;
    int64_t tp;
    int rc = member(r, root, "", "configuration", JSON_OBJECT, "an object", &config);
    if (rc ||
        (rc = get_text(r, config, "configuration", "model", 0, t->config.model,
                       sizeof t->config.model)) ||
        (rc = get_integer(r, config, "configuration", "tp", 1, INT_MAX, &tp)) ||
        (rc = get_text(r, config, "configuration", "gpu_name", 0, t->config.gpu_name,
                       sizeof t->config.gpu_name)) ||
        (rc = get_u64(r, config, "configuration", "gpu_total_bytes", 0,
                      &t->config.gpu_total_bytes)) ||
        (rc = get_text(r, root, "", "tool_version", 0, t->tool_version, sizeof t->tool_version)) ||
        (rc = get_text(r, root, "", "created", 0, t->created, sizeof t->created)) ||
        (rc = read_policy(r, root, t)))
        return rc;
    t->config.tp = (int)tp;

    if ((rc = member(r, root, "", "sources", JSON_ARRAY, "an array", &arr)))
        return rc;
    size_t n = json_array_size(arr);
    if (n) {
        t->sources = calloc(n, sizeof *t->sources);
        if (!t->sources)
            return warmcal_error_set(r->err, WARMCAL_E_NOMEM, r->file, NULL, "out of memory");
        t->n_sources = n;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(arr, i);
        char base[40], where[WHERE_LEN];
        snprintf(base, sizeof base, "sources[%zu]", i);
        if (!json_is_object(s))
            return field_error(r, base, "expected an object, found %s", json_kind(s));
        json_t *v;
        if ((rc = get_text(r, s, base, "name", 1, t->sources[i].name, sizeof t->sources[i].name)) ||
            (rc = member(r, s, base, "sha256", JSON_STRING, "a string", &v)))
            return rc;
        join(where, base, "sha256");
        if (json_string_length(v) != 64)
            return field_error(r, where, "expected 64 lowercase hexadecimal digits, found %zu characters",
                               json_string_length(v));
        memcpy(t->sources[i].sha256, json_string_value(v), 65);
    }

    if ((rc = member(r, root, "", "estimates", JSON_ARRAY, "an array", &arr)))
        return rc;
    n = json_array_size(arr);
    if (n) {
        t->estimates = calloc(n, sizeof *t->estimates);
        if (!t->estimates)
            return warmcal_error_set(r->err, WARMCAL_E_NOMEM, r->file, NULL, "out of memory");
        t->n_estimates = n;
    }
    for (size_t i = 0; i < n; i++)
        if ((rc = read_estimate(r, json_array_get(arr, i), i, &t->estimates[i])))
            return rc;
    return warmcal_table_validate(t, r->file, r->err);
}

static int read_table(reader *r, json_t *root, warmcal_table **out)
{
    if (!json_is_object(root))
        return warmcal_error_set(r->err, WARMCAL_E_FORMAT, r->file, NULL,
                                 "expected a JSON object, found %s", json_kind(root));
    json_t *v = json_object_get(root, "format");
    if (!v)
        return warmcal_error_set(r->err, WARMCAL_E_FORMAT, r->file, "format",
                                 "missing (expected \"%s\")", WARMCAL_TABLE_FORMAT);
    if (!json_is_string(v) || strcmp(json_string_value(v), WARMCAL_TABLE_FORMAT) != 0)
        return warmcal_error_set(r->err, WARMCAL_E_FORMAT, r->file, "format",
                                 "expected \"%s\", found %s%.40s%s: not an estimate table",
                                 WARMCAL_TABLE_FORMAT, json_is_string(v) ? "\"" : "",
                                 json_is_string(v) ? json_string_value(v) : json_kind(v),
                                 json_is_string(v) ? "\"" : "");
    v = json_object_get(root, "version");
    int integral = json_is_integer(v) ||
                   (r->ints_as_reals && json_is_real(v) &&
                    json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 1e18);
    if (!v || !integral)
        return warmcal_error_set(r->err, WARMCAL_E_FORMAT, r->file, "version",
                                 "%s (expected the integer %d)",
                                 v ? "not an integer" : "missing", WARMCAL_TABLE_VERSION);
    int64_t version = json_is_integer(v) ? (int64_t)json_integer_value(v)
                                         : (int64_t)json_real_value(v);
    if (version != WARMCAL_TABLE_VERSION)
        return warmcal_error_set(r->err, WARMCAL_E_FORMAT, r->file, "version",
                                 "unsupported version %" PRId64 " (this reader knows %d)", version,
                                 WARMCAL_TABLE_VERSION);
    warmcal_table *t = calloc(1, sizeof *t);
    if (!t)
        return warmcal_error_set(r->err, WARMCAL_E_NOMEM, r->file, NULL, "out of memory");
    t->version = WARMCAL_TABLE_VERSION;
    int rc = read_body(r, root, t);
    if (rc) {
        warmcal_table_free(t);
        return rc;
    }
    *out = t;
    return WARMCAL_OK;
}

/* The whole file, which must be a regular file; O_NONBLOCK so that a FIFO
 * given by mistake cannot block the open. */
/* Finish a SHA-256 as 64 lowercase hex digits and a NUL. */
static void hex_digest(struct sha256_ctx *ctx, char hex[65])
{
    uint8_t digest[SHA256_DIGEST_SIZE];
    sha256_digest(ctx, sizeof digest, digest);
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = '\0';
}

/* Open path for reading, refusing anything but a regular file (a FIFO or a
 * device would block or never end); *fd and *size on success. */
static int open_regular(const char *path, int *fd, off_t *size, warmcal_error *err)
{
    *fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (*fd < 0)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(*fd);
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "not a regular file");
    }
    *size = st.st_size;
    return WARMCAL_OK;
}

/* read(2), again when a signal interrupts it. */
static ssize_t read_retry(int fd, void *dst, size_t len)
{
    ssize_t got;
    do
        got = read(fd, dst, len);
    while (got < 0 && errno == EINTR);
    return got;
}

static int slurp(const char *path, char **data, size_t *len, warmcal_error *err)
{
    int fd;
    off_t size;
    int rc = open_regular(path, &fd, &size, err);
    if (rc)
        return rc;
    size_t cap = size > 0 ? (size_t)size + 1 : 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            close(fd);
            return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "out of memory");
        }
        if (n == cap) { /* the file grew while read */
            char *grown = realloc(buf, cap * 2);
            if (!grown)
                free(buf);
            buf = grown;
            cap *= 2;
            continue;
        }
        ssize_t got = read_retry(fd, buf + n, cap - n);
        if (got < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot read: %s", strerror(e));
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    *data = buf;
    *len = n;
    return WARMCAL_OK;
}

int warmcal_table_read(const char *path, warmcal_table **out, warmcal_error *err)
{
    if (out)
        *out = NULL;
    if (!path || !out)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "table_read: bad argument");
    char *data = NULL;
    size_t len = 0;
    int rc = slurp(path, &data, &len, err);
    if (rc)
        return rc;
    char digest[65];
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, len, (const uint8_t *)data);
    hex_digest(&ctx, digest);
    json_error_t jerr;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    reader r = {path, 0, err};
    if (!root && json_error_code(&jerr) == json_error_numeric_overflow) {
        /* jansson holds integers in 64 signed bits and refuses larger ones;
         * decoded again as reals, the field holding it can be named. */
        json_t *again = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, NULL);
        if (again) {
            warmcal_error found;
            warmcal_error_clear(&found);
            reader r2 = {path, 1, &found};
            warmcal_table *t = NULL;
            if (read_table(&r2, again, &t) != WARMCAL_OK && found.where[0]) {
                json_decref(again);
                free(data);
                return warmcal_error_set(err, found.code, path, found.where, "%s", found.text);
            }
            warmcal_table_free(t);
            json_decref(again);
        }
    }
    free(data);
    if (!root) {
        char where[48];
        snprintf(where, sizeof where, "line %d, column %d", jerr.line, jerr.column);
        int overflow = json_error_code(&jerr) == json_error_numeric_overflow;
        return warmcal_error_set(err, WARMCAL_E_FORMAT, path, where, "%s: %s",
                                 overflow ? "number out of range" : "not valid JSON", jerr.text);
    }
    rc = read_table(&r, root, out);
    json_decref(root);
    if (rc == WARMCAL_OK)
        memcpy((*out)->sha256, digest, sizeof digest);
    return rc;
}

/* --- writing ------------------------------------------------------------------ */

/* Append/set while remembering whether anything failed (values are stolen). */
typedef struct {
    int failed;
} builder;

static void put(builder *b, json_t *obj, const char *key, json_t *value)
{
    if (!value || json_object_set_new(obj, key, value) != 0)
        b->failed = 1;
}

static void push(builder *b, json_t *arr, json_t *value)
{
    if (!value || json_array_append_new(arr, value) != 0)
        b->failed = 1;
}

static json_t *int_json(uint64_t v) /* validated: v <= INT64_MAX */
{
    return json_integer((json_int_t)v);
}

static json_t *estimate_json(builder *b, const warmcal_estimate *e)
{
    json_t *o = json_object(), *model = json_object(), *margin = json_object(),
           *fit = json_object(), *failures = json_object();
    put(b, o, "rank", json_integer(e->rank));
    put(b, o, "label", json_string(e->label));
    put(b, o, "tokens_min", int_json(e->tokens_min));
    put(b, o, "tokens_max", int_json(e->tokens_max));
    put(b, model, "form", json_string(warmcal_form_name(e->form)));
    if (e->form == WARMCAL_FORM_ENVELOPE) {
        json_t *knots = json_array();
        for (size_t k = 0; knots && k < e->n_knots; k++) {
            json_t *pair = json_array();
            push(b, pair, int_json(e->knot_tokens[k]));
            push(b, pair, json_real(e->knot_bytes[k]));
            push(b, knots, pair);
        }
        put(b, model, "knots", knots);
    } else {
        json_t *coef = json_array();
        for (int k = 0; k < (e->form == WARMCAL_FORM_LINEAR ? 2 : 3); k++)
            push(b, coef, json_real(e->coef[k]));
        put(b, model, "coefficients", coef);
    }
    put(b, o, "model", model);
    put(b, margin, "bytes", json_real(e->margin.total));
    put(b, margin, "residual", json_real(e->margin.residual));
    put(b, margin, "loo", json_real(e->margin.loo));
    put(b, margin, "granularity", json_real(e->margin.granularity));
    put(b, margin, "relative", json_real(e->margin.relative));
    put(b, o, "margin", margin);
    put(b, fit, "points", int_json(e->fit.points));
    put(b, fit, "rmse", json_real(e->fit.rmse));
    put(b, fit, "max_residual", json_real(e->fit.max_residual));
    put(b, fit, "loo_rmse", json_real(e->fit.loo_rmse));
    put(b, o, "fit", fit);
    put(b, failures, "oom", int_json(e->failures.oom));
    put(b, failures, "oom_tokens_min", int_json(e->failures.oom_tokens_min));
    put(b, failures, "aborted", int_json(e->failures.aborted));
    put(b, o, "failures", failures);
    json_t *calibration = json_object();
    put(b, calibration, "device_free_min", int_json(e->calibration.device_free_min));
    put(b, o, "calibration", calibration);
    return o;
}

/* The document, in the field order docs/formats.md shows; NULL when out of memory. */
static json_t *table_json(const warmcal_table *t)
{
    builder b = {0};
    json_t *root = json_object(), *config = json_object(), *policy = json_object(),
           *sources = json_array(), *estimates = json_array();
    put(&b, root, "format", json_string(WARMCAL_TABLE_FORMAT));
    put(&b, root, "version", json_integer(WARMCAL_TABLE_VERSION));
    put(&b, config, "model", json_string(t->config.model));
    put(&b, config, "tp", json_integer(t->config.tp));
    put(&b, config, "gpu_name", json_string(t->config.gpu_name));
    put(&b, config, "gpu_total_bytes", int_json(t->config.gpu_total_bytes));
    put(&b, root, "configuration", config);
    put(&b, root, "tool_version", json_string(t->tool_version));
    put(&b, root, "created", json_string(t->created));
    put(&b, policy, "above_range", json_string(warmcal_above_policy_name(t->above_range)));
    put(&b, policy, "below_range", json_string("clamp"));
    put(&b, root, "policy", policy);
    for (size_t i = 0; sources && i < t->n_sources; i++) {
        json_t *s = json_object();
        put(&b, s, "name", json_string(t->sources[i].name));
        put(&b, s, "sha256", json_string(t->sources[i].sha256));
        push(&b, sources, s);
    }
    put(&b, root, "sources", sources);
    for (size_t i = 0; estimates && i < t->n_estimates; i++)
        push(&b, estimates, estimate_json(&b, &t->estimates[i]));
    put(&b, root, "estimates", estimates);
    if (b.failed || !root) {
        json_decref(root);
        return NULL;
    }
    return root;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync the folder holding path, so the rename itself is on disk. File
 * systems that cannot sync a folder (EINVAL) have nothing more to flush. */
static int sync_folder(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *folder = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!folder)
        return ENOMEM;
    int fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(folder);
    if (fd < 0)
        return errno;
    int rc = fsync(fd) == 0 || errno == EINVAL || errno == ENOTSUP ? 0 : errno;
    close(fd);
    return rc;
}

int warmcal_table_write(const warmcal_table *t, const char *path, warmcal_error *err)
{
    if (!t || !path || !path[0])
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "table_write: bad argument");
    int rc = warmcal_table_validate(t, path, err);
    if (rc)
        return rc;
    json_t *root = table_json(t);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(root);
    size_t path_len = strlen(path);
    char *tmp = text ? malloc(path_len + sizeof ".tmp-XXXXXX") : NULL;
    if (!tmp) {
        free(text);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "out of memory");
    }
    memcpy(tmp, path, path_len);
    memcpy(tmp + path_len, ".tmp-XXXXXX", sizeof ".tmp-XXXXXX");

    const char *step = "cannot create a temporary file beside it";
    int fd = mkstemp(tmp), e = 0;
    if (fd < 0) {
        e = errno;
        goto fail;
    }
    /* mkstemp makes the file private; a table is meant to be read by the
     * servers, so it gets the old table's permissions, or rw-r--r--. */
    struct stat st;
    mode_t mode = stat(path, &st) == 0 && S_ISREG(st.st_mode) ? st.st_mode & 07777 : 0644;
    step = "cannot write the temporary file";
    if (fchmod(fd, mode) != 0 || write_all(fd, text, strlen(text)) != 0 || write_all(fd, "\n", 1) != 0)
        goto fail_errno;
    step = "cannot flush the temporary file to disk";
    if (fsync(fd) != 0)
        goto fail_errno;
    rc = close(fd);
    fd = -1;
    if (rc != 0)
        goto fail_errno;
    step = "cannot rename the temporary file over it";
    if (rename(tmp, path) != 0)
        goto fail_errno;
    free(text);
    free(tmp);
    if ((e = sync_folder(path)) != 0)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                 "written, but flushing its folder to disk failed: %s", strerror(e));
    return WARMCAL_OK;

fail_errno:
    e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
fail:
    free(text);
    free(tmp);
    return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "%s: %s (the old file is unchanged)",
                             step, strerror(e));
}

/* --- evaluation --------------------------------------------------------------- */

static int eval_at(const warmcal_estimate *e, warmcal_above_policy above, uint64_t tokens,
                   const char *where, uint64_t *bytes, warmcal_error *err)
{
    double v = 0;
    switch (warmcal__estimate_bytes(e, above, tokens, NULL, bytes, &v)) {
    case WARMCAL__EVAL_OK: return WARMCAL_OK;
    case WARMCAL__EVAL_ZERO_TOKENS:
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where,
                                 "tokens must be at least 1, found 0");
    case WARMCAL__EVAL_ABOVE:
        return warmcal_error_set(err, WARMCAL_E_RANGE, NULL, where,
                                 "%" PRIu64 " tokens is above the calibrated range %" PRIu64
                                 "..%" PRIu64 " tokens (policy: refuse)",
                                 tokens, e->tokens_min, e->tokens_max);
    case WARMCAL__EVAL_NO_KNOTS:
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where, "envelope without knots");
    case WARMCAL__EVAL_BAD_FORM:
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where, "unknown model form %d",
                                 (int)e->form);
    default:
        return warmcal_error_set(err, WARMCAL_E_RANGE, NULL, where,
                                 "the estimate at %" PRIu64 " tokens (%g bytes) does not fit in "
                                 "64 bits",
                                 tokens, v);
    }
}

int warmcal_estimate_eval(const warmcal_estimate *e, warmcal_above_policy above, uint64_t tokens,
                          uint64_t *bytes, warmcal_error *err)
{
    if (!e || !bytes)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "estimate_eval: bad argument");
    /* the entry is only named when there is an error to name it in: the
     * gate evaluates thousands of shapes per decision */
    if (!err)
        return eval_at(e, above, tokens, NULL, bytes, NULL);
    char where[WHERE_LEN];
    snprintf(where, sizeof where, "rank %d, label %s", e->rank, e->label);
    return eval_at(e, above, tokens, where, bytes, err);
}

const warmcal_estimate *warmcal_table_find(const warmcal_table *t, int rank, const char *label)
{
    if (!t || !label)
        return NULL;
    const warmcal_estimate *any = NULL;
    for (size_t i = 0; i < t->n_estimates; i++) {
        const warmcal_estimate *e = &t->estimates[i];
        if (strcmp(e->label, label) != 0)
            continue;
        if (e->rank == rank)
            return e;
        if (e->rank == WARMCAL_TABLE_ANY_RANK && !any)
            any = e;
    }
    return any;
}

int warmcal_table_estimate(const warmcal_table *t, int rank, const char *label, uint64_t tokens,
                           uint32_t batch, uint64_t *bytes, warmcal_error *err)
{
    (void)batch; /* version 1 estimates depend on tokens only */
    if (!t || !label || !bytes)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "table_estimate: bad argument");
    char where[WHERE_LEN];
    snprintf(where, sizeof where, "rank %d, label %.40s", rank, label);
    if (rank < WARMCAL_TABLE_ANY_RANK)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where,
                                 "expected rank -1 (any) or >= 0");
    if (tokens == 0)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where,
                                 "tokens must be at least 1, found 0");
    const warmcal_estimate *e = warmcal_table_find(t, rank, label);
    if (!e)
        return warmcal_error_set(err, WARMCAL_E_FIELD, NULL, where,
                                 rank == WARMCAL_TABLE_ANY_RANK
                                     ? "no entry in the table (no any-rank entry for this label)"
                                     : "no entry in the table (neither for this rank nor for any "
                                       "rank)");
    return eval_at(e, t->above_range, tokens, where, bytes, err);
}

/* --- SHA-256 ------------------------------------------------------------------ */

int warmcal_sha256_file(const char *path, char hex[65], warmcal_error *err)
{
    if (!path || !hex)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "sha256_file: bad argument");
    int fd;
    off_t size;
    int rc = open_regular(path, &fd, &size, err);
    if (rc)
        return rc;
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    static const size_t chunk = 1 << 16;
    uint8_t *buf = malloc(chunk);
    if (!buf) {
        close(fd);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "out of memory");
    }
    for (;;) {
        ssize_t got = read_retry(fd, buf, chunk);
        if (got < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot read: %s", strerror(e));
        }
        if (got == 0)
            break;
        sha256_update(&ctx, (size_t)got, buf);
    }
    free(buf);
    close(fd);
    hex_digest(&ctx, hex);
    return WARMCAL_OK;
}
