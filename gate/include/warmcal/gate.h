/* warmcal/gate.h — the start-up gate a server calls before its warmup passes.
 *
 * Per warmup shape every rank computes need = estimate(tokens) + reserve
 * from the estimate table (the entry warmcal_table_find_for names: the
 * rank's own, or the any-rank one above the rank's own range, as
 * warmcal_table_estimate) and headroom = free - need (minus infinity when
 * its own batch is invalid); then all ranks take ONE collective for the
 * whole list (two above 64 shapes, see warmcal_gate_decide; never one per
 * shape), so every rank gets the same decisions: run, or skip with the
 * blocking rank, the bytes it lacks and the reason. The collective is a
 * MINLOC over (headroom, rank) carried as one packed 64-bit integer per
 * shape and reduced with MIN (exact to the byte for headrooms within
 * +-64 TiB, at most 65536 ranks). It runs on host memory, is bounded by a
 * deadline, and also checks that every rank loaded the same table and asked
 * about the same shapes. Opening is bounded by the same deadline, so a rank
 * that never arrives is an error on the others, never a hang. A token
 * budget (warmcal_gate_max_tokens: the largest pass every rank can run)
 * takes the same bounded, checked collective.
 *
 * Handles follow SQLite's rule: warmcal_gate_open always gives a handle
 * (unless out of memory), failed or not; read warmcal_gate_last_error on it,
 * then release it with warmcal_gate_close. The library never prints.
 * Link: -lwarmcal-gate (pkg-config warmcal-gate); it needs MPI, jansson and
 * nettle, never HDF5 or CUPTI. */
#ifndef WARMCAL_GATE_H
#define WARMCAL_GATE_H

/* C++ users get MPI's C API only: Open MPI's and MPICH's <mpi.h> would
 * otherwise pull in their deprecated C++ bindings, which need a library
 * (libmpi_cxx) that neither pkg-config's ompi-c nor MPI::MPI_C links. */
#if defined(__cplusplus) && !defined(OMPI_SKIP_MPICXX)
#define OMPI_SKIP_MPICXX 1
#endif
#if defined(__cplusplus) && !defined(MPICH_SKIP_MPICXX)
#define MPICH_SKIP_MPICXX 1
#endif
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>
#include "warmcal/error.h"
#include "warmcal/table.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where free device memory comes from. */
typedef enum {
    WARMCAL_PROBE_CUDA = 0,      /* cuMemGetInfo on the current context; libcuda loaded at run time */
    WARMCAL_PROBE_VALUE = 1,     /* the caller's number (options.free_bytes) */
    WARMCAL_PROBE_CALLBACK = 2,  /* the caller's function (a PyTorch server: torch.cuda.mem_get_info) */
    WARMCAL_PROBE_SIMULATED = 3  /* WARMCAL_SIM_FREE_BYTES from the environment, for tests and dry runs */
} warmcal_probe_kind;

/* Return 0 and set *free_bytes, or non-zero when memory cannot be probed. */
typedef int (*warmcal_free_fn)(void *user, uint64_t *free_bytes);

/* How the need of a shape is computed. */
typedef enum {
    WARMCAL_NEED_TABLE = 0,    /* the estimate table (the point of warmcal) */
    WARMCAL_NEED_CONSTANT = 1  /* the original fix: tokens x a constant, optionally only above a token count */
} warmcal_need_policy;

typedef struct {
    uint64_t reserve_bytes;          /* added to every need */
    double deadline_s;               /* bound on one open or one decision, collectives included; <= 0: 60 s */
    warmcal_probe_kind probe;
    uint64_t free_bytes;             /* WARMCAL_PROBE_VALUE */
    warmcal_free_fn free_fn;         /* WARMCAL_PROBE_CALLBACK */
    void *free_user;
    int above_range;                 /* -1: the table's policy; else a warmcal_above_policy */
    int allow_config_mismatch;       /* accept a table calibrated for another TP size or GPU */
    warmcal_need_policy need_policy;
    uint64_t constant_bytes_per_token; /* WARMCAL_NEED_CONSTANT */
    uint64_t constant_min_tokens;      /* WARMCAL_NEED_CONSTANT: shapes at or below run unchecked (the original fix used 256) */
} warmcal_gate_options;

/* Defaults: no reserve, 60 s deadline, CUDA probe, the table's range policy,
 * configuration checked, table need. */
WARMCAL_API void warmcal_gate_options_init(warmcal_gate_options *o);

/* One warmup shape as this rank sees it. label may be NULL for "context". */
typedef struct {
    uint64_t tokens;   /* at least 1: a shape of 0 tokens fails the decision with WARMCAL_E_INVAL */
    uint32_t batch;
    const char *label;
    int batch_valid;   /* 0: this rank cannot run this batch (the shape skips on every rank) */
} warmcal_shape;

/* Why a shape is skipped. */
typedef enum {
    WARMCAL_REASON_RUN = 0,           /* not skipped */
    WARMCAL_REASON_LOW_MEMORY = 1,    /* blocking_rank lacks short_bytes */
    WARMCAL_REASON_INVALID_BATCH = 2, /* blocking_rank marked the batch invalid */
    WARMCAL_REASON_OUT_OF_RANGE = 3,  /* above the calibrated range of every entry that could
                                         serve blocking_rank, policy refuse */
    WARMCAL_REASON_NO_ESTIMATE = 4,   /* no table entry serves blocking_rank and this label */
    WARMCAL_REASON_ESTIMATE_TOO_LARGE = 5 /* blocking_rank's estimate does not fit in 64 bits
                                             (`warmcal check` refuses such a table) */
} warmcal_reason;

/* The same on every rank after a decision. */
typedef struct {
    int run;                /* 1: run this shape on every rank */
    int reason;             /* a warmcal_reason */
    int blocking_rank;      /* the rank with the least headroom that blocked, -1 when run */
    uint64_t short_bytes;   /* LOW_MEMORY: bytes blocking_rank lacks (UINT64_MAX: 64 TiB or more), else 0 */
    int64_t min_headroom;   /* lowest headroom over ranks, saturated to -2^46..2^46-1 (+-64 TiB); INT64_MIN for the non-memory reasons */
    char text[192];         /* the reason in words */
} warmcal_decision;

typedef struct warmcal_gate warmcal_gate;

/* Open a gate on comm (duplicated: the gate's collectives never mix with the
 * caller's) over the table at table_path (NULL allowed only with
 * WARMCAL_NEED_CONSTANT). Collective over comm, and bounded by
 * opts->deadline_s like a decision: its collectives (the duplicate, then
 * the agreement below) are non-blocking and polled against one deadline,
 * sleeping while they wait. The deadline counts from the end of this rank's
 * own work (reading the table, starting the probe), so it bounds the wait
 * for the other ranks. A rank late by less than the deadline opens
 * normally. Checks the table's TP size against comm's size and, with the
 * CUDA probe, its GPU name against the device's, unless
 * opts->allow_config_mismatch. opts may be NULL for the defaults. *out is
 * set whenever memory allows, on failure too (a NULL out still takes part,
 * failed, so the other ranks fail at once). A gate opens on every rank or on
 * none: when one rank fails, the others fail too, with that rank's code and
 * words ("rank R could not open the gate: ...").
 * Errors:
 * WARMCAL_E_INVAL (options), the table reader's errors, WARMCAL_E_MISMATCH
 * (configuration), WARMCAL_E_UNSUPPORTED (no CUDA driver for the CUDA probe,
 * or a communicator of more than 65536 ranks), WARMCAL_E_TIMEOUT (a rank did
 * not join the open before the deadline: comm has a collective pending that
 * MPI cannot cancel, so it is unusable and the job should end, e.g.
 * MPI_Abort; the gate keeps that collective's buffers alive), WARMCAL_E_STATE
 * (MPI reported an error in the open's collectives),
 * WARMCAL_E_NOMEM (when the gate itself cannot be allocated *out is NULL;
 * in both cases this rank may not have taken part, so the others may time
 * out). */
WARMCAL_API int warmcal_gate_open(warmcal_gate **out, const char *table_path, MPI_Comm comm,
                                  const warmcal_gate_options *opts);

/* The same from a Fortran communicator handle (MPI_Comm_c2f), for bindings
 * (mpi4py's comm.py2f()). */
WARMCAL_API int warmcal_gate_open_f(warmcal_gate **out, const char *table_path, MPI_Fint comm,
                                    const warmcal_gate_options *opts);

/* Take part in an open on comm that this rank has already failed — a
 * binding found its arguments invalid — so that the open fails on every rank
 * at once, as when a rank's table is missing: the others get code and
 * "rank R could not open the gate: " text. code is a warmcal_code (a
 * non-negative one counts as WARMCAL_E_INVAL); text is this rank's message
 * (copied; NULL allowed). Collective over comm, bounded by deadline_s (<= 0
 * or not a number: 60 s). *out is set as by warmcal_gate_open, to a gate
 * that did not open; close it. Returns code, or WARMCAL_E_TIMEOUT (a rank did
 * not join: end the job) or WARMCAL_E_NOMEM as warmcal_gate_open. */
WARMCAL_API int warmcal_gate_open_failed(warmcal_gate **out, MPI_Comm comm, int code,
                                         const char *text, double deadline_s);
WARMCAL_API int warmcal_gate_open_failed_f(warmcal_gate **out, MPI_Fint comm, int code,
                                           const char *text, double deadline_s);

/* Open a gate without MPI, for servers with their own collectives
 * (torch.distributed): the caller runs the reduction, see
 * warmcal_gate_encode. Not collective. Errors as warmcal_gate_open. */
WARMCAL_API int warmcal_gate_open_local(warmcal_gate **out, const char *table_path, int rank,
                                        int world_size, const warmcal_gate_options *opts);

/* Decide n shapes (a gate opened on a communicator) in one collective of a
 * fixed size that carries every rank's count, the checks and up to 64
 * shapes; a longer list goes on in a second collective for the rest.
 * out[n] is caller-owned and, on success, the same on every rank. Every rank
 * must pass the same shapes in the same order (labels, tokens, batches; the
 * batch_valid flags may differ). Errors, each on every rank when the ranks
 * disagree: WARMCAL_E_MISMATCH (different tables or shape lists, lists of
 * different lengths included: the fixed-size first collective finds them
 * before any count could differ, since MPI collectives with different
 * counts are erroneous), WARMCAL_E_TIMEOUT (a rank did not join
 * before the deadline, which bounds the whole call: the communicator is
 * unusable afterwards and the job should end, e.g. MPI_Abort),
 * WARMCAL_E_UNSUPPORTED (the probe failed), WARMCAL_E_INVAL or
 * WARMCAL_E_NOMEM (a rank's bad arguments, a shape of 0 tokens included,
 * or its memory: that rank still takes
 * part, flagged, so every rank fails at once), WARMCAL_E_STATE (MPI reported
 * an error in the collective, a gate whose collective timed out or failed
 * before, or a local gate). */
WARMCAL_API int warmcal_gate_decide(warmcal_gate *g, const warmcal_shape *shapes, size_t n,
                                    warmcal_decision *out);

/* For a local gate: the values to reduce with MIN over all ranks for n
 * shapes: warmcal_gate_encoded_count(n) of them (n + 5); vals must hold that many signed
 * 64-bit integers. Probes free memory. One MIN of these on every rank yields
 * the lowest headroom and its rank per shape, and the table and shape-list
 * checks. Errors: WARMCAL_E_INVAL (bad arrays, a shape of 0 tokens). */
WARMCAL_API size_t warmcal_gate_encoded_count(size_t n);
WARMCAL_API int warmcal_gate_encode(warmcal_gate *g, const warmcal_shape *shapes, size_t n,
                                    int64_t *vals);

/* Turn the MIN-reduced values into decisions (the same on every rank).
 * Errors: WARMCAL_E_MISMATCH as warmcal_gate_decide. */
WARMCAL_API int warmcal_gate_decode(warmcal_gate *g, const int64_t *reduced, size_t n,
                                    warmcal_decision *out);

/* Budgets: the largest token count every rank can run now, so a server caps
 * its scheduler there (max_num_tokens) instead of meeting the limit as an
 * out-of-memory error. Each rank probes its free memory once and computes
 * its own budget by warmcal_table_max_tokens — the largest T such that
 * every pass of 1..T tokens (batch 1) fits, need = estimate + the gate's
 * reserve_bytes + `reserve` (this call's reserve adds to the gate's, as in
 * decide every need carries the gate's), above the calibrated range as the
 * gate's above_range says, a rank above its own range served by the
 * any-rank entry — or, under WARMCAL_NEED_CONSTANT, by the constant rule.
 * Then one collective takes the MINLOC over (tokens, rank): on every rank
 * *tokens is the smallest budget (0: not even one token fits everywhere; at
 * most WARMCAL_TABLE_TOKENS_MAX) and *limiting_rank the rank that has it,
 * the lowest on ties. So decide runs a pass of *tokens tokens and skips one
 * of *tokens + 1 (naming *limiting_rank unless another rank blocks too).
 * label NULL means "context". `reserve` may differ between ranks (as the
 * gate's own may); the label may not.
 * The collective is decide's first one (same size, same checks, bounded by
 * the same deadline), so every rank must call max_tokens at the same point,
 * and a rank deciding there instead is a mismatch, not a hang. Collective
 * over the gate's communicator. Errors, each on every rank:
 * WARMCAL_E_FIELD (the table has no estimate for label serving
 * *limiting_rank; *tokens is 0), WARMCAL_E_MISMATCH (different tables,
 * labels, or another call on some rank), WARMCAL_E_TIMEOUT (a rank did not
 * join before the deadline: the communicator is unusable, end the job),
 * WARMCAL_E_UNSUPPORTED (a rank's probe failed), WARMCAL_E_INVAL (a rank's
 * NULL tokens or limiting_rank: it still takes part, flagged),
 * WARMCAL_E_STATE (a local gate, a gate that did not open, or one whose
 * collective timed out or failed before). tokens and limiting_rank are the
 * caller's; nothing is allocated. */
WARMCAL_API int warmcal_gate_max_tokens(warmcal_gate *g, const char *label, uint64_t reserve,
                                        uint64_t *tokens, int *limiting_rank);

/* The same for a local gate, through the caller's collective: encode this
 * rank's warmcal_gate_max_tokens_encoded_count() (6) signed 64-bit values
 * into vals (probes free memory), reduce them with MIN over all ranks, and
 * decode the result into the same budget on every rank. Errors: encode
 * WARMCAL_E_INVAL (no vals), WARMCAL_E_STATE (not a local gate, or one that
 * did not open); decode those, and WARMCAL_E_FIELD, WARMCAL_E_MISMATCH and
 * WARMCAL_E_UNSUPPORTED as warmcal_gate_max_tokens. */
WARMCAL_API size_t warmcal_gate_max_tokens_encoded_count(void);
WARMCAL_API int warmcal_gate_max_tokens_encode(warmcal_gate *g, const char *label, uint64_t reserve,
                                               int64_t *vals);
WARMCAL_API int warmcal_gate_max_tokens_decode(warmcal_gate *g, const int64_t *reduced,
                                               uint64_t *tokens, int *limiting_rank);

/* Text of the last failure on this handle ("" when none); valid until the
 * next call on the handle. NULL handle: a static text. */
WARMCAL_API const char *warmcal_gate_last_error(const warmcal_gate *g);

/* The code of the last failure (0 when none). */
WARMCAL_API int warmcal_gate_last_code(const warmcal_gate *g);

/* Release the gate (not collective). A gate whose collective timed out keeps
 * that collective's buffers alive (MPI may still write them); everything
 * else is freed. NULL is allowed. */
WARMCAL_API void warmcal_gate_close(warmcal_gate *g);

/* This rank's free device memory as the gate's probe sees it. */
WARMCAL_API int warmcal_gate_probe_free(warmcal_gate *g, uint64_t *free_bytes);

/* Name of a reason ("run", "low memory", "invalid batch", "outside the
 * calibrated range", "no estimate", "estimate too large"). */
WARMCAL_API const char *warmcal_reason_name(int reason);

#ifdef __cplusplus
}
#endif
#endif
