/* The table the C gate tests open, as tests/gate/python/gatetest.py writes
 * it for the Python ones: any rank (-1) needs 1 GiB + 1 MiB per token for
 * context passes of 1..32768 tokens, no margins, TP 4, GPU "test GPU";
 * `extra` shifts every need (another table). Needs ../check.h. Inline, so
 * that a test using only one of them builds without warnings. */
#include "warmcal/table.h"

/* An empty table of the tests' configuration (test-model, TP 4, "test
 * GPU", 80 GiB); the caller adds estimates and frees it. */
static inline warmcal_table *new_test_table(void)
{
    warmcal_table *t = NULL;
    warmcal_error err = {0};
    CHECK(warmcal_table_new(&t, &err) == WARMCAL_OK);
    snprintf(t->config.model, sizeof t->config.model, "test-model");
    t->config.tp = 4;
    snprintf(t->config.gpu_name, sizeof t->config.gpu_name, "test GPU");
    t->config.gpu_total_bytes = 80ull << 30;
    return t;
}

static inline void write_test_table(const char *path, double extra)
{
    warmcal_table *t = new_test_table();
    warmcal_error err = {0};
    warmcal_estimate e = {.rank = -1, .label = "context", .tokens_min = 1, .tokens_max = 32768,
                          .form = WARMCAL_FORM_LINEAR,
                          .coef = {(double)(1ull << 30) + extra, (double)(1ull << 20)}};
    e.fit.points = 10;
    CHECK(warmcal_table_add_estimate(t, &e, &err) == WARMCAL_OK);
    CHECK(warmcal_table_write(t, path, &err) == WARMCAL_OK);
    warmcal_table_free(t);
}
