/* Fitting (see warmcal/estimator.h and docs/methodology.md). The token axis
 * is scaled to [0, 1] before any least squares, leave-one-out errors of the
 * regressions come from their leverages (r_i / (1 - h_ii), no refits), and
 * the envelope's leave-one-out prediction is the interpolation between a
 * point's neighbours, so a fit costs O(n log n) whatever the point count. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/estimator.h"
#include "warmcal/lstsq.h"

#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_GRANULARITY (2ull << 20)
#define DEFAULT_PARSIMONY 0.10
/* The largest leave-one-out excess is what one run shows of how wrong the
 * model can be about a pass it has not seen; another run's noise can exceed
 * it. The margin also covers this many leave-one-out RMSEs (3: 99.7% of a
 * normal error). */
#define LOO_SIGMAS 3.0

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

uint64_t warmcal_phase_need(const warmcal_phase *p)
{
    uint64_t need = p->live_peak - p->live_begin;
    if (p->device_free_begin != WARMCAL_FREE_UNKNOWN && p->device_free_end != WARMCAL_FREE_UNKNOWN &&
        p->device_free_begin > p->device_free_end) {
        uint64_t device_growth = p->device_free_begin - p->device_free_end;
        uint64_t api_growth = p->live_end > p->live_begin ? p->live_end - p->live_begin : 0;
        if (device_growth > api_growth)
            need += device_growth - api_growth;
    }
    return need;
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

/* Polynomial fit of degree p-1 on s = t / tmax. Fills the candidate, the
 * coefficients in bytes per token^k, and returns 0, or non-zero when the form
 * cannot be fitted here (too few points, singular). */
static int fit_polynomial(const double *t, const double *y, size_t n, size_t p, double tmax,
                          uint64_t granularity, double coef[3], warmcal_candidate *cand)
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
    double worst = 0, worst_loo = 0, sum_loo = 0;
    for (size_t i = 0; rc == WARMCAL_OK && i < n; i++) {
        double f = 0;
        for (size_t j = 0; j < p; j++)
            f += beta[j] * x[i * p + j];
        double r = y[i] - f;
        if (h[i] > 1.0 - 1e-9) { /* the fit passes through this point whatever it is */
            rc = WARMCAL_E_INVAL;
            break;
        }
        double loo = r / (1.0 - h[i]);
        worst = fmax(worst, r);
        worst_loo = fmax(worst_loo, loo);
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
    worst_loo = fmax(worst_loo, LOO_SIGMAS * cand->loo_rmse);
    cand->margin = worst + fmax(0, worst_loo - worst) + (double)granularity;
    return WARMCAL_OK;
}

/* --- the envelope ------------------------------------------------------------ */

typedef struct {
    double t, y;
} point;

static int by_t(const void *a, const void *b)
{
    double x = ((const point *)a)->t, z = ((const point *)b)->t;
    return (x > z) - (x < z);
}


static double interpolate(double t, double t0, double y0, double t1, double y1)
{
    return t1 == t0 ? fmax(y0, y1) : y0 + (y1 - y0) * (t - t0) / (t1 - t0);
}

/* Running maximum over the distinct token counts (each at its largest
 * need): a monotone upper envelope through every point. Leave-one-out: the
 * point's value predicted from its neighbours' envelope without it. */
typedef struct {
    point *knots; /* distinct t, running max */
    size_t n;
} envelope;

static int fit_envelope(const double *t, const double *y, size_t n, uint64_t granularity,
                        envelope *env, warmcal_candidate *cand)
{
    memset(cand, 0, sizeof *cand);
    point *p = malloc(n * sizeof *p);
    if (!p)
        return WARMCAL_E_NOMEM;
    for (size_t i = 0; i < n; i++)
        p[i] = (point){t[i], y[i]};
    qsort(p, n, sizeof *p, by_t);
    size_t m = 0; /* distinct t, each with its largest y */
    for (size_t i = 0; i < n; i++) {
        if (m && p[m - 1].t == p[i].t)
            p[m - 1].y = fmax(p[m - 1].y, p[i].y);
        else
            p[m++] = p[i];
    }
    if (m < 3) {
        free(p);
        return WARMCAL_E_INVAL;
    }
    double *prefix = malloc(m * sizeof *prefix);
    if (!prefix) {
        free(p);
        return WARMCAL_E_NOMEM;
    }
    for (size_t k = 0; k < m; k++)
        prefix[k] = k ? fmax(prefix[k - 1], p[k].y) : p[k].y;
    double worst_loo = 0, sum_loo = 0;
    for (size_t k = 0; k < m; k++) {
        double pred;
        if (k == 0)
            pred = p[1].y; /* below the first remaining knot: its value */
        else if (k == m - 1) /* beyond the last remaining knot: its segment's slope goes on */
            pred = interpolate(p[k].t, p[k - 2].t, prefix[k - 2], p[k - 1].t, prefix[k - 1]);
        else
            pred = interpolate(p[k].t, p[k - 1].t, prefix[k - 1], p[k + 1].t,
                               fmax(prefix[k - 1], p[k + 1].y));
        double loo = p[k].y - pred;
        worst_loo = fmax(worst_loo, loo);
        sum_loo += loo * loo;
    }
    /* knots: the running maximum, without interior knots on a flat run */
    size_t kept = 0;
    for (size_t k = 0; k < m; k++) {
        int flat = k > 0 && k + 1 < m && prefix[k - 1] == prefix[k] && prefix[k] == prefix[k + 1];
        if (!flat)
            p[kept++] = (point){p[k].t, prefix[k]};
    }
    free(prefix);
    /* too many knots for a table: keep every stride-th and the last, each
     * raised to the largest value it stands for, which keeps an upper bound */
    if (kept > WARMCAL_TABLE_MAX_KNOTS) {
        size_t stride = (kept + WARMCAL_TABLE_MAX_KNOTS - 2) / (WARMCAL_TABLE_MAX_KNOTS - 1), out = 0;
        for (size_t k = 0; k < kept; k += stride) {
            size_t last = k + stride - 1 < kept ? k + stride - 1 : kept - 1;
            p[out++] = (point){p[last].t, p[last].y};
        }
        if (p[out - 1].t != p[kept - 1].t)
            p[out++] = p[kept - 1];
        kept = out;
    }
    env->knots = p;
    env->n = kept;
    cand->usable = 1;
    cand->loo_rmse = sqrt(sum_loo / (double)m);
    cand->margin = fmax(worst_loo, LOO_SIGMAS * cand->loo_rmse) + (double)granularity;
    return WARMCAL_OK;
}

/* --- choosing ------------------------------------------------------------- */

int warmcal_fit_points(const double *t, const double *y, size_t n, const warmcal_fit_options *opts,
                       warmcal_estimate *out, warmcal_candidate cand_out[3], warmcal_error *err)
{
    if (!t || !y || !out)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "fit_points: bad argument");
    warmcal_fit_options o;
    resolve_options(opts, &o);
    memset(out, 0, sizeof *out);
    out->rank = WARMCAL_TABLE_ANY_RANK;
    double tmin = INFINITY, tmax = 0, ymax = 0;
    size_t distinct_hint = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(t[i]) || !isfinite(y[i]) || t[i] <= 0 || y[i] < 0)
            return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                     "point %zu (%g tokens, %g bytes): tokens must be > 0 and "
                                     "bytes >= 0, both finite",
                                     i, t[i], y[i]);
        distinct_hint += i == 0 || t[i] != t[0];
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
    (void)distinct_hint;

    warmcal_candidate cand[3];
    double lin[3] = {0}, quad[3] = {0};
    envelope env = {0};
    int rc_env = fit_envelope(t, y, n, o.granularity, &env, &cand[WARMCAL_FORM_ENVELOPE]);
    if (rc_env == WARMCAL_E_NOMEM)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "fit: out of memory");
    if (rc_env != WARMCAL_OK)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "phases ran at only 2 different token counts: at least 3 are "
                                 "needed");
    int rc = fit_polynomial(t, y, n, 2, tmax, o.granularity, lin, &cand[WARMCAL_FORM_LINEAR]);
    if (rc != WARMCAL_E_NOMEM)
        rc = fit_polynomial(t, y, n, 3, tmax, o.granularity, quad, &cand[WARMCAL_FORM_QUADRATIC]);
    if (rc == WARMCAL_E_NOMEM) {
        free(env.knots);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "fit: out of memory");
    }

    /* simplest first; a more complex form must earn its place */
    static const warmcal_form order[3] = {WARMCAL_FORM_LINEAR, WARMCAL_FORM_QUADRATIC,
                                          WARMCAL_FORM_ENVELOPE};
    int chosen = -1;
    for (int k = 0; k < 3; k++) {
        warmcal_form f = order[k];
        if (!cand[f].usable)
            continue;
        if (chosen < 0 || cand[f].loo_rmse < (1.0 - o.parsimony) * cand[chosen].loo_rmse)
            chosen = (int)f;
    }
    out->form = (warmcal_form)chosen;
    out->tokens_min = (uint64_t)tmin;
    out->tokens_max = (uint64_t)tmax;
    out->fit.points = n;
    const warmcal_candidate *c = &cand[chosen];
    out->fit.loo_rmse = c->loo_rmse;
    if (chosen == WARMCAL_FORM_ENVELOPE) {
        out->n_knots = env.n;
        out->knot_tokens = malloc(env.n * sizeof *out->knot_tokens);
        out->knot_bytes = malloc(env.n * sizeof *out->knot_bytes);
        if (!out->knot_tokens || !out->knot_bytes) {
            free(env.knots);
            warmcal_estimate_clear(out);
            return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "fit: out of memory");
        }
        for (size_t k = 0; k < env.n; k++) {
            out->knot_tokens[k] = (uint64_t)env.knots[k].t;
            out->knot_bytes[k] = env.knots[k].y;
        }
    } else {
        memcpy(out->coef, chosen == WARMCAL_FORM_LINEAR ? lin : quad, sizeof out->coef);
    }
    free(env.knots);

    /* residuals of the chosen model at every point, for the margin and statistics */
    double worst = 0, sum2 = 0, max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        double f;
        if (out->form == WARMCAL_FORM_ENVELOPE) {
            size_t k = 0;
            while (k + 1 < out->n_knots && (double)out->knot_tokens[k + 1] < t[i])
                k++;
            f = k + 1 < out->n_knots && t[i] > (double)out->knot_tokens[k]
                    ? interpolate(t[i], (double)out->knot_tokens[k], out->knot_bytes[k],
                                  (double)out->knot_tokens[k + 1], out->knot_bytes[k + 1])
                    : out->knot_bytes[k];
        } else {
            f = out->coef[0] + out->coef[1] * t[i] + out->coef[2] * t[i] * t[i];
        }
        double r = y[i] - f;
        worst = fmax(worst, r);
        max_abs = fmax(max_abs, fabs(r));
        sum2 += r * r;
    }
    out->fit.rmse = sqrt(sum2 / (double)n);
    out->fit.max_residual = max_abs;
    out->margin.residual = worst;
    out->margin.granularity = (double)o.granularity;
    out->margin.loo = fmax(0, c->margin - (double)o.granularity - worst);
    out->margin.total = out->margin.residual + out->margin.loo + out->margin.granularity;
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

/* Rank -1: per label, at each token count the largest need over every rank
 * and run, so the entry serves any rank (and a rank count never measured). */
static int add_any_rank_groups(groups *gs, warmcal_error *err)
{
    size_t per_rank = gs->n;
    for (size_t i = 0; i < per_rank; i++) {
        if (find_group(gs, WARMCAL_TABLE_ANY_RANK, gs->g[i].label) == NULL)
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

static void iso_now(char *buf, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int warmcal_fit_traces(const warmcal_trace *const *traces, size_t n, const warmcal_fit_options *opts,
                       warmcal_table **out, warmcal_error *err)
{
    if (!out || (n && !traces))
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "fit_traces: bad argument");
    *out = NULL;
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
    if (rc == WARMCAL_OK) {
        snprintf(t->config.model, sizeof t->config.model, "%s", traces[0]->model);
        t->config.tp = traces[0]->world_size;
        snprintf(t->config.gpu_name, sizeof t->config.gpu_name, "%s", traces[0]->gpu_name);
        t->config.gpu_total_bytes = traces[0]->gpu_total_bytes;
        snprintf(t->tool_version, sizeof t->tool_version, "%s", WARMCAL_VERSION);
        iso_now(t->created, sizeof t->created);
        t->above_range = o.above_range;
    }
    for (size_t i = 0; rc == WARMCAL_OK && i < n; i++) {
        char hex[65];
        rc = warmcal_sha256_file(traces[i]->path, hex, err);
        rc = rc ? rc : warmcal_table_add_source(t, traces[i]->path, hex, err);
    }
    for (size_t i = 0; rc == WARMCAL_OK && i < gs.n; i++) {
        group *g = &gs.g[i];
        warmcal_estimate e;
        warmcal_error sub = {0};
        rc = warmcal_fit_points(g->t, g->y, g->n, &o, &e, NULL, &sub);
        if (rc != WARMCAL_OK) {
            char where[64];
            if (g->rank == WARMCAL_TABLE_ANY_RANK)
                snprintf(where, sizeof where, "any rank, label %s", g->label);
            else
                snprintf(where, sizeof where, "rank %d, label %s", g->rank, g->label);
            warmcal_error_set(err, rc, n == 1 ? traces[0]->path : NULL, where, "%s", sub.text);
            break;
        }
        e.rank = g->rank;
        snprintf(e.label, sizeof e.label, "%s", g->label);
        e.failures.oom = g->oom;
        e.failures.oom_tokens_min = g->oom_tokens_min;
        e.failures.aborted = g->aborted;
        e.calibration.device_free_min = g->free_min;
        rc = warmcal_table_add_estimate(t, &e, err);
        warmcal_estimate_clear(&e);
    }
    free_groups(&gs);
    if (rc != WARMCAL_OK) {
        warmcal_table_free(t);
        return rc;
    }
    *out = t;
    return WARMCAL_OK;
}
