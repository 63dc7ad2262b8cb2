/* inject.h — what the parts of the injected profiler (libwarmcal-inject.so)
 * share: the core (inject.c: CUPTI, spool, state) offers phase edges and the
 * one-message disable; the NVTX injection and the C phase API call them.
 * Internal: nothing here is exported from the library. */
#ifndef WARMCAL_INJECT_H
#define WARMCAL_INJECT_H

#include <stdint.h>
#include <stdarg.h>
#include <stddef.h>

/* Whether the profiler is initialised and not disabled. Cheap (an atomic load). */
int warmcal__inject_active(void);

/* Open a phase: stamp it on CUPTI's clock, sample device free memory, spool
 * both and flush. Returns 0, or a negative warmcal_code (inactive:
 * WARMCAL_E_STATE; a phase already open: WARMCAL_E_STATE). Thread-safe. */
int warmcal__inject_phase_begin(const char *label, uint64_t tokens, uint32_t batch);

/* Close the open phase: stamp, sample free memory, flush CUPTI's activity
 * buffers so every record up to now is spooled, flush the spool. */
int warmcal__inject_phase_end(void);

/* A phase was asked for while warmcal__inject_active() is false (callers
 * test that first and take no lock, so that a forked child never waits on
 * a lock its parent's threads held): warns once (WARMCAL__WARN_BEFORE_INIT)
 * when CUDA has not yet initialised the profiler, says nothing when the
 * profiler was disabled (it said its one message) or in a forked child, and
 * finishes a disable's clean-up. Never blocks on the phase lock. */
void warmcal__inject_inactive_phase(const char *label, uint64_t tokens);

/* Lock order in the injected library (a thread may hold several only in
 * this order, never the other way): the phase lock (profile_api.c) -> the
 * core's state lock (inject.c: device, handles, phase flag) -> the spool's
 * append lock (inject.c: memory only) -> the spool's I/O lock (inject.c:
 * the write(2) calls; taken with neither of the two before it held, so
 * that no thread that only appends waits for the disk). No message is
 * written to stderr with the state or append lock held. The NVTX
 * registries' locks (nvtx_inject.c) are taken alone. A forked child re-initialises all of them (the child
 * handler calls these two for the other files' locks): the parent's other
 * threads may have held them at the fork, and the child inherits them
 * locked with no thread left to unlock them. */
void warmcal__phase_after_fork_child(void);
void warmcal__nvtx_after_fork_child(void);

/* Disable the profiler for the rest of the process with one message on
 * stderr ("warmcal: profiler disabled: ..."); later calls do nothing. */
void warmcal__inject_disable(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* One warning on stderr per kind (an index below WARMCAL__WARN_KINDS) for
 * the life of the process; also spooled as a note when a spool is open. */
enum {
    WARMCAL__WARN_MSG_SYNTAX = 0,   /* a "warmcal ..." NVTX message that does not parse */
    WARMCAL__WARN_NESTED,           /* a phase range inside an open phase */
    WARMCAL__WARN_BEFORE_INIT,      /* a phase before CUDA initialised the profiler */
    WARMCAL__WARN_UNMATCHED_END,    /* a phase end with no phase open */
    WARMCAL__WARN_DEVICES,          /* the process uses several devices */
    WARMCAL__WARN_FREE_UNKNOWN,     /* free memory could not be sampled */
    WARMCAL__WARN_DROPPED,          /* CUPTI dropped records */
    WARMCAL__WARN_MSG_BATCH,        /* a "warmcal ..." message with a bad batch= */
    WARMCAL__WARN_MSG_LABEL,        /* a "warmcal ..." message with a bad label= */
    WARMCAL__WARN_MSG_KEY,          /* a "warmcal ..." message with an unknown, repeated or
                                     * '='-less field (MSG_SYNTAX: tokens= missing or bad) */
    WARMCAL__WARN_NVTX_LIMIT,       /* more NVTX domains than the injection tracks apart */
    WARMCAL__WARN_KINDS = 16
};
void warmcal__inject_warn_once(int kind, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Phase edges as the NVTX injection and the C API take them (profile_api.c),
 * over warmcal__inject_phase_begin/end: at most one phase is open, and only
 * what opened it closes it (the pop or end of the range that opened it, or
 * warmcal_phase_end for warmcal_phase_begin). warmcal__phase_open returns 0
 * and a token (> 0) in *token; WARMCAL__PHASE_NESTED when a phase is already
 * open (nothing done; *held, when not NULL, then describes the open phase,
 * for the warning); WARMCAL_E_STATE at once, with no lock taken, when the
 * core is inactive (warmcal__inject_inactive_phase); or the core's negative
 * code. warmcal__phase_close closes the phase when token opened it (the
 * core's result), else returns WARMCAL_E_STATE and does nothing.
 * Thread-safe: a mutex held across the core's call orders the edges. */
#define WARMCAL__PHASE_NESTED 1
typedef struct {
    char label[32];
    uint64_t tokens;
    uint32_t batch;
    int by_api; /* opened by warmcal_phase_begin, not by an NVTX range */
} warmcal__open_phase;
int warmcal__phase_open(const char *label, uint64_t tokens, uint32_t batch, uint64_t *token,
                        warmcal__open_phase *held);
int warmcal__phase_close(uint64_t token);


#endif
