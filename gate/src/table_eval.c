/* Evaluating an estimate table: the published bytes of an entry at a token
 * count, in words on error. The arithmetic itself is table_internal.h's, the
 * one rule shared with the gate's inline loop and the estimator. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/table.h"
#include "table_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define WHERE_LEN WARMCAL_ERROR_WHERE_LEN

/* e's bytes at tokens, for a rank whose own entry is own (NULL: e alone). */
static int eval_at(const warmcal_estimate *e, const warmcal_estimate *own,
                   warmcal_above_policy above, uint64_t tokens, const char *where, uint64_t *bytes,
                   warmcal_error *err)
{
    double v = 0;
    switch (warmcal__served_bytes(e, own, above, tokens, NULL, bytes, &v)) {
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
        return warmcal_error_set(err, WARMCAL_E_OVERFLOW, NULL, where,
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
        return eval_at(e, NULL, above, tokens, NULL, bytes, NULL);
    char where[WHERE_LEN];
    snprintf(where, sizeof where, "rank %d, label %s", e->rank, e->label);
    return eval_at(e, NULL, above, tokens, where, bytes, err);
}

int warmcal_estimate_model(const warmcal_estimate *e, uint64_t tokens, double *bytes,
                           warmcal_error *err)
{
    if (!e || !bytes)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "estimate_model: bad argument");
    switch (warmcal__model_at(e, tokens, NULL, bytes)) {
    case WARMCAL__EVAL_OK: return WARMCAL_OK;
    case WARMCAL__EVAL_NO_KNOTS:
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "envelope without knots");
    default:
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "unknown model form %d",
                                 (int)e->form);
    }
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

const warmcal_estimate *warmcal_table_find_for(const warmcal_table *t, int rank, const char *label,
                                               uint64_t tokens)
{
    if (!t || !label)
        return NULL;
    const warmcal_estimate *own, *any;
    warmcal__find_entries(t, rank, label, &own, &any);
    return warmcal__serving_entry(own, any, tokens);
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
    const warmcal_estimate *own, *any;
    warmcal__find_entries(t, rank, label, &own, &any);
    const warmcal_estimate *e = warmcal__serving_entry(own, any, tokens);
    if (!e)
        return warmcal_error_set(err, WARMCAL_E_FIELD, NULL, where,
                                 rank == WARMCAL_TABLE_ANY_RANK
                                     ? "no entry in the table (no any-rank entry for this label)"
                                     : "no entry in the table (neither for this rank nor for any "
                                       "rank)");
    return eval_at(e, own, t->above_range, tokens, where, bytes, err);
}

/* The token counts where an entry's published bytes must be checked for a
 * fall inside its range: the ends and, for a quadratic whose vertex lies
 * inside, the whole tokens on either side of the vertex. A linear model and
 * an envelope (non-decreasing knots, validated) are monotone between the
 * ends; a quadratic is monotone on each side of its vertex. Ascending;
 * returns how many. */
static size_t check_points(const warmcal_estimate *e, uint64_t at[4])
{
    size_t n = 0;
    at[n++] = e->tokens_min;
    if (e->form == WARMCAL_FORM_QUADRATIC && e->coef[2] != 0) {
        double vertex = -e->coef[1] / (2.0 * e->coef[2]);
        if (vertex > (double)e->tokens_min && vertex < (double)e->tokens_max) {
            at[n++] = (uint64_t)floor(vertex);
            at[n++] = (uint64_t)ceil(vertex);
        }
    }
    at[n++] = e->tokens_max;
    return n;
}

int warmcal_table_check_estimates(const warmcal_table *t, const char *path, warmcal_error *err)
{
    if (!t)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "table_check: bad argument");
    for (size_t i = 0; i < t->n_estimates; i++) {
        const warmcal_estimate *e = &t->estimates[i];
        char where[WHERE_LEN];
        snprintf(where, sizeof where, "estimates[%zu].model", i);
        uint64_t at[4], bytes[4];
        size_t n = check_points(e, at);
        for (size_t k = 0; k < n; k++) {
            double value = 0;
            int rc =
                warmcal__estimate_bytes(e, WARMCAL_ABOVE_REFUSE, at[k], NULL, &bytes[k], &value);
            if (rc == WARMCAL__EVAL_TOO_BIG)
                return warmcal_error_set(err, WARMCAL_E_FIELD, path, where,
                                         "the estimate at %" PRIu64 " tokens (%g bytes) does not "
                                         "fit in 64 bits",
                                         at[k], value);
            if (rc != WARMCAL__EVAL_OK) /* validation refuses these first */
                return warmcal_error_set(err, WARMCAL_E_FIELD, path, where,
                                         "cannot be evaluated at %" PRIu64 " tokens", at[k]);
            if (k > 0 && bytes[k] < bytes[k - 1])
                return warmcal_error_set(err, WARMCAL_E_FIELD, path, where,
                                         "the estimate falls from %" PRIu64 " bytes at %" PRIu64
                                         " tokens to %" PRIu64 " bytes at %" PRIu64
                                         " tokens: needs may not shrink with tokens inside the "
                                         "calibrated range",
                                         bytes[k - 1], at[k - 1], bytes[k], at[k]);
        }
    }
    return WARMCAL_OK;
}
