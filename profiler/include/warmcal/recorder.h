/* warmcal/recorder.h — turns a stream of memory events into per-phase peaks.
 *
 * The recorder is pure C and knows nothing of CUDA, MPI or files: sources
 * (the CUPTI profiler, the simulated device, tests) feed it events; a sink
 * callback receives each phase as it closes (the trace writer flushes it to
 * disk there). Not thread-safe: a source that sees events from several
 * threads serialises them before calling in. */
#ifndef WARMCAL_RECORDER_H
#define WARMCAL_RECORDER_H

#include <stdint.h>
#include <stddef.h>
#include "warmcal/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Where a block lives. All kinds but PINNED_HOST count as device memory. */
typedef enum {
    WARMCAL_MEM_DEVICE = 0,      /* cudaMalloc / cuMemAlloc */
    WARMCAL_MEM_POOL = 1,        /* stream-ordered pools: cudaMallocAsync */
    WARMCAL_MEM_VIRTUAL = 2,     /* cuMemCreate physical allocations */
    WARMCAL_MEM_MANAGED = 3,     /* cudaMallocManaged */
    WARMCAL_MEM_PINNED_HOST = 4  /* cudaHostAlloc: kept apart from device bytes */
} warmcal_mem_kind;

typedef enum {
    WARMCAL_OUTCOME_OK = 0,
    WARMCAL_OUTCOME_OOM = 1,     /* an allocation inside the phase failed */
    WARMCAL_OUTCOME_ABORTED = 2  /* the phase never ended (process ended, or the run gave up) */
} warmcal_outcome;

/* Device free memory not sampled. */
#define WARMCAL_FREE_UNKNOWN UINT64_MAX

#define WARMCAL_LABEL_LEN 32

/* One row of the trace's /phases table (DESIGN.md, "Trace file"). */
typedef struct {
    char label[WARMCAL_LABEL_LEN];  /* NUL-padded; at most 31 characters are kept */
    uint64_t tokens;
    uint32_t batch;
    uint64_t begin_ns, end_ns;
    uint64_t live_begin;        /* device bytes live when the phase began */
    uint64_t live_peak;         /* running maximum of live device bytes in the phase */
    uint64_t live_end;
    uint64_t device_free_begin; /* last free-memory sample at begin, or WARMCAL_FREE_UNKNOWN */
    uint64_t device_free_end;   /* last free-memory sample at end, or WARMCAL_FREE_UNKNOWN */
    uint8_t outcome;            /* a warmcal_outcome */
    uint64_t failed_alloc_bytes;/* size asked for by the first failed allocation, else 0 */
    /* extensions (optional in files written by other programs) */
    uint64_t pinned_peak;       /* running maximum of live pinned host bytes */
    uint32_t anomalies;         /* unknown-address frees, double frees, reused live addresses */
    uint32_t lower_bound;       /* why the peak may be below the truth: WARMCAL_LOWER_BOUND_*
                                 * bits (warmcal/spool.h); the recorder leaves it 0 */
    uint64_t reserved_begin;    /* bytes a caching allocator held from the device at begin */
    uint64_t reserved_end;      /* ... and at end; both 0 when the source has no such
                                 * allocator (the recorder leaves them 0; the torch source
                                 * sets them so that its cache growth is not counted as
                                 * memory no API reported) */
} warmcal_phase;

/* Event kinds of the optional /events timeline. */
typedef enum {
    WARMCAL_EV_ALLOC = 0,
    WARMCAL_EV_FREE = 1,
    WARMCAL_EV_ALLOC_FAILED = 2,
    WARMCAL_EV_DEVICE_FREE = 3,   /* bytes = sampled free memory */
    WARMCAL_EV_PHASE_BEGIN = 4,
    WARMCAL_EV_PHASE_END = 5
} warmcal_event_kind;

/* One timeline entry. phase is the index of the open phase, or -1. */
typedef struct {
    uint64_t time_ns;
    uint8_t kind;      /* a warmcal_event_kind */
    uint8_t mem_kind;  /* a warmcal_mem_kind for allocation events, else 0 */
    uint64_t bytes;
    uint64_t address;
    int64_t phase;
} warmcal_event;

/* Running totals over the whole recording. */
typedef struct {
    uint64_t events;
    uint64_t live_device;      /* device bytes live now */
    uint64_t live_pinned;      /* pinned host bytes live now */
    uint64_t blocks_live;
    uint64_t unknown_frees;    /* frees of addresses never seen allocated */
    uint64_t double_frees;     /* frees of addresses already freed */
    uint64_t reused_live;      /* allocations at an address still live */
    uint64_t phases_closed;
} warmcal_recorder_stats;

/* Called when a phase closes. A non-zero return is kept as the recorder's
 * error and returned by the call that closed the phase. */
typedef int (*warmcal_phase_sink)(void *user, const warmcal_phase *phase, warmcal_error *err);
/* Called for every event when set; same return convention. */
typedef int (*warmcal_event_sink)(void *user, const warmcal_event *event, warmcal_error *err);

typedef struct {
    warmcal_phase_sink on_phase;  /* may be NULL */
    warmcal_event_sink on_event;  /* may be NULL */
    void *user;
} warmcal_recorder_options;

typedef struct warmcal_recorder warmcal_recorder;

/* Create a recorder; *out is owned by the caller and released with
 * warmcal_recorder_close. opts may be NULL. Errors: WARMCAL_E_NOMEM. */
WARMCAL_API int warmcal_recorder_open(warmcal_recorder **out, const warmcal_recorder_options *opts,
                                      warmcal_error *err);

/* A block of `bytes` at `address` was allocated. An address still live is
 * counted as an anomaly and its old block is dropped first. */
WARMCAL_API int warmcal_recorder_alloc(warmcal_recorder *r, uint64_t t_ns, uint64_t address,
                                       uint64_t bytes, warmcal_mem_kind kind, warmcal_error *err);

/* The block at `address` was freed. Unknown and already-freed addresses are
 * counted as anomalies and change nothing else; they are not errors. */
WARMCAL_API int warmcal_recorder_free(warmcal_recorder *r, uint64_t t_ns, uint64_t address,
                                      warmcal_error *err);

/* An allocation of `bytes` failed. Inside a phase it marks the phase OOM
 * and keeps the size of its first failed allocation. */
WARMCAL_API int warmcal_recorder_alloc_failed(warmcal_recorder *r, uint64_t t_ns, uint64_t bytes,
                                              warmcal_mem_kind kind, warmcal_error *err);

/* A device-wide free-memory sample. Sources sample right before a phase
 * begins and right before it ends; the phase keeps the latest sample at each edge. */
WARMCAL_API int warmcal_recorder_device_free(warmcal_recorder *r, uint64_t t_ns,
                                             uint64_t free_bytes, warmcal_error *err);

/* Open a phase. label is truncated to 31 characters. A phase already open
 * is WARMCAL_E_STATE (phases do not nest). */
WARMCAL_API int warmcal_recorder_phase_begin(warmcal_recorder *r, uint64_t t_ns, const char *label,
                                             uint64_t tokens, uint32_t batch, warmcal_error *err);

/* Close the open phase (WARMCAL_E_STATE if none) and hand it to the sink. */
WARMCAL_API int warmcal_recorder_phase_end(warmcal_recorder *r, uint64_t t_ns, warmcal_error *err);

/* Close the open phase, if any, with outcome ABORTED (the process is ending
 * or the run gave up on it). Returns 0 when no phase was open. */
WARMCAL_API int warmcal_recorder_abort_phase(warmcal_recorder *r, uint64_t t_ns, warmcal_error *err);

/* Whether a phase is open. */
WARMCAL_API int warmcal_recorder_in_phase(const warmcal_recorder *r);

/* The phases closed so far, in order; the array is owned by the recorder
 * and valid until the next call that closes a phase or close. */
WARMCAL_API const warmcal_phase *warmcal_recorder_phases(const warmcal_recorder *r, size_t *count);

/* Running totals. */
WARMCAL_API void warmcal_recorder_get_stats(const warmcal_recorder *r, warmcal_recorder_stats *out);

/* Release the recorder and every block it tracks. NULL is allowed. Does not
 * close an open phase: call warmcal_recorder_abort_phase first to keep it. */
WARMCAL_API void warmcal_recorder_close(warmcal_recorder *r);

#ifdef __cplusplus
}
#endif
#endif
