/* warmcal/table.h — the estimate table: per (rank, label), a calibrated
 * bytes-versus-tokens estimate with its margin and range. Defined once here,
 * in the gate, because the gate evaluates it in production; the estimator
 * writes tables through it and the CLI reads them through it. The format and
 * the evaluation rule are in docs/formats.md ("Estimate table"). */
#ifndef WARMCAL_TABLE_H
#define WARMCAL_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include "warmcal/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WARMCAL_TABLE_FORMAT "warmcal-table"
#define WARMCAL_TABLE_VERSION 1
#define WARMCAL_TABLE_ANY_RANK (-1)
#define WARMCAL_TABLE_LABEL_LEN 32
#define WARMCAL_TABLE_MAX_KNOTS 4096

/* Model forms, named in the file "linear", "quadratic", "envelope". */
typedef enum {
    WARMCAL_FORM_LINEAR = 0,    /* bytes = c0 + c1*t */
    WARMCAL_FORM_QUADRATIC = 1, /* bytes = c0 + c1*t + c2*t^2 */
    WARMCAL_FORM_ENVELOPE = 2   /* monotone piecewise-linear through knots (t, bytes) */
} warmcal_form;

/* What evaluation does above tokens_max, named "refuse" and "extrapolate".
 * Below tokens_min the estimate at tokens_min is used (needs grow with tokens). */
typedef enum {
    WARMCAL_ABOVE_REFUSE = 0,      /* default: no estimate outside what was measured */
    WARMCAL_ABOVE_EXTRAPOLATE = 1  /* evaluate the model (an envelope continues its last slope) */
} warmcal_above_policy;

/* One estimate. The published bytes for t tokens are
 * ceil(max(0, model(t)) * (1 + margin.relative) + margin.total), with the
 * range rule above. */
typedef struct {
    int rank;                            /* >= 0, or WARMCAL_TABLE_ANY_RANK */
    char label[WARMCAL_TABLE_LABEL_LEN]; /* "context", "generation", ... */
    uint64_t tokens_min, tokens_max;     /* calibrated range, min <= max */
    warmcal_form form;
    double coef[3];                      /* linear: c0, c1; quadratic: c0, c1, c2 (bytes, t in tokens) */
    size_t n_knots;                      /* envelope: 2..WARMCAL_TABLE_MAX_KNOTS */
    uint64_t *knot_tokens;               /* envelope: strictly increasing; owned by the table */
    double *knot_bytes;                  /* envelope: non-decreasing; owned by the table */
    struct {
        double relative;    /* fraction the model is scaled up by: noise that grows with the pass */
        double total;       /* bytes added to the scaled model: the sum of the parts below */
        double residual;    /* largest amount a measured point exceeds the scaled model */
        double loo;         /* largest amount a point exceeds its scaled leave-one-out prediction, beyond `residual` */
        double granularity; /* allocator rounding (2 MiB) */
    } margin;
    struct {
        size_t points;      /* fitted phases */
        double rmse;        /* root mean square residual, bytes */
        double max_residual;/* largest |residual|, bytes */
        double loo_rmse;    /* leave-one-out root mean square error, bytes */
    } fit;
    struct {
        /* lowest device free memory at a phase's begin on this rank (for rank
         * -1: on any rank) during calibration, 0 if not sampled: what the
         * rank had left when it was measured, so a rank with extra resident
         * memory shows it in its own entry */
        uint64_t device_free_min;
    } calibration;
    struct {
        size_t oom;         /* phases that ran out of memory (not fitted) */
        uint64_t oom_tokens_min; /* smallest token count that ran out of memory, 0 if none */
        size_t aborted;     /* phases that never ended (not fitted) */
    } failures;
} warmcal_estimate;

typedef struct {
    char name[256];   /* file name as given to the fitter */
    char sha256[65];  /* lowercase hex */
} warmcal_table_source;

/* A table in memory. Every pointer is owned by the table; release it with
 * warmcal_table_free. */
typedef struct {
    int version;
    struct {
        char model[128];
        int tp;                    /* world size of the calibration run */
        char gpu_name[64];
        uint64_t gpu_total_bytes;
    } config;
    char tool_version[32];
    char created[32];              /* ISO 8601 UTC */
    warmcal_above_policy above_range;
    warmcal_table_source *sources;
    size_t n_sources;
    warmcal_estimate *estimates;
    size_t n_estimates;
    char sha256[65];               /* SHA-256 of the bytes warmcal_table_read parsed; "" when built in memory */
} warmcal_table;

/* A new empty table (version 1, policy refuse). *out is owned by the caller.
 * Errors: WARMCAL_E_NOMEM. */
WARMCAL_API int warmcal_table_new(warmcal_table **out, warmcal_error *err);

/* Append an estimate (copied, knots included) or a source. The table keeps
 * its own copies. Errors: WARMCAL_E_NOMEM, WARMCAL_E_INVAL for an estimate
 * that warmcal_table_validate would reject. */
WARMCAL_API int warmcal_table_add_estimate(warmcal_table *t, const warmcal_estimate *e, warmcal_error *err);
WARMCAL_API int warmcal_table_add_source(warmcal_table *t, const char *name, const char *sha256_hex,
                                         warmcal_error *err);

/* Check every rule of docs/formats.md: format and version, configuration,
 * ranks >= -1, labels, ranges with min <= max, known forms and finite
 * coefficients, knots increasing and non-decreasing, non-negative finite
 * margins, no duplicate (rank, label). err names `path` (may be NULL) and the
 * field path, e.g. "estimates[3].tokens_max". Errors: WARMCAL_E_FIELD. */
WARMCAL_API int warmcal_table_validate(const warmcal_table *t, const char *path, warmcal_error *err);

/* Read and validate a table file. *out is owned by the caller (NULL on
 * error). Errors: WARMCAL_E_IO (missing, unreadable, not a regular file),
 * WARMCAL_E_FORMAT (not JSON, truncated, wrong format or version: err.where
 * holds line and column for syntax errors), WARMCAL_E_FIELD (a field missing,
 * of the wrong type, NaN, negative, overflowing or out of range; err.where is
 * its path). */
WARMCAL_API int warmcal_table_read(const char *path, warmcal_table **out, warmcal_error *err);

/* Validate the table, make its text and read that text back (it must read
 * as this very table), then write it. What is at path decides how:
 * - nothing, or a regular file: a temporary file beside it, flushed to disk
 *   and renamed over it, so path holds the old table or the new one, never
 *   a mix; a symbolic link is followed and its target replaced (or
 *   created), the link itself is left as it is;
 * - a character device (/dev/null, a terminal) or a FIFO (a pipe, as
 *   /dev/stdout may be): written through in place, never renamed over; a
 *   FIFO that nothing reads is an error at once, not a wait;
 * - anything else (a folder, a block device, a socket): refused, untouched.
 * Errors: WARMCAL_E_INVAL (NULL or empty path), WARMCAL_E_FIELD
 * (validation), WARMCAL_E_NOMEM (out of memory, including a text that did
 * not read back as the table), WARMCAL_E_IO (path unsuitable or a system
 * call failed). On every error before the rename, path is unchanged and the
 * temporary file is removed. */
WARMCAL_API int warmcal_table_write(const warmcal_table *t, const char *path, warmcal_error *err);

/* The entry for (rank, label), whatever the token count: the rank's own one,
 * else the rank -1 one for that label, else NULL (warmcal_table_find_for
 * applies the ranges). The pointer is owned by the table. */
WARMCAL_API const warmcal_estimate *warmcal_table_find(const warmcal_table *t, int rank, const char *label);

/* The entry that serves a pass of `tokens` tokens on `rank`, by the rule of
 * warmcal_table_estimate and the gate: the rank's own entry for label, or
 * the rank -1 one when the rank has none, or when tokens lie above the
 * rank's own tokens_max and the rank -1 entry's range reaches further (a
 * rank that ran out of memory during calibration ends its own range early).
 * NULL when neither exists. The pointer is owned by the table. */
WARMCAL_API const warmcal_estimate *warmcal_table_find_for(const warmcal_table *t, int rank,
                                                           const char *label, uint64_t tokens);

/* Estimated bytes for a pass of `tokens` tokens and `batch` sequences on
 * `rank`, from the entry warmcal_table_find_for gives (version 1 estimates
 * depend on tokens only; batch is accepted for later versions). tokens 0 is
 * no pass: refused, as the gate refuses it. Errors: WARMCAL_E_FIELD when no
 * entry serves (rank, label) (err.where "rank R, label L"), WARMCAL_E_RANGE
 * above the serving entry's tokens_max under the refuse policy,
 * WARMCAL_E_OVERFLOW when the estimate does not fit in 64 bits,
 * WARMCAL_E_INVAL for tokens == 0 or rank < -1. */
WARMCAL_API int warmcal_table_estimate(const warmcal_table *t, int rank, const char *label,
                                       uint64_t tokens, uint32_t batch, uint64_t *bytes,
                                       warmcal_error *err);

/* The largest token count warmcal_table_max_tokens ever answers: the bound
 * a trace's phases have (WARMCAL_TRACE_TOKENS_MAX, 2^40), so that a table
 * extrapolating a flat estimate still gives a number. */
#define WARMCAL_TABLE_TOKENS_MAX (UINT64_C(1) << 40)

/* What stops a token budget (warmcal_table_max_tokens) where it stops: what
 * a pass of one token more meets. The values are those of the gate's
 * warmcal_reason for that pass (gate.h), so a budget and a decision speak
 * of a limit alike. */
typedef enum {
    WARMCAL_BUDGET_BOUND = 0,       /* nothing below WARMCAL_TABLE_TOKENS_MAX: the search ends there */
    WARMCAL_BUDGET_MEMORY = 1,      /* one token more needs more than free_bytes - reserve */
    WARMCAL_BUDGET_RANGE = 3,       /* one token more lies above the calibrated range of every
                                       entry that could serve the rank, policy refuse */
    WARMCAL_BUDGET_NO_ESTIMATE = 4, /* no entry serves the rank and label at all */
    WARMCAL_BUDGET_TOO_LARGE = 5    /* one token more has an estimate beyond 64 bits */
} warmcal_budget_limit;

/* The token budget of one rank: the largest T such that every pass of 1..T
 * tokens (and `batch` sequences; version 1 estimates ignore it) fits, that
 * is estimate + reserve <= free_bytes with the estimate of
 * warmcal_table_estimate — the entry warmcal_table_find_for names (the
 * rank's own, or the any-rank one above the rank's own range) — and the
 * gate's arithmetic (need + reserve saturates at 2^64 - 1). So the gate
 * runs a pass of T tokens and skips one of T + 1. 0 when not even one
 * token fits; at most WARMCAL_TABLE_TOKENS_MAX.
 * above_range: -1 for the table's policy, else a warmcal_above_policy
 * (the gate's option of that name); under refuse no budget reaches above
 * the calibrated range. Needs do not fall with tokens in a table that
 * passes `warmcal check`, but only inside its ranges: extrapolating, a
 * quadratic that bends down rises to its vertex and falls back, and a
 * table that fails the check still reads. So the search follows the
 * estimate piece by piece (its ends, its vertex), where it is monotone,
 * and answers the first failure less one, never a larger count that fits
 * again behind a failure. *limit (NULL allowed): what one token more meets,
 * a warmcal_budget_limit. `warmcal plan` and warmcal_gate_max_tokens are
 * built on this function.
 * Errors: WARMCAL_E_FIELD when no entry serves (rank, label) (*tokens 0,
 * *limit WARMCAL_BUDGET_NO_ESTIMATE, err.where "rank R, label L"),
 * WARMCAL_E_INVAL for NULL arguments, rank < -1 or an unknown above_range. */
WARMCAL_API int warmcal_table_max_tokens(const warmcal_table *t, int rank, const char *label,
                                         uint32_t batch, int above_range, uint64_t free_bytes,
                                         uint64_t reserve, uint64_t *tokens, int *limit,
                                         warmcal_error *err);

/* Name of a warmcal_budget_limit ("search bound", "low memory", "outside
 * the calibrated range", "no estimate", "estimate too large"). */
WARMCAL_API const char *warmcal_budget_limit_name(int limit);

/* Evaluate one estimate (same rule, without lookup). Errors as
 * warmcal_table_estimate's, but for the lookup. */
WARMCAL_API int warmcal_estimate_eval(const warmcal_estimate *e, warmcal_above_policy above,
                                      uint64_t tokens, uint64_t *bytes, warmcal_error *err);

/* The model alone at `tokens` (bytes, unrounded): the form's value that the
 * published bytes are made from, before the range rule and the margin (an
 * envelope: its first knot's bytes below its knots, its last segment
 * continued above them). The estimator sizes margins with it. Errors:
 * WARMCAL_E_INVAL (NULL arguments, an unknown form, an envelope without
 * knots). */
WARMCAL_API int warmcal_estimate_model(const warmcal_estimate *e, uint64_t tokens, double *bytes,
                                       warmcal_error *err);

/* What `warmcal check` adds to validation: every entry's published bytes fit
 * in 64 bits at tokens_min and tokens_max and never fall as tokens grow
 * inside that range (a quadratic is also checked on both sides of its
 * vertex). Not part of warmcal_table_validate: a table that breaks it still
 * reads, so the gate reports the shapes it cannot serve one by one
 * (WARMCAL_REASON_ESTIMATE_TOO_LARGE) instead of refusing to open, and a fit
 * of measured points is written to be looked at. err names `path` (may be
 * NULL) and "estimates[i].model". Errors: WARMCAL_E_FIELD. */
WARMCAL_API int warmcal_table_check_estimates(const warmcal_table *t, const char *path,
                                              warmcal_error *err);

/* SHA-256 of a file's bytes as 64 lowercase hex digits plus NUL in hex.
 * Errors: WARMCAL_E_IO. */
WARMCAL_API int warmcal_sha256_file(const char *path, char hex[65], warmcal_error *err);

/* Names: "linear"/"quadratic"/"envelope", "refuse"/"extrapolate". */
WARMCAL_API const char *warmcal_form_name(warmcal_form f);
WARMCAL_API const char *warmcal_above_policy_name(warmcal_above_policy p);

/* Free a table and everything it owns. NULL is allowed. */
WARMCAL_API void warmcal_table_free(warmcal_table *t);

#ifdef __cplusplus
}
#endif
#endif
