/* Inside the gate library only: an estimate's evaluation and the choice of
 * the entry that serves a pass, inline, so the gate's loop over thousands of
 * shapes per decision compiles them in place; warmcal_estimate_eval and
 * warmcal_table_estimate (table_eval.c) are the same rule with its errors in
 * words. */
#ifndef WARMCAL_TABLE_INTERNAL_H
#define WARMCAL_TABLE_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "warmcal/table.h"

/* Why an estimate gave no bytes (table_eval.c words each one). */
enum {
    WARMCAL__EVAL_OK = 0,
    WARMCAL__EVAL_ZERO_TOKENS, /* tokens must be at least 1 */
    WARMCAL__EVAL_ABOVE,       /* above the calibrated range under refuse */
    WARMCAL__EVAL_NO_KNOTS,    /* a malformed envelope */
    WARMCAL__EVAL_BAD_FORM,    /* an unknown form */
    WARMCAL__EVAL_TOO_BIG,     /* beyond 64 bits (or not a number) */
    WARMCAL__EVAL_NO_ENTRY     /* no entry serves the rank and label (warmcal__need_at) */
};

/* The envelope at t: the first knot's bytes below it, linear interpolation
 * between knots, the last segment's line continued above the last knot.
 * *seg, when given, is the segment found last time: shape lists ascend, so
 * it or the next one usually holds t and the search is skipped; any value
 * is safe. Needs n_knots >= 2. */
static inline double warmcal__envelope_at(const warmcal_estimate *e, uint64_t t, size_t *seg)
{
    const uint64_t *kt = e->knot_tokens;
    const double *kb = e->knot_bytes;
    size_t n = e->n_knots;
    if (t <= kt[0])
        return kb[0];
    size_t i;
    if (t >= kt[n - 1]) {
        i = n - 2; /* the last segment, continued */
    } else if (seg && *seg < n - 1 && kt[*seg] <= t && t < kt[*seg + 1]) {
        i = *seg;
    } else if (seg && *seg < n - 2 && kt[*seg + 1] <= t && t < kt[*seg + 2]) {
        i = *seg + 1;
    } else {
        size_t lo = 0, hi = n - 1; /* kt[lo] <= t < kt[hi] */
        while (hi - lo > 1) {
            size_t mid = lo + (hi - lo) / 2;
            if (kt[mid] <= t)
                lo = mid;
            else
                hi = mid;
        }
        i = lo;
    }
    if (seg)
        *seg = i;
    double frac = (double)(t - kt[i]) / (double)(kt[i + 1] - kt[i]);
    return kb[i] + frac * (kb[i + 1] - kb[i]);
}

/* The model alone at t tokens: the form's value, before the range rule and
 * the margin (the one place that knows how each form is evaluated; the
 * estimator sizes margins with it through warmcal_estimate_model). seg: an
 * envelope search hint, or NULL. Returns WARMCAL__EVAL_OK, _NO_KNOTS or
 * _BAD_FORM. */
static inline int warmcal__model_at(const warmcal_estimate *e, uint64_t t, size_t *seg,
                                    double *value)
{
    double x = (double)t;
    switch (e->form) {
    case WARMCAL_FORM_LINEAR: *value = e->coef[0] + e->coef[1] * x; return WARMCAL__EVAL_OK;
    case WARMCAL_FORM_QUADRATIC:
        *value = e->coef[0] + x * (e->coef[1] + x * e->coef[2]);
        return WARMCAL__EVAL_OK;
    case WARMCAL_FORM_ENVELOPE:
        if (e->n_knots < 2 || !e->knot_tokens || !e->knot_bytes)
            return WARMCAL__EVAL_NO_KNOTS;
        *value = warmcal__envelope_at(e, t, seg);
        return WARMCAL__EVAL_OK;
    default: return WARMCAL__EVAL_BAD_FORM;
    }
}

/* The published bytes of estimate e at tokens: the model clamped below the
 * range, the above policy past it (extrapolating never below the value at
 * tokens_max), then the margin, rounded up. seg: an envelope search hint, or
 * NULL. Returns a WARMCAL__EVAL_ code; *value gets the unrounded figure. */
static inline int warmcal__estimate_bytes(const warmcal_estimate *e, warmcal_above_policy above,
                                          uint64_t tokens, size_t *seg, uint64_t *bytes,
                                          double *value)
{
    if (tokens == 0)
        return WARMCAL__EVAL_ZERO_TOKENS;
    uint64_t t = tokens < e->tokens_min ? e->tokens_min : tokens;
    if (t > e->tokens_max && above != WARMCAL_ABOVE_EXTRAPOLATE)
        return WARMCAL__EVAL_ABOVE;
    double m = 0;
    /* extrapolating, a form that bends down may not publish less than it
     * does at the top of the range: needs do not shrink with tokens */
    uint64_t at[2] = {t, e->tokens_max};
    for (int k = 0; k < (t > e->tokens_max ? 2 : 1); k++) {
        double v;
        int rc = warmcal__model_at(e, at[k], k == 0 ? seg : NULL, &v);
        if (rc != WARMCAL__EVAL_OK)
            return rc;
        m = k == 0 ? v : fmax(m, v);
    }
    double v = ceil((m > 0 ? m : 0) * (1.0 + e->margin.relative) + e->margin.total);
    *value = v;
    if (!(v < 18446744073709551616.0)) /* 2^64; NaN too */
        return WARMCAL__EVAL_TOO_BIG;
    *bytes = (uint64_t)v;
    return WARMCAL__EVAL_OK;
}

/* Which entry serves a pass of `tokens` on a rank, given the rank's own
 * entry for the label and the any-rank (-1) one (either may be NULL): the
 * rank's own, unless the pass lies above its calibrated range and the
 * any-rank entry's range reaches further. A rank that ran out of memory
 * during calibration ends its own range early, and the any-rank entry holds
 * the largest need any rank showed above it: the rank's lack of memory is
 * then the gate's reason, not the range. */
static inline const warmcal_estimate *warmcal__serving_entry(const warmcal_estimate *own,
                                                             const warmcal_estimate *any,
                                                             uint64_t tokens)
{
    if (own && any && tokens > own->tokens_max && any->tokens_max > own->tokens_max)
        return any;
    return own ? own : any;
}

/* The bytes e publishes for a pass of `tokens` (warmcal__estimate_bytes),
 * where e is the entry warmcal__serving_entry chose for a rank whose own
 * entry is `own` (may be NULL). When the any-rank entry serves above the
 * rank's own range, the result is never below what the rank's own entry
 * publishes at its tokens_max: needs do not shrink with tokens, whichever
 * entry carries them. */
static inline int warmcal__served_bytes(const warmcal_estimate *e, const warmcal_estimate *own,
                                        warmcal_above_policy above, uint64_t tokens, size_t *seg,
                                        uint64_t *bytes, double *value)
{
    int rc = warmcal__estimate_bytes(e, above, tokens, seg, bytes, value);
    if (rc != WARMCAL__EVAL_OK || !own || e == own)
        return rc;
    uint64_t at_top;
    double top_value = 0;
    rc = warmcal__estimate_bytes(own, WARMCAL_ABOVE_REFUSE, own->tokens_max, NULL, &at_top,
                                 &top_value);
    if (rc == WARMCAL__EVAL_TOO_BIG)
        *value = top_value;
    if (rc != WARMCAL__EVAL_OK)
        return rc;
    if (at_top > *bytes) {
        *bytes = at_top;
        *value = top_value;
    }
    return WARMCAL__EVAL_OK;
}

/* The bytes a pass of `tokens` needs on a rank whose entries for the label
 * are own and any (either may be NULL): the entry warmcal__serving_entry
 * picks, evaluated by warmcal__served_bytes. The one rule the gate decides
 * by and warmcal_table_max_tokens searches, so a budget and a decision
 * agree to the token. seg: the two entries' envelope search hints (own's,
 * any's), or NULL. Returns a WARMCAL__EVAL_ code (_NO_ENTRY when neither
 * entry exists). */
static inline int warmcal__need_at(const warmcal_estimate *own, const warmcal_estimate *any,
                                   warmcal_above_policy above, uint64_t tokens, size_t seg[2],
                                   uint64_t *bytes, double *value)
{
    const warmcal_estimate *e = warmcal__serving_entry(own, any, tokens);
    if (!e)
        return WARMCAL__EVAL_NO_ENTRY;
    return warmcal__served_bytes(e, own, above, tokens, seg ? &seg[e != own] : NULL, bytes, value);
}

/* a + b, saturated at UINT64_MAX: a need plus a reserve, as the gate adds them. */
static inline uint64_t warmcal__add_sat(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* The rank's own entry for label (*own) and the any-rank one (*any), NULL
 * where there is none; for rank -1 both are the any-rank entry. */
static inline void warmcal__find_entries(const warmcal_table *t, int rank, const char *label,
                                         const warmcal_estimate **own,
                                         const warmcal_estimate **any)
{
    *own = *any = NULL;
    for (size_t i = 0; i < t->n_estimates && !(*own && *any); i++) {
        const warmcal_estimate *e = &t->estimates[i];
        if (strcmp(e->label, label) != 0)
            continue;
        if (e->rank == rank && !*own)
            *own = e;
        if (e->rank == WARMCAL_TABLE_ANY_RANK && !*any)
            *any = e;
    }
}

#endif
