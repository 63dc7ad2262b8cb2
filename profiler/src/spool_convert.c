/* Spool to trace (warmcal/spool.h): replays a spool's events in timestamp
 * order through the recorder into the trace writer, marks the phases whose
 * figure may be below the truth, and lists the spools a run left in a folder
 * with the trace each one becomes. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "warmcal/spool.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* --- replay ---------------------------------------------------------------- */

typedef struct {
    uint64_t pool, reserved;
} pool_size;

typedef struct {
    const warmcal_spool *s;
    warmcal_trace_writer *w;
    warmcal_spool_convert_report *rep;
    pool_size *pools;
    size_t n_pools, cap_pools;
    uint64_t pool_reserved;  /* sum of every pool's reserved bytes now */
    uint64_t allocs;         /* device allocations asked for so far (failed ones too) */
    uint64_t allocs_at_begin, pool_at_begin;
} replay;

static uint32_t lower_bound_of(const replay *r, const warmcal_phase *p)
{
    uint32_t bits = 0;
    for (size_t i = 0; i < r->s->n_dropped; i++)
        if (r->s->dropped[i].since_ns <= p->end_ns && r->s->dropped[i].until_ns >= p->begin_ns)
            bits |= WARMCAL_LOWER_BOUND_DROPPED;
    if (p->device_free_begin != WARMCAL_FREE_UNKNOWN && p->device_free_end != WARMCAL_FREE_UNKNOWN &&
        p->device_free_begin > p->device_free_end) {
        /* What the device lost, against what the API events account for:
         * blocks still live, and pools that reserved more (a pool keeps
         * freed blocks, like a caching allocator). */
        uint64_t fell = p->device_free_begin - p->device_free_end;
        uint64_t grew = p->live_end > p->live_begin ? p->live_end - p->live_begin : 0;
        uint64_t pools = r->pool_reserved > r->pool_at_begin ? r->pool_reserved - r->pool_at_begin : 0;
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
                return warmcal_error_set(err, WARMCAL_E_NOMEM, r->s->path, NULL, "out of memory");
            r->pools = p;
            r->cap_pools = cap;
        }
        r->pools[r->n_pools++] = (pool_size){.pool = pool, .reserved = 0};
    }
    r->pool_reserved = r->pool_reserved - r->pools[i].reserved + reserved;
    r->pools[i].reserved = reserved;
    return 0;
}

static int entry_error(const replay *r, const warmcal_spool_entry *e, int code, const char *text,
                       warmcal_error *err)
{
    char where[64];
    snprintf(where, sizeof where, "offset %" PRIu64, e->offset);
    return warmcal_error_set(err, code, r->s->path, where, "%s", text);
}

static int replay_entry(replay *r, warmcal_recorder *rec, const warmcal_spool_entry *e,
                        warmcal_error *err)
{
    switch (e->type) {
    case WARMCAL_SPOOL_EVENT:
        switch (e->kind) {
        case WARMCAL_EV_ALLOC:
            r->allocs += e->mem_kind != WARMCAL_MEM_PINNED_HOST;
            return warmcal_recorder_alloc(rec, e->time_ns, e->address, e->bytes,
                                          (warmcal_mem_kind)e->mem_kind, err);
        case WARMCAL_EV_FREE:
            return warmcal_recorder_free(rec, e->time_ns, e->address, err);
        case WARMCAL_EV_ALLOC_FAILED:
            r->allocs += e->mem_kind != WARMCAL_MEM_PINNED_HOST;
            return warmcal_recorder_alloc_failed(rec, e->time_ns, e->bytes,
                                                 (warmcal_mem_kind)e->mem_kind, err);
        default:
            return warmcal_recorder_device_free(rec, e->time_ns, e->bytes, err);
        }
    case WARMCAL_SPOOL_PHASE_BEGIN: {
        if (warmcal_recorder_in_phase(rec))
            return entry_error(r, e, WARMCAL_E_FORMAT, "a phase begins while another is open", err);
        const warmcal_spool_phase_begin *b = &r->s->begins[e->begin];
        r->allocs_at_begin = r->allocs;
        r->pool_at_begin = r->pool_reserved;
        return warmcal_recorder_phase_begin(rec, e->time_ns, b->label, b->tokens, b->batch, err);
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

/* Write the trace of a sorted spool at path (a fresh temporary file). */
static int write_trace(const warmcal_spool *s, const char *path, const run_ids *ids,
                       const warmcal_spool_convert_options *opts, warmcal_spool_convert_report *rep,
                       warmcal_error *err)
{
    uint64_t total;
    int rc = info_number(s, "gpu_total_bytes", UINT64_MAX, 0, &total, err);
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
    warmcal_trace_writer *w = NULL;
    rc = warmcal_trace_writer_open(&w, path, &info, opts && opts->with_events, err);
    if (rc)
        return rc;
    rc = warmcal_trace_writer_set_attr_u64(w, "dropped_records", rep->dropped_records, err);
    const char *session = warmcal_spool_info_get(s, "session");
    if (!rc && session && session[0])
        rc = warmcal_trace_writer_set_attr_string(w, "session", session, err);
    if (!rc && s->n_notes) {
        char *notes = join_notes(s);
        rc = notes ? warmcal_trace_writer_set_attr_string(w, "notes", notes, err)
                   : warmcal_error_set(err, WARMCAL_E_NOMEM, s->path, NULL, "out of memory");
        free(notes);
    }

    replay r = {.s = s, .w = w, .rep = rep};
    warmcal_recorder_options ro = {
        .on_phase = on_phase,
        .on_event = opts && opts->with_events ? on_event : NULL,
        .user = &r,
    };
    warmcal_recorder *rec = NULL;
    if (!rc)
        rc = warmcal_recorder_open(&rec, &ro, err);
    uint64_t last = 0;
    for (size_t i = 0; !rc && i < s->n_entries; i++) {
        rc = replay_entry(&r, rec, &s->entries[i], err);
        last = s->entries[i].time_ns > last ? s->entries[i].time_ns : last;
    }
    if (!rc && warmcal_recorder_in_phase(rec)) {
        /* the process ended inside this phase: it is kept, as aborted */
        const warmcal_spool_phase_begin *open_one = NULL;
        for (size_t i = s->n_entries; i > 0 && !open_one; i--)
            if (s->entries[i - 1].type == WARMCAL_SPOOL_PHASE_BEGIN)
                open_one = &s->begins[s->entries[i - 1].begin];
        rep->ended_in_phase = 1;
        if (open_one) {
            memcpy(rep->ended_label, open_one->label, sizeof rep->ended_label);
            rep->ended_tokens = open_one->tokens;
        }
        if (s->exited && s->exit_ns > last)
            last = s->exit_ns;
        rc = warmcal_recorder_abort_phase(rec, last, err);
    }
    warmcal_recorder_close(rec);
    free(r.pools);
    int close_rc = warmcal_trace_writer_close(w, err);
    return rc ? rc : close_rc;
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
    warmcal_spool_sort(s);

    /* A temporary name beside the trace: the rename at the end is atomic,
     * and a failure leaves nothing half-written under the trace's name. */
    size_t len = strlen(trace_path);
    char *tmp = malloc(len + sizeof ".partial-XXXXXX");
    if (!tmp) {
        warmcal_spool_free(s);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, spool_path, NULL, "out of memory");
    }
    memcpy(tmp, trace_path, len);
    memcpy(tmp + len, ".partial-XXXXXX", sizeof ".partial-XXXXXX");
    int fd = mkstemp(tmp);
    if (fd < 0) {
        rc = warmcal_error_set(err, WARMCAL_E_IO, trace_path, NULL,
                               "cannot create a temporary file beside it: %s", strerror(errno));
        free(tmp);
        warmcal_spool_free(s);
        return rc;
    }
    /* mkstemp makes it private; a trace is meant to be shared */
    if (fchmod(fd, 0644) != 0)
        rc = warmcal_error_set(err, WARMCAL_E_IO, tmp, NULL, "cannot set its mode: %s",
                               strerror(errno));
    close(fd);
    if (!rc)
        rc = write_trace(s, tmp, &ids, opts, rep, err);
    struct stat st;
    if (!rc && lstat(trace_path, &st) == 0 && !S_ISREG(st.st_mode))
        rc = warmcal_error_set(err, WARMCAL_E_IO, trace_path, NULL,
                               "exists and is not a regular file: left as it is, no trace written");
    if (!rc && rename(tmp, trace_path) != 0)
        rc = warmcal_error_set(err, WARMCAL_E_IO, trace_path, NULL, "cannot move %s here: %s", tmp,
                               strerror(errno));
    if (rc)
        unlink(tmp);
    else
        rep->trace_written = 1;
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

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s%s", dir, dir[0] && dir[strlen(dir) - 1] == '/' ? "" : "/", name);
    return p;
}

/* Read a listed spool's head: session, rank, pid. */
static int peek(warmcal_spool_job *j, warmcal_error *err)
{
    warmcal_spool *s = NULL;
    int rc = warmcal_spool_read(j->spool_path, SPOOL_HEAD_BYTES, &s, err);
    run_ids ids = {0, 1, 0};
    if (!rc)
        rc = read_ids(s, &ids, err);
    const char *session = rc ? NULL : warmcal_spool_info_get(s, "session");
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
        j->rc = peek(j, &j->err);
        if (j->rc == WARMCAL_E_NOMEM)
            rc = warmcal_error_set(err, WARMCAL_E_NOMEM, dir, NULL, "out of memory");
        else if (!j->rc && session && (!j->session || strcmp(j->session, session) != 0)) {
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
