/* sample_table.h — the reference table the table tests share (C tests and,
 * through table_helper, the command-line tests): every form, a rank -1 entry,
 * awkward doubles (negative, subnormal, 0.1, 1/3) that must survive a round
 * trip bit for bit. */
#ifndef WARMCAL_TEST_SAMPLE_TABLE_H
#define WARMCAL_TEST_SAMPLE_TABLE_H

#include <stdio.h>
#include <string.h>

#include "warmcal/table.h"

#define SAMPLE_GIB (1024.0 * 1024.0 * 1024.0)
#define SAMPLE_MIB (1024.0 * 1024.0)

static warmcal_estimate sample_estimate(int rank, const char *label, uint64_t tmin, uint64_t tmax,
                                        warmcal_form form)
{
    warmcal_estimate e;
    memset(&e, 0, sizeof e);
    e.rank = rank;
    snprintf(e.label, sizeof e.label, "%s", label);
    e.tokens_min = tmin;
    e.tokens_max = tmax;
    e.form = form;
    e.margin.residual = 1000000.5;
    e.margin.loo = 123456.789;
    e.margin.granularity = 2 * SAMPLE_MIB;
    e.margin.total = e.margin.residual + e.margin.loo + e.margin.granularity;
    e.fit.points = 40;
    e.fit.rmse = 0.1;
    e.fit.max_residual = 1.0 / 3.0;
    e.fit.loo_rmse = 4.9406564584124654e-324; /* the smallest subnormal */
    return e;
}

/* Builds the reference table into *out; returns 0 or a warmcal code. The
 * number of estimates varies with `knots_per_envelope` only in knot count. */
static int sample_table_sized(warmcal_table **out, size_t knots_per_envelope, size_t n_envelopes,
                              warmcal_error *err)
{
    warmcal_table *t = NULL;
    int rc = warmcal_table_new(&t, err);
    if (rc)
        return rc;
    snprintf(t->config.model, sizeof t->config.model, "meta-llama/Llama-3.1-70B-Instruct");
    t->config.tp = 4;
    snprintf(t->config.gpu_name, sizeof t->config.gpu_name, "NVIDIA H200");
    t->config.gpu_total_bytes = 150754820096ull;
    snprintf(t->tool_version, sizeof t->tool_version, "0.1.0");
    snprintf(t->created, sizeof t->created, "2026-11-25T04:00:00Z");
    rc = warmcal_table_add_source(t, "out/rank-0.h5",
                                  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", err);
    rc = rc ? rc
            : warmcal_table_add_source(
                  t, "out/rank-1.h5",
                  "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", err);

    warmcal_estimate e = sample_estimate(0, "context", 1, 32784, WARMCAL_FORM_LINEAR);
    e.coef[0] = 1610612736.25;
    e.coef[1] = 262144.123456789;
    rc = rc ? rc : warmcal_table_add_estimate(t, &e, err);

    e = sample_estimate(1, "context", 16, 32784, WARMCAL_FORM_QUADRATIC);
    e.coef[0] = -5e8; /* negative at small t: the estimate is then the margin alone */
    e.coef[1] = 131072.0;
    e.coef[2] = 0.1;
    e.failures.oom = 2;
    e.failures.oom_tokens_min = 24576;
    e.failures.aborted = 1;
    rc = rc ? rc : warmcal_table_add_estimate(t, &e, err);

    e = sample_estimate(0, "generation", 1, 256, WARMCAL_FORM_LINEAR);
    e.coef[0] = 2.5 * SAMPLE_GIB;
    e.coef[1] = 1e6;
    rc = rc ? rc : warmcal_table_add_estimate(t, &e, err);

    e = sample_estimate(-1, "generation", 1, 512, WARMCAL_FORM_LINEAR);
    e.coef[0] = 3 * SAMPLE_GIB;
    e.coef[1] = 2e6;
    rc = rc ? rc : warmcal_table_add_estimate(t, &e, err);

    for (size_t k = 0; !rc && k < n_envelopes; k++) {
        size_t n = knots_per_envelope;
        uint64_t kt[WARMCAL_TABLE_MAX_KNOTS];
        double kb[WARMCAL_TABLE_MAX_KNOTS];
        for (size_t i = 0; i < n; i++) {
            kt[i] = 1 + 8 * (uint64_t)i;
            kb[i] = 1e9 + 1.0 / 3.0 * (double)(i * i) + 12345.678 * (double)i + (double)k;
        }
        char label[WARMCAL_TABLE_LABEL_LEN];
        snprintf(label, sizeof label, k ? "context-%zu" : "context", k);
        e = sample_estimate(-1, label, 1, kt[n - 1] + 100, WARMCAL_FORM_ENVELOPE);
        e.n_knots = n;
        e.knot_tokens = kt;
        e.knot_bytes = kb;
        rc = warmcal_table_add_estimate(t, &e, err);
    }
    if (rc) {
        warmcal_table_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

static int sample_table(warmcal_table **out, warmcal_error *err)
{
    return sample_table_sized(out, 5, 1, err);
}

#endif
