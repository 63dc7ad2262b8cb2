/* tests/estimator/test_nist_strd.c — warmcal_lstsq against the certified
 * values of NIST's StRD linear regression data sets (tests/data/nist, see
 * SOURCES.md there), with the number of agreeing digits asserted per set, and
 * its refusals of systems it cannot solve. Run with one case name. */
#include "../check.h"
#include "warmcal/lstsq.h"

#include <float.h>
#include <math.h>

#ifndef WARMCAL_NIST_DIR
#error "WARMCAL_NIST_DIR must name the folder holding the NIST .dat files"
#endif

#define MAX_ROWS 128
#define MAX_COLS 8   /* y and up to 7 predictors */
#define MAX_PARAMS 8

typedef enum { MODEL_POLY, MODEL_NO_INTERCEPT, MODEL_MULTI } model_kind;

/* One certified data set as read from its .dat file. */
typedef struct {
    double cert[MAX_PARAMS];
    size_t ncert;
    double cert_sd;
    int have_sd;
    double rows[MAX_ROWS][MAX_COLS]; /* y first, then the predictors */
    size_t nrows, ncols;
} nist_set;

/* Minimum log relative errors (agreeing digits, LRE capped at 15) required
 * per set, about one digit below what was measured here: Debian 12, x86-64,
 * gcc 12.2, reference LAPACK/BLAS 3.11 (liblapacke 3.11.0-2); the same
 * figures with and without ASan+UBSan.
 *
 *   set        min coefficient LRE   residual SD LRE
 *   Norris          12.3                 14.0
 *   Pontius         13.9                 13.8
 *   NoInt1          14.8                 15.0
 *   NoInt2          15.0                 15.0
 *   Longley         10.6                 15.0
 *   Wampler1        10.0                  9.9  (certified 0: -log10 of the estimate)
 *   Wampler2        12.5                 14.3  (certified 0: -log10 of the estimate)
 *   Wampler3         9.7                 14.8
 *   Wampler4         7.7                 14.8
 *   Wampler5         5.7                 14.8
 *
 * Wampler3-5 share one design matrix and differ only in the size of the
 * residuals; QR's coefficient error grows with cond(X)^2 x |residual|, so the
 * digits fall from set to set, as published QR results in double precision
 * do (about 6 digits on Wampler5). Beyond that the figures are rounding
 * noise: changing the column scaling from "divide by the largest magnitude"
 * to the nearest power of two moved them by up to 1.8 digits (Pontius 13.9 ->
 * 12.1, Wampler1 10.0 -> 9.2, Wampler5 5.7 -> 6.0), and another BLAS may land
 * elsewhere within that noise. Pontius's minimum is therefore set below its
 * worse figure; the others keep the one-digit margin. */
static const struct {
    const char *name;
    model_kind kind;
    int degree; /* MODEL_POLY: highest power of x */
    double min_coef_lre, min_sd_lre;
} SETS[] = {
    {"Norris", MODEL_POLY, 1, 11.0, 13.0},
    {"Pontius", MODEL_POLY, 2, 11.0, 12.5},
    {"NoInt1", MODEL_NO_INTERCEPT, 1, 13.5, 14.0},
    {"NoInt2", MODEL_NO_INTERCEPT, 1, 14.0, 14.0},
    {"Longley", MODEL_MULTI, 0, 9.5, 14.0},
    {"Wampler1", MODEL_POLY, 5, 8.5, 8.5},
    {"Wampler2", MODEL_POLY, 5, 11.5, 13.0},
    {"Wampler3", MODEL_POLY, 5, 8.5, 13.5},
    {"Wampler4", MODEL_POLY, 5, 6.5, 13.5},
    {"Wampler5", MODEL_POLY, 5, 4.5, 13.5},
};

/* Parse a row of numbers; returns how many, or 0 if the line holds anything else. */
static size_t parse_numbers(const char *line, double *out, size_t cap)
{
    size_t k = 0;
    const char *s = line;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
            s++;
        if (!*s)
            return k;
        char *end;
        double v = strtod(s, &end);
        if (end == s || k == cap || (*end && *end != ' ' && *end != '\t' && *end != '\r' &&
                                     *end != '\n'))
            return 0;
        out[k++] = v;
        s = end;
    }
}

/* Read a NIST StRD linear regression file: the "Bk" lines and the residual
 * standard deviation under "Certified Regression Statistics", and the rows
 * after the last "Data:" heading. Lines starting with '#' are provenance
 * notes (see SOURCES.md) and are skipped. Returns 0 or -1. */
static int read_set(const char *name, nist_set *s)
{
    char path[512], line[512];
    snprintf(path, sizeof path, "%s/%s.dat", WARMCAL_NIST_DIR, name);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: cannot open\n", path);
        return -1;
    }
    memset(s, 0, sizeof *s);
    int in_cert = 0, in_data = 0, bad = 0;
    while (!bad && fgets(line, sizeof line, f)) {
        if (line[0] == '#')
            continue;
        if (strstr(line, "Certified Regression Statistics")) {
            in_cert = 1;
            continue;
        }
        if (strncmp(line, "Data:", 5) == 0) { /* the last such heading opens the data */
            in_data = 1;
            s->nrows = s->ncols = 0;
            continue;
        }
        unsigned idx;
        double v;
        if (in_cert && sscanf(line, " B%u %lf", &idx, &v) == 2) {
            if (s->ncert == MAX_PARAMS)
                bad = 1;
            else
                s->cert[s->ncert++] = v;
        } else if (in_cert && sscanf(line, " Standard Deviation %lf", &v) == 1) {
            s->cert_sd = v;
            s->have_sd = 1;
            in_cert = 0;
        } else if (in_data) {
            double row[MAX_COLS];
            size_t k = parse_numbers(line, row, MAX_COLS);
            if (k == 0) {
                if (strspn(line, " \t\r\n") != strlen(line))
                    in_data = 0; /* a description line, not the data */
                continue;
            }
            if (s->nrows == MAX_ROWS || (s->ncols && k != s->ncols)) {
                bad = 1;
                break;
            }
            s->ncols = k;
            memcpy(s->rows[s->nrows++], row, k * sizeof *row);
        }
    }
    fclose(f);
    if (bad || !s->ncert || !s->have_sd || s->nrows < 2 || s->ncols < 2) {
        fprintf(stderr, "%s: could not read certified values and data\n", path);
        return -1;
    }
    return 0;
}

/* Log relative error, the number of agreeing digits, in [0, 15]. */
static double lre(double est, double cert)
{
    if (!isfinite(est))
        return 0;
    double e = cert == 0 ? fabs(est) : fabs(est - cert) / fabs(cert);
    if (e == 0)
        return 15;
    double d = -log10(e);
    return d < 0 ? 0 : d > 15 ? 15 : d;
}

static void lstsq_matches_nist_strd_certified_values(void)
{
    static nist_set s; /* large: kept off the stack */
    static double x[MAX_ROWS * MAX_PARAMS], y[MAX_ROWS];
    printf("%-9s %4s %3s  %16s  %16s\n", "data set", "n", "p", "min coef LRE (>=)",
           "resid SD LRE (>=)");
    for (size_t k = 0; k < sizeof SETS / sizeof SETS[0]; k++) {
        int readable = read_set(SETS[k].name, &s) == 0;
        CHECK(readable);
        if (!readable)
            continue;
        size_t n = s.nrows, p;
        switch (SETS[k].kind) {
        case MODEL_POLY: p = (size_t)SETS[k].degree + 1; break;
        case MODEL_NO_INTERCEPT: p = s.ncols - 1; break;
        default: p = s.ncols; break;
        }
        if (p != s.ncert || p > MAX_PARAMS) {
            fprintf(stderr, "%s: model has %zu parameters, file certifies %zu\n", SETS[k].name,
                    p, s.ncert);
            CHECK(p == s.ncert);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            y[i] = s.rows[i][0];
            for (size_t j = 0; j < p; j++) {
                switch (SETS[k].kind) {
                case MODEL_POLY: x[i * p + j] = pow(s.rows[i][1], (double)j); break;
                case MODEL_NO_INTERCEPT: x[i * p + j] = s.rows[i][1 + j]; break;
                default: x[i * p + j] = j == 0 ? 1.0 : s.rows[i][j]; break;
                }
            }
        }
        double beta[MAX_PARAMS], rss = -1;
        warmcal_error err = {0};
        int rc = warmcal_lstsq(x, y, n, p, beta, &rss, &err);
        if (rc != WARMCAL_OK) {
            fprintf(stderr, "%s: warmcal_lstsq failed: %s: %s\n", SETS[k].name, err.where,
                    err.text);
            CHECK(rc == WARMCAL_OK);
            continue;
        }
        double min_lre = 15;
        for (size_t j = 0; j < p; j++)
            min_lre = fmin(min_lre, lre(beta[j], s.cert[j]));
        double sd = sqrt(rss / (double)(n - p));
        double sd_lre = lre(sd, s.cert_sd);
        printf("%-9s %4zu %3zu  %7.1f (%4.1f)     %7.1f (%4.1f)\n", SETS[k].name, n, p, min_lre,
               SETS[k].min_coef_lre, sd_lre, SETS[k].min_sd_lre);
        if (min_lre < SETS[k].min_coef_lre || sd_lre < SETS[k].min_sd_lre) {
            fprintf(stderr, "%s: %.1f / %.1f digits, need %.1f / %.1f\n", SETS[k].name, min_lre,
                    sd_lre, SETS[k].min_coef_lre, SETS[k].min_sd_lre);
            for (size_t j = 0; j < p; j++)
                fprintf(stderr, "  B%zu = %.17g (certified %.15g)\n", j, beta[j], s.cert[j]);
            fprintf(stderr, "  residual SD = %.17g (certified %.15g)\n", sd, s.cert_sd);
        }
        CHECK(min_lre >= SETS[k].min_coef_lre);
        CHECK(sd_lre >= SETS[k].min_sd_lre);
    }
}

/* Fit and expect code; on an expected error, err.where must contain where. */
static void expect_error(const double *x, const double *y, size_t n, size_t p, int code,
                         const char *where)
{
    double beta[4] = {0}, rss = 0;
    warmcal_error err = {0};
    int rc = warmcal_lstsq(x, y, n, p, beta, &rss, &err);
    if (rc != code)
        fprintf(stderr, "  expected %d, got %d (%s)\n", code, rc, err.text);
    CHECK(rc == code);
    CHECK(err.code == code);
    CHECK(err.text[0] != '\0');
    if (where)
        CHECK_STR_CONTAINS(err.where, where);
}

static void lstsq_rejects_degenerate_systems(void)
{
    /* columns: 1, t, 2t (a duplicate up to scale: the scaling makes it exact) */
    double dup[5 * 3], y[5] = {1, 3, 4, 7, 9};
    for (size_t i = 0; i < 5; i++) {
        dup[i * 3 + 0] = 1;
        dup[i * 3 + 1] = (double)i + 1;
        dup[i * 3 + 2] = 2 * ((double)i + 1);
    }
    expect_error(dup, y, 5, 3, WARMCAL_E_FIELD, "column 2");
    {
        warmcal_error err = {0};
        double beta[3];
        warmcal_lstsq(dup, y, 5, 3, beta, NULL, &err);
        CHECK_STR_CONTAINS(err.text, "rank deficient");
        CHECK_STR_CONTAINS(err.text, "column 2");
    }

    /* a third column that is the sum of the first two, in irrational steps */
    double comb[6 * 3], y6[6] = {0.5, 1.5, 1.0, 3.0, 2.5, 4.0};
    for (size_t i = 0; i < 6; i++) {
        comb[i * 3 + 0] = sqrt((double)i + 2);
        comb[i * 3 + 1] = 1.0 / ((double)i + 3);
        comb[i * 3 + 2] = comb[i * 3 + 0] + comb[i * 3 + 1];
    }
    expect_error(comb, y6, 6, 3, WARMCAL_E_FIELD, "column 2");

    /* every token count equal: the line through them is undefined */
    double flat[4 * 2] = {1, 512, 1, 512, 1, 512, 1, 512}, yf[4] = {1, 2, 3, 4};
    expect_error(flat, yf, 4, 2, WARMCAL_E_FIELD, "column 1");

    /* fewer rows than coefficients, no columns, one point for a line */
    expect_error(dup, y, 2, 3, WARMCAL_E_INVAL, NULL);
    expect_error(dup, y, 5, 0, WARMCAL_E_INVAL, NULL);
    expect_error(dup, y, 1, 2, WARMCAL_E_INVAL, NULL);

    /* non-finite values, named by position */
    double line[4 * 2] = {1, 1, 1, 2, 1, 3, 1, 4}, yl[4] = {2, 4, 6, 8};
    yl[2] = NAN;
    expect_error(line, yl, 4, 2, WARMCAL_E_INVAL, "y[2]");
    yl[2] = 6;
    line[3 * 2 + 1] = INFINITY;
    expect_error(line, yl, 4, 2, WARMCAL_E_INVAL, "x[3][1]");
    line[3 * 2 + 1] = NAN;
    expect_error(line, yl, 4, 2, WARMCAL_E_INVAL, "x[3][1]");
    line[3 * 2 + 1] = 4;

    /* an all-zero column */
    double zero[4 * 2] = {1, 0, 1, 0, 1, 0, 1, 0};
    expect_error(zero, yl, 4, 2, WARMCAL_E_INVAL, "column 1");

    /* NULL pointers; a NULL error record is allowed */
    double beta[2];
    CHECK(warmcal_lstsq(NULL, yl, 4, 2, beta, NULL, NULL) == WARMCAL_E_INVAL);
    CHECK(warmcal_lstsq(line, NULL, 4, 2, beta, NULL, NULL) == WARMCAL_E_INVAL);
    CHECK(warmcal_lstsq(line, yl, 4, 2, NULL, NULL, NULL) == WARMCAL_E_INVAL);
    CHECK(warmcal_lstsq(dup, y, 5, 3, beta, NULL, NULL) == WARMCAL_E_FIELD);

    /* the first error set wins */
    warmcal_error err = {0};
    warmcal_error_set(&err, WARMCAL_E_IO, "earlier.h5", NULL, "earlier failure");
    CHECK(warmcal_lstsq(dup, y, 5, 3, beta, NULL, &err) == WARMCAL_E_FIELD);
    CHECK(err.code == WARMCAL_E_IO);
}

static void lstsq_recovers_an_exact_line(void)
{
    /* y = 3 + 2x at x = 0..9: every value and the solution are exact in
     * binary, so QR must land within a few ulps */
    double x[10 * 2], y[10], x0[10 * 2], y0[10];
    for (size_t i = 0; i < 10; i++) {
        x[i * 2 + 0] = 1;
        x[i * 2 + 1] = (double)i;
        y[i] = 3 + 2 * (double)i;
    }
    memcpy(x0, x, sizeof x);
    memcpy(y0, y, sizeof y);
    double beta[2] = {0, 0}, rss = -1;
    warmcal_error err = {0};
    CHECK(warmcal_lstsq(x, y, 10, 2, beta, &rss, &err) == WARMCAL_OK);
    CHECK(err.code == 0);
    printf("y = 3 + 2x, x = 0..9: beta = %.17g, %.17g, rss = %.3g\n", beta[0], beta[1], rss);
    CHECK(fabs(beta[0] - 3) <= 8 * 3 * DBL_EPSILON);
    CHECK(fabs(beta[1] - 2) <= 8 * 2 * DBL_EPSILON);
    CHECK(rss >= 0 && rss <= 1e-26);
    CHECK(memcmp(x, x0, sizeof x) == 0); /* inputs are not modified */
    CHECK(memcmp(y, y0, sizeof y) == 0);

    /* the same line over token counts spanning five orders of magnitude: the
     * intercept is a 1e-5 part of the largest y, so it is known only to about
     * eps x max|y| */
    double xt[8 * 2], yt[8];
    const double t[8] = {1, 7, 64, 300, 1024, 4096, 50000, 131072};
    for (size_t i = 0; i < 8; i++) {
        xt[i * 2 + 0] = 1;
        xt[i * 2 + 1] = t[i];
        yt[i] = 3 + 2 * t[i];
    }
    CHECK(warmcal_lstsq(xt, yt, 8, 2, beta, &rss, NULL) == WARMCAL_OK);
    printf("y = 3 + 2x, x = 1..131072: beta = %.17g, %.17g, rss = %.3g\n", beta[0], beta[1], rss);
    CHECK(fabs(beta[0] - 3) <= 100 * DBL_EPSILON * yt[7]);
    CHECK(fabs(beta[1] - 2) <= 100 * 2 * DBL_EPSILON);
    CHECK(rss >= 0 && rss <= 1e-20);

    /* a square system is solved exactly; rss may be NULL */
    double sq[2 * 2] = {1, 1, 1, 3}, ys[2] = {5, 9};
    CHECK(warmcal_lstsq(sq, ys, 2, 2, beta, NULL, NULL) == WARMCAL_OK);
    CHECK(fabs(beta[0] - 3) <= 8 * 3 * DBL_EPSILON && fabs(beta[1] - 2) <= 8 * 2 * DBL_EPSILON);

    /* one column, through the origin */
    double xo[3] = {1, 2, 4}, yo[3] = {0.5, 1, 2};
    CHECK(warmcal_lstsq(xo, yo, 3, 1, beta, &rss, NULL) == WARMCAL_OK);
    CHECK(fabs(beta[0] - 0.5) <= 4 * 0.5 * DBL_EPSILON && rss <= 1e-30);
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0); /* the table interleaves with stderr */
    const char *only = argc > 1 ? argv[1] : NULL;
#define CASE(name)                              \
    if (!only || strcmp(only, #name) == 0) {    \
        RUN(name);                              \
        ran++;                                  \
    }
    int ran = 0;
    CASE(lstsq_matches_nist_strd_certified_values);
    CASE(lstsq_rejects_degenerate_systems);
    CASE(lstsq_recovers_an_exact_line);
    if (!ran) {
        fprintf(stderr, "unknown case %s\n", only);
        return 2;
    }
    CHECK_DONE();
}
