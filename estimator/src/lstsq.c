/* Linear least squares by Householder QR (LAPACKE_dgels) on a column-scaled
 * copy of X, with a rank check on R before the solution is trusted. The
 * estimator's fits and the NIST StRD certification tests both go through
 * here (see warmcal/lstsq.h for the contract). */
#include "warmcal/lstsq.h"

#include <lapacke.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* X counts as rank deficient when the reciprocal condition number of R (the
 * 1-norm estimate of dtrcon, taken on the column-scaled X) is below this
 * times p. Near 1e-13 a solution keeps at most about three correct digits;
 * below it, it is noise, and the fits that call this have no use for it. The
 * NIST StRD sets of tests/estimator stay far above (smallest: Longley, 4e-5);
 * an exactly duplicated column lands near 1e-16. */
#define RANK_TOL 1e-13

/* Validate sizes and values; fill scale[j] with column j's largest |x|. */
static int check_input(const double *x, const double *y, size_t n, size_t p, double *scale,
                       warmcal_error *err)
{
    char where[WARMCAL_ERROR_WHERE_LEN];
    for (size_t j = 0; j < p; j++)
        scale[j] = 0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < p; j++) {
            double v = x[i * p + j];
            if (!isfinite(v)) {
                snprintf(where, sizeof where, "x[%zu][%zu]", i, j);
                return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where,
                                         "X row %zu, column %zu is not a finite number", i, j);
            }
            scale[j] = fmax(scale[j], fabs(v));
        }
        if (!isfinite(y[i])) {
            snprintf(where, sizeof where, "y[%zu]", i);
            return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where,
                                     "y row %zu is not a finite number", i);
        }
    }
    for (size_t j = 0; j < p; j++) {
        if (scale[j] == 0) {
            snprintf(where, sizeof where, "column %zu", j);
            return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, where,
                                     "column %zu of X is all zeros: its coefficient is undefined",
                                     j);
        }
    }
    return WARMCAL_OK;
}

/* After dgels, the upper triangle of a (column-major, leading dimension n)
 * holds R. Rank deficient when dgels met an exact zero on R's diagonal
 * (zero_col, 1-based, or 0) or when R is too ill-conditioned; the column
 * named is the one whose diagonal entry is smallest relative to the largest,
 * i.e. the first one (nearly) in the span of the columns before it. */
static int check_rank(const double *a, size_t n, size_t p, lapack_int zero_col,
                      warmcal_error *err)
{
    double rmax = 0;
    for (size_t j = 0; j < p; j++)
        rmax = fmax(rmax, fabs(a[j * n + j]));
    size_t worst = 0;
    double worst_ratio = INFINITY;
    for (size_t j = 0; j < p; j++) {
        double ratio = rmax > 0 ? fabs(a[j * n + j]) / rmax : 0;
        if (ratio < worst_ratio) {
            worst_ratio = ratio;
            worst = j;
        }
    }
    double rcond = 0;
    if (zero_col > 0) {
        worst = (size_t)zero_col - 1;
        worst_ratio = 0;
    } else {
        lapack_int info = LAPACKE_dtrcon(LAPACK_COL_MAJOR, '1', 'U', 'N', (lapack_int)p, a,
                                         (lapack_int)n, &rcond);
        if (info == LAPACK_WORK_MEMORY_ERROR)
            return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL,
                                     "no memory for LAPACK's condition estimate");
        if (info != 0)
            return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                     "LAPACKE_dtrcon rejected argument %d", (int)-info);
        if (rcond >= RANK_TOL * (double)p)
            return WARMCAL_OK;
    }
    char where[WARMCAL_ERROR_WHERE_LEN];
    snprintf(where, sizeof where, "column %zu", worst);
    if (worst == 0) /* no single culprit: R is ill-conditioned as a whole */
        return warmcal_error_set(err, WARMCAL_E_FIELD, NULL, where,
                                 "X is rank deficient: its columns are (nearly) linearly "
                                 "dependent (reciprocal condition %.3g)",
                                 rcond);
    return warmcal_error_set(err, WARMCAL_E_FIELD, NULL, where,
                             "X is rank deficient: column %zu is (nearly) a linear combination "
                             "of the columns before it (|R[%zu][%zu]| / max |R[i][i]| = %.3g, "
                             "reciprocal condition %.3g)",
                             worst, worst, worst, worst_ratio, rcond);
}

int warmcal_lstsq(const double *x, const double *y, size_t n, size_t p, double *beta,
                  double *rss, warmcal_error *err)
{
    if (!x || !y || !beta)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "lstsq: x, y and beta must not be NULL");
    if (p == 0)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "lstsq: no columns (p = 0): nothing to fit");
    if (n < p)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "lstsq: %zu row(s) for %zu coefficient(s): need n >= p", n, p);
    if (n > (size_t)INT_MAX || n > SIZE_MAX / sizeof(double) / p)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "lstsq: %zu x %zu is larger than LAPACK can take", n, p);

    double *scale = malloc(p * sizeof *scale);
    double *a = malloc(n * p * sizeof *a);
    double *b = malloc(n * sizeof *b);
    int rc = scale && a && b ? WARMCAL_OK
                             : warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL,
                                                 "lstsq: no memory for a %zu x %zu copy", n, p);
    if (rc == WARMCAL_OK)
        rc = check_input(x, y, n, p, scale, err);
    if (rc == WARMCAL_OK) {
        /* column-major, each column divided by its largest magnitude */
        for (size_t j = 0; j < p; j++)
            for (size_t i = 0; i < n; i++)
                a[j * n + i] = x[i * p + j] / scale[j];
        for (size_t i = 0; i < n; i++)
            b[i] = y[i];
        lapack_int ln = (lapack_int)n, lp = (lapack_int)p;
        lapack_int info = LAPACKE_dgels(LAPACK_COL_MAJOR, 'N', ln, lp, 1, a, ln, b, ln);
        if (info == LAPACK_WORK_MEMORY_ERROR)
            rc = warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL,
                                   "lstsq: no memory for LAPACK's workspace");
        else if (info < 0)
            rc = warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                   "lstsq: LAPACKE_dgels rejected argument %d", (int)-info);
        else
            rc = check_rank(a, n, p, info, err);
    }
    if (rc == WARMCAL_OK) {
        /* X = (X D^-1) D, so the scaled problem's solution is D beta */
        for (size_t j = 0; j < p; j++) {
            b[j] /= scale[j];
            if (!isfinite(b[j]))
                rc = warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                       "lstsq: coefficient %zu overflows a double", j);
        }
    }
    double sum = 0;
    if (rc == WARMCAL_OK && rss) {
        /* from the original data, so it describes the beta returned */
        long double acc = 0;
        for (size_t i = 0; i < n; i++) {
            long double r = y[i];
            for (size_t j = 0; j < p; j++)
                r -= (long double)x[i * p + j] * b[j];
            acc += r * r;
        }
        sum = (double)acc;
        if (!isfinite(sum))
            rc = warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                   "lstsq: the residual sum of squares overflows a double");
    }
    if (rc == WARMCAL_OK) {
        for (size_t j = 0; j < p; j++)
            beta[j] = b[j];
        if (rss)
            *rss = sum;
    }
    free(scale);
    free(a);
    free(b);
    return rc;
}
