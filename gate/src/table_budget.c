/* Token budgets: the largest pass a rank's free memory allows by the table
 * (warmcal_table_max_tokens). Searched on the very rule the gate decides
 * by (warmcal__need_at), so `warmcal plan`, warmcal_gate_max_tokens and a
 * decision agree to the token. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/table.h"
#include "table_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* One rank's question: its entries for the label, the policy, its memory. */
typedef struct {
    const warmcal_estimate *own, *any;
    warmcal_above_policy above;
    uint64_t free_bytes, reserve;
} budget_query;

/* Whether a pass of t tokens fits (WARMCAL__EVAL_OK with *fit), and if not,
 * the warmcal_budget_limit it meets in *limit. Returns the evaluation's
 * code; only a malformed entry (never in a validated table) gives another
 * than OK, _ABOVE or _TOO_BIG. */
static int fits(const budget_query *q, uint64_t t, int *fit, int *limit)
{
    uint64_t need = 0;
    double value = 0;
    int rc = warmcal__need_at(q->own, q->any, q->above, t, NULL, &need, &value);
    *fit = 0;
    if (rc == WARMCAL__EVAL_ABOVE) {
        *limit = WARMCAL_BUDGET_RANGE;
        return WARMCAL__EVAL_OK;
    }
    if (rc == WARMCAL__EVAL_TOO_BIG) {
        *limit = WARMCAL_BUDGET_TOO_LARGE;
        return WARMCAL__EVAL_OK;
    }
    if (rc != WARMCAL__EVAL_OK)
        return rc;
    /* the gate's test, saturation included: headroom = free - (need + reserve) >= 0 */
    *fit = q->free_bytes >= warmcal__add_sat(need, q->reserve);
    *limit = WARMCAL_BUDGET_MEMORY;
    return WARMCAL__EVAL_OK;
}

static void add_break(uint64_t *at, size_t *n, uint64_t b)
{
    if (b >= 1 && b <= WARMCAL_TABLE_TOKENS_MAX)
        at[(*n)++] = b;
}

/* Where the need served by entry e may turn or jump: its range's ends, the
 * first token above it (the any-rank entry or a refusal takes over there),
 * and a quadratic's whole tokens around its vertex. Between two such
 * points the published bytes are monotone: a linear model and an envelope
 * (non-decreasing knots, validated) are; a quadratic is on each side of its
 * vertex; the clamp below tokens_min is flat; extrapolating takes the max
 * of the model and its value at tokens_max, monotone where the model is;
 * the margin and the rounding keep the order. Adds up to 5 points. */
static void entry_breaks(const warmcal_estimate *e, uint64_t *at, size_t *n)
{
    if (!e)
        return;
    add_break(at, n, e->tokens_min);
    add_break(at, n, e->tokens_max);
    if (e->tokens_max < UINT64_MAX)
        add_break(at, n, e->tokens_max + 1);
    if (e->form == WARMCAL_FORM_QUADRATIC && e->coef[2] != 0) {
        double vertex = -e->coef[1] / (2.0 * e->coef[2]);
        if (vertex >= 1 && vertex <= (double)WARMCAL_TABLE_TOKENS_MAX) {
            add_break(at, n, (uint64_t)floor(vertex));
            add_break(at, n, (uint64_t)ceil(vertex));
        }
    }
}

static int ascending(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The budget of q: the token counts to try are 1, the bound, and each
 * break point with the token before it, so that two neighbours in that
 * list are either adjacent counts or the two ends of one monotone piece.
 * Walking them upwards, every pass up to the last one that fits fits too;
 * at the first that does not, the piece before it rises (a falling piece
 * whose start fits cannot fail at its end), so the largest count that fits
 * in it is found by bisection. */
static int search(const budget_query *q, uint64_t *tokens, int *limit)
{
    uint64_t at[2 * 10 + 2];
    size_t n = 0, m = 0;
    uint64_t breaks[10];
    entry_breaks(q->own, breaks, &m);
    entry_breaks(q->any, breaks, &m);
    at[n++] = 1;
    at[n++] = WARMCAL_TABLE_TOKENS_MAX;
    for (size_t i = 0; i < m; i++) {
        at[n++] = breaks[i];
        add_break(at, &n, breaks[i] - 1);
    }
    qsort(at, n, sizeof *at, ascending);

    uint64_t good = 0; /* every pass of 1..good tokens fits */
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && at[i] == at[i - 1])
            continue;
        int fit, why = WARMCAL_BUDGET_MEMORY;
        int rc = fits(q, at[i], &fit, &why);
        if (rc != WARMCAL__EVAL_OK)
            return rc;
        if (fit) {
            good = at[i];
            continue;
        }
        uint64_t bad = at[i]; /* good fits (or is 0, no pass), bad does not */
        while (bad - good > 1) {
            uint64_t mid = good + (bad - good) / 2;
            int mid_why = why;
            if ((rc = fits(q, mid, &fit, &mid_why)) != WARMCAL__EVAL_OK)
                return rc;
            if (fit) {
                good = mid;
            } else {
                bad = mid;
                why = mid_why;
            }
        }
        *tokens = good;
        *limit = why;
        return WARMCAL__EVAL_OK;
    }
    *tokens = good; /* the bound itself */
    *limit = WARMCAL_BUDGET_BOUND;
    return WARMCAL__EVAL_OK;
}

int warmcal_table_max_tokens(const warmcal_table *t, int rank, const char *label, uint32_t batch,
                             int above_range, uint64_t free_bytes, uint64_t reserve,
                             uint64_t *tokens, int *limit, warmcal_error *err)
{
    (void)batch; /* version 1 estimates depend on tokens only */
    int unused;
    if (!limit)
        limit = &unused;
    if (!t || !label || !tokens)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "table_max_tokens: bad argument");
    *tokens = 0;
    *limit = WARMCAL_BUDGET_NO_ESTIMATE;
    char where[WARMCAL_ERROR_WHERE_LEN];
    snprintf(where, sizeof where, "rank %d, label %.40s", rank, label);
    if (rank < WARMCAL_TABLE_ANY_RANK)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where,
                                 "expected rank -1 (any) or >= 0");
    if (above_range < -1 || above_range > WARMCAL_ABOVE_EXTRAPOLATE)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where,
                                 "above_range must be -1 (the table's policy), refuse or "
                                 "extrapolate, found %d",
                                 above_range);
    budget_query q = {.above = above_range >= 0 ? (warmcal_above_policy)above_range
                                                : t->above_range,
                      .free_bytes = free_bytes,
                      .reserve = reserve};
    warmcal__find_entries(t, rank, label, &q.own, &q.any);
    if (!q.own && !q.any)
        return warmcal_error_set(err, WARMCAL_E_FIELD, NULL, where,
                                 rank == WARMCAL_TABLE_ANY_RANK
                                     ? "no entry in the table (no any-rank entry for this label)"
                                     : "no entry in the table (neither for this rank nor for any "
                                       "rank)");
    int rc = search(&q, tokens, limit);
    if (rc == WARMCAL__EVAL_OK)
        return WARMCAL_OK;
    *tokens = 0;
    *limit = WARMCAL_BUDGET_NO_ESTIMATE;
    return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where,
                             rc == WARMCAL__EVAL_NO_KNOTS ? "envelope without knots"
                                                          : "unknown model form");
}

const char *warmcal_budget_limit_name(int limit)
{
    switch (limit) {
    case WARMCAL_BUDGET_BOUND: return "search bound";
    case WARMCAL_BUDGET_MEMORY: return "low memory";
    case WARMCAL_BUDGET_RANGE: return "outside the calibrated range";
    case WARMCAL_BUDGET_NO_ESTIMATE: return "no estimate";
    case WARMCAL_BUDGET_TOO_LARGE: return "estimate too large";
    default: return "?";
    }
}
