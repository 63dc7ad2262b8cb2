/* Reading an estimate table: the JSON document through jansson, every field
 * checked and named on error (`estimates[3].tokens_max`), then the whole
 * table validated; the SHA-256 of the bytes parsed is kept for the gate. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/table.h"
#include "table_private.h"
#include "warmcal/json_kind.h"

#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <nettle/sha2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHERE_LEN WARMCAL_ERROR_WHERE_LEN
#define TWO_POW_63 9223372036854775808.0

typedef struct {
    const char *file;
    /* Second pass over a file jansson refused for an integer beyond 64 bits:
     * integers were decoded as reals, so that the field holding the too-big
     * one can be named. Integral reals then stand for integers. */
    int ints_as_reals;
    warmcal_error *err;
} reader;

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

/* A field of the file that is wrong: WARMCAL_E_FIELD, named by its path. A
 * macro, so that the code it returns stays in the compiler's sight (see
 * warmcal/error.h): a variadic function is never inlined. */
#define field_error(r, where, ...) \
    warmcal_error_set((r)->err, WARMCAL_E_FIELD, (r)->file, (where), __VA_ARGS__)

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
        return field_error(r, where, "expected %s, found %s", expect, warmcal_json_kind(v));
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
        return field_error(r, where, "expected %s, found %s", expect, warmcal_json_kind(v));
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
        return field_error(r, where, "expected %s, found %s", expect, warmcal_json_kind(v));
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
        if (strcmp(form, warmcal_form_name((warmcal_form)k)) == 0)
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
                               json_is_array(pair) ? "an array of another length"
                                                   : warmcal_json_kind(pair));
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
        return field_error(r, base, "expected an object, found %s", warmcal_json_kind(entry));
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
    /* calibration.device_free_min is optional, the object holding it too:
     * tables written before it existed read as "not sampled" (0) */
    if (json_object_get(entry, "calibration")) {
        if ((rc = member(r, entry, base, "calibration", JSON_OBJECT, "an object", &o)))
            return rc;
        join(sub, base, "calibration");
        if (json_object_get(o, "device_free_min") &&
            (rc = get_u64(r, o, sub, "device_free_min", 0, &e->calibration.device_free_min)))
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
            return field_error(r, base, "expected an object, found %s", warmcal_json_kind(s));
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
                                 "expected a JSON object, found %s", warmcal_json_kind(root));
    json_t *v = json_object_get(root, "format");
    if (!v)
        return warmcal_error_set(r->err, WARMCAL_E_FORMAT, r->file, "format",
                                 "missing (expected \"%s\")", WARMCAL_TABLE_FORMAT);
    if (!json_is_string(v) || strcmp(json_string_value(v), WARMCAL_TABLE_FORMAT) != 0)
        return warmcal_error_set(r->err, WARMCAL_E_FORMAT, r->file, "format",
                                 "expected \"%s\", found %s%.40s%s: not an estimate table",
                                 WARMCAL_TABLE_FORMAT, json_is_string(v) ? "\"" : "",
                                 json_is_string(v) ? json_string_value(v) : warmcal_json_kind(v),
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

/* Whether a load of data that failed ran out of memory. jansson 2.14 seldom
 * says so: a failed allocation mostly leaves no error at all, or shows as a
 * syntax error ("invalid token near '"label"'") in a text that has none. */
static int load_ran_out_of_memory(const json_error_t *jerr, const char *data, size_t len)
{
    if (jerr->text[0] == '\0') /* every error jansson finds in a text has words */
        return 1;
    switch (json_error_code(jerr)) {
    case json_error_out_of_memory: return 1;
    case json_error_invalid_syntax:
    case json_error_premature_end_of_input:
    case json_error_end_of_input_expected: return warmcal__json_well_formed(data, len);
    default: return 0;
    }
}

/* The table in data[0..len), as read from `file`; every error names it. */
int warmcal__table_parse(const char *data, size_t len, const char *file, warmcal_table **out,
                         warmcal_error *err)
{
    *out = NULL;
    json_error_t jerr;
    memset(&jerr, 0, sizeof jerr); /* jansson may leave it as it was */
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &jerr);
    reader r = {file, 0, err};
    if (!root && json_error_code(&jerr) == json_error_numeric_overflow) {
        /* jansson holds integers in 64 signed bits and refuses larger ones;
         * decoded again as reals, the field holding it can be named. */
        json_t *again = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, NULL);
        if (again && !warmcal__json_same_as_text(again, data, len)) {
            json_decref(again);
            return warmcal_error_set(err, WARMCAL_E_NOMEM, file, NULL,
                                     "out of memory while parsing the table");
        }
        if (again) {
            warmcal_error found;
            warmcal_error_clear(&found);
            reader r2 = {file, 1, &found};
            warmcal_table *t = NULL;
            if (read_table(&r2, again, &t) != WARMCAL_OK && found.where[0]) {
                json_decref(again);
                return warmcal_error_set(err, found.code, file, found.where, "%s", found.text);
            }
            warmcal_table_free(t);
            json_decref(again);
        }
    }
    int nomem = root ? !warmcal__json_same_as_text(root, data, len)
                     : load_ran_out_of_memory(&jerr, data, len);
    if (nomem) {
        json_decref(root);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, file, NULL,
                                 "out of memory while parsing the table");
    }
    if (!root) {
        char where[48];
        snprintf(where, sizeof where, "line %d, column %d", jerr.line, jerr.column);
        int overflow = json_error_code(&jerr) == json_error_numeric_overflow;
        return warmcal_error_set(err, WARMCAL_E_FORMAT, file, where, "%s: %s",
                                 overflow ? "number out of range" : "not valid JSON", jerr.text);
    }
    int rc = read_table(&r, root, out);
    json_decref(root);
    return rc;
}

int warmcal_table_read(const char *path, warmcal_table **out, warmcal_error *err)
{
    if (out)
        *out = NULL;
    if (!path || !out)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "table_read: bad argument");
    char *data = NULL;
    size_t len = 0;
    int rc = warmcal__slurp(path, &data, &len, err);
    if (rc)
        return rc;
    char digest[65];
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    sha256_update(&ctx, len, (const uint8_t *)data);
    warmcal__hex_digest(&ctx, digest);
    rc = warmcal__table_parse(data, len, path, out, err);
    free(data);
    if (rc == WARMCAL_OK)
        memcpy((*out)->sha256, digest, sizeof digest);
    return rc;
}
