/* Spool to trace (warmcal/spool.h): replays a spool's events in timestamp
 * order through the recorder into the trace writer, marks the phases whose
 * figure may be below the truth and the allocation failures a retry
 * recovered, moves the trace into place without ever replacing another
 * run's, and lists the spools a run left in a folder with the trace each one
 * becomes. */
#define _GNU_SOURCE /* timegm, strptime, realpath */
#include "warmcal/spool.h"
#include "spool_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "warmcal/trace.h"

/* Bytes of a spool read to find its session, rank and pid: the injected
 * library writes its INFO records first, in far less than this. */
#define SPOOL_HEAD_BYTES (64u * 1024u)

/* The "notes" attribute keeps at most this much text. */
#define NOTES_MAX 16384u

static const char *const bound_names[] = {"dropped_records", "unexplained_device_usage",
                                          "no_allocation", "aborted"};

const char *warmcal_lower_bound_name(uint32_t bit)
{
    for (unsigned i = 0; i < sizeof bound_names / sizeof bound_names[0]; i++)
        if (bit == (1u << i))
            return bound_names[i];
    return "unknown";
}

char *warmcal_lower_bound_describe(uint32_t mask, const char *sep, char *buf, size_t len)
{
    if (!buf || len == 0)
        return buf;
    buf[0] = '\0';
    size_t used = 0;
    for (unsigned i = 0; i < 32; i++) {
        if (!(mask & (1u << i)))
            continue;
        int n = snprintf(buf + used, len - used, "%s%s", used ? sep : "",
                         warmcal_lower_bound_name(1u << i));
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
    return buf;
}

/* A decimal integer in [min, max], all of the text; -1 otherwise. */
static int parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        unsigned d = (unsigned)(*s - '0');
        if (v > (max - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

/* An INFO value as a number; missing: def. */
static int info_number(const warmcal_spool *s, const char *key, uint64_t max, uint64_t def,
                       uint64_t *out, warmcal_error *err)
{
    const char *v = warmcal_spool_info_get(s, key);
    if (!v) {
        *out = def;
        return 0;
    }
    if (parse_u64(v, max, out) < 0) {
        char where[64];
        snprintf(where, sizeof where, "info '%s'", key);
        return warmcal_error_set(err, WARMCAL_E_FIELD, s->path, where,
                                 "expected a decimal number from 0 to %" PRIu64 ", found '%s'", max, v);
    }
    return 0;
}

typedef struct {
    int rank, world_size;
    long pid;
} run_ids;

static int read_ids(const warmcal_spool *s, run_ids *ids, warmcal_error *err)
{
    uint64_t rank, world, pid;
    int rc = info_number(s, "rank", INT32_MAX - 1, 0, &rank, err);
    rc = rc ? rc : info_number(s, "world_size", INT32_MAX, rank + 1 > 1 ? rank + 1 : 1, &world, err);
    rc = rc ? rc : info_number(s, "pid", INT32_MAX, 0, &pid, err);
    if (rc)
        return rc;
    if (world < 1 || rank >= world)
        return warmcal_error_set(err, WARMCAL_E_FIELD, s->path, "info 'rank'",
                                 "expected 0 <= rank < world_size (%" PRIu64 "), found %" PRIu64,
                                 world, rank);
    ids->rank = (int)rank;
    ids->world_size = (int)world;
    ids->pid = (long)pid;
    return 0;
}

/* --- a small address map ------------------------------------------------- */

/* Open addressing with linear probing, keyed by (k1, k2): the live
 * stream-ordered pool blocks (address -> bytes), and the failed allocations
 * still waiting for a retry ((bytes, memory kind) -> first of them). */
typedef struct {
    uint64_t k1, value;
    uint8_t k2, used;
} slot;

typedef struct {
    slot *slots;
    size_t cap, n; /* cap: 0 or a power of two */
} keymap;

static size_t key_hash(uint64_t k1, uint8_t k2)
{
    uint64_t x = k1 ^ ((uint64_t)k2 << 56) ^ k2;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ull;
    x ^= x >> 33;
    return (size_t)x;
}

/* The slot of the key, or SIZE_MAX. */
static size_t map_find(const keymap *m, uint64_t k1, uint8_t k2)
{
    if (!m->n)
        return SIZE_MAX;
    for (size_t i = key_hash(k1, k2) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (!m->slots[i].used)
            return SIZE_MAX;
        if (m->slots[i].k1 == k1 && m->slots[i].k2 == k2)
            return i;
    }
}

static int map_put(keymap *m, uint64_t k1, uint8_t k2, uint64_t value)
{
    size_t at = map_find(m, k1, k2);
    if (at != SIZE_MAX) {
        m->slots[at].value = value;
        return 0;
    }
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 64;
        slot *grown = calloc(cap, sizeof *grown);
        if (!grown)
            return -1;
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->slots[i].used)
                continue;
            size_t j = key_hash(m->slots[i].k1, m->slots[i].k2) & (cap - 1);
            while (grown[j].used)
                j = (j + 1) & (cap - 1);
            grown[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = grown;
        m->cap = cap;
    }
    size_t i = key_hash(k1, k2) & (m->cap - 1);
    while (m->slots[i].used)
        i = (i + 1) & (m->cap - 1);
    m->slots[i] = (slot){.k1 = k1, .k2 = k2, .value = value, .used = 1};
    m->n++;
    return 0;
}

/* Remove the slot at i, shifting the probe chain back over the hole. */
static void map_erase(keymap *m, size_t i)
{
    size_t mask = m->cap - 1;
    m->slots[i].used = 0;
    m->n--;
    for (size_t j = (i + 1) & mask; m->slots[j].used; j = (j + 1) & mask) {
        size_t home = key_hash(m->slots[j].k1, m->slots[j].k2) & mask;
        /* the entry at j may move to the hole at i when its home is not
         * in the (cyclic) range (i, j] */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            m->slots[i] = m->slots[j];
            m->slots[j].used = 0;
            i = j;
        }
    }
}

static void map_clear(keymap *m)
{
    if (m->n)
        memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->n = 0;
}

/* --- recovered allocation failures --------------------------------------- */

/* A caching allocator (PyTorch's) catches a failed cudaMalloc, releases its
 * cache and asks again: a failed allocation followed, before the next phase
 * edge, by a successful one of the same memory kind and size is recovered,
 * not an out-of-memory. One pass over the sorted index marks them in a
 * bitmap (a bit per entry); the failures still waiting for their retry are
 * kept per (size, kind), chained through next[]. */
typedef struct {
    uint8_t *recovered; /* bit i: entry i is a recovered failure */
    size_t count;
} recovery;

static int find_recovered(const warmcal_spool *s, recovery *out, warmcal_error *err)
{
    memset(out, 0, sizeof *out);
    size_t n = s->n_entries;
    keymap waiting = {0};
    size_t *next = NULL, n_fail = 0, cap_fail = 0, *pos = NULL;
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++) {
        if (i % WARMCAL__SPOOL_DROP_EVERY == WARMCAL__SPOOL_DROP_EVERY - 1)
            warmcal__spool_drop_pages(s);
        warmcal_spool_entry e;
        warmcal_spool_entry_at(s, i, &e);
        if (e.type == WARMCAL_SPOOL_PHASE_BEGIN || e.type == WARMCAL_SPOOL_PHASE_END) {
            map_clear(&waiting);
            n_fail = 0;
            continue;
        }
        if (e.type != WARMCAL_SPOOL_EVENT)
            continue;
        if (e.kind == WARMCAL_EV_ALLOC_FAILED) {
            if (n_fail == cap_fail) {
                size_t cap = cap_fail ? 2 * cap_fail : 16;
                size_t *np = realloc(next, cap * sizeof *np), *pp = np ? realloc(pos, cap * sizeof *pp) : NULL;
                if (np)
                    next = np;
                if (pp)
                    pos = pp;
                if (!np || !pp) {
                    rc = warmcal_error_set(err, WARMCAL_E_NOMEM, s->path, NULL, "out of memory");
                    break;
                }
                cap_fail = cap;
            }
            size_t at = map_find(&waiting, e.bytes, e.mem_kind);
            next[n_fail] = at == SIZE_MAX ? SIZE_MAX : (size_t)waiting.slots[at].value;
            pos[n_fail] = i;
            if (map_put(&waiting, e.bytes, e.mem_kind, n_fail) < 0)
                rc = warmcal_error_set(err, WARMCAL_E_NOMEM, s->path, NULL, "out of memory");
            n_fail++;
        } else if (e.kind == WARMCAL_EV_ALLOC && waiting.n) {
            size_t at = map_find(&waiting, e.bytes, e.mem_kind);
            if (at == SIZE_MAX)
                continue;
            if (!out->recovered && !(out->recovered = calloc(n / 8 + 1, 1))) {
                rc = warmcal_error_set(err, WARMCAL_E_NOMEM, s->path, NULL, "out of memory");
                break;
            }
            for (size_t f = (size_t)waiting.slots[at].value; f != SIZE_MAX; f = next[f]) {
                out->recovered[pos[f] / 8] |= (uint8_t)(1u << (pos[f] % 8));
                out->count++;
            }
            map_erase(&waiting, at);
        }
    }
    free(waiting.slots);
    free(next);
    free(pos);
    if (rc) {
        free(out->recovered);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

static int is_recovered(const recovery *r, size_t i)
{
    return r->recovered && (r->recovered[i / 8] >> (i % 8)) & 1u;
}

/* --- replay ---------------------------------------------------------------- */

typedef struct {
    uint64_t pool, reserved;
} pool_size;

typedef struct {
    const warmcal_spool *s;
    warmcal_trace_writer *w;
    warmcal_spool_convert_report *rep;
    int with_events;
    const recovery *recovered;
    pool_size *pools;
    size_t n_pools, cap_pools;
    uint64_t pool_reserved;  /* sum of every pool's reserved bytes now */
    keymap pool_blocks;      /* live stream-ordered pool blocks: address -> bytes */
    uint64_t pool_live;      /* their bytes */
    uint64_t allocs;         /* device allocations asked for so far (failed ones too) */
    uint64_t allocs_at_begin, pool_at_begin, pool_live_at_begin;
} replay;

static uint64_t sub_or_zero(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

static uint32_t lower_bound_of(const replay *r, const warmcal_phase *p)
{
    uint32_t bits = 0;
    for (size_t i = 0; i < r->s->n_dropped; i++)
        if (r->s->dropped[i].since_ns <= p->end_ns && r->s->dropped[i].until_ns >= p->begin_ns)
            bits |= WARMCAL_LOWER_BOUND_DROPPED;
    if (p->device_free_begin != WARMCAL_FREE_UNKNOWN && p->device_free_end != WARMCAL_FREE_UNKNOWN &&
        p->device_free_begin > p->device_free_end) {
        /* What the device lost, against what the API events account for:
         * live blocks outside the pools that grew, and pools that reserved
         * more. A pool's blocks are carved out of its reservation, so they
         * are counted once, through the reservation (a pool keeps freed
         * blocks, like a caching allocator). */
        uint64_t fell = p->device_free_begin - p->device_free_end;
        uint64_t grew = sub_or_zero(sub_or_zero(p->live_end, r->pool_live),
                                    sub_or_zero(p->live_begin, r->pool_live_at_begin));
        uint64_t pools = sub_or_zero(r->pool_reserved, r->pool_at_begin);
        uint64_t explained = grew + pools;
        if (explained < grew) /* overflow: everything is explained */
            explained = UINT64_MAX;
        if (fell > explained && fell - explained > WARMCAL_LOWER_BOUND_SLACK)
            bits |= WARMCAL_LOWER_BOUND_UNEXPLAINED;
    }
    if (r->allocs_at_begin > 0 && r->allocs == r->allocs_at_begin)
        bits |= WARMCAL_LOWER_BOUND_NO_ALLOCATION;
    if (p->outcome == WARMCAL_OUTCOME_ABORTED)
        bits |= WARMCAL_LOWER_BOUND_ABORTED;
    return bits;
}

static int on_phase(void *user, const warmcal_phase *phase, warmcal_error *err)
{
    replay *r = user;
    warmcal_phase p = *phase;
    p.lower_bound = lower_bound_of(r, &p);
    r->rep->phases++;
    if (p.lower_bound)
        r->rep->lower_bound_phases++;
    return warmcal_trace_writer_add_phase(r->w, &p, err);
}

static int on_event(void *user, const warmcal_event *event, warmcal_error *err)
{
    return warmcal_trace_writer_add_event(((replay *)user)->w, event, err);
}

static int nomem(const replay *r, warmcal_error *err)
{
    return warmcal_error_set(err, WARMCAL_E_NOMEM, r->s->path, NULL, "out of memory");
}

static int set_pool(replay *r, uint64_t pool, uint64_t reserved, warmcal_error *err)
{
    size_t i = 0;
    while (i < r->n_pools && r->pools[i].pool != pool)
        i++;
    if (i == r->n_pools) {
        if (r->n_pools == r->cap_pools) {
            size_t cap = r->cap_pools ? 2 * r->cap_pools : 8;
            pool_size *p = realloc(r->pools, cap * sizeof *p);
            if (!p)
                return nomem(r, err);
            r->pools = p;
            r->cap_pools = cap;
        }
        r->pools[r->n_pools++] = (pool_size){.pool = pool, .reserved = 0};
    }
    r->pool_reserved = r->pool_reserved - r->pools[i].reserved + reserved;
    r->pools[i].reserved = reserved;
    return 0;
}

/* Follow the live pool blocks as the recorder follows every block: an
 * allocation at a live address replaces that block, a free removes it. */
static int track_pool_block(replay *r, const warmcal_spool_entry *e, warmcal_error *err)
{
    size_t at = map_find(&r->pool_blocks, e->address, 0);
    if (at != SIZE_MAX) {
        r->pool_live -= r->pool_blocks.slots[at].value;
        map_erase(&r->pool_blocks, at);
    }
    if (e->kind == WARMCAL_EV_ALLOC && e->mem_kind == WARMCAL_MEM_POOL) {
        if (map_put(&r->pool_blocks, e->address, 0, e->bytes) < 0)
            return nomem(r, err);
        r->pool_live += e->bytes;
    }
    return 0;
}

static int entry_error(const replay *r, const warmcal_spool_entry *e, int code, const char *text,
                       warmcal_error *err)
{
    char where[64];
    snprintf(where, sizeof where, "offset %" PRIu64, e->offset);
    return warmcal_error_set(err, code, r->s->path, where, "%s", text);
}

static int replay_entry(replay *r, warmcal_recorder *rec, const warmcal_spool_entry *e, size_t i,
                        warmcal_error *err)
{
    switch (e->type) {
    case WARMCAL_SPOOL_EVENT:
        switch (e->kind) {
        case WARMCAL_EV_ALLOC: {
            r->allocs += e->mem_kind != WARMCAL_MEM_PINNED_HOST;
            int rc = track_pool_block(r, e, err);
            return rc ? rc
                      : warmcal_recorder_alloc(rec, e->time_ns, e->address, e->bytes,
                                               (warmcal_mem_kind)e->mem_kind, err);
        }
        case WARMCAL_EV_FREE: {
            int rc = track_pool_block(r, e, err);
            return rc ? rc : warmcal_recorder_free(rec, e->time_ns, e->address, err);
        }
        case WARMCAL_EV_ALLOC_FAILED:
            r->allocs += e->mem_kind != WARMCAL_MEM_PINNED_HOST;
            if (is_recovered(r->recovered, i)) {
                /* not an OOM: kept in the timeline only */
                r->rep->recovered_alloc_failures++;
                if (!r->with_events)
                    return 0;
                warmcal_event ev = {
                    .time_ns = e->time_ns,
                    .kind = WARMCAL_EV_ALLOC_FAILED,
                    .mem_kind = e->mem_kind,
                    .bytes = e->bytes,
                    .phase = warmcal_recorder_in_phase(rec) ? (int64_t)r->rep->phases : -1,
                };
                return warmcal_trace_writer_add_event(r->w, &ev, err);
            }
            return warmcal_recorder_alloc_failed(rec, e->time_ns, e->bytes,
                                                 (warmcal_mem_kind)e->mem_kind, err);
        default:
            return warmcal_recorder_device_free(rec, e->time_ns, e->bytes, err);
        }
    case WARMCAL_SPOOL_PHASE_BEGIN: {
        if (warmcal_recorder_in_phase(rec))
            return entry_error(r, e, WARMCAL_E_FORMAT, "a phase begins while another is open", err);
        r->allocs_at_begin = r->allocs;
        r->pool_at_begin = r->pool_reserved;
        r->pool_live_at_begin = r->pool_live;
        return warmcal_recorder_phase_begin(rec, e->time_ns, e->label, e->bytes, e->batch, err);
    }
    case WARMCAL_SPOOL_PHASE_END:
        if (!warmcal_recorder_in_phase(rec))
            return entry_error(r, e, WARMCAL_E_FORMAT, "a phase ends while none is open", err);
        return warmcal_recorder_phase_end(rec, e->time_ns, err);
    case WARMCAL_SPOOL_POOL:
        return set_pool(r, e->address, e->bytes, err);
    default:
        return 0;
    }
}

/* The notes, one a line, cut to NOTES_MAX bytes at a line's end. */
static char *join_notes(const warmcal_spool *s)
{
    size_t len = 0, n = 0;
    for (; n < s->n_notes; n++) {
        size_t add = strlen(s->notes[n].text) + 1;
        if (len + add > NOTES_MAX)
            break;
        len += add;
    }
    char *text = malloc(len + 1);
    if (!text)
        return NULL;
    text[0] = '\0';
    for (size_t i = 0, at = 0; i < n; i++) {
        size_t k = strlen(s->notes[i].text);
        memcpy(text + at, s->notes[i].text, k);
        at += k;
        text[at++] = i + 1 < n ? '\n' : '\0';
        text[at] = '\0';
    }
    return text;
}

static const char *info_or(const warmcal_spool *s, const char *key, const char *def)
{
    const char *v = warmcal_spool_info_get(s, key);
    return v && v[0] ? v : def;
}

static int canceled(const warmcal_spool_convert_options *opts)
{
    return opts && opts->cancel && *opts->cancel;
}

static int cancel_error(const warmcal_spool *s, warmcal_spool_convert_report *rep,
                        warmcal_error *err)
{
    rep->canceled = 1;
    return warmcal_error_set(err, WARMCAL_E_CANCELED, s->path, NULL,
                             "conversion stopped: a signal asked for it");
}

/* Entries replayed between two looks at opts->cancel. */
#define CANCEL_EVERY 4096u

/* Write the trace of a sorted spool at path (a fresh temporary file). */
static int write_trace(const warmcal_spool *s, const char *path, const run_ids *ids,
                       const warmcal_spool_convert_options *opts, warmcal_spool_convert_report *rep,
                       warmcal_error *err)
{
    uint64_t total;
    int rc = info_number(s, "gpu_total_bytes", UINT64_MAX, 0, &total, err);
    if (rc)
        return rc;
    recovery recovered;
    rc = find_recovered(s, &recovered, err);
    if (rc)
        return rc;
    warmcal_trace_info info = {
        .rank = ids->rank,
        .world_size = ids->world_size,
        .model = opts && opts->model ? opts->model : info_or(s, "model", "unknown"),
        .source = "cupti",
        .gpu_name = info_or(s, "gpu_name", "unknown"),
        .gpu_total_bytes = total,
        .host = warmcal_spool_info_get(s, "host"),
        .start_time = warmcal_spool_info_get(s, "start_time"),
        .tool_version = WARMCAL_VERSION,
        .driver_version = warmcal_spool_info_get(s, "driver_version"),
        .cuda_version = warmcal_spool_info_get(s, "cuda_version"),
    };
    int with_events = opts && opts->with_events;
    warmcal_trace_writer *w = NULL;
    rc = warmcal_trace_writer_open(&w, path, &info, with_events, err);
    if (rc) {
        free(recovered.recovered);
        return rc;
    }
    rc = warmcal_trace_writer_set_attr_u64(w, "dropped_records", rep->dropped_records, err);
    if (!rc)
        rc = warmcal_trace_writer_set_attr_u64(w, "recovered_alloc_failures", recovered.count, err);
    const char *session = warmcal_spool_info_get(s, "session");
    if (!rc && session && session[0])
        rc = warmcal_trace_writer_set_attr_string(w, "session", session, err);
    if (!rc && s->n_notes) {
        char *notes = join_notes(s);
        rc = notes ? warmcal_trace_writer_set_attr_string(w, "notes", notes, err)
                   : warmcal_error_set(err, WARMCAL_E_NOMEM, s->path, NULL, "out of memory");
        free(notes);
    }

    replay r = {.s = s, .w = w, .rep = rep, .with_events = with_events, .recovered = &recovered};
    warmcal_recorder_options ro = {
        .on_phase = on_phase,
        .on_event = with_events ? on_event : NULL,
        .user = &r,
    };
    warmcal_recorder *rec = NULL;
    if (!rc)
        rc = warmcal_recorder_open(&rec, &ro, err);
    /* the last time seen: the latest timed record (the index is sorted),
     * or the EXIT record when later */
    uint64_t last = 0;
    warmcal_spool_entry e, open_one;
    memset(&open_one, 0, sizeof open_one);
    for (size_t i = 0; !rc && i < s->n_entries; i++) {
        if (i % CANCEL_EVERY == 0 && canceled(opts)) {
            rc = cancel_error(s, rep, err);
            break;
        }
        if (i % WARMCAL__SPOOL_DROP_EVERY == WARMCAL__SPOOL_DROP_EVERY - 1)
            warmcal__spool_drop_pages(s);
        warmcal_spool_entry_at(s, i, &e);
        rc = replay_entry(&r, rec, &e, i, err);
        if (e.type == WARMCAL_SPOOL_PHASE_BEGIN)
            open_one = e;
        last = e.time_ns > last ? e.time_ns : last;
    }
    if (!rc && warmcal_recorder_in_phase(rec)) {
        /* the process ended inside this phase: it is kept, as aborted */
        rep->ended_in_phase = 1;
        memcpy(rep->ended_label, open_one.label, sizeof rep->ended_label);
        rep->ended_tokens = open_one.bytes;
        if (s->exited && s->exit_ns > last)
            last = s->exit_ns;
        rc = warmcal_recorder_abort_phase(rec, last, err);
    }
    warmcal_recorder_close(rec);
    free(r.pools);
    free(r.pool_blocks.slots);
    free(recovered.recovered);
    int close_rc = warmcal_trace_writer_close(w, err);
    return rc ? rc : close_rc;
}

/* --- placing the trace ------------------------------------------------------ */

/* The folder of path (malloc'd): "." when it has none. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    char *d = malloc((size_t)(slash - path) + 1);
    if (d) {
        memcpy(d, path, (size_t)(slash - path));
        d[slash - path] = '\0';
    }
    return d;
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/", name);
    return p;
}

/* Create a fresh file beside trace_path, "<trace_path>.partial-XXXXXX", as
 * open(2) creates files: mode 0666 less the umask (mkstemp's 0600 would
 * make the trace private). Returns the malloc'd name, or NULL with err set. */
static char *create_temporary(const char *trace_path, warmcal_error *err)
{
    static const char digits[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    size_t len = strlen(trace_path);
    char *tmp = malloc(len + sizeof ".partial-XXXXXX");
    if (!tmp) {
        warmcal_error_set(err, WARMCAL_E_NOMEM, trace_path, NULL, "out of memory");
        return NULL;
    }
    int e = EEXIST;
    for (int attempt = 0; attempt < 100 && e == EEXIST; attempt++) {
        uint64_t r = 0;
        if (getrandom(&r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r)
            r = ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL) ^ ((uint64_t)attempt * 0x9e3779b97f4a7c15ull);
        memcpy(tmp, trace_path, len);
        memcpy(tmp + len, ".partial-", 9);
        for (int k = 0; k < 6; k++, r /= 62)
            tmp[len + 9 + k] = digits[r % 62];
        tmp[len + 15] = '\0';
        int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0) {
            close(fd);
            return tmp;
        }
        e = errno;
    }
    warmcal_error_set(err, WARMCAL_E_IO, trace_path, NULL,
                      "cannot create a temporary file beside it: %s", strerror(e));
    free(tmp);
    return NULL;
}

/* Write the file at path to disk (fsync). File systems that cannot
 * (EINVAL) are taken as they are. */
static int sync_path(const char *path, int flags, const char *what, warmcal_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | flags);
    if (fd < 0)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot open %s to flush it: %s",
                                 what, strerror(errno));
    int rc = 0;
    if (fsync(fd) != 0 && errno != EINVAL)
        rc = warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot flush %s to disk: %s", what,
                               strerror(errno));
    close(fd);
    return rc;
}

/* 1970-based seconds of an ISO 8601 UTC time "YYYY-MM-DDTHH:MM:SSZ" (more
 * after the seconds is ignored), or 0. */
static uint64_t iso_seconds(const char *text)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!text || !strptime(text, "%Y-%m-%dT%H:%M:%S", &tm))
        return 0;
    time_t t = timegm(&tm);
    return t > 0 ? (uint64_t)t : 0;
}

static uint64_t mtime_ns(const struct stat *st)
{
    return (uint64_t)st->st_mtim.tv_sec * 1000000000ull + (uint64_t)st->st_mtim.tv_nsec;
}

/* The "session" attribute of the trace at path, copied into buf ("" when it
 * has none or cannot be read). */
static void trace_session(const char *path, char *buf, size_t len)
{
    buf[0] = '\0';
    warmcal_trace *t = NULL;
    warmcal_error ignored;
    warmcal_error_clear(&ignored);
    if (warmcal_trace_read(path, &t, &ignored) != 0)
        return;
    for (size_t i = 0; i < t->n_attrs; i++)
        if (strcmp(t->attrs[i].name, "session") == 0)
            snprintf(buf, len, "%s", t->attrs[i].value);
    warmcal_trace_free(t);
}

/* The largest world size named by the traces in dir other than skip
 * (rank-*.h5), or 0. */
static int folder_world_size(const char *dir, const char *skip)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    int most = 0;
    const char *skip_name = strrchr(skip, '/') ? strrchr(skip, '/') + 1 : skip;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (strncmp(e->d_name, "rank-", 5) != 0 || n < 8 || strcmp(e->d_name + n - 3, ".h5") != 0 ||
            strcmp(e->d_name, skip_name) == 0)
            continue;
        char *p = path_join(dir, e->d_name);
        struct stat st;
        warmcal_trace *t = NULL;
        warmcal_error ignored;
        warmcal_error_clear(&ignored);
        if (p && lstat(p, &st) == 0 && S_ISREG(st.st_mode) && warmcal_trace_read(p, &t, &ignored) == 0) {
            if (t->world_size > most)
                most = t->world_size;
            warmcal_trace_free(t);
        }
        free(p);
    }
    closedir(d);
    return most > 1 ? most : 0;
}

/* Move the finished temporary file tmp to trace_path, or to
 * rank-R.pid-P.h5 beside it when another session wrote trace_path during
 * this run (see warmcal_spool_convert); the folder is locked meanwhile so
 * that two converters never both take one name. */
static int place(const warmcal_spool *s, const char *tmp, const char *trace_path,
                 const run_ids *ids, const warmcal_spool_convert_options *opts,
                 warmcal_spool_convert_report *rep, warmcal_error *err)
{
    char *dir = dir_of(trace_path);
    if (!dir)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, trace_path, NULL, "out of memory");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) {
        int rc = warmcal_error_set(err, WARMCAL_E_IO, dir, NULL, "cannot open the folder: %s",
                                   strerror(errno));
        free(dir);
        return rc;
    }
    /* Best effort: a file system without locks still gets the trace. Polled,
     * so that a signal (opts->cancel) is seen while another converter
     * holds the lock. */
    while (flock(dfd, LOCK_EX | LOCK_NB) != 0 && (errno == EWOULDBLOCK || errno == EINTR) &&
           !canceled(opts)) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    const char *session = warmcal_spool_info_get(s, "session");
    uint64_t start = opts && opts->run_start_ns ? opts->run_start_ns
                                                : iso_seconds(warmcal_spool_info_get(s, "start_time")) * 1000000000ull;
    char *alt = NULL;
    const char *target = trace_path;
    int rc = 0;
    for (;;) {
        struct stat st;
        if (lstat(target, &st) != 0)
            break; /* free */
        if (!S_ISREG(st.st_mode)) {
            rc = warmcal_error_set(err, WARMCAL_E_IO, target, NULL,
                                   "exists and is not a regular file: left as it is, no trace written");
            break;
        }
        char theirs[WARMCAL_SPOOL_SESSION_LEN];
        trace_session(target, theirs, sizeof theirs);
        int ours = session && session[0] && strcmp(theirs, session) == 0;
        if (ours || !start || mtime_ns(&st) < start)
            break; /* this session's, or from an older run: replaced */
        if (alt) {
            rc = warmcal_error_set(err, WARMCAL_E_IO, target, NULL,
                                   "written during this run by another session, as was %s: "
                                   "left as they are, no trace written",
                                   trace_path);
            break;
        }
        rep->rank_claimed = 1;
        snprintf(rep->claimed_by_session, sizeof rep->claimed_by_session, "%s", theirs);
        char name[96];
        snprintf(name, sizeof name, "rank-%d.pid-%ld.h5", ids->rank, ids->pid);
        if (!(alt = path_join(dir, name))) {
            rc = warmcal_error_set(err, WARMCAL_E_NOMEM, trace_path, NULL, "out of memory");
            break;
        }
        if (strcmp(alt, trace_path) == 0) { /* already the pid's name */
            rc = warmcal_error_set(err, WARMCAL_E_IO, target, NULL,
                                   "written during this run by another session: left as it "
                                   "is, no trace written");
            break;
        }
        target = alt;
    }
    if (!rc && canceled(opts))
        rc = cancel_error(s, rep, err);
    if (!rc && rename(tmp, target) != 0)
        rc = warmcal_error_set(err, WARMCAL_E_IO, target, NULL, "cannot move %s here: %s", tmp,
                               strerror(errno));
    if (!rc) {
        rep->trace_written = 1;
        snprintf(rep->trace_path, sizeof rep->trace_path, "%s", target);
        /* the rename reaches the disk before the caller removes the spool:
         * a power loss leaves one of them, never neither */
        if (fsync(dfd) != 0 && errno != EINVAL)
            rc = warmcal_error_set(err, WARMCAL_E_IO, dir, NULL,
                                   "the trace is in place, but the folder could not be flushed "
                                   "to disk (keep the spool): %s",
                                   strerror(errno));
    }
    flock(dfd, LOCK_UN);
    close(dfd);
    if (rep->trace_written) {
        const char *from = warmcal_spool_info_get(s, "rank_from");
        if (from && strcmp(from, "none") == 0)
            rep->other_world_size = folder_world_size(dir, target);
    }
    free(alt);
    free(dir);
    return rc;
}

int warmcal_spool_convert(const char *spool_path, const char *trace_path,
                          const warmcal_spool_convert_options *opts,
                          warmcal_spool_convert_report *report, warmcal_error *err)
{
    warmcal_spool_convert_report local;
    warmcal_spool_convert_report *rep = report ? report : &local;
    memset(rep, 0, sizeof *rep);
    if (!spool_path || !trace_path || !trace_path[0])
        return warmcal_error_set(err, WARMCAL_E_INVAL, spool_path, NULL,
                                 "spool_convert: no spool or trace path");
    warmcal_spool *s = NULL;
    int rc = warmcal_spool_read(spool_path, 0, &s, err);
    if (rc)
        return rc;
    run_ids ids;
    rc = read_ids(s, &ids, err);
    if (rc) {
        warmcal_spool_free(s);
        return rc;
    }
    rep->rank = ids.rank;
    rep->world_size = ids.world_size;
    rep->pid = ids.pid;
    rep->truncated_bytes = s->truncated_bytes;
    rep->exited_normally = s->exited;
    rep->notes = s->n_notes;
    for (size_t i = 0; i < s->n_dropped; i++)
        rep->dropped_records += s->dropped[i].count;
    if (s->n_begins == 0) {
        warmcal_spool_free(s);
        return 0;
    }
    if (canceled(opts)) {
        rc = cancel_error(s, rep, err);
        warmcal_spool_free(s);
        return rc;
    }
    warmcal_spool_sort(s);

    /* A temporary name beside the trace: the rename at the end is atomic,
     * and a failure leaves nothing half-written under the trace's name. */
    char *tmp = create_temporary(trace_path, err);
    if (!tmp) {
        warmcal_spool_free(s);
        return err ? err->code : WARMCAL_E_IO;
    }
    rc = write_trace(s, tmp, &ids, opts, rep, err);
    if (!rc && canceled(opts))
        rc = cancel_error(s, rep, err);
    if (!rc)
        rc = sync_path(tmp, 0, "the trace", err);
    if (!rc)
        rc = place(s, tmp, trace_path, &ids, opts, rep, err);
    if (!rep->trace_written)
        unlink(tmp);
    free(tmp);
    warmcal_spool_free(s);
    return rc;
}

/* --- folders --------------------------------------------------------------- */

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), k = strlen(tail);
    return n > k && strcmp(s + n - k, tail) == 0;
}

static int by_spool_path(const void *a, const void *b)
{
    return strcmp(((const warmcal_spool_job *)a)->spool_path,
                  ((const warmcal_spool_job *)b)->spool_path);
}

/* Read a listed spool's head: session, rank, pid. A damaged head still
 * gives the session its records before the damage name, if any. */
static int peek(warmcal_spool_job *j, warmcal_error *err)
{
    warmcal_spool *s = NULL;
    int rc = warmcal__spool_read_partial(j->spool_path, SPOOL_HEAD_BYTES, &s, err);
    run_ids ids = {0, 1, 0};
    if (!rc)
        rc = read_ids(s, &ids, err);
    const char *session = s ? warmcal_spool_info_get(s, "session") : NULL;
    if (session && !(j->session = strdup(session)))
        rc = warmcal_error_set(err, WARMCAL_E_NOMEM, j->spool_path, NULL, "out of memory");
    j->rank = ids.rank;
    j->pid = ids.pid;
    warmcal_spool_free(s);
    return rc;
}

int warmcal_spool_list(const char *dir, const char *session, warmcal_spool_job **jobs, size_t *n,
                       warmcal_error *err)
{
    if (!dir || !jobs || !n)
        return warmcal_error_set(err, WARMCAL_E_INVAL, dir, NULL, "spool_list: bad argument");
    *jobs = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d)
        return warmcal_error_set(err, WARMCAL_E_IO, dir, NULL, "cannot read the folder: %s",
                                 strerror(errno));
    warmcal_spool_job *list = NULL;
    size_t count = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while (!rc && (errno = 0, e = readdir(d))) {
        if (!ends_with(e->d_name, ".spool"))
            continue;
        if (count == cap) {
            size_t c = cap ? 2 * cap : 16;
            warmcal_spool_job *g = realloc(list, c * sizeof *g);
            if (!g) {
                rc = warmcal_error_set(err, WARMCAL_E_NOMEM, dir, NULL, "out of memory");
                break;
            }
            list = g;
            cap = c;
        }
        warmcal_spool_job *j = &list[count];
        memset(j, 0, sizeof *j);
        if (!(j->spool_path = path_join(dir, e->d_name))) {
            rc = warmcal_error_set(err, WARMCAL_E_NOMEM, dir, NULL, "out of memory");
            break;
        }
        struct stat st;
        if (lstat(j->spool_path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(j->spool_path); /* a folder or a link named *.spool is not ours */
            continue;
        }
        count++;
        j->mtime_ns = (int64_t)mtime_ns(&st);
        j->rc = peek(j, &j->err);
        if (j->rc == WARMCAL_E_NOMEM)
            rc = warmcal_error_set(err, WARMCAL_E_NOMEM, dir, NULL, "out of memory");
        else if (session && (j->session ? strcmp(j->session, session) != 0 : !j->rc)) {
            /* another session's (a damaged spool that names none stays:
             * it may be this run's) */
            free(j->spool_path);
            free(j->session);
            count--;
        }
    }
    if (!rc && errno != 0)
        rc = warmcal_error_set(err, WARMCAL_E_IO, dir, NULL, "cannot read the folder: %s",
                               strerror(errno));
    closedir(d);
    if (count > 1)
        qsort(list, count, sizeof *list, by_spool_path);
    for (size_t i = 0; !rc && i < count; i++) {
        warmcal_spool_job *j = &list[i];
        if (j->rc)
            continue;
        for (size_t k = 0; k < count; k++)
            if (k != i && !list[k].rc && list[k].rank == j->rank)
                j->same_rank = 1;
        char name[96];
        if (j->same_rank)
            snprintf(name, sizeof name, "rank-%d.pid-%ld.h5", j->rank, j->pid);
        else
            snprintf(name, sizeof name, "rank-%d.h5", j->rank);
        if (!(j->trace_path = path_join(dir, name)))
            rc = warmcal_error_set(err, WARMCAL_E_NOMEM, dir, NULL, "out of memory");
    }
    if (rc) {
        warmcal_spool_jobs_free(list, count);
        return rc;
    }
    *jobs = list;
    *n = count;
    return 0;
}

void warmcal_spool_jobs_free(warmcal_spool_job *jobs, size_t n)
{
    for (size_t i = 0; jobs && i < n; i++) {
        free(jobs[i].spool_path);
        free(jobs[i].trace_path);
        free(jobs[i].session);
    }
    free(jobs);
}

/* --- setting a run up ------------------------------------------------------ */

int warmcal_spool_prepare_dir(const char *dir, char **abs, warmcal_error *err)
{
    if (!dir || !dir[0] || !abs)
        return warmcal_error_set(err, WARMCAL_E_INVAL, dir, NULL, "no output folder given");
    *abs = NULL;
    char *p = strdup(dir);
    if (!p)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, dir, NULL, "out of memory");
    /* each prefix ending before a '/', then the whole path */
    for (char *c = p + 1;; c++) {
        if (*c != '/' && *c != '\0')
            continue;
        char keep = *c;
        *c = '\0';
        struct stat st;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) {
            int rc = warmcal_error_set(err, WARMCAL_E_IO, p, NULL, "cannot create the folder: %s",
                                       strerror(errno));
            free(p);
            return rc;
        }
        if (stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
            int rc = warmcal_error_set(err, WARMCAL_E_IO, p, NULL, "exists and is not a folder");
            free(p);
            return rc;
        }
        *c = keep;
        if (keep == '\0')
            break;
    }
    free(p);
    if (access(dir, W_OK | X_OK) != 0)
        return warmcal_error_set(err, WARMCAL_E_IO, dir, NULL,
                                 "cannot create files in this folder: %s", strerror(errno));
    char *real = realpath(dir, NULL);
    if (!real)
        return warmcal_error_set(err, WARMCAL_E_IO, dir, NULL, "cannot resolve its path: %s",
                                 strerror(errno));
    *abs = real;
    return 0;
}

int warmcal_spool_new_session(char *buf, size_t len, warmcal_error *err)
{
    if (!buf || len < WARMCAL_SPOOL_SESSION_LEN)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "session buffer too small");
    uint64_t r = 0;
    ssize_t k;
    do {
        k = getrandom(&r, sizeof r, 0);
    } while (k < 0 && errno == EINTR);
    if (k != (ssize_t)sizeof r)
        return warmcal_error_set(err, WARMCAL_E_IO, NULL, NULL, "getrandom failed: %s",
                                 k < 0 ? strerror(errno) : "short read");
    snprintf(buf, len, "%ld-%lld-%016" PRIx64, (long)getpid(), (long long)time(NULL), r);
    return 0;
}
