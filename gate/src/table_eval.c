/* Evaluating an estimate table: the published bytes of an entry at a token
 * count, in words on error. The arithmetic itself is table_internal.h's, the
 * one rule shared with the gate's inline loop and the estimator. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/table.h"
#include "table_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define WHERE_LEN WARMCAL_ERROR_WHERE_LEN

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
