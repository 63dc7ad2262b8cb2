/* warmcal/estimator.h — from measured phases to calibrated estimates.
 *
 * Per (rank, label) the points are (tokens, need), need being a phase's peak
 * delta plus any device-level growth its allocation events do not explain.
 * Three candidate models are fitted (linear and quadratic by QR least squares
 * on a scaled token axis, and a monotone piecewise-linear upper envelope),
 * the simplest one whose leave-one-out error is within the parsimony factor
 * of the best is chosen among those that never decrease inside the
 * calibrated range, and a margin — relative, for run-to-run noise that
 * grows with the pass, and absolute — makes the estimate an upper bound on
 * every measured point and every leave-one-out prediction, plus allocator
 * granularity. Method and rationale: docs/methodology.md. */
#ifndef WARMCAL_ESTIMATOR_H
#define WARMCAL_ESTIMATOR_H

#include <stddef.h>
#include <stdint.h>
#include "warmcal/error.h"
#include "warmcal/table.h"
#include "warmcal/trace.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint64_t granularity;          /* allocator rounding added to every margin; 0: 2 MiB */
    double parsimony;              /* a more complex model must cut the LOO RMSE below
                                      (1 - parsimony) x the simpler one's; 0: 0.10 */
    warmcal_above_policy above_range;
} warmcal_fit_options;

/* Candidate statistics of one fit, for reports. */
typedef struct {
    int usable;        /* enough points for this form */
    double loo_rmse;   /* leave-one-out root mean square error, bytes */
    int never_falls;   /* usable and not decreasing anywhere in the calibrated range:
                          only such a form may be chosen (`warmcal check` refuses an
                          estimate that falls) */
} warmcal_candidate;

/* Fit one point set. t[i] > 0 tokens, y[i] >= 0 bytes, finite. Needs at least
 * 3 points over at least 3 distinct token counts. On success *out is filled
 * (rank -1, label "" and failures zero: the caller sets them); its knots, if
 * any, are malloc'd and released by warmcal_estimate_clear. cand (may be
 * NULL) receives the three candidates, indexed by warmcal_form. A form whose
 * estimate decreases somewhere in the calibrated range is never chosen (the
 * envelope never does), and the result passes warmcal_table_check_estimates.
 * Errors: WARMCAL_E_INVAL with the reason (too few points, all token counts
 * equal, a negative or non-finite value, every need zero, an estimate beyond
 * 64 bits), WARMCAL_E_NOMEM. */
WARMCAL_API int warmcal_fit_points(const double *t, const double *y, size_t n,
                                   const warmcal_fit_options *opts, warmcal_estimate *out,
                                   warmcal_candidate cand[3], warmcal_error *err);

/* Release what warmcal_fit_points allocated in e (knots) and zero them. */
WARMCAL_API void warmcal_estimate_clear(warmcal_estimate *e);

/* Need of a phase in bytes: live_peak - live_begin, plus the drop in device
 * free memory over the phase that the source does not account for, when both
 * edges were sampled: the drop less the growth of live bytes or, when the
 * phase carries a caching allocator's reservation (reserved_begin or
 * reserved_end non-zero), less the reservation's change (a cache given back
 * during the phase adds to what was taken beside it). Saturates at
 * UINT64_MAX. */
WARMCAL_API uint64_t warmcal_phase_need(const warmcal_phase *p);

/* A (rank, label) that could not be estimated, and why. */
typedef struct {
    int rank; /* -1: the any-rank entry */
    char label[WARMCAL_TABLE_LABEL_LEN];
    char reason[WARMCAL_ERROR_TEXT_LEN + 40];
    int any_rank_entry; /* 1: the table has a rank -1 entry for this label, which the
                           gate uses for this rank; 0: it has none (no entry serves it) */
} warmcal_fit_note;

/* Fit every (rank, label) of the traces, plus a rank -1 entry per label (at
 * each token count, the largest need over ranks, with its margin raised so it
 * never publishes less than a rank's own entry where that rank measured),
 * into a new table with the traces' configuration and their sources (name
 * and SHA-256 of each file). Only phases with outcome ok are fitted; oom and
 * aborted ones are counted in each entry's failures. A (rank, label) that
 * cannot be fitted (fewer than 3 completed phases, say, because the others
 * ran out of memory) is left out of the table — the gate then uses the
 * rank -1 entry for it, where one could be fitted (the note's
 * any_rank_entry says) — and described in *notes (n_notes of them; malloc'd,
 * free() them; notes may be NULL). Traces must share model, world size and
 * GPU. The table keeps model and GPU names whole: a longer name than its
 * configuration holds is refused, never cut. *out is owned by the caller.
 * Errors: WARMCAL_E_MISMATCH (traces of different configurations),
 * WARMCAL_E_INVAL (no phases, or nothing at all could be fitted: err.where
 * names the first "rank R, label L"; a trace path a table cannot list; an
 * entry that warmcal_table_check_estimates would refuse, named in err.where
 * the same way: no table is returned),
 * WARMCAL_E_FIELD (a model or gpu_name longer than the table holds, or not
 * UTF-8: err names the trace and its attribute), WARMCAL_E_IO (hashing a
 * source), WARMCAL_E_NOMEM. */
WARMCAL_API int warmcal_fit_traces(const warmcal_trace *const *traces, size_t n,
                                   const warmcal_fit_options *opts, warmcal_table **out,
                                   warmcal_fit_note **notes, size_t *n_notes, warmcal_error *err);

#ifdef __cplusplus
}
#endif
#endif
