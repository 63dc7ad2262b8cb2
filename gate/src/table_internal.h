/* Inside the gate library only: an estimate's evaluation, inline, so the
 * gate's loop over thousands of shapes per decision compiles it in place;
 * warmcal_estimate_eval (table.c) is the same arithmetic with its errors in
 * words. */
#ifndef WARMCAL_TABLE_INTERNAL_H
#define WARMCAL_TABLE_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "warmcal/table.h"

/* Why an estimate gave no bytes (table.c words each one). */
enum {
    WARMCAL__EVAL_OK = 0,
    WARMCAL__EVAL_ZERO_TOKENS, /* tokens must be at least 1 */
    WARMCAL__EVAL_ABOVE,       /* above the calibrated range under refuse */
    WARMCAL__EVAL_NO_KNOTS,    /* a malformed envelope */
    WARMCAL__EVAL_BAD_FORM,    /* an unknown form */
    WARMCAL__EVAL_TOO_BIG      /* beyond 64 bits (or not a number) */
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
        double x = (double)at[k], v;
        switch (e->form) {
        case WARMCAL_FORM_LINEAR: v = e->coef[0] + e->coef[1] * x; break;
        case WARMCAL_FORM_QUADRATIC: v = e->coef[0] + x * (e->coef[1] + x * e->coef[2]); break;
        case WARMCAL_FORM_ENVELOPE:
            if (e->n_knots < 2 || !e->knot_tokens || !e->knot_bytes)
                return WARMCAL__EVAL_NO_KNOTS;
            v = warmcal__envelope_at(e, at[k], k == 0 ? seg : NULL);
            break;
        default: return WARMCAL__EVAL_BAD_FORM;
        }
        m = k == 0 ? v : fmax(m, v);
    }
    double v = ceil((m > 0 ? m : 0) * (1.0 + e->margin.relative) + e->margin.total);
    *value = v;
    if (!(v < 18446744073709551616.0)) /* 2^64; NaN too */
        return WARMCAL__EVAL_TOO_BIG;
    *bytes = (uint64_t)v;
    return WARMCAL__EVAL_OK;
}

#endif
