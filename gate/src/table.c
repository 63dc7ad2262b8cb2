/* The estimate table in memory (see warmcal/table.h and docs/formats.md,
 * "Estimate table"): names, creation, adding entries and sources. Reading,
 * validation, writing, evaluation and file I/O each have their own file
 * (table_read.c, table_validate.c, table_write.c, table_eval.c, table_file.c). */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/table.h"
#include "warmcal/units.h"
#include "table_private.h"
#include "warmcal/text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHERE_LEN WARMCAL_ERROR_WHERE_LEN

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
    if (warmcal__check_estimate(e, i, NULL, &found))
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
    if (strlen(name) >= sizeof s.name || !name[0] || !warmcal_utf8_valid(name))
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
    if (warmcal__check_sha256(s.sha256, NULL, where, &found))
        return as_inval(err, &found);
    warmcal_table_source *grown = realloc(t->sources, (t->n_sources + 1) * sizeof *grown);
    if (!grown)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "out of memory");
    grown[t->n_sources] = s;
    t->sources = grown;
    t->n_sources++;
    return WARMCAL_OK;
}
