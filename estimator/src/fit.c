/* Fitting (see warmcal/estimator.h and docs/methodology.md). The token axis
 * is scaled to [0, 1] before any least squares, leave-one-out errors of the
 * regressions come from their leverages (r_i / (1 - h_ii), no refits), and
 * the envelope's leave-one-out prediction is the interpolation between a
 * point's neighbours, so a fit costs O(n log n) whatever the point count. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/estimator.h"
#include "warmcal/lstsq.h"
#include "warmcal/text.h"

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_GRANULARITY (2ull << 20)
#define DEFAULT_PARSIMONY 0.10
/* token counts are fitted as doubles: the trace bound, far below 2^53, exact */
#define MAX_TOKENS ((double)WARMCAL_TRACE_TOKENS_MAX)

static void resolve_options(const warmcal_fit_options *in, warmcal_fit_options *o)
{
    memset(o, 0, sizeof *o);
    if (in)
        *o = *in;
    if (!o->granularity)
        o->granularity = DEFAULT_GRANULARITY;
    if (!(o->parsimony > 0 && o->parsimony < 1))
        o->parsimony = DEFAULT_PARSIMONY;
}

static uint64_t add_saturated(uint64_t a, uint64_t b)
{
    return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

uint64_t warmcal_phase_need(const warmcal_phase *p)
{
    uint64_t need = p->live_peak - p->live_begin;
    if (p->device_free_begin == WARMCAL_FREE_UNKNOWN || p->device_free_end == WARMCAL_FREE_UNKNOWN)
        return need;
    /* Memory taken outside what the source accounts for = the fall of device
     * free memory less the growth of what it accounts for, compared as
     * (free_begin + accounted_begin) against (free_end + accounted_end) so
     * that no difference goes negative. A caching allocator (the torch
     * source: reserved_* set) accounts for its whole reservation: it keeps
     * what a pass freed, and a cache it gives back during the phase would
     * otherwise hide memory taken beside it. Without one, the live bytes. */
    int cache = p->reserved_begin || p->reserved_end;
    uint64_t before = p->device_free_begin, after = p->device_free_end;
    if (cache) {
        before = add_saturated(before, p->reserved_begin);
        after = add_saturated(after, p->reserved_end);
    } else if (p->live_end > p->live_begin) {
        after = add_saturated(after, p->live_end - p->live_begin);
    }
    if (before > after)
        need = add_saturated(need, before - after);
    return need;
}

typedef struct {
    double t, y;
} point;

static int by_t(const void *a, const void *b)
{
    double x = ((const point *)a)->t, z = ((const point *)b)->t;
    return (x > z) - (x < z);
}

/* --- regressions ------------------------------------------------------------ */

/* Leverages h_ii of the (column-scaled) design x (n x p, row-major): with
 * X = QR, h_ii = |R^-T x_i|^2. */
static int leverages(const double *x, size_t n, size_t p, double *h)
{
    double *a = malloc(n * p * sizeof *a), scale[3], tau[3];
    if (!a)
        return WARMCAL_E_NOMEM;
    for (size_t j = 0; j < p; j++) {
        scale[j] = 0;
        for (size_t i = 0; i < n; i++)
            scale[j] = fmax(scale[j], fabs(x[i * p + j]));
        if (scale[j] == 0)
            scale[j] = 1;
        for (size_t i = 0; i < n; i++)
            a[j * n + i] = x[i * p + j] / scale[j];
    }
    lapack_int info = LAPACKE_dgeqrf(LAPACK_COL_MAJOR, (lapack_int)n, (lapack_int)p, a,
                                     (lapack_int)n, tau);
    int rc = info == 0 ? WARMCAL_OK : WARMCAL_E_INVAL;
    for (size_t i = 0; rc == WARMCAL_OK && i < n; i++) {
        double z[3], sum = 0;
        for (size_t j = 0; j < p; j++) { /* forward substitution with R^T */
            double v = x[i * p + j] / scale[j];
            for (size_t k = 0; k < j; k++)
                v -= a[j * n + k] * z[k];
            double r = a[j * n + j];
            if (r == 0) {
                rc = WARMCAL_E_INVAL;
                break;
            }
            z[j] = v / r;
            sum += z[j] * z[j];
        }
        h[i] = sum;
    }
    free(a);
    return rc;
}

/* Polynomial fit of degree p-1 on s = t / tmax. Fills the coefficients in
 * bytes per token^k, the candidate and each point's leave-one-out prediction
 * y_i - r_i / (1 - h_ii); returns non-zero when the form cannot be fitted
 * here (too few points, singular). */
static int fit_polynomial(const double *t, const double *y, size_t n, size_t p, double tmax,
                          double coef[3], warmcal_candidate *cand, double *loo_pred)
{
    memset(cand, 0, sizeof *cand);
    double *x = malloc(n * p * sizeof *x), *h = malloc(n * sizeof *h);
    int rc = x && h ? WARMCAL_OK : WARMCAL_E_NOMEM;
    for (size_t i = 0; rc == WARMCAL_OK && i < n; i++) {
        double s = t[i] / tmax, v = 1;
        for (size_t j = 0; j < p; j++, v *= s)
            x[i * p + j] = v;
    }
    double beta[3] = {0};
    warmcal_error sub = {0};
    if (rc == WARMCAL_OK)
        rc = warmcal_lstsq(x, y, n, p, beta, NULL, &sub);
    if (rc == WARMCAL_OK)
        rc = leverages(x, n, p, h);
    double sum_loo = 0;
    for (size_t i = 0; rc == WARMCAL_OK && i < n; i++) {
        double f = 0;
        for (size_t j = 0; j < p; j++)
            f += beta[j] * x[i * p + j];
        if (h[i] > 1.0 - 1e-9) { /* the fit passes through this point whatever it is */
            rc = WARMCAL_E_INVAL;
            break;
        }
        double loo = (y[i] - f) / (1.0 - h[i]);
        loo_pred[i] = y[i] - loo;
        sum_loo += loo * loo;
    }
    free(x);
    free(h);
    if (rc)
        return rc;
    for (size_t j = 0; j < 3; j++)
        coef[j] = j < p ? beta[j] / pow(tmax, (double)j) : 0;
    cand->usable = 1;
    cand->loo_rmse = sqrt(sum_loo / (double)n);
    return WARMCAL_OK;
}

/* --- the envelope ------------------------------------------------------------ */

static double interpolate(double t, double t0, double y0, double t1, double y1)
{
    return t1 == t0 ? fmax(y0, y1) : y0 + (y1 - y0) * (t - t0) / (t1 - t0);
}

/* The running maximum over the distinct token counts (each at its largest
 * need): a monotone upper envelope through every point. Leave-one-out: each
 * distinct point's value predicted from the envelope of the others. pts gets
 * the distinct points (t, largest y) and loo their predictions; knots the
 * envelope, thinned to at most WARMCAL_TABLE_MAX_KNOTS. All malloc'd. */
typedef struct {
    point *pts;   /* distinct t, largest y */
    double *loo;  /* leave-one-out prediction at each */
    size_t m;
    point *knots;
    size_t n_knots;
} envelope;

static void envelope_free(envelope *env)
{
    free(env->pts);
    free(env->loo);
    free(env->knots);
    memset(env, 0, sizeof *env);
}

static int fit_envelope(const double *t, const double *y, size_t n, envelope *env,
                        warmcal_candidate *cand)
{
    memset(cand, 0, sizeof *cand);
    memset(env, 0, sizeof *env);
    point *p = malloc(n * sizeof *p);
    if (!p)
        return WARMCAL_E_NOMEM;
    for (size_t i = 0; i < n; i++)
        p[i] = (point){t[i], y[i]};
    qsort(p, n, sizeof *p, by_t);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (m && p[m - 1].t == p[i].t)
            p[m - 1].y = fmax(p[m - 1].y, p[i].y);
        else
            p[m++] = p[i];
    }
    env->pts = p;
    env->m = m;
    if (m < 3)
        return WARMCAL_E_INVAL;
    double *prefix = malloc(m * sizeof *prefix);
    env->loo = malloc(m * sizeof *env->loo);
    env->knots = malloc(m * sizeof *env->knots);
    if (!prefix || !env->loo || !env->knots) {
        free(prefix);
        return WARMCAL_E_NOMEM;
    }
    for (size_t k = 0; k < m; k++)
        prefix[k] = k ? fmax(prefix[k - 1], p[k].y) : p[k].y;
    double sum_loo = 0;
    for (size_t k = 0; k < m; k++) {
        double pred;
        if (k == 0)
            pred = p[1].y; /* below the first remaining knot: its value */
        else if (k == m - 1) /* beyond the last remaining knot: its segment's slope goes on */
            pred = interpolate(p[k].t, p[k - 2].t, prefix[k - 2], p[k - 1].t, prefix[k - 1]);
        else
            pred = interpolate(p[k].t, p[k - 1].t, prefix[k - 1], p[k + 1].t,
                               fmax(prefix[k - 1], p[k + 1].y));
        env->loo[k] = pred;
        sum_loo += (p[k].y - pred) * (p[k].y - pred);
    }
    /* knots: the running maximum, without interior knots on a flat run */
    size_t kept = 0;
    for (size_t k = 0; k < m; k++) {
        int flat = k > 0 && k + 1 < m && prefix[k - 1] == prefix[k] && prefix[k] == prefix[k + 1];
        if (!flat)
            env->knots[kept++] = (point){p[k].t, prefix[k]};
    }
    free(prefix);
    /* too many knots for a table: keep the last of every stride, which holds
     * the largest value of its stride (the envelope is non-decreasing); the
     * points between may then sit above the line, and the margin's residual
     * part covers them */
    if (kept > WARMCAL_TABLE_MAX_KNOTS) {
        size_t stride = (kept + WARMCAL_TABLE_MAX_KNOTS - 2) / (WARMCAL_TABLE_MAX_KNOTS - 1), out = 0;
        for (size_t k = 0; k < kept; k += stride) {
            size_t last = k + stride - 1 < kept ? k + stride - 1 : kept - 1;
            env->knots[out++] = env->knots[last];
        }
        if (env->knots[out - 1].t != env->knots[kept - 1].t)
            env->knots[out++] = env->knots[kept - 1];
        kept = out;
    }
    env->n_knots = kept;
    cand->usable = 1;
    cand->loo_rmse = sqrt(sum_loo / (double)m);
    return WARMCAL_OK;
}

/* --- the margin ------------------------------------------------------------ */

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, z = *(const double *)b;
    return (x > z) - (x < z);
}

/* Run-to-run noise grows with the pass (it rides on every buffer), so part
 * of the margin is relative: RELATIVE_SIGMAS robust standard deviations
 * (1.4826 x the median absolute relative leave-one-out error, which a bend
 * the model misses at one or two points cannot inflate) of how far a point
 * falls from its leave-one-out prediction, below which passes count as
 * RELATIVE_FLOOR_GRANULES granules so tiny passes do not dominate. The
 * absolute parts then make the estimate cover every point and every
 * leave-one-out prediction, and ABSOLUTE_SIGMAS leave-one-out RMSEs. */
#define RELATIVE_SIGMAS 3.0
#define RELATIVE_FLOOR_GRANULES 16.0
#define ABSOLUTE_SIGMAS 3.0
#define MAX_RELATIVE 1.0

static int set_margin(warmcal_estimate *e, const double *t, const double *y, size_t n,
                      const double *lt, const double *ly, const double *lp, size_t m, double granularity)
{
    double *rel = malloc(m * sizeof *rel), floor_bytes = RELATIVE_FLOOR_GRANULES * granularity;
    if (!rel)
        return WARMCAL_E_NOMEM;
    for (size_t j = 0; j < m; j++)
        rel[j] = fabs(ly[j] - lp[j]) / fmax(lp[j], floor_bytes);
    qsort(rel, m, sizeof *rel, by_value);
    double mad = m % 2 ? rel[m / 2] : 0.5 * (rel[m / 2 - 1] + rel[m / 2]);
    free(rel);
    /* capped: beyond it the fit is poor at small passes, and the absolute
     * parts below cover the points anyway */
    double scale = 1.0 + fmin(MAX_RELATIVE, RELATIVE_SIGMAS * 1.4826 * mad);
    double worst = 0, worst_loo = 0, sum2 = 0, max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        /* the model as the table evaluates it, at the token count it is
         * published for; e is complete, so this cannot fail */
        double f = 0;
        if (warmcal_estimate_model(e, (uint64_t)t[i], &f, NULL) != WARMCAL_OK)
            return WARMCAL_E_INVAL;
        double r = y[i] - f;
        worst = fmax(worst, y[i] - fmax(0, f) * scale);
        max_abs = fmax(max_abs, fabs(r));
        sum2 += r * r;
    }
    double sum_loo = 0;
    for (size_t j = 0; j < m; j++) {
        worst_loo = fmax(worst_loo, ly[j] - fmax(0, lp[j]) * scale);
        sum_loo += (ly[j] - lp[j]) * (ly[j] - lp[j]);
    }
    /* and noise that does not grow with the pass (allocator granules that
     * round either way): ABSOLUTE_SIGMAS leave-one-out RMSEs */
    worst_loo = fmax(worst_loo, ABSOLUTE_SIGMAS * sqrt(sum_loo / (double)m));
    (void)lt;
    e->fit.rmse = sqrt(sum2 / (double)n);
    e->fit.max_residual = max_abs;
    e->margin.relative = scale - 1.0;
    e->margin.residual = worst;
    e->margin.loo = fmax(0, worst_loo - worst);
    e->margin.granularity = granularity;
    e->margin.total = e->margin.residual + e->margin.loo + e->margin.granularity;
    return WARMCAL_OK;
}

/* --- choosing ------------------------------------------------------------- */

/* Needs do not shrink as tokens grow, and `warmcal check` refuses an entry
 * whose estimate falls inside its range: a polynomial may only be chosen when
 * its slope c1 + 2 c2 t, linear in t, is not negative at either end of
 * [tmin, tmax] (a quadratic turning down, a quadratic whose vertex lies
 * inside, a linear fit with a negative slope on flat data all fail it). The
 * envelope, a running maximum, never falls. */
static int never_falls(const double coef[3], double tmin, double tmax)
{
    return coef[1] + 2.0 * coef[2] * tmin >= 0 && coef[1] + 2.0 * coef[2] * tmax >= 0;
}

/* The last line of defence behind the choice: the fitted entry passes the
 * check `warmcal check` runs (published bytes within 64 bits, never falling
 * inside the range), so the fitter never writes a table that check refuses.
 * err gets the check's words without the table's entry index. */
static int check_entry(const warmcal_estimate *e, warmcal_error *err)
{
    warmcal_table one = {0};
    one.estimates = (warmcal_estimate *)e; /* read only */
    one.n_estimates = 1;
    return warmcal_table_check_estimates(&one, NULL, err);
}

int warmcal_fit_points(const double *t, const double *y, size_t n, const warmcal_fit_options *opts,
                       warmcal_estimate *out, warmcal_candidate cand_out[3], warmcal_error *err)
{
    if (!out || (n && (!t || !y)))
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "fit_points: bad argument");
    warmcal_fit_options o;
    resolve_options(opts, &o);
    memset(out, 0, sizeof *out);
    out->rank = WARMCAL_TABLE_ANY_RANK;
    double tmin = INFINITY, tmax = 0, ymax = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(t[i]) || !isfinite(y[i]) || t[i] <= 0 || y[i] < 0 || t[i] > MAX_TOKENS)
            return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                     "point %zu (%g tokens, %g bytes): tokens must be in 1..2^40 "
                                     "and bytes >= 0, both finite",
                                     i, t[i], y[i]);
        tmin = fmin(tmin, t[i]);
        tmax = fmax(tmax, t[i]);
        ymax = fmax(ymax, y[i]);
    }
    if (n < 3)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "%zu measured phase%s: at least 3 at 3 different token counts "
                                 "are needed to fit and check an estimate",
                                 n, n == 1 ? "" : "s");
    if (tmin == tmax)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "all %zu phases ran at %g tokens: nothing to fit a slope to", n, tmin);
    if (ymax == 0)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "every phase needed 0 bytes: no allocation was recorded (was the "
                                 "profiler attached?)");

    warmcal_candidate cand[3] = {{0}};
    double coef[2][3] = {{0}};
    double *loo[2] = {malloc(n * sizeof(double)), malloc(n * sizeof(double))};
    envelope env = {0};
    int rc = loo[0] && loo[1] ? fit_envelope(t, y, n, &env, &cand[WARMCAL_FORM_ENVELOPE]) : WARMCAL_E_NOMEM;
    if (rc == WARMCAL_E_INVAL)
        rc = warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                               "phases ran at only 2 different token counts: at least 3 are needed");
    for (size_t p = 2; rc == WARMCAL_OK && p <= 3; p++) {
        warmcal_candidate *c = &cand[p == 2 ? WARMCAL_FORM_LINEAR : WARMCAL_FORM_QUADRATIC];
        if (fit_polynomial(t, y, n, p, tmax, coef[p - 2], c, loo[p - 2]) == WARMCAL_E_NOMEM)
            rc = WARMCAL_E_NOMEM;
        c->never_falls = c->usable && never_falls(coef[p - 2], tmin, tmax);
    }
    cand[WARMCAL_FORM_ENVELOPE].never_falls = cand[WARMCAL_FORM_ENVELOPE].usable;
    if (rc == WARMCAL_E_NOMEM)
        warmcal_error_set(err, rc, NULL, NULL, "fit: out of memory");

    /* simplest first; a more complex form must earn its place; a form whose
     * estimate falls inside the range is never eligible */
    static const warmcal_form order[3] = {WARMCAL_FORM_LINEAR, WARMCAL_FORM_QUADRATIC,
                                          WARMCAL_FORM_ENVELOPE};
    int chosen = -1;
    for (int k = 0; rc == WARMCAL_OK && k < 3; k++) {
        warmcal_form f = order[k];
        if (cand[f].usable && cand[f].never_falls &&
            (chosen < 0 || cand[f].loo_rmse < (1.0 - o.parsimony) * cand[chosen].loo_rmse))
            chosen = (int)f;
    }
    if (rc == WARMCAL_OK) {
        out->form = (warmcal_form)chosen;
        out->tokens_min = (uint64_t)tmin;
        out->tokens_max = (uint64_t)tmax;
        out->fit.points = n;
        out->fit.loo_rmse = cand[chosen].loo_rmse;
        if (chosen == WARMCAL_FORM_ENVELOPE) {
            out->n_knots = env.n_knots;
            out->knot_tokens = malloc(env.n_knots * sizeof *out->knot_tokens);
            out->knot_bytes = malloc(env.n_knots * sizeof *out->knot_bytes);
            if (!out->knot_tokens || !out->knot_bytes)
                rc = warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "fit: out of memory");
            for (size_t k = 0; rc == WARMCAL_OK && k < env.n_knots; k++) {
                out->knot_tokens[k] = (uint64_t)env.knots[k].t;
                out->knot_bytes[k] = env.knots[k].y;
            }
        } else {
            memcpy(out->coef, coef[chosen == WARMCAL_FORM_LINEAR ? 0 : 1], sizeof out->coef);
        }
    }
    if (rc == WARMCAL_OK) {
        if (chosen == WARMCAL_FORM_ENVELOPE) {
            double *lt = malloc(env.m * sizeof *lt), *ly = malloc(env.m * sizeof *ly);
            rc = lt && ly ? WARMCAL_OK : WARMCAL_E_NOMEM;
            for (size_t j = 0; rc == WARMCAL_OK && j < env.m; j++) {
                lt[j] = env.pts[j].t;
                ly[j] = env.pts[j].y;
            }
            if (rc == WARMCAL_OK)
                rc = set_margin(out, t, y, n, lt, ly, env.loo, env.m, (double)o.granularity);
            free(lt);
            free(ly);
        } else {
            rc = set_margin(out, t, y, n, t, y, loo[chosen == WARMCAL_FORM_LINEAR ? 0 : 1], n,
                            (double)o.granularity);
        }
        if (rc)
            warmcal_error_set(err, rc, NULL, NULL, "fit: %s",
                              rc == WARMCAL_E_NOMEM ? "out of memory"
                                                    : "the fitted model cannot be evaluated");
    }
    if (rc == WARMCAL_OK) {
        warmcal_error sub = {0};
        if (check_entry(out, &sub) != WARMCAL_OK)
            rc = warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "the fitted %s model: %s",
                                   warmcal_form_name(out->form), sub.text);
    }
    envelope_free(&env);
    free(loo[0]);
    free(loo[1]);
    if (rc != WARMCAL_OK) {
        warmcal_estimate_clear(out);
        return rc;
    }
    if (cand_out)
        memcpy(cand_out, cand, sizeof cand);
    return WARMCAL_OK;
}

void warmcal_estimate_clear(warmcal_estimate *e)
{
    if (!e)
        return;
    free(e->knot_tokens);
    free(e->knot_bytes);
    e->knot_tokens = NULL;
    e->knot_bytes = NULL;
    e->n_knots = 0;
}

/* --- traces -------------------------------------------------------------- */

/* The points of one (rank, label): growing arrays. */
typedef struct {
    int rank;
    char label[WARMCAL_TABLE_LABEL_LEN];
    double *t, *y;
    size_t n, cap;
    size_t oom, aborted;
    uint64_t oom_tokens_min;
    uint64_t free_min; /* lowest device free memory at a phase begin, 0: never sampled */
} group;

typedef struct {
    group *g;
    size_t n, cap;
} groups;

static group *find_group(groups *gs, int rank, const char *label)
{
    for (size_t i = 0; i < gs->n; i++)
        if (gs->g[i].rank == rank && strcmp(gs->g[i].label, label) == 0)
            return &gs->g[i];
    if (gs->n == gs->cap) {
        size_t cap = gs->cap ? 2 * gs->cap : 16;
        group *g = realloc(gs->g, cap * sizeof *g);
        if (!g)
            return NULL;
        gs->g = g;
        gs->cap = cap;
    }
    group *g = &gs->g[gs->n++];
    memset(g, 0, sizeof *g);
    g->rank = rank;
    snprintf(g->label, sizeof g->label, "%s", label);
    return g;
}

static int add_point(group *g, double t, double y)
{
    if (g->n == g->cap) {
        size_t cap = g->cap ? 2 * g->cap : 64;
        double *nt = realloc(g->t, cap * sizeof *nt);
        if (!nt)
            return WARMCAL_E_NOMEM;
        g->t = nt;
        double *ny = realloc(g->y, cap * sizeof *ny);
        if (!ny)
            return WARMCAL_E_NOMEM;
        g->y = ny;
        g->cap = cap;
    }
    g->t[g->n] = t;
    g->y[g->n] = y;
    g->n++;
    return WARMCAL_OK;
}

static void note_failure(group *g, const warmcal_phase *p)
{
    if (p->outcome == WARMCAL_OUTCOME_OOM) {
        g->oom++;
        if (!g->oom_tokens_min || p->tokens < g->oom_tokens_min)
            g->oom_tokens_min = p->tokens;
    } else {
        g->aborted++;
    }
}

static void free_groups(groups *gs)
{
    for (size_t i = 0; i < gs->n; i++) {
        free(gs->g[i].t);
        free(gs->g[i].y);
    }
    free(gs->g);
}

static int same_config(const warmcal_trace *a, const warmcal_trace *b, warmcal_error *err)
{
    const char *what = NULL;
    if (strcmp(a->model, b->model) != 0)
        what = "model";
    else if (a->world_size != b->world_size)
        what = "world_size";
    else if (strcmp(a->gpu_name, b->gpu_name) != 0)
        what = "gpu_name";
    else if (a->gpu_total_bytes != b->gpu_total_bytes)
        what = "gpu_total_bytes";
    if (!what)
        return WARMCAL_OK;
    return warmcal_error_set(err, WARMCAL_E_MISMATCH, b->path, what,
                             "differs from %s: traces of one table must come from one "
                             "configuration (model, world size, GPU)",
                             a->path);
}

/* Copy a trace's name attribute into the table's fixed field, or refuse it
 * naming the trace: a name cut to fit would no longer match the trace it
 * came from (validate would then report a mismatch), and bytes that are not
 * UTF-8 would be blamed on the table by its writer. */
static int copy_name(char *field, size_t cap, const warmcal_trace *tr, const char *attr,
                     const char *table_field, const char *value, warmcal_error *err)
{
    char where[64];
    snprintf(where, sizeof where, "attribute '%s'", attr);
    size_t len = strlen(value);
    if (len >= cap)
        return warmcal_error_set(err, WARMCAL_E_FIELD, tr->path, where,
                                 "%zu bytes, longer than the %zu an estimate table holds in %s",
                                 len, cap - 1, table_field);
    if (!warmcal_utf8_valid(value))
        return warmcal_error_set(err, WARMCAL_E_FIELD, tr->path, where, "not valid UTF-8");
    memcpy(field, value, len + 1);
    return WARMCAL_OK;
}

/* A table lists each trace by its path: say which trace cannot be listed,
 * rather than leave the table's writer to report sources[i].name. */
static int check_source_name(const warmcal_trace *tr, size_t cap, warmcal_error *err)
{
    size_t len = strlen(tr->path);
    if (len >= cap)
        return warmcal_error_set(err, WARMCAL_E_INVAL, tr->path, NULL,
                                 "path of %zu bytes, longer than the %zu an estimate table "
                                 "holds in sources[].name",
                                 len, cap - 1);
    if (!warmcal_utf8_valid(tr->path))
        return warmcal_error_set(err, WARMCAL_E_INVAL, tr->path, NULL,
                                 "path is not valid UTF-8 (an estimate table lists its sources "
                                 "by path, in UTF-8)");
    return WARMCAL_OK;
}

/* Rank -1: per label, at each token count the largest need over every rank
 * and run, so the entry serves any rank (and a rank count never measured). */
static int add_any_rank_groups(groups *gs, warmcal_error *err)
{
    size_t per_rank = gs->n;
    for (size_t i = 0; i < per_rank; i++) {
        char label[WARMCAL_TABLE_LABEL_LEN]; /* find_group may move the array it points into */
        snprintf(label, sizeof label, "%s", gs->g[i].label);
        if (find_group(gs, WARMCAL_TABLE_ANY_RANK, label) == NULL)
            return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "fit: out of memory");
    }
    for (size_t a = per_rank; a < gs->n; a++) {
        group *any = &gs->g[a];
        size_t total = 0;
        for (size_t i = 0; i < per_rank; i++)
            if (strcmp(gs->g[i].label, any->label) == 0)
                total += gs->g[i].n;
        point *p = malloc((total ? total : 1) * sizeof *p);
        if (!p)
            return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "fit: out of memory");
        size_t m = 0;
        for (size_t i = 0; i < per_rank; i++) {
            const group *src = &gs->g[i];
            if (strcmp(src->label, any->label) != 0)
                continue;
            for (size_t k = 0; k < src->n; k++)
                p[m++] = (point){src->t[k], src->y[k]};
            any->oom += src->oom;
            any->aborted += src->aborted;
            if (src->oom_tokens_min && (!any->oom_tokens_min || src->oom_tokens_min < any->oom_tokens_min))
                any->oom_tokens_min = src->oom_tokens_min;
            if (src->free_min && (!any->free_min || src->free_min < any->free_min))
                any->free_min = src->free_min;
        }
        qsort(p, m, sizeof *p, by_t);
        int rc = WARMCAL_OK;
        for (size_t k = 0; k < m && rc == WARMCAL_OK; k++) {
            if (any->n && any->t[any->n - 1] == p[k].t)
                any->y[any->n - 1] = fmax(any->y[any->n - 1], p[k].y);
            else
                rc = add_point(any, p[k].t, p[k].y);
        }
        free(p);
        if (rc != WARMCAL_OK)
            return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "fit: out of memory");
    }
    return WARMCAL_OK;
}

static int add_note(warmcal_fit_note **notes, size_t *n, int rank, const char *label,
                    const char *reason)
{
    warmcal_fit_note *grown = realloc(*notes, (*n + 1) * sizeof *grown);
    if (!grown)
        return WARMCAL_E_NOMEM;
    *notes = grown;
    warmcal_fit_note *note = &grown[(*n)++];
    note->rank = rank;
    note->any_rank_entry = 0; /* known once every entry is fitted */
    snprintf(note->label, sizeof note->label, "%s", label);
    snprintf(note->reason, sizeof note->reason, "%s", reason);
    return WARMCAL_OK;
}

/* The rank -1 entry must serve any rank: at every token count a rank
 * measured, it may not publish less than that rank's own entry. Its fit of
 * the per-token maxima usually does; where not, the margin is raised. */
static void cover_every_rank(const warmcal_table *t, const groups *gs, warmcal_estimate *any)
{
    double raise = 0;
    for (size_t i = 0; i < t->n_estimates; i++) {
        const warmcal_estimate *own = &t->estimates[i];
        if (own->rank == WARMCAL_TABLE_ANY_RANK || strcmp(own->label, any->label) != 0)
            continue;
        const group *g = NULL;
        for (size_t k = 0; k < gs->n && !g; k++)
            if (gs->g[k].rank == own->rank && strcmp(gs->g[k].label, own->label) == 0)
                g = &gs->g[k];
        for (size_t k = 0; g && k < g->n; k++) {
            uint64_t mine = 0, theirs = 0;
            uint64_t tok = (uint64_t)g->t[k];
            if (warmcal_estimate_eval(own, WARMCAL_ABOVE_EXTRAPOLATE, tok, &mine, NULL) == WARMCAL_OK &&
                warmcal_estimate_eval(any, WARMCAL_ABOVE_EXTRAPOLATE, tok, &theirs, NULL) == WARMCAL_OK &&
                mine > theirs)
                raise = fmax(raise, (double)(mine - theirs));
        }
    }
    any->margin.residual += raise;
    any->margin.total += raise;
}

int warmcal_fit_traces(const warmcal_trace *const *traces, size_t n, const warmcal_fit_options *opts,
                       warmcal_table **out, warmcal_fit_note **notes, size_t *n_notes,
                       warmcal_error *err)
{
    if (!out || (n && !traces) || (notes && !n_notes))
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "fit_traces: bad argument");
    *out = NULL;
    if (notes) {
        *notes = NULL;
        *n_notes = 0;
    }
    if (n == 0)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "no traces to fit");
    for (size_t i = 1; i < n; i++)
        if (same_config(traces[0], traces[i], err) != WARMCAL_OK)
            return WARMCAL_E_MISMATCH;
    warmcal_fit_options o;
    resolve_options(opts, &o);
    groups gs = {0};
    int rc = WARMCAL_OK;
    size_t phases = 0;
    for (size_t i = 0; rc == WARMCAL_OK && i < n; i++) {
        for (size_t k = 0; rc == WARMCAL_OK && k < traces[i]->n_phases; k++) {
            const warmcal_phase *p = &traces[i]->phases[k];
            group *g = find_group(&gs, traces[i]->rank, p->label);
            if (g && p->device_free_begin != WARMCAL_FREE_UNKNOWN &&
                (!g->free_min || p->device_free_begin < g->free_min))
                g->free_min = p->device_free_begin;
            if (!g)
                rc = WARMCAL_E_NOMEM;
            else if (p->outcome != WARMCAL_OUTCOME_OK)
                note_failure(g, p);
            else
                rc = add_point(g, (double)p->tokens, (double)warmcal_phase_need(p));
            phases++;
        }
    }
    if (rc == WARMCAL_E_NOMEM)
        warmcal_error_set(err, rc, NULL, NULL, "fit: out of memory");
    if (rc == WARMCAL_OK && phases == 0)
        rc = warmcal_error_set(err, WARMCAL_E_INVAL, traces[0]->path, "phases",
                               "no phases in %zu trace%s: nothing to fit", n, n == 1 ? "" : "s");
    if (rc == WARMCAL_OK)
        rc = add_any_rank_groups(&gs, err);
    warmcal_table *t = NULL;
    if (rc == WARMCAL_OK)
        rc = warmcal_table_new(&t, err);
    if (rc == WARMCAL_OK)
        rc = copy_name(t->config.model, sizeof t->config.model, traces[0], "model",
                       "configuration.model", traces[0]->model, err);
    if (rc == WARMCAL_OK)
        rc = copy_name(t->config.gpu_name, sizeof t->config.gpu_name, traces[0], "gpu_name",
                       "configuration.gpu_name", traces[0]->gpu_name, err);
    if (rc == WARMCAL_OK) {
        t->config.tp = traces[0]->world_size;
        t->config.gpu_total_bytes = traces[0]->gpu_total_bytes;
        t->above_range = o.above_range;
    }
    for (size_t i = 0; rc == WARMCAL_OK && i < n; i++) {
        char hex[65];
        rc = check_source_name(traces[i], sizeof t->sources->name, err);
        rc = rc ? rc : warmcal_sha256_file(traces[i]->path, hex, err);
        rc = rc ? rc : warmcal_table_add_source(t, traces[i]->path, hex, err);
    }
    warmcal_error first_skip = {0};
    for (size_t i = 0; rc == WARMCAL_OK && i < gs.n; i++) {
        group *g = &gs.g[i];
        warmcal_estimate e;
        warmcal_error sub = {0};
        int fit_rc = warmcal_fit_points(g->t, g->y, g->n, &o, &e, NULL, &sub);
        if (fit_rc == WARMCAL_E_NOMEM) {
            rc = warmcal_error_set(err, fit_rc, NULL, NULL, "fit: out of memory");
            break;
        }
        if (fit_rc != WARMCAL_OK) {
            /* this (rank, label) cannot be estimated: noted, and the gate
             * falls back to the rank -1 entry for it */
            char where[64];
            if (g->rank == WARMCAL_TABLE_ANY_RANK)
                snprintf(where, sizeof where, "any rank, label %s", g->label);
            else
                snprintf(where, sizeof where, "rank %d, label %s", g->rank, g->label);
            char reason[WARMCAL_ERROR_TEXT_LEN + 40];
            snprintf(reason, sizeof reason, "%s%s", sub.text,
                     g->oom ? " (the others ran out of memory)" : "");
            warmcal_error_set(&first_skip, fit_rc, n == 1 ? traces[0]->path : NULL, where, "%s", reason);
            if (notes && add_note(notes, n_notes, g->rank, g->label, reason) != WARMCAL_OK) {
                rc = warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "fit: out of memory");
                break;
            }
            continue;
        }
        if (g->rank == WARMCAL_TABLE_ANY_RANK)
            cover_every_rank(t, &gs, &e);
        e.rank = g->rank;
        snprintf(e.label, sizeof e.label, "%s", g->label);
        if (check_entry(&e, &sub) != WARMCAL_OK) { /* the any-rank margin was raised since */
            char where[64];
            if (g->rank == WARMCAL_TABLE_ANY_RANK)
                snprintf(where, sizeof where, "any rank, label %s", g->label);
            else
                snprintf(where, sizeof where, "rank %d, label %s", g->rank, g->label);
            rc = warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where,
                                   "the fitted %s model: %s (no table written)",
                                   warmcal_form_name(e.form), sub.text);
            warmcal_estimate_clear(&e);
            break;
        }
        e.failures.oom = g->oom;
        e.failures.oom_tokens_min = g->oom_tokens_min;
        e.failures.aborted = g->aborted;
        e.calibration.device_free_min = g->free_min;
        rc = warmcal_table_add_estimate(t, &e, err);
        warmcal_estimate_clear(&e);
    }
    free_groups(&gs);
    for (size_t i = 0; rc == WARMCAL_OK && notes && i < *n_notes; i++)
        (*notes)[i].any_rank_entry =
            warmcal_table_find(t, WARMCAL_TABLE_ANY_RANK, (*notes)[i].label) != NULL;
    if (rc == WARMCAL_OK && t->n_estimates == 0) {
        /* nothing could be fitted: the first reason is the error */
        rc = first_skip.code ? first_skip.code : WARMCAL_E_INVAL;
        if (err && !err->code)
            *err = first_skip;
    }
    if (rc != WARMCAL_OK) {
        warmcal_table_free(t);
        if (notes) {
            free(*notes);
            *notes = NULL;
            *n_notes = 0;
        }
        return rc;
    }
    *out = t;
    return WARMCAL_OK;
}
