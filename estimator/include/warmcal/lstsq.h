/* warmcal/lstsq.h — linear least squares by Householder QR (LAPACKE's dgels),
 * never normal equations: the estimator's fits and the NIST StRD checks
 * both go through here. */
#ifndef WARMCAL_LSTSQ_H
#define WARMCAL_LSTSQ_H

#include <stddef.h>
#include "warmcal/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Minimise ||X beta - y||_2. x is n rows by p columns, row-major (x[i*p+j]);
 * n >= p >= 1. Columns are scaled to unit maximum magnitude before the QR
 * factorisation (conditioning) and beta is scaled back. On success beta[p]
 * holds the coefficients and *rss (may be NULL) the residual sum of squares.
 * Inputs are not modified. Errors: WARMCAL_E_INVAL (n < p, p == 0, a
 * non-finite value, an all-zero column), WARMCAL_E_FIELD when X is rank
 * deficient (text says which column), WARMCAL_E_NOMEM. */
WARMCAL_API int warmcal_lstsq(const double *x, const double *y, size_t n, size_t p, double *beta,
                              double *rss, warmcal_error *err);

#ifdef __cplusplus
}
#endif
#endif
