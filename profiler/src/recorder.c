/* The recorder: memory events in, per-phase peaks out (see warmcal/recorder.h).
 *
 * Live bytes are the sum of every block known to be allocated; a phase keeps
 * the running maximum of that sum between its begin and end, in event order.
 * Only live blocks stay in the table, so memory follows the live set, not the
 * length of the run; a ring of recently freed addresses tells a double free
 * apart from a free of an address allocated before recording began. */
#include "warmcal/recorder.h"

#include <stdlib.h>
#include <string.h>

/* uthash exits the process on allocation failure unless told otherwise;
 * a library must return an error instead. */
#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(elt) ((elt)->hash_oom = 1)
#include <uthash.h>

typedef struct block {
    uint64_t address;
    uint64_t bytes;
    uint8_t kind;
    uint8_t hash_oom;   /* set by uthash when it could not grow the table */
    struct block *next; /* in the spare list once freed */
    UT_hash_handle hh;
} block;

/* Freed addresses remembered for double-free detection; older ones count as
 * unknown frees, an anomaly all the same. */
#define RECENT_FREES 1024

struct warmcal_recorder {
    warmcal_recorder_options opts;
    block *blocks;
    block *spare; /* freed blocks kept for reuse: no malloc per event */
    uint64_t recent_frees[RECENT_FREES];
    size_t recent_next, recent_count;
    warmcal_recorder_stats stats;
    uint64_t last_free_sample;
    int in_phase;
    warmcal_phase current;
    warmcal_phase *phases;
    size_t n_phases, cap_phases;
};

int warmcal_recorder_open(warmcal_recorder **out, const warmcal_recorder_options *opts,
                          warmcal_error *err)
{
    if (!out)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "recorder: out is NULL");
    *out = NULL;
    warmcal_recorder *r = calloc(1, sizeof *r);
    if (!r)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "recorder: out of memory");
    if (opts)
        r->opts = *opts;
    r->last_free_sample = WARMCAL_FREE_UNKNOWN;
    *out = r;
    return WARMCAL_OK;
}

static int is_device(uint8_t kind)
{
    return kind != WARMCAL_MEM_PINNED_HOST;
}

static int emit(warmcal_recorder *r, uint64_t t_ns, warmcal_event_kind kind, uint8_t mem_kind,
                uint64_t bytes, uint64_t address, warmcal_error *err)
{
    r->stats.events++;
    if (!r->opts.on_event)
        return WARMCAL_OK;
    warmcal_event ev = {
        .time_ns = t_ns,
        .kind = (uint8_t)kind,
        .mem_kind = mem_kind,
        .bytes = bytes,
        .address = address,
        .phase = r->in_phase ? (int64_t)r->n_phases : -1,
    };
    return r->opts.on_event(r->opts.user, &ev, err);
}

static void note_anomaly(warmcal_recorder *r, uint64_t *counter)
{
    (*counter)++;
    if (r->in_phase)
        r->current.anomalies++;
}

/* Keep the phase's running maxima up to date after live bytes rose. */
static void track_peaks(warmcal_recorder *r)
{
    if (!r->in_phase)
        return;
    if (r->stats.live_device > r->current.live_peak)
        r->current.live_peak = r->stats.live_device;
    if (r->stats.live_pinned > r->current.pinned_peak)
        r->current.pinned_peak = r->stats.live_pinned;
}

static void drop_live(warmcal_recorder *r, block *b)
{
    if (is_device(b->kind))
        r->stats.live_device -= b->bytes;
    else
        r->stats.live_pinned -= b->bytes;
    r->stats.blocks_live--;
}

static void remember_free(warmcal_recorder *r, uint64_t address)
{
    r->recent_frees[r->recent_next] = address;
    r->recent_next = (r->recent_next + 1) % RECENT_FREES;
    if (r->recent_count < RECENT_FREES)
        r->recent_count++;
}

static int freed_recently(const warmcal_recorder *r, uint64_t address)
{
    for (size_t i = 0; i < r->recent_count; i++)
        if (r->recent_frees[i] == address)
            return 1;
    return 0;
}

int warmcal_recorder_alloc(warmcal_recorder *r, uint64_t t_ns, uint64_t address, uint64_t bytes,
                           warmcal_mem_kind kind, warmcal_error *err)
{
    if (!r || (unsigned)kind > WARMCAL_MEM_PINNED_HOST)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "recorder_alloc: bad recorder or memory kind");
    block *b = NULL;
    HASH_FIND(hh, r->blocks, &address, sizeof address, b);
    if (b) {
        /* the free was never reported: drop the old block so bytes are not counted twice */
        note_anomaly(r, &r->stats.reused_live);
        drop_live(r, b);
    } else {
        b = r->spare;
        if (b)
            r->spare = b->next;
        else if (!(b = calloc(1, sizeof *b)))
            return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "recorder: out of memory");
        b->address = address;
        b->hash_oom = 0;
        HASH_ADD(hh, r->blocks, address, sizeof b->address, b);
        if (b->hash_oom) {
            free(b);
            return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "recorder: out of memory");
        }
    }
    b->bytes = bytes;
    b->kind = (uint8_t)kind;
    r->stats.blocks_live++;
    if (is_device(b->kind))
        r->stats.live_device += bytes;
    else
        r->stats.live_pinned += bytes;
    track_peaks(r);
    return emit(r, t_ns, WARMCAL_EV_ALLOC, (uint8_t)kind, bytes, address, err);
}

int warmcal_recorder_free(warmcal_recorder *r, uint64_t t_ns, uint64_t address, warmcal_error *err)
{
    if (!r)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "recorder_free: no recorder");
    block *b = NULL;
    HASH_FIND(hh, r->blocks, &address, sizeof address, b);
    uint64_t bytes = 0;
    uint8_t kind = 0;
    if (!b) {
        note_anomaly(r, freed_recently(r, address) ? &r->stats.double_frees : &r->stats.unknown_frees);
    } else {
        bytes = b->bytes;
        kind = b->kind;
        drop_live(r, b);
        HASH_DEL(r->blocks, b);
        b->next = r->spare;
        r->spare = b;
        remember_free(r, address);
    }
    return emit(r, t_ns, WARMCAL_EV_FREE, kind, bytes, address, err);
}

int warmcal_recorder_alloc_failed(warmcal_recorder *r, uint64_t t_ns, uint64_t bytes,
                                  warmcal_mem_kind kind, warmcal_error *err)
{
    if (!r)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "recorder_alloc_failed: no recorder");
    if (r->in_phase && r->current.outcome != WARMCAL_OUTCOME_OOM) {
        r->current.outcome = WARMCAL_OUTCOME_OOM;
        r->current.failed_alloc_bytes = bytes;
    }
    return emit(r, t_ns, WARMCAL_EV_ALLOC_FAILED, (uint8_t)kind, bytes, 0, err);
}

int warmcal_recorder_device_free(warmcal_recorder *r, uint64_t t_ns, uint64_t free_bytes,
                                 warmcal_error *err)
{
    if (!r)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "recorder_device_free: no recorder");
    r->last_free_sample = free_bytes;
    return emit(r, t_ns, WARMCAL_EV_DEVICE_FREE, 0, free_bytes, 0, err);
}

int warmcal_recorder_phase_begin(warmcal_recorder *r, uint64_t t_ns, const char *label,
                                 uint64_t tokens, uint32_t batch, warmcal_error *err)
{
    if (!r || !label)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "phase_begin: no recorder or label");
    if (r->in_phase)
        return warmcal_error_set(err, WARMCAL_E_STATE, NULL, NULL,
                                 "phase_begin: phase '%s' is still open (phases do not nest)",
                                 r->current.label);
    memset(&r->current, 0, sizeof r->current);
    strncpy(r->current.label, label, WARMCAL_LABEL_LEN - 1);
    r->current.tokens = tokens;
    r->current.batch = batch;
    r->current.begin_ns = t_ns;
    r->current.live_begin = r->stats.live_device;
    r->current.live_peak = r->stats.live_device;
    r->current.pinned_peak = r->stats.live_pinned;
    r->current.device_free_begin = r->last_free_sample;
    r->current.device_free_end = WARMCAL_FREE_UNKNOWN;
    r->current.outcome = WARMCAL_OUTCOME_OK;
    r->in_phase = 1;
    return emit(r, t_ns, WARMCAL_EV_PHASE_BEGIN, 0, tokens, 0, err);
}

static int close_phase(warmcal_recorder *r, uint64_t t_ns, int aborted, warmcal_error *err)
{
    if (r->n_phases == r->cap_phases) {
        size_t cap = r->cap_phases ? r->cap_phases * 2 : 64;
        warmcal_phase *p = realloc(r->phases, cap * sizeof *p);
        if (!p)
            return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "recorder: out of memory");
        r->phases = p;
        r->cap_phases = cap;
    }
    int rc = emit(r, t_ns, WARMCAL_EV_PHASE_END, 0, r->stats.live_device, 0, err);
    warmcal_phase *ph = &r->phases[r->n_phases++];
    *ph = r->current;
    ph->end_ns = t_ns < ph->begin_ns ? ph->begin_ns : t_ns;
    ph->live_end = r->stats.live_device;
    ph->device_free_end = r->last_free_sample;
    if (aborted)
        ph->outcome = WARMCAL_OUTCOME_ABORTED;
    r->in_phase = 0;
    r->stats.phases_closed++;
    if (rc == WARMCAL_OK && r->opts.on_phase)
        rc = r->opts.on_phase(r->opts.user, ph, err);
    return rc;
}

int warmcal_recorder_phase_end(warmcal_recorder *r, uint64_t t_ns, warmcal_error *err)
{
    if (!r)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "phase_end: no recorder");
    if (!r->in_phase)
        return warmcal_error_set(err, WARMCAL_E_STATE, NULL, NULL, "phase_end: no phase is open");
    return close_phase(r, t_ns, 0, err);
}

int warmcal_recorder_abort_phase(warmcal_recorder *r, uint64_t t_ns, warmcal_error *err)
{
    if (!r)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "abort_phase: no recorder");
    if (!r->in_phase)
        return WARMCAL_OK;
    return close_phase(r, t_ns, 1, err);
}

int warmcal_recorder_in_phase(const warmcal_recorder *r)
{
    return r && r->in_phase;
}

const warmcal_phase *warmcal_recorder_phases(const warmcal_recorder *r, size_t *count)
{
    if (count)
        *count = r ? r->n_phases : 0;
    return r ? r->phases : NULL;
}

void warmcal_recorder_get_stats(const warmcal_recorder *r, warmcal_recorder_stats *out)
{
    if (r && out)
        *out = r->stats;
}

void warmcal_recorder_close(warmcal_recorder *r)
{
    if (!r)
        return;
    block *b, *tmp;
    HASH_ITER(hh, r->blocks, b, tmp)
    {
        HASH_DEL(r->blocks, b);
        free(b);
    }
    while ((b = r->spare)) {
        r->spare = b->next;
        free(b);
    }
    free(r->phases);
    free(r);
}
