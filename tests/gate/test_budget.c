/* Token budgets in the table library (warmcal_table_max_tokens): the largest
 * T such that every pass of 1..T tokens fits, checked against the numbers
 * the estimates give and against a token-by-token scan with
 * warmcal_table_estimate (the rule `warmcal estimate` and the gate use), on
 * tables whose needs rise, stay flat, fall, or rise and fall again.
 *
 * usage: test_budget [CASE]   (no CASE: run them all; ctest runs one each) */
#define _POSIX_C_SOURCE 200809L
#include "../check.h"
#include "test_table.h"

#include <stdint.h>

#define GiB (1ull << 30)
#define MiB (1ull << 20)
#define KiB (1ull << 10)

static warmcal_estimate linear(int rank, const char *label, uint64_t tokens_max, double c0,
                               double c1)
{
    warmcal_estimate e = {.rank = rank, .tokens_min = 1, .tokens_max = tokens_max,
                          .form = WARMCAL_FORM_LINEAR, .coef = {c0, c1}};
    snprintf(e.label, sizeof e.label, "%s", label);
    e.fit.points = 10;
    return e;
}

static warmcal_table *table_of(const warmcal_estimate *e, size_t n, warmcal_above_policy above)
{
    warmcal_table *t = new_test_table();
    warmcal_error err = {0};
    for (size_t i = 0; i < n; i++)
        CHECK(warmcal_table_add_estimate(t, &e[i], &err) == WARMCAL_OK);
    t->above_range = above;
    return t;
}

/* The test table "a": any rank needs 1 GiB + 1 MiB per context token over
 * 1..32768 tokens, no margins. */
static warmcal_table *table_a(warmcal_above_policy above)
{
    warmcal_estimate e = linear(-1, "context", 32768, (double)GiB, (double)MiB);
    return table_of(&e, 1, above);
}

static uint64_t budget(const warmcal_table *t, int rank, const char *label, int above,
                       uint64_t free_bytes, uint64_t reserve, int *limit)
{
    uint64_t tokens = 12345;
    warmcal_error err = {0};
    int rc = warmcal_table_max_tokens(t, rank, label, 1, above, free_bytes, reserve, &tokens, limit,
                                      &err);
    if (rc != WARMCAL_OK)
        fprintf(stderr, "max_tokens: %s: %s\n", err.where, err.text);
    CHECK(rc == WARMCAL_OK);
    return tokens;
}

/* The budget by a scan from 1 token up with warmcal_table_estimate (the
 * table's own policy): the first count that does not fit, less one, and
 * the limit it meets in *limit; `upto` (limit -1) when every count up to it
 * fits. The gate's test: need + reserve, saturated at 2^64 - 1, <= free. */
static uint64_t scan(const warmcal_table *t, int rank, const char *label, uint64_t free_bytes,
                     uint64_t reserve, uint64_t upto, int *limit)
{
    for (uint64_t k = 1; k <= upto; k++) {
        uint64_t bytes = 0;
        int rc = warmcal_table_estimate(t, rank, label, k, 1, &bytes, NULL);
        *limit = rc == WARMCAL_E_RANGE      ? WARMCAL_BUDGET_RANGE
                 : rc == WARMCAL_E_OVERFLOW ? WARMCAL_BUDGET_TOO_LARGE
                 : rc != WARMCAL_OK         ? -2
                                            : WARMCAL_BUDGET_MEMORY;
        if (rc != WARMCAL_OK)
            return k - 1;
        uint64_t need = bytes > UINT64_MAX - reserve ? UINT64_MAX : bytes + reserve;
        if (need > free_bytes)
            return k - 1;
    }
    *limit = -1;
    return upto;
}

/* The budget equals the scan's, limit included; or, where the scan reached
 * `upto` with every count fitting, the budget is at least that. */
static void check_against_scan(const warmcal_table *t, int rank, const char *label,
                               uint64_t free_bytes, uint64_t reserve, uint64_t upto)
{
    int limit = -3, scan_limit = -3;
    uint64_t got = budget(t, rank, label, -1, free_bytes, reserve, &limit);
    uint64_t want = scan(t, rank, label, free_bytes, reserve, upto, &scan_limit);
    int ok = scan_limit == -1 ? got >= upto : got == want && limit == scan_limit;
    if (!ok)
        fprintf(stderr, "rank %d %s free %" PRIu64 " reserve %" PRIu64 ": budget %" PRIu64
                        " (limit %d), scan %" PRIu64 " (limit %d)\n",
                rank, label, free_bytes, reserve, got, limit, want, scan_limit);
    CHECK(ok);
}

static void nothing_fits_is_zero(void)
{
    warmcal_table *t = table_a(WARMCAL_ABOVE_REFUSE);
    int limit = -3;
    /* one token needs 1 GiB + 1 MiB */
    CHECK_EQ_U64(budget(t, 0, "context", -1, GiB + MiB - 1, 0, &limit), 0);
    CHECK(limit == WARMCAL_BUDGET_MEMORY);
    CHECK_EQ_U64(budget(t, 0, "context", -1, 0, 0, &limit), 0);
    /* a reserve larger than the free memory leaves nothing, however small the pass */
    CHECK_EQ_U64(budget(t, 0, "context", -1, 40 * GiB, 41 * GiB, &limit), 0);
    CHECK(limit == WARMCAL_BUDGET_MEMORY);
    /* exactly one token */
    CHECK_EQ_U64(budget(t, 0, "context", -1, GiB + MiB, 0, &limit), 1);
    warmcal_table_free(t);
}

static void the_budget_is_exact_to_the_byte(void)
{
    warmcal_table *t = table_a(WARMCAL_ABOVE_REFUSE);
    int limit = -3;
    uint64_t reserve = 256 * MiB;
    /* 1000 tokens need 1 GiB + 1000 MiB, plus the reserve */
    uint64_t need_1000 = GiB + 1000 * MiB + reserve;
    CHECK_EQ_U64(budget(t, 3, "context", -1, need_1000, reserve, &limit), 1000);
    CHECK(limit == WARMCAL_BUDGET_MEMORY);
    CHECK_EQ_U64(budget(t, 3, "context", -1, need_1000 - 1, reserve, &limit), 999);
    CHECK_EQ_U64(budget(t, 3, "context", -1, need_1000 + MiB - 1, reserve, &limit), 1000);
    CHECK_EQ_U64(budget(t, 3, "context", -1, need_1000 + MiB, reserve, &limit), 1001);
    /* a reserve is the same as that much less free memory */
    for (uint64_t free_bytes = GiB; free_bytes < 40 * GiB; free_bytes += 777 * MiB + 13) {
        int l1, l2;
        CHECK_EQ_U64(budget(t, 1, "context", -1, free_bytes, reserve, &l1),
                     budget(t, 1, "context", -1, free_bytes - reserve, 0, &l2));
        CHECK(l1 == l2);
    }
    warmcal_table_free(t);
}

static void everything_up_to_the_range_end_fits_under_refuse(void)
{
    warmcal_table *t = table_a(WARMCAL_ABOVE_REFUSE);
    int limit = -3;
    uint64_t need_top = GiB + 32768 * MiB;
    CHECK_EQ_U64(budget(t, 0, "context", -1, need_top, 0, &limit), 32768);
    CHECK(limit == WARMCAL_BUDGET_RANGE);
    CHECK_EQ_U64(budget(t, 0, "context", -1, UINT64_MAX, 0, &limit), 32768);
    CHECK(limit == WARMCAL_BUDGET_RANGE);
    /* one byte less: memory, not the range, stops it one token earlier */
    CHECK_EQ_U64(budget(t, 0, "context", -1, need_top - 1, 0, &limit), 32767);
    CHECK(limit == WARMCAL_BUDGET_MEMORY);
    /* the table's policy, or the caller's (the gate's above_range option) */
    CHECK_EQ_U64(budget(t, 0, "context", WARMCAL_ABOVE_REFUSE, UINT64_MAX, 0, &limit), 32768);
    CHECK(budget(t, 0, "context", WARMCAL_ABOVE_EXTRAPOLATE, 100 * GiB, 0, &limit) > 32768);
    warmcal_table_free(t);
}

static void extrapolating_goes_on_to_memory_or_the_bound(void)
{
    warmcal_table *t = table_a(WARMCAL_ABOVE_EXTRAPOLATE);
    int limit = -3;
    /* 100 GiB hold 1 GiB + 101376 MiB */
    CHECK_EQ_U64(budget(t, 0, "context", -1, 100 * GiB, 0, &limit), 99 * 1024);
    CHECK(limit == WARMCAL_BUDGET_MEMORY);
    CHECK_EQ_U64(budget(t, 0, "context", WARMCAL_ABOVE_REFUSE, 100 * GiB, 0, &limit), 32768);
    CHECK(limit == WARMCAL_BUDGET_RANGE);
    warmcal_table_free(t);

    /* a flat estimate never runs out: the search ends at its bound */
    warmcal_estimate flat = linear(-1, "context", 4096, (double)GiB, 0);
    t = table_of(&flat, 1, WARMCAL_ABOVE_EXTRAPOLATE);
    CHECK_EQ_U64(budget(t, 2, "context", -1, 2 * GiB, 0, &limit), WARMCAL_TABLE_TOKENS_MAX);
    CHECK(limit == WARMCAL_BUDGET_BOUND);
    CHECK_EQ_U64(budget(t, 2, "context", -1, 2 * GiB, 0, NULL), WARMCAL_TABLE_TOKENS_MAX);
    warmcal_table_free(t);
}

/* The original bug's table: rank 0 ran out of memory above 16384 tokens
 * during calibration, so its own entry ends there (1 GiB + 100 KiB per
 * token); the any-rank entry covers 1..32768 with the largest need any rank
 * showed (1 GiB + 120 KiB per token). */
static warmcal_table *rank0_short_table(void)
{
    warmcal_estimate e[2] = {linear(0, "context", 16384, (double)GiB, 100.0 * KiB),
                             linear(-1, "context", 32768, (double)GiB, 120.0 * KiB)};
    return table_of(e, 2, WARMCAL_ABOVE_REFUSE);
}

static void a_rank_above_its_own_range_is_budgeted_by_the_any_rank_entry(void)
{
    warmcal_table *t = rank0_short_table();
    int limit = -3;
    /* 3 GiB: rank 0's own entry fits at 16384 tokens (2.5625 GiB); above it
     * the any-rank entry serves, as in a decision, up to 2 GiB / 120 KiB */
    CHECK_EQ_U64(budget(t, 0, "context", -1, 3 * GiB, 0, &limit), (2 * GiB) / (120 * KiB));
    CHECK(limit == WARMCAL_BUDGET_MEMORY);
    /* rank 1 has no entry of its own: the any-rank one from the first token */
    CHECK_EQ_U64(budget(t, 1, "context", -1, 3 * GiB, 0, &limit), (2 * GiB) / (120 * KiB));
    /* 2.5 GiB: rank 0 stops inside its own range, on its own entry's slope */
    CHECK_EQ_U64(budget(t, 0, "context", -1, 5 * GiB / 2, 0, &limit),
                 (3 * GiB / 2) / (100 * KiB));
    /* plenty: past rank 0's own range, to the end of the any-rank one */
    CHECK_EQ_U64(budget(t, 0, "context", -1, 40 * GiB, 0, &limit), 32768);
    CHECK(limit == WARMCAL_BUDGET_RANGE);
    /* rank -1 asks about the any-rank entry alone */
    CHECK_EQ_U64(budget(t, -1, "context", -1, 3 * GiB, 0, &limit), (2 * GiB) / (120 * KiB));
    for (uint64_t free_bytes = GiB; free_bytes < 6 * GiB; free_bytes += 97 * MiB + 7)
        for (int rank = -1; rank < 3; rank++)
            check_against_scan(t, rank, "context", free_bytes, 64 * MiB, 40000);
    warmcal_table_free(t);
}

static void a_label_without_an_estimate_is_an_error_naming_it(void)
{
    warmcal_table *t = rank0_short_table();
    uint64_t tokens = 5;
    int limit = -3;
    warmcal_error err = {0};
    CHECK(warmcal_table_max_tokens(t, 0, "generation", 1, -1, 40 * GiB, 0, &tokens, &limit,
                                   &err) == WARMCAL_E_FIELD);
    CHECK(tokens == 0 && limit == WARMCAL_BUDGET_NO_ESTIMATE);
    CHECK(strcmp(err.where, "rank 0, label generation") == 0);
    CHECK_STR_CONTAINS(err.text, "no entry in the table");
    /* a table with rank-specific entries only: another rank has none */
    warmcal_estimate own = linear(2, "decode", 100, (double)GiB, (double)MiB);
    warmcal_table *u = table_of(&own, 1, WARMCAL_ABOVE_REFUSE);
    warmcal_error_clear(&err);
    CHECK(warmcal_table_max_tokens(u, 1, "decode", 1, -1, 40 * GiB, 0, &tokens, NULL, &err) ==
          WARMCAL_E_FIELD);
    CHECK_STR_CONTAINS(err.text, "neither for this rank nor for any rank");
    CHECK_EQ_U64(budget(u, 2, "decode", -1, 40 * GiB, 0, &limit), 100);
    warmcal_table_free(u);
    warmcal_table_free(t);
}

static void bad_arguments_are_refused(void)
{
    warmcal_table *t = table_a(WARMCAL_ABOVE_REFUSE);
    uint64_t tokens;
    warmcal_error err = {0};
    CHECK(warmcal_table_max_tokens(NULL, 0, "context", 1, -1, GiB, 0, &tokens, NULL, &err) ==
          WARMCAL_E_INVAL);
    CHECK(warmcal_table_max_tokens(t, 0, NULL, 1, -1, GiB, 0, &tokens, NULL, NULL) ==
          WARMCAL_E_INVAL);
    CHECK(warmcal_table_max_tokens(t, 0, "context", 1, -1, GiB, 0, NULL, NULL, NULL) ==
          WARMCAL_E_INVAL);
    warmcal_error_clear(&err);
    CHECK(warmcal_table_max_tokens(t, -2, "context", 1, -1, GiB, 0, &tokens, NULL, &err) ==
          WARMCAL_E_INVAL);
    CHECK_STR_CONTAINS(err.text, "expected rank -1 (any) or >= 0");
    warmcal_error_clear(&err);
    CHECK(warmcal_table_max_tokens(t, 0, "context", 1, 2, GiB, 0, &tokens, NULL, &err) ==
          WARMCAL_E_INVAL);
    CHECK_STR_CONTAINS(err.text, "above_range");
    warmcal_table_free(t);
}

/* Needs that do not rise everywhere: the budget is the first failure less
 * one, never a larger count that fits again behind it, because a scheduler
 * capped there runs every count below the cap. */
static void needs_that_fall_and_rise_stop_at_the_first_failure(void)
{
    int limit = -3;
    /* A quadratic calibrated on 1..512 tokens that bends down (vertex at
     * 1024 tokens): it passes `warmcal check` (it rises inside its range),
     * but extrapolated it climbs to 2 GiB at 1024 tokens and falls back to
     * its value at 512 tokens (1.75 GiB), where it stays. */
    warmcal_estimate hump = {.rank = -1, .label = "context", .tokens_min = 1, .tokens_max = 512,
                             .form = WARMCAL_FORM_QUADRATIC,
                             .coef = {(double)GiB, 2.0 * MiB, -1.0 * KiB}};
    hump.fit.points = 10;
    warmcal_table *t = table_of(&hump, 1, WARMCAL_ABOVE_EXTRAPOLATE);
    warmcal_error err = {0};
    CHECK(warmcal_table_check_estimates(t, NULL, &err) == WARMCAL_OK);
    uint64_t free_bytes = GiB + 900 * MiB, bytes = 0;
    uint64_t got = budget(t, 0, "context", -1, free_bytes, 0, &limit);
    CHECK(got > 512 && got < 1024 && limit == WARMCAL_BUDGET_MEMORY);
    /* the pass after it does not fit; a much larger one would again */
    CHECK(warmcal_table_estimate(t, 0, "context", got, 1, &bytes, NULL) == WARMCAL_OK &&
          bytes <= free_bytes);
    CHECK(warmcal_table_estimate(t, 0, "context", got + 1, 1, &bytes, NULL) == WARMCAL_OK &&
          bytes > free_bytes);
    CHECK(warmcal_table_estimate(t, 0, "context", 4000, 1, &bytes, NULL) == WARMCAL_OK &&
          bytes <= free_bytes);
    check_against_scan(t, 0, "context", free_bytes, 0, 8192);
    /* above the hump every count fits, up to the bound */
    CHECK_EQ_U64(budget(t, 0, "context", -1, 2 * GiB, 0, &limit), WARMCAL_TABLE_TOKENS_MAX);
    CHECK(limit == WARMCAL_BUDGET_BOUND);
    warmcal_table_free(t);

    /* A U-shaped quadratic, lowest (1 GiB) at 1024 tokens inside its range
     * 1..4096 (a table `warmcal check` refuses, which still reads): with
     * 1.5 GiB not even one token fits, though 1024 would. */
    warmcal_estimate u = hump;
    u.tokens_max = 4096;
    u.coef[0] = 2.0 * GiB;
    u.coef[1] = -2.0 * MiB;
    u.coef[2] = 1.0 * KiB;
    t = table_of(&u, 1, WARMCAL_ABOVE_REFUSE);
    CHECK(warmcal_table_check_estimates(t, NULL, &err) == WARMCAL_E_FIELD);
    CHECK_EQ_U64(budget(t, 0, "context", -1, 3 * GiB / 2, 0, &limit), 0);
    CHECK(warmcal_table_estimate(t, 0, "context", 1024, 1, &bytes, NULL) == WARMCAL_OK &&
          bytes <= 3 * GiB / 2);
    /* 3 GiB: down and up again to 3 GiB at 1024 + sqrt(2) x 1024 tokens */
    CHECK_EQ_U64(budget(t, 0, "context", -1, 3 * GiB, 0, &limit), 2472);
    for (uint64_t f = GiB; f < 4 * GiB; f += 131 * MiB + 1)
        check_against_scan(t, 0, "context", f, 0, 8192);
    warmcal_table_free(t);

    /* A falling line (refused by `warmcal check` too): once one token fits,
     * every count fits to the range's end. */
    warmcal_estimate down = linear(-1, "context", 2048, 2.0 * GiB, -1.0 * MiB);
    t = table_of(&down, 1, WARMCAL_ABOVE_REFUSE);
    CHECK_EQ_U64(budget(t, 0, "context", -1, 2 * GiB, 0, &limit), 2048);
    CHECK(limit == WARMCAL_BUDGET_RANGE);
    CHECK_EQ_U64(budget(t, 0, "context", -1, 2 * GiB - MiB - 1, 0, &limit), 0);
    warmcal_table_free(t);
}

static void an_envelope_is_searched_through_its_knots(void)
{
    uint64_t kt[5] = {1, 1000, 2000, 4000, 8000};
    double kb[5] = {(double)GiB, 2.0 * GiB, 2.0 * GiB, 5.0 * GiB, 5.5 * GiB};
    warmcal_estimate e = {.rank = -1, .label = "context", .tokens_min = 1, .tokens_max = 8000,
                          .form = WARMCAL_FORM_ENVELOPE, .n_knots = 5, .knot_tokens = kt,
                          .knot_bytes = kb};
    e.fit.points = 10;
    e.margin.relative = 0.1;
    e.margin.total = 3.0 * MiB; /* the sum of its parts */
    e.margin.residual = 1.0 * MiB;
    e.margin.granularity = 2.0 * MiB;
    warmcal_table *t = table_of(&e, 1, WARMCAL_ABOVE_REFUSE);
    int limit = -3;
    /* the flat stretch 1000..2000 fits as a whole or not at all */
    uint64_t flat = (uint64_t)(2.0 * GiB * 1.1) + 3 * MiB + 1;
    CHECK(budget(t, 0, "context", -1, flat, 0, &limit) >= 2000);
    CHECK(budget(t, 0, "context", -1, flat - 2, 0, &limit) < 1000);
    for (uint64_t f = GiB; f < 7 * GiB; f += 61 * MiB + 3)
        check_against_scan(t, 0, "context", f, 5 * MiB, 8192);
    t->above_range = WARMCAL_ABOVE_EXTRAPOLATE; /* its last slope, continued */
    for (uint64_t f = 6 * GiB; f < 8 * GiB; f += 211 * MiB + 5)
        check_against_scan(t, 0, "context", f, 0, 40000);
    warmcal_table_free(t);
}

static void an_estimate_beyond_64_bits_limits_as_too_large(void)
{
    /* rank 2's own entry passes 2^64 bytes from 1000 tokens on */
    warmcal_estimate e[2] = {linear(-1, "context", 32768, (double)GiB, (double)MiB),
                             linear(2, "context", 32768, (double)GiB, 1.845e16)};
    warmcal_table *t = table_of(e, 2, WARMCAL_ABOVE_REFUSE);
    int limit = -3;
    CHECK_EQ_U64(budget(t, 2, "context", -1, UINT64_MAX, 0, &limit), 999);
    CHECK(limit == WARMCAL_BUDGET_TOO_LARGE);
    CHECK_EQ_U64(budget(t, 2, "context", -1, 40 * GiB, 0, &limit), 0);
    CHECK(limit == WARMCAL_BUDGET_MEMORY);
    check_against_scan(t, 2, "context", UINT64_MAX, 0, 4000);
    warmcal_table_free(t);
}

static void limits_have_names(void)
{
    CHECK(strcmp(warmcal_budget_limit_name(WARMCAL_BUDGET_BOUND), "search bound") == 0);
    CHECK(strcmp(warmcal_budget_limit_name(WARMCAL_BUDGET_MEMORY), "low memory") == 0);
    CHECK(strcmp(warmcal_budget_limit_name(WARMCAL_BUDGET_RANGE),
                 "outside the calibrated range") == 0);
    CHECK(strcmp(warmcal_budget_limit_name(WARMCAL_BUDGET_NO_ESTIMATE), "no estimate") == 0);
    CHECK(strcmp(warmcal_budget_limit_name(WARMCAL_BUDGET_TOO_LARGE), "estimate too large") ==
          0);
    CHECK(strcmp(warmcal_budget_limit_name(42), "?") == 0);
}

static const struct {
    const char *name;
    void (*fn)(void);
} cases[] = {
    {"nothing_fits_is_zero", nothing_fits_is_zero},
    {"the_budget_is_exact_to_the_byte", the_budget_is_exact_to_the_byte},
    {"everything_up_to_the_range_end_fits_under_refuse",
     everything_up_to_the_range_end_fits_under_refuse},
    {"extrapolating_goes_on_to_memory_or_the_bound",
     extrapolating_goes_on_to_memory_or_the_bound},
    {"a_rank_above_its_own_range_is_budgeted_by_the_any_rank_entry",
     a_rank_above_its_own_range_is_budgeted_by_the_any_rank_entry},
    {"a_label_without_an_estimate_is_an_error_naming_it",
     a_label_without_an_estimate_is_an_error_naming_it},
    {"bad_arguments_are_refused", bad_arguments_are_refused},
    {"needs_that_fall_and_rise_stop_at_the_first_failure",
     needs_that_fall_and_rise_stop_at_the_first_failure},
    {"an_envelope_is_searched_through_its_knots", an_envelope_is_searched_through_its_knots},
    {"an_estimate_beyond_64_bits_limits_as_too_large",
     an_estimate_beyond_64_bits_limits_as_too_large},
    {"limits_have_names", limits_have_names},
};

int main(int argc, char **argv)
{
    int ran = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
            continue;
        fprintf(stderr, "-- %s\n", cases[i].name);
        cases[i].fn();
        ran++;
    }
    if (!ran) {
        fprintf(stderr, "test_budget: no case named '%s'\n", argv[1]);
        return 1;
    }
    CHECK_DONE();
}
