/* inject.c — the core of libwarmcal-inject.so: InitializeInjection (called
 * by the CUDA driver through CUDA_INJECTION64_PATH), CUPTI activity buffers
 * and driver-API callbacks turned into spool events, phase edges stamped on
 * CUPTI's clock, and the one-message disable. It must never harm the host:
 * every failure ends in warmcal__inject_disable, never in exit or abort. */
#define _POSIX_C_SOURCE 200809L
#include "inject.h"
#include "warmcal/launcher.h"
#include "cupti_load.h"
#include "cupti_records.h"
#include "handle_set.h"

#include "warmcal/error.h"
#include "warmcal/spool.h"
#include "warmcal/units.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* CUPTI buffers: large enough that a warmup pass rarely fills one, small
 * enough that a server with many threads does not notice them. */
#define ACTIVITY_BUFFER_BYTES ((size_t)1 << 20)

/* How often CUPTI's worker hands over full buffers on its own (ms). */
#define ACTIVITY_FLUSH_PERIOD_MS 200u

/* How often, inside a phase, the profiler's own flusher thread asks CUPTI
 * for every buffer whose records are complete, full or not (ms). CUPTI's
 * periodic flush hands over full buffers only, and one buffer holds a whole
 * pass's records: without this, a rank killed mid-pass (its launcher kills
 * it after another rank's OOM) would lose the pass's records with it. */
#define FLUSHER_PERIOD_MS 200

/* Records parsed (outside every lock) before they are filtered and spooled. */
#define PARSE_CHUNK 64

/* Process-wide state. Fields marked (mu) are read and written under mu,
 * (wmu) under wmu, (iomu) under iomu; lock order: the phase lock
 * (profile_api.c) -> mu -> wmu -> iomu, never the other way (inject.h).
 * mu guards only quick bookkeeping (the recorded device, the handle set,
 * the phase flag), so that the server's cuMemCreate/cuMemRelease callbacks
 * never wait while a CUPTI buffer is parsed. wmu guards appends to the
 * spool, which touch memory only (the writer defers its writes); the
 * write(2) calls run under iomu alone (write_out), which no callback of a
 * successful allocation takes: a disk that stalls (NFS, Lustre) stalls
 * CUPTI's buffer thread, the flusher and the thread that marks a phase,
 * never the server's allocations. A failed allocation writes at once, on
 * purpose: a rank that runs out of memory is often killed next. No lock is
 * held while a message is written to stderr (they wait for the last
 * unlock: emit_pending). Flags that callbacks test on every call are
 * atomics. */
static struct {
    pthread_mutex_t mu;
    pthread_mutex_t wmu;
    pthread_mutex_t iomu;
    atomic_int init_called;   /* InitializeInjection ran (once per process) */
    atomic_int active;        /* recording: set once ready, cleared at exit, disable, fork */
    atomic_int disabling;     /* warmcal__inject_disable ran (its once-guard) */
    atomic_int disabled;      /* ... and disable_reason is written (published after it) */
    atomic_int settled;       /* the disable's clean-up (CUPTI off, note spooled) ran */
    atomic_int exited;        /* the atexit handler ran */
    atomic_int need_device_info; /* the recorded device was chosen; its attributes are not spooled yet */
    atomic_int warned[WARMCAL__WARN_KINDS];
    atomic_int cupti_ready;   /* g.cupti holds resolved functions */
    pid_t pid;
    warmcal__cupti_api cupti;
    warmcal__driver_api driver;
    CUpti_SubscriberHandle subscriber;
    int subscribed, activity_enabled;
    char disable_reason[1024];

    char warn_text[WARMCAL__WARN_KINDS][512]; /* each written once, by the thread that warns */

    warmcal_spool_writer *spool; /* (wmu) the append side: NULL when none, or after a failure */
    warmcal_spool_writer *out;   /* (iomu) the same writer's write side: NULL once closed */
    char spool_path[PATH_MAX];
    int device;                  /* (mu) the recorded device ordinal, -1 until chosen */
    int in_phase;                /* (mu) */
    uint64_t drop_since;         /* (mu) CUPTI time of the last dropped-records check */
    /* (mu) the cuMemCreate handles recorded and not yet released: a
     * cuMemRelease does not say its device, so this tells ours from the
     * other devices' (its size follows the live handles: handle_set.h) */
    warmcal__handle_set handles;
    int handles_untracked; /* (mu) a handle could not be stored: releases are all kept */
    atomic_uint_fast64_t last_time; /* latest CUPTI timestamp read: a stamp when the clock fails late */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER,
     .wmu = PTHREAD_MUTEX_INITIALIZER,
     .iomu = PTHREAD_MUTEX_INITIALIZER,
     .device = -1};

/* Per thread: > 0 while the profiler itself calls the driver (its calls are
 * not the server's and must not be recorded); whether it holds g.mu or
 * g.wmu (a warning then spools its note without taking wmu again, and
 * messages wait for the last unlock); the messages waiting (bit k: the
 * warning of kind k, PENDING_DISABLE: the disable's). */
static _Thread_local int tl_busy;
static _Thread_local int tl_mlocked;
static _Thread_local int tl_wlocked;
static _Thread_local unsigned tl_pending;
#define PENDING_DISABLE (1u << WARMCAL__WARN_KINDS)

static void start_flusher(void);
static void stop_flusher(void);
static void emit_pending(void);

static void lock(void)
{
    pthread_mutex_lock(&g.mu);
    tl_mlocked = 1;
}

static void unlock(void)
{
    tl_mlocked = 0;
    pthread_mutex_unlock(&g.mu);
    emit_pending();
}

static void wlock(void)
{
    pthread_mutex_lock(&g.wmu);
    tl_wlocked = 1;
}

static void wunlock(void)
{
    tl_wlocked = 0;
    pthread_mutex_unlock(&g.wmu);
    emit_pending();
}

/* Standard error as the library found it when loaded: a daemon may close
 * descriptor 2 later and reuse the number for a socket or a data file,
 * which a message must never reach. */
static struct {
    int usable; /* descriptor 2 was open at load */
    dev_t dev;
    ino_t ino;
} stderr_at_load;

static void after_fork_in_child(void);

/* At load, before anything can print: note what descriptor 2 is, and make
 * forked children safe (after_fork_in_child). */
__attribute__((constructor)) static void at_load(void)
{
    struct stat st;
    if (fcntl(STDERR_FILENO, F_GETFD) != -1 && fstat(STDERR_FILENO, &st) == 0) {
        stderr_at_load.usable = 1;
        stderr_at_load.dev = st.st_dev;
        stderr_at_load.ino = st.st_ino;
    }
    pthread_atfork(NULL, NULL, after_fork_in_child);
}

/* Whether descriptor 2 is still the file it was at load. */
static int stderr_is_ours(void)
{
    struct stat st;
    return stderr_at_load.usable && fstat(STDERR_FILENO, &st) == 0 && st.st_dev == stderr_at_load.dev &&
           st.st_ino == stderr_at_load.ino;
}

/* One line on stderr with a single write(2): never stdio, whose locks and
 * buffers belong to the host; nothing when descriptor 2 was closed at load
 * or now holds another file. */
static void emit(const char *prefix, const char *text)
{
    if (!stderr_is_ours())
        return;
    char line[1280];
    int n = snprintf(line, sizeof line, "warmcal: %s%s\n", prefix, text);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    if (len > 0 && line[len - 1] != '\n')
        line[len - 1] = '\n';
    const char *p = line;
    while (len > 0) {
        ssize_t k = write(STDERR_FILENO, p, len);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return;
        p += k;
        len -= (size_t)k;
    }
}

/* Write the messages this thread held while it held g.mu or g.wmu (stderr
 * may be a pipe nobody reads: a write there must not stall the threads
 * that wait for those locks). Warnings first: a disable is the last word. */
static void emit_pending(void)
{
    if (tl_mlocked || tl_wlocked || !tl_pending)
        return;
    unsigned p = tl_pending;
    tl_pending = 0;
    for (int k = 0; k < WARMCAL__WARN_KINDS; k++)
        if (p & (1u << k))
            emit("warning: ", g.warn_text[k]);
    if (p & PENDING_DISABLE)
        emit("profiler disabled: ", g.disable_reason);
}

int warmcal__inject_active(void)
{
    return atomic_load_explicit(&g.active, memory_order_acquire) &&
           !atomic_load_explicit(&g.disabled, memory_order_acquire);
}

void warmcal__inject_disable(const char *fmt, ...)
{
    if (atomic_exchange(&g.disabling, 1))
        return;
    atomic_store(&g.active, 0);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.disable_reason, sizeof g.disable_reason, fmt, ap);
    va_end(ap);
    /* published once the reason is whole: settle_disabled, on any thread,
     * reads it after seeing the flag */
    atomic_store_explicit(&g.disabled, 1, memory_order_release);
    /* The clean-up (CUPTI off, a note in the spool) waits for a safe point:
     * this may run inside a CUPTI callback or with a lock held. Until then
     * every callback returns at its first test of the active flag. */
    if (tl_mlocked || tl_wlocked)
        tl_pending |= PENDING_DISABLE; /* written at the last unlock */
    else
        emit("profiler disabled: ", g.disable_reason);
}

/* CUPTI's clock; a failure disables the profiler. */
static int timestamp(uint64_t *t)
{
    CUptiResult rc = g.cupti.get_timestamp(t);
    if (rc != CUPTI_SUCCESS) {
        char buf[96];
        warmcal__inject_disable("cuptiGetTimestamp failed: %s",
                                warmcal__cupti_error(&g.cupti, rc, buf, sizeof buf));
        return -1;
    }
    atomic_store(&g.last_time, *t);
    return 0;
}

/* An append to the spool failed (no memory, or an earlier write failed):
 * stop appending (the file would no longer be a faithful record) and
 * disable. Caller holds g.wmu; the write side closes the file (write_out's
 * next failure, or at exit). */
static void spool_failed_locked(const warmcal_error *err)
{
    warmcal__inject_disable("cannot write the spool %s: %s", g.spool_path,
                            err->text[0] ? err->text : warmcal_strerror(err->code));
    g.spool = NULL;
}

/* Write what the spool's appends have handed over (warmcal_spool_take_pending),
 * under g.iomu alone: never called with g.mu or g.wmu held, so that the
 * threads that only append never wait for the disk. Returns 0, or -1 after
 * a failed write: appends then stop, the file is closed and the profiler
 * disabled. */
/* Stop using the spool w after a failure: no more appends, then no more
 * writes, then close it. */
static void drop_spool(warmcal_spool_writer *w)
{
    wlock();
    if (g.spool == w)
        g.spool = NULL; /* no more appends ... */
    wunlock();
    pthread_mutex_lock(&g.iomu);
    if (g.out == w) { /* ... then no more writes: nobody else reaches w now */
        warmcal_error ignored = {0};
        g.out = NULL;
        warmcal_spool_writer_close(w, &ignored);
    }
    pthread_mutex_unlock(&g.iomu);
}

static int write_out(void)
{
    warmcal_error err = {0};
    pthread_mutex_lock(&g.iomu);
    warmcal_spool_writer *w = g.out;
    int rc = w ? warmcal_spool_write_pending(w, &err) : 0;
    pthread_mutex_unlock(&g.iomu);
    if (rc == 0)
        return 0;
    drop_spool(w);
    warmcal__inject_disable("cannot write the spool %s: %s", g.spool_path,
                            err.text[0] ? err.text : warmcal_strerror(err.code));
    return -1;
}

static void note_locked(uint64_t t, const char *text)
{
    warmcal_error err = {0};
    if (g.spool && warmcal_spool_write_note(g.spool, t, text, &err) != 0)
        spool_failed_locked(&err);
}

void warmcal__inject_warn_once(int kind, const char *fmt, ...)
{
    /* a disabled profiler has said its one message: nothing more */
    if (atomic_load(&g.disabling))
        return;
    if (kind < 0 || kind >= WARMCAL__WARN_KINDS || atomic_exchange(&g.warned[kind], 1))
        return;
    /* this thread alone writes the kind's text: it won the exchange */
    char *text = g.warn_text[kind];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof g.warn_text[kind], fmt, ap);
    va_end(ap);
    if (tl_mlocked || tl_wlocked)
        tl_pending |= 1u << kind; /* written at the last unlock */
    else
        emit("warning: ", text);
    if (!warmcal__inject_active())
        return;
    uint64_t t = atomic_load(&g.last_time);
    if (atomic_load(&g.cupti_ready) && g.cupti.get_timestamp(&t) != CUPTI_SUCCESS)
        t = atomic_load(&g.last_time); /* the clock's failure is not this warning's business */
    if (tl_wlocked) {
        note_locked(t, text);
    } else {
        wlock();
        note_locked(t, text);
        wunlock();
    }
}

/* Whether an event of `device` is recorded; chooses the recorded device on
 * the first device-bound event. Caller holds g.mu. */
static int accept_device_locked(uint32_t device)
{
    if (device == WARMCAL__DEVICE_HOST || device == WARMCAL__DEVICE_UNKNOWN)
        return 1;
    if (g.device < 0) {
        g.device = (int)device;
        atomic_store(&g.need_device_info, 1);
        return 1;
    }
    if (device == (uint32_t)g.device)
        return 1;
    unsigned a = (unsigned)g.device, b = device;
    warmcal__inject_warn_once(WARMCAL__WARN_DEVICES,
                              "process uses devices %u and %u; recording device %d (set WARMCAL_DEVICE "
                              "to choose)",
                              a < b ? a : b, a < b ? b : a, g.device);
    return 0;
}

/* Whether a callback event is recorded: device filter, and for virtual
 * memory, the handle bookkeeping that lets a release be filtered too.
 * Caller holds g.mu. */
static int accept_callback_event_locked(const warmcal__parsed *p)
{
    if (p->event.kind == WARMCAL_EV_ALLOC_FAILED)
        return accept_device_locked(p->device);
    /* the others are a cuMemCreate (ALLOC) or a cuMemRelease (FREE) of a handle */
    if (p->event.kind == WARMCAL_EV_FREE) {
        if (warmcal__handle_set_remove(&g.handles, p->event.address))
            return 1;
        /* not ours: another device's, or one the set could not hold */
        return g.handles_untracked;
    }
    if (!accept_device_locked(p->device))
        return 0;
    if (warmcal__handle_set_add(&g.handles, p->event.address) != 0)
        g.handles_untracked = 1;
    return 1;
}

static void write_info_locked(const char *key, const char *value)
{
    warmcal_error err = {0};
    if (g.spool && warmcal_spool_write_info(g.spool, key, value, &err) != 0)
        spool_failed_locked(&err);
}

/* "550.54.15" from /proc/driver/nvidia/version, or "unknown". */
static void read_driver_version(char *out, size_t len)
{
    snprintf(out, len, "unknown");
    FILE *f = fopen("/proc/driver/nvidia/version", "re");
    if (!f)
        return;
    char line[512];
    if (fgets(line, sizeof line, f)) {
        /* "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Wed ..." */
        const char *p = strstr(line, "Kernel Module");
        p = p ? p + strlen("Kernel Module") : NULL;
        while (p && *p == ' ')
            p++;
        size_t n = 0;
        while (p && ((p[n] >= '0' && p[n] <= '9') || p[n] == '.'))
            n++;
        if (n > 0 && n < len)
            snprintf(out, len, "%.*s", (int)n, p);
    }
    fclose(f);
}

/* Spool the recorded device's attributes once it is chosen: called outside
 * g.mu and outside CUPTI's buffer thread (the driver is asked). */
static void write_device_info(void)
{
    if (!atomic_load(&g.need_device_info) || !warmcal__inject_active() ||
        atomic_exchange(&g.need_device_info, 0) == 0)
        return;
    lock();
    int ordinal = g.device;
    unlock();
    char name[256] = "unknown", total_text[32] = "0", cuda[32] = "unknown", driver[64], ordinal_text[16];
    const char *failed = NULL;
    CUresult rc = CUDA_SUCCESS;
    tl_busy++;
    CUdevice dev = 0;
    size_t total = 0;
    int version = 0;
    if (!g.driver.device_get || (rc = g.driver.device_get(&dev, ordinal)) != CUDA_SUCCESS)
        failed = "cuDeviceGet";
    else if (!g.driver.device_get_name || (rc = g.driver.device_get_name(name, (int)sizeof name, dev)) != CUDA_SUCCESS)
        failed = "cuDeviceGetName";
    else if (!g.driver.device_total_mem || (rc = g.driver.device_total_mem(&total, dev)) != CUDA_SUCCESS)
        failed = "cuDeviceTotalMem_v2";
    else if (!g.driver.driver_get_version || (rc = g.driver.driver_get_version(&version)) != CUDA_SUCCESS)
        failed = "cuDriverGetVersion";
    tl_busy--;
    if (failed) {
        if (rc == CUDA_SUCCESS)
            warmcal__inject_disable("the CUDA driver has no %s", failed);
        else
            warmcal__inject_disable("%s failed for device %d: CUDA error %d", failed, ordinal, (int)rc);
        return;
    }
    name[sizeof name - 1] = '\0';
    snprintf(total_text, sizeof total_text, "%llu", (unsigned long long)total);
    snprintf(cuda, sizeof cuda, "%d.%d", version / 1000, (version % 1000) / 10);
    snprintf(ordinal_text, sizeof ordinal_text, "%d", ordinal);
    read_driver_version(driver, sizeof driver);
    wlock();
    write_info_locked("device", ordinal_text);
    write_info_locked("gpu_name", name);
    write_info_locked("gpu_total_bytes", total_text);
    write_info_locked("driver_version", driver);
    write_info_locked("cuda_version", cuda);
    wunlock();
}

/* Read and reset CUPTI's dropped-record count; spool any with the span
 * since the last check. Outside g.mu. */
static void check_dropped(CUcontext ctx, uint32_t stream)
{
    size_t dropped = 0;
    CUptiResult rc = g.cupti.activity_get_num_dropped_records(ctx, stream, &dropped);
    if (rc != CUPTI_SUCCESS) {
        char buf[96];
        warmcal__inject_disable("cuptiActivityGetNumDroppedRecords failed: %s",
                                warmcal__cupti_error(&g.cupti, rc, buf, sizeof buf));
        return;
    }
    uint64_t now;
    if (timestamp(&now) != 0)
        return;
    lock();
    warmcal_spool_dropped d = {.since_ns = g.drop_since, .until_ns = now, .count = dropped};
    g.drop_since = now;
    unlock();
    if (dropped) {
        warmcal_error err = {0};
        wlock();
        if (g.spool && warmcal_spool_write_dropped(g.spool, &d, &err) != 0)
            spool_failed_locked(&err);
        wunlock();
    }
    if (dropped)
        warmcal__inject_warn_once(WARMCAL__WARN_DROPPED,
                                  "CUPTI dropped %zu activity record%s (its buffers were full or refused); "
                                  "the phases they fall in are marked as lower bounds",
                                  dropped, dropped == 1 ? "" : "s");
}

/* ---- CUPTI callbacks ---- */

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records)
{
    *max_records = 0; /* as many as fit */
    *buffer = NULL;
    *size = 0;
    if (!warmcal__inject_active())
        return; /* CUPTI drops what it has no buffer for: nothing records it now */
    void *p = NULL;
    if (posix_memalign(&p, 8, ACTIVITY_BUFFER_BYTES) != 0)
        return; /* counted by CUPTI as dropped records, reported at the next check */
    *buffer = p;
    *size = ACTIVITY_BUFFER_BYTES;
}

/* Whether a pool's size differs from the last one spooled for it. A small
 * table of the pools seen last: a miss only costs one more pool record. */
static int pool_size_changed_locked(const warmcal_spool_pool *p)
{
    static struct {
        uint64_t pool, reserved;
    } seen[8];
    static unsigned next;
    for (unsigned i = 0; i < sizeof seen / sizeof seen[0]; i++)
        if (seen[i].pool == p->pool) {
            if (seen[i].reserved == p->reserved_bytes)
                return 0;
            seen[i].reserved = p->reserved_bytes;
            return 1;
        }
    unsigned i = next++ % (sizeof seen / sizeof seen[0]);
    seen[i].pool = p->pool;
    seen[i].reserved = p->reserved_bytes;
    return 1;
}

/* Spool one chunk of parsed records: the device filter and the pool table
 * under g.mu (quick), then the writes under g.wmu. */
static void spool_chunk(warmcal__parsed *chunk, size_t n)
{
    size_t kept = 0;
    lock();
    for (size_t i = 0; i < n; i++) {
        warmcal__parsed *p = &chunk[i];
        if (!accept_device_locked(p->device))
            continue;
        if (p->type == WARMCAL__PARSED_EVENT && p->event_has_pool)
            p->event_has_pool = pool_size_changed_locked(&p->pool);
        chunk[kept++] = *p;
    }
    unlock();
    warmcal_error err = {0};
    int rc = 0;
    wlock();
    for (size_t i = 0; i < kept && rc == 0 && g.spool; i++) {
        const warmcal__parsed *p = &chunk[i];
        if (p->type == WARMCAL__PARSED_EVENT) {
            rc = warmcal_spool_write_event(g.spool, &p->event, &err);
            if (rc == 0 && p->event_has_pool)
                rc = warmcal_spool_write_pool(g.spool, &p->pool, &err);
        } else
            rc = warmcal_spool_write_pool(g.spool, &p->pool, &err);
    }
    if (rc != 0 && g.spool)
        spool_failed_locked(&err);
    wunlock();
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buffer, size_t size,
                                      size_t valid)
{
    (void)size;
    if (buffer && valid > 0 && warmcal__inject_active()) {
        /* parsed with no lock held: a 1 MiB buffer takes a while, and the
         * server's threads must not wait for it */
        warmcal__parsed chunk[PARSE_CHUNK];
        CUpti_Activity *rec = NULL;
        int more = 1;
        while (more && warmcal__inject_active()) {
            size_t n = 0;
            while (n < PARSE_CHUNK) {
                CUptiResult cr = g.cupti.activity_get_next_record(buffer, valid, &rec);
                if (cr == CUPTI_ERROR_MAX_LIMIT_REACHED || cr == CUPTI_ERROR_INVALID_KIND) {
                    more = 0; /* the end, or an incomplete record that ends the valid part */
                    break;
                }
                if (cr != CUPTI_SUCCESS) {
                    char buf[96];
                    warmcal__inject_disable("cuptiActivityGetNextRecord failed: %s",
                                            warmcal__cupti_error(&g.cupti, cr, buf, sizeof buf));
                    more = 0;
                    break;
                }
                if (warmcal__cupti_parse_activity(rec, &chunk[n]) != WARMCAL__PARSED_NONE)
                    n++;
            }
            if (n > 0)
                spool_chunk(chunk, n);
        }
        /* on disk now (written by this thread, CUPTI's, with no lock the
         * server's threads take): a rank killed later keeps these records */
        wlock();
        warmcal_spool_take_pending(g.spool);
        wunlock();
        write_out();
    }
    free(buffer);
    if (warmcal__inject_active())
        check_dropped(ctx, stream);
}

static void CUPTIAPI on_driver_api(void *user, CUpti_CallbackDomain domain, CUpti_CallbackId cbid,
                                   const void *data)
{
    (void)user;
    const CUpti_CallbackData *cb = data;
    if (tl_busy || domain != CUPTI_CB_DOMAIN_DRIVER_API || !cb || cb->callbackSite != CUPTI_API_EXIT ||
        !warmcal__inject_active())
        return;
    warmcal__parsed p;
    if (warmcal__cupti_parse_callback(cbid, cb, 0, &p) != WARMCAL__PARSED_EVENT)
        return;
    tl_busy++;
    uint64_t t;
    if (timestamp(&t) == 0) {
        p.event.time_ns = t;
        /* the call ran on this thread's context: its device is the event's
         * (frees of a handle are kept whatever the thread: the handle says) */
        CUdevice dev;
        if (p.device == WARMCAL__DEVICE_UNKNOWN && p.event.kind != WARMCAL_EV_FREE && g.driver.ctx_get_device &&
            g.driver.ctx_get_device(&dev) == CUDA_SUCCESS && dev >= 0)
            p.device = (uint32_t)dev;
        lock();
        int keep = warmcal__inject_active() && accept_callback_event_locked(&p);
        unlock();
        if (keep) {
            warmcal_error err = {0};
            wlock();
            int rc = g.spool ? warmcal_spool_write_event(g.spool, &p.event, &err) : 0;
            /* an out-of-memory rank is often killed next by its launcher:
             * the failure goes to disk now, not with the next phase edge
             * (the only write on a server's allocating thread) */
            int now = rc == 0 && g.spool && p.event.kind == WARMCAL_EV_ALLOC_FAILED;
            if (now)
                warmcal_spool_take_pending(g.spool);
            if (rc != 0 && g.spool)
                spool_failed_locked(&err);
            wunlock();
            if (now)
                write_out();
        }
        write_device_info();
    }
    tl_busy--;
}

/* ---- phases ---- */

/* The clean-up a disable leaves for a safe point (outside g.mu, outside
 * CUPTI's callbacks): CUPTI stops calling us, the spool gets the reason. */
static void settle_disabled(void)
{
    if (!atomic_load(&g.disabled) || atomic_exchange(&g.settled, 1))
        return;
    tl_busy++;
    if (g.subscribed) {
        g.cupti.unsubscribe(g.subscriber);
        g.subscribed = 0;
    }
    if (g.activity_enabled) {
        g.cupti.activity_disable(CUPTI_ACTIVITY_KIND_MEMORY2);
        g.cupti.activity_disable(CUPTI_ACTIVITY_KIND_MEMORY_POOL);
        g.activity_enabled = 0;
    }
    tl_busy--;
    char text[1100];
    snprintf(text, sizeof text, "profiler disabled: %s", g.disable_reason);
    wlock();
    if (g.spool) {
        note_locked(atomic_load(&g.last_time), text);
        warmcal_spool_take_pending(g.spool);
    }
    wunlock();
    write_out(); /* a failure closes the spool; its message was said */
}

/* Device free memory for a phase edge, or WARMCAL_FREE_UNKNOWN: sampled
 * only when this thread's context is on the recorded device (chosen here
 * when no allocation chose it yet). */
static uint64_t sample_free(void)
{
    if (!g.driver.ctx_get_current || !g.driver.ctx_get_device || !g.driver.mem_get_info) {
        warmcal__inject_warn_once(WARMCAL__WARN_FREE_UNKNOWN,
                                  "the CUDA driver lacks cuCtxGetCurrent, cuCtxGetDevice or cuMemGetInfo_v2: "
                                  "device free memory is not sampled at phase edges");
        return WARMCAL_FREE_UNKNOWN;
    }
    CUcontext ctx = NULL;
    CUdevice dev = -1;
    if (g.driver.ctx_get_current(&ctx) != CUDA_SUCCESS || !ctx ||
        g.driver.ctx_get_device(&dev) != CUDA_SUCCESS || dev < 0) {
        warmcal__inject_warn_once(WARMCAL__WARN_FREE_UNKNOWN,
                                  "no CUDA context is current on the thread that marks phases: device free "
                                  "memory is not sampled at its phase edges");
        return WARMCAL_FREE_UNKNOWN;
    }
    lock();
    if (g.device < 0) {
        g.device = dev;
        atomic_store(&g.need_device_info, 1);
    }
    int recorded = g.device;
    unlock();
    if (dev != recorded) {
        warmcal__inject_warn_once(WARMCAL__WARN_FREE_UNKNOWN,
                                  "phases are marked on a thread working on device %d, not the recorded "
                                  "device %d: device free memory is not sampled at those edges",
                                  (int)dev, recorded);
        return WARMCAL_FREE_UNKNOWN;
    }
    size_t free_bytes = 0, total = 0;
    CUresult rc = g.driver.mem_get_info(&free_bytes, &total);
    if (rc != CUDA_SUCCESS) {
        warmcal__inject_disable("cuMemGetInfo_v2 failed: CUDA error %d", (int)rc);
        return WARMCAL_FREE_UNKNOWN;
    }
    return free_bytes;
}

/* Append a free-memory sample and a phase edge at the same time t, and
 * hand them to the write side (the caller then calls write_out, with no
 * lock held); caller holds g.mu and g.wmu. Returns 0 or a negative
 * warmcal_code. */
static int edge_locked(uint64_t t, uint64_t free_bytes, int begin, const char *label, uint64_t tokens,
                       uint32_t batch)
{
    warmcal_error err = {0};
    int rc = 0;
    if (free_bytes != WARMCAL_FREE_UNKNOWN) {
        warmcal_spool_event ev = {.time_ns = t, .bytes = free_bytes, .kind = WARMCAL_EV_DEVICE_FREE};
        rc = warmcal_spool_write_event(g.spool, &ev, &err);
    }
    if (rc == 0)
        rc = begin ? warmcal_spool_write_phase_begin(g.spool, t, label, tokens, batch, &err)
                   : warmcal_spool_write_phase_end(g.spool, t, &err);
    if (rc != 0) {
        spool_failed_locked(&err);
        return WARMCAL_E_IO;
    }
    warmcal_spool_take_pending(g.spool);
    return 0;
}

void warmcal__inject_inactive_phase(const char *label, uint64_t tokens)
{
    /* init_called is inherited by a forked child, and a disable before
     * initialisation (none exists today) would have said its message */
    if (!atomic_load(&g.init_called) && !atomic_load(&g.disabling))
        warmcal__inject_warn_once(WARMCAL__WARN_BEFORE_INIT,
                                  "phase (tokens=%llu label=%s) not measured: it began before CUDA "
                                  "initialised the profiler (the program's first CUDA call)",
                                  (unsigned long long)tokens, label && label[0] ? label : "context");
    settle_disabled();
}

int warmcal__inject_phase_begin(const char *label, uint64_t tokens, uint32_t batch)
{
    if (!warmcal__inject_active()) {
        warmcal__inject_inactive_phase(label, tokens);
        return WARMCAL_E_STATE;
    }
    int rc = WARMCAL_E_STATE;
    uint64_t t;
    tl_busy++;
    if (timestamp(&t) == 0) {
        uint64_t free_bytes = sample_free();
        write_device_info();
        lock();
        wlock();
        if (g.spool && warmcal__inject_active() && !g.in_phase) {
            rc = edge_locked(t, free_bytes, 1, label ? label : "", tokens, batch);
            g.in_phase = rc == 0;
        }
        wunlock();
        unlock();
        /* on disk before the phase runs: flushed by design, by this thread */
        if (rc == 0 && write_out() != 0)
            rc = WARMCAL_E_IO;
        if (rc == 0)
            start_flusher();
    }
    tl_busy--;
    settle_disabled();
    return rc;
}

int warmcal__inject_phase_end(void)
{
    if (!warmcal__inject_active()) {
        settle_disabled();
        return WARMCAL_E_STATE;
    }
    int rc = WARMCAL_E_STATE;
    uint64_t t;
    tl_busy++;
    lock();
    int open = g.in_phase;
    unlock();
    if (open && timestamp(&t) == 0) {
        uint64_t free_bytes = sample_free();
        /* every record up to t reaches buffer_completed (which takes g.mu:
         * hence the flush outside it) before the phase end is spooled */
        CUptiResult cr = warmcal__inject_active() ? g.cupti.activity_flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED)
                                                  : CUPTI_SUCCESS;
        if (cr != CUPTI_SUCCESS) {
            char buf[96];
            warmcal__inject_disable("cuptiActivityFlushAll failed: %s",
                                    warmcal__cupti_error(&g.cupti, cr, buf, sizeof buf));
        }
        if (warmcal__inject_active())
            check_dropped(NULL, 0);
        write_device_info();
        lock();
        wlock();
        if (g.spool && warmcal__inject_active() && g.in_phase) {
            rc = edge_locked(t, free_bytes, 0, NULL, 0, 0);
            g.in_phase = 0;
        }
        wunlock();
        unlock();
        if (rc == 0 && write_out() != 0)
            rc = WARMCAL_E_IO;
    }
    tl_busy--;
    settle_disabled();
    return rc;
}

/* ---- process life ---- */

static void at_exit(void)
{
    if (atomic_exchange(&g.exited, 1) || getpid() != g.pid)
        return;
    stop_flusher();
    tl_busy++;
    if (warmcal__inject_active()) {
        CUptiResult cr = g.cupti.activity_flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED);
        if (cr != CUPTI_SUCCESS) {
            char buf[96];
            warmcal__inject_disable("cuptiActivityFlushAll failed at exit: %s",
                                    warmcal__cupti_error(&g.cupti, cr, buf, sizeof buf));
        } else {
            check_dropped(NULL, 0);
            write_device_info();
        }
    }
    settle_disabled();
    uint64_t t = atomic_load(&g.last_time);
    if (atomic_load(&g.cupti_ready) && g.cupti.get_timestamp(&t) != CUPTI_SUCCESS)
        t = atomic_load(&g.last_time); /* CUPTI may be shutting down: the last stamp is close */
    /* from here on the process is ending: what it frees is not a phase's */
    atomic_store(&g.active, 0);
    warmcal_error err = {0};
    int rc = 0;
    wlock();
    warmcal_spool_writer *w = g.spool;
    if (w) {
        rc = warmcal_spool_write_exit(w, t, &err);
        warmcal_spool_take_pending(w);
        g.spool = NULL; /* no more appends ... */
    }
    wunlock();
    pthread_mutex_lock(&g.iomu);
    warmcal_spool_writer *o = g.out;
    g.out = NULL; /* ... then the last writes */
    if (o) {
        warmcal_error close_err = {0};
        int crc = warmcal_spool_writer_close(o, &close_err);
        if (rc == 0 && crc != 0) {
            rc = crc;
            err = close_err;
        }
    }
    pthread_mutex_unlock(&g.iomu);
    /* a spool that failed before said so then */
    if (w && rc != 0)
        warmcal__inject_disable("cannot finish the spool %s: %s", g.spool_path, err.text);
    lock();
    warmcal__handle_set_clear(&g.handles);
    g.handles_untracked = 1; /* a release after this is not ours to judge */
    unlock();
    tl_busy--;
}

/* ---- the flusher thread ---- */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started, stop;
    pthread_t thread;
} flusher = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};

static void *flusher_main(void *arg)
{
    (void)arg;
    tl_busy++; /* nothing this thread causes is the server's */
    pthread_mutex_lock(&flusher.mu);
    while (!flusher.stop) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        long ns = until.tv_nsec + FLUSHER_PERIOD_MS * 1000000L;
        until.tv_sec += ns / 1000000000L;
        until.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&flusher.cv, &flusher.mu, &until);
        if (flusher.stop)
            break;
        pthread_mutex_unlock(&flusher.mu);
        lock();
        int open = g.in_phase;
        unlock();
        /* flag 0: buffers whose records are all complete; a failure here is
         * left to the phase end's own flush, which reports it */
        if (open && warmcal__inject_active() && !atomic_load(&g.exited))
            (void)g.cupti.activity_flush_all(0);
        /* what the server's callbacks appended past a full buffer and
         * left for the write side */
        write_out();
        pthread_mutex_lock(&flusher.mu);
    }
    pthread_mutex_unlock(&flusher.mu);
    return NULL;
}

/* Start the flusher at the first phase. It blocks every signal, so that no
 * signal meant for the server is ever delivered on it. A thread that cannot
 * be created costs only the periodic flush. */
static void start_flusher(void)
{
    pthread_mutex_lock(&flusher.mu);
    if (!flusher.started && !flusher.stop) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        flusher.started = pthread_create(&flusher.thread, NULL, flusher_main, NULL) == 0;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (!flusher.started)
            flusher.stop = 1; /* do not try again at every phase */
    }
    pthread_mutex_unlock(&flusher.mu);
}

/* Stop the flusher and wait for it: at exit, before the last flush. */
static void stop_flusher(void)
{
    pthread_mutex_lock(&flusher.mu);
    int started = flusher.started;
    flusher.stop = 1;
    flusher.started = 0;
    pthread_cond_broadcast(&flusher.cv);
    pthread_mutex_unlock(&flusher.mu);
    if (started)
        pthread_join(flusher.thread, NULL);
}

/* A forked child shares the parent's spool file and the parent's
 * unwritten buffer: it must write nothing, ever (the spool is left as it is,
 * still referenced: freeing it would gain nothing). Its locks may have been
 * held by parent threads that do not exist here: all are made new, and
 * nothing the child does waits on them (inactive phases take no lock). */
static void after_fork_in_child(void)
{
    atomic_store(&g.active, 0);
    atomic_store(&g.exited, 1);
    atomic_store(&g.settled, 1); /* a pending disable's clean-up is the parent's */
    pthread_mutex_init(&g.mu, NULL);
    pthread_mutex_init(&g.wmu, NULL);
    pthread_mutex_init(&g.iomu, NULL);
    /* the flusher is a parent's thread: none runs here, none will start */
    pthread_mutex_init(&flusher.mu, NULL);
    pthread_cond_init(&flusher.cv, NULL);
    flusher.started = 0;
    flusher.stop = 1;
    tl_mlocked = 0;
    tl_wlocked = 0;
    tl_pending = 0;
    tl_busy = 0;
    warmcal__phase_after_fork_child();
    warmcal__nvtx_after_fork_child();
}

static int parse_ordinal(const char *s, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > INT_MAX)
        return -1;
    *out = (int)v;
    return 0;
}

/* Open the spool and write the run's attributes; -1 after a disable. */
static int open_spool(const char *out_dir, int rank, int world, const char *rank_from)
{
    int n = snprintf(g.spool_path, sizeof g.spool_path, "%s/rank-%d.%ld.spool", out_dir, rank, (long)g.pid);
    if (n < 0 || (size_t)n >= sizeof g.spool_path) {
        warmcal__inject_disable("WARMCAL_OUT is too long a path: %s", out_dir);
        return -1;
    }
    if (mkdir(out_dir, 0777) != 0 && errno != EEXIST) {
        warmcal__inject_disable("cannot create WARMCAL_OUT=%s: %s", out_dir, strerror(errno));
        return -1;
    }
    /* created under a name no lister takes, and published once the run's
     * attributes are on disk: a `warmcal profile` converting this folder
     * while this process starts must not meet a spool without its session */
    char partial[sizeof g.spool_path + 16];
    n = snprintf(partial, sizeof partial, "%s.partial", g.spool_path);
    if (n < 0 || (size_t)n >= sizeof partial) {
        warmcal__inject_disable("WARMCAL_OUT is too long a path: %s", out_dir);
        return -1;
    }
    warmcal_error err = {0};
    warmcal_spool_writer *w = NULL;
    if (warmcal_spool_writer_open(&w, partial, &err) != 0) {
        warmcal__inject_disable("cannot create the spool %s: %s", partial,
                                err.text[0] ? err.text : warmcal_strerror(err.code));
        return -1;
    }
    char pid_text[24], rank_text[16], world_text[16], host[256] = "unknown", start[64];
    snprintf(pid_text, sizeof pid_text, "%ld", (long)g.pid);
    snprintf(rank_text, sizeof rank_text, "%d", rank);
    snprintf(world_text, sizeof world_text, "%d", world);
    if (gethostname(host, sizeof host) != 0)
        snprintf(host, sizeof host, "unknown");
    host[sizeof host - 1] = '\0';
    if (!warmcal_utc_now(start, sizeof start))
        snprintf(start, sizeof start, "unknown");
    const char *session = getenv("WARMCAL_SESSION"), *model = getenv("WARMCAL_MODEL");
    warmcal_spool_writer_defer_writes(w); /* write(2) only in write_out */
    pthread_mutex_lock(&g.iomu);
    g.out = w;
    pthread_mutex_unlock(&g.iomu);
    wlock();
    g.spool = w;
    write_info_locked("session", session ? session : "");
    write_info_locked("pid", pid_text);
    write_info_locked("rank", rank_text);
    write_info_locked("world_size", world_text);
    write_info_locked("rank_from", rank_from ? rank_from : "none");
    write_info_locked("model", model ? model : "");
    write_info_locked("host", host);
    write_info_locked("start_time", start);
    write_info_locked("source", "cupti");
    write_info_locked("cupti_lib", g.cupti.path);
    warmcal_spool_take_pending(g.spool);
    int ok = g.spool != NULL;
    wunlock();
    if (!ok || write_out() != 0)
        return -1;
    pthread_mutex_lock(&g.iomu);
    int rc = g.out ? warmcal_spool_writer_publish(g.out, g.spool_path, &err) : -1;
    pthread_mutex_unlock(&g.iomu);
    if (rc != 0) {
        drop_spool(w);
        unlink(partial);
        warmcal__inject_disable("cannot name the spool %s: %s", g.spool_path,
                                err.text[0] ? err.text : warmcal_strerror(err.code));
        return -1;
    }
    return 0;
}

/* Subscribe to the driver-API callbacks (named "warmcal" where CUPTI takes
 * a name); CUPTI has one subscriber per process. -1 after a disable. */
static int subscribe(void)
{
    char buf[96], holder[128] = ""; /* CUPTI asks for at least 64 bytes */
    const char *what = "cuptiSubscribe";
    CUptiResult rc;
#ifdef WARMCAL__HAVE_SUBSCRIBE_V2
    if (g.cupti.subscribe_v2) {
        CUpti_SubscriberParams params;
        memset(&params, 0, sizeof params);
        params.structSize = CUpti_SubscriberParams_STRUCT_SIZE;
        params.subscriberName = "warmcal";
        params.oldSubscriberName = holder;
        params.oldSubscriberSize = sizeof holder;
        what = "cuptiSubscribe_v2";
        rc = g.cupti.subscribe_v2(&g.subscriber, on_driver_api, NULL, &params);
        holder[sizeof holder - 1] = '\0';
    } else
#endif
        rc = g.cupti.subscribe(&g.subscriber, on_driver_api, NULL);
    g.subscribed = rc == CUPTI_SUCCESS;
    if (rc == CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED) {
        warmcal__inject_disable("%s failed: another CUPTI tool (e.g. torch.profiler / Nsight) is attached%s%s%s, "
                                "and CUPTI takes one per process; measure with warmcal and with that tool "
                                "in separate runs",
                                what, holder[0] ? " (" : "", holder, holder[0] ? ")" : "");
        return -1;
    }
    if (rc != CUPTI_SUCCESS) {
        warmcal__inject_disable("%s failed: %s", what, warmcal__cupti_error(&g.cupti, rc, buf, sizeof buf));
        return -1;
    }
    return 0;
}

/* Subscribe, then register the activity buffers and enable the records and
 * callbacks; -1 after a disable. Subscribing comes first: when another tool
 * holds CUPTI, its buffer callbacks and record kinds are left untouched. */
static int start_cupti(void)
{
    if (subscribe() != 0)
        return -1;
    char buf[96];
    CUptiResult rc = g.cupti.activity_register_callbacks(buffer_requested, buffer_completed);
    const char *what = "cuptiActivityRegisterCallbacks";
    if (rc == CUPTI_SUCCESS && g.cupti.activity_flush_period) {
        /* a help for killed ranks only (phase ends and exit flush anyway):
         * a CUPTI that refuses it is used without */
        (void)g.cupti.activity_flush_period(ACTIVITY_FLUSH_PERIOD_MS);
    }
    if (rc == CUPTI_SUCCESS) {
        what = "cuptiActivityEnable(MEMORY2)";
        rc = g.cupti.activity_enable(CUPTI_ACTIVITY_KIND_MEMORY2);
        g.activity_enabled = rc == CUPTI_SUCCESS;
    }
    if (rc == CUPTI_SUCCESS) {
        what = "cuptiActivityEnable(MEMORY_POOL)";
        rc = g.cupti.activity_enable(CUPTI_ACTIVITY_KIND_MEMORY_POOL);
    }
    size_t n = 0;
    const CUpti_CallbackId *ids = warmcal__cupti_callback_ids(&n);
    for (size_t i = 0; i < n && rc == CUPTI_SUCCESS; i++) {
        what = "cuptiEnableCallback";
        rc = g.cupti.enable_callback(1, g.subscriber, CUPTI_CB_DOMAIN_DRIVER_API, ids[i]);
    }
    if (rc != CUPTI_SUCCESS) {
        warmcal__inject_disable("%s failed: %s", what, warmcal__cupti_error(&g.cupti, rc, buf, sizeof buf));
        return -1;
    }
    return 0;
}

static void initialize(void)
{
    g.pid = getpid();
    const char *out_dir = getenv("WARMCAL_OUT");
    if (!out_dir || !out_dir[0]) {
        warmcal__inject_disable("WARMCAL_OUT is not set: set it to the folder for the spool "
                                "(`warmcal profile` does)");
        return;
    }
    int rank = 0, world = 1;
    const char *from = "none";
    char msg[1024] = "";
    if (warmcal_launcher_rank(NULL, NULL, &rank, &world, &from, msg, sizeof msg) != 0) {
        warmcal__inject_disable("%s", msg[0] ? msg : "the launcher's rank variables hold no valid number");
        return;
    }
    const char *dev_env = getenv("WARMCAL_DEVICE");
    if (dev_env && dev_env[0]) {
        int ordinal;
        if (parse_ordinal(dev_env, &ordinal) != 0) {
            warmcal__inject_disable("WARMCAL_DEVICE=%s is not a device ordinal (0, 1, ...)", dev_env);
            return;
        }
        g.device = ordinal;
        atomic_store(&g.need_device_info, 1);
    }
    if (warmcal__cupti_load(&g.cupti, msg, sizeof msg) != 0) {
        warmcal__inject_disable("%s", msg);
        return;
    }
    atomic_store(&g.cupti_ready, 1);
    if (warmcal__driver_load(&g.driver, msg, sizeof msg) != 0) {
        warmcal__inject_disable("%s", msg);
        return;
    }
    uint64_t t;
    if (timestamp(&t) != 0)
        return;
    g.drop_since = t;
    if (open_spool(out_dir, rank, world, from) != 0)
        return;
    /* active before CUPTI starts, so that nothing it reports is missed */
    atomic_store(&g.active, 1);
    start_cupti();
}

EXPORT int InitializeInjection(void)
{
    if (atomic_exchange(&g.init_called, 1))
        return 1;
    initialize();
    settle_disabled();
    /* registered after CUPTI started, so that it runs before CUPTI's own
     * exit handlers and can still flush the last records */
    atexit(at_exit);
    /* 1 even when disabled: the server must run on as if not profiled */
    return 1;
}
