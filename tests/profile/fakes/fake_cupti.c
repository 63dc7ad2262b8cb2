/* fake_cupti.c — a CUPTI for the fake driver, built as libcupti.so against
 * the real CUPTI 13 headers: what the driver reports (fake_tracer.h) comes
 * out as CUpti_ActivityMemory4 / CUpti_ActivityMemoryPool3 records in the
 * client's buffers and as driver-API callbacks, the way a profiler sees the
 * real one. FAKE_CUPTI (docs/testing.md) makes it fail, drop records or
 * deliver buffers late and out of order. cuptiActivityFlushPeriod starts a
 * thread that hands over the full buffers every period (never the one being
 * filled, as the real one); a program may
 * define fake_cupti_flush_hook, called at the start of every
 * cuptiActivityFlushAll (tests use it to act while the profiler flushes). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cupti.h>

#include "fake_tracer.h"

#define FAKE_EXPORT __attribute__((visibility("default")))
#define MAX_RECORD                                                                                 \
    (sizeof(CUpti_ActivityMemory4) > sizeof(CUpti_ActivityMemoryPool3)                             \
         ? sizeof(CUpti_ActivityMemory4)                                                           \
         : sizeof(CUpti_ActivityMemoryPool3))
#define MAX_HELD 1024

FAKE_EXPORT const char fake_cupti_marker[] = "warmcal fake libcupti.so";

typedef struct {
    uint8_t *buf;
    size_t size, valid;
} fake_buffer;

struct CUpti_Subscriber_st {
    int unused;
};

static struct {
    pthread_mutex_t mu;
    int options_read;
    /* FAKE_CUPTI */
    int fail_subscribe, fail_activity_enable, fail_register, fail_timestamp, fail_flush,
        fail_enable_callback;
    unsigned long drop_every, buffer_records;
    int late;
    int version_set;
    uint32_t version; /* cuptiGetVersion's answer when version_set */
    /* driver link */
    int attached;
    fake_context_info_fn ctx_info;
    /* callbacks */
    int subscribed;
    struct CUpti_Subscriber_st subscriber;
    CUpti_CallbackFunc callback;
    void *userdata;
    unsigned char driver_cb[CUPTI_DRIVER_TRACE_CBID_SIZE];
    /* activity */
    int memory2, memory_pool;
    CUpti_BuffersCallbackRequestFunc requested;
    CUpti_BuffersCallbackCompleteFunc completed;
    fake_buffer cur;
    size_t cur_records, cur_max_records;
    fake_buffer spare[8];
    int nspare;
    fake_buffer held[MAX_HELD]; /* completed, waiting to be delivered */
    int nheld;
    unsigned long long memory_records;
    size_t dropped;
    /* cuptiActivityFlushPeriod */
    uint32_t period_ms;       /* 0: no periodic flush */
    int period_thread;        /* the thread is started (once) */
    pthread_cond_t period_cv; /* signalled when the period changes */
} g = {.mu = PTHREAD_MUTEX_INITIALIZER, .period_cv = PTHREAD_COND_INITIALIZER};

static _Thread_local uint64_t t_correlation_data;

/* ---- options ---- */

static void read_options(void)
{
    if (g.options_read)
        return;
    g.options_read = 1;
    const char *env = getenv("FAKE_CUPTI");
    if (!env)
        return;
    char copy[512];
    snprintf(copy, sizeof copy, "%s", env);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, "fail=subscribe"))
            g.fail_subscribe = 1;
        else if (!strcmp(tok, "fail=activity_enable"))
            g.fail_activity_enable = 1;
        else if (!strcmp(tok, "fail=register_callbacks"))
            g.fail_register = 1;
        else if (!strcmp(tok, "fail=timestamp"))
            g.fail_timestamp = 1;
        else if (!strcmp(tok, "fail=flush"))
            g.fail_flush = 1;
        else if (!strcmp(tok, "fail=enable_callback"))
            g.fail_enable_callback = 1;
        else if (!strncmp(tok, "drop=", 5))
            g.drop_every = strtoul(tok + 5, NULL, 10);
        else if (!strcmp(tok, "late"))
            g.late = 1;
        else if (!strncmp(tok, "buffer_records=", 15))
            g.buffer_records = strtoul(tok + 15, NULL, 10);
        else if (!strncmp(tok, "version=", 8)) {
            g.version_set = 1;
            g.version = (uint32_t)strtoul(tok + 8, NULL, 10);
        }
        else
            fprintf(stderr, "fake libcupti: FAKE_CUPTI: unknown switch '%s'\n", tok);
    }
}

/* ---- buffers ---- */

/* Hand completed buffers to the client, oldest first, outside the lock. */
static void deliver(CUpti_BuffersCallbackCompleteFunc done, fake_buffer *bufs, int n,
                    int reverse)
{
    for (int i = 0; i < n; i++) {
        fake_buffer *b = &bufs[reverse ? n - 1 - i : i];
        if (done)
            done(NULL, 0, b->buf, b->size, b->valid);
    }
}

/* Move the current buffer to the held list (g.mu held). With the list
 * full the buffer stays current, and records that do not fit are dropped. */
static void complete_current(void)
{
    if (!g.cur.buf || g.nheld == MAX_HELD)
        return;
    g.held[g.nheld++] = g.cur;
    memset(&g.cur, 0, sizeof g.cur);
    g.cur_records = 0;
}

/* Take the held buffers out for delivery (g.mu held). Returns how many. */
static int take_held(fake_buffer *out)
{
    int n = g.nheld;
    memcpy(out, g.held, (size_t)n * sizeof *out);
    g.nheld = 0;
    return n;
}

/* Make sure there is a current buffer with room for a record. Called with
 * g.mu held; the client's request callback runs without it. Returns 0 when
 * the record must be dropped. */
static int ensure_buffer(size_t need)
{
    if (g.cur.buf && g.cur.size - g.cur.valid >= need)
        return 1;
    if (g.cur.buf)
        complete_current();
    if (g.nspare > 0) {
        g.cur = g.spare[--g.nspare];
        g.cur_max_records = 0;
        return 1;
    }
    CUpti_BuffersCallbackRequestFunc req = g.requested;
    if (!req)
        return 0;
    uint8_t *buf = NULL;
    size_t size = 0, max_records = 0;
    pthread_mutex_unlock(&g.mu);
    req(&buf, &size, &max_records);
    pthread_mutex_lock(&g.mu);
    if (!buf || size < need)
        return 0; /* a client buffer too small (or none) is dropped records */
    fake_buffer b = {buf, size, 0};
    if (g.cur.buf) { /* another thread installed one meanwhile */
        if (g.nspare < 8) {
            g.spare[g.nspare++] = b;
        } else if (g.nheld < MAX_HELD) {
            g.held[g.nheld++] = b;
        }
        return g.cur.size - g.cur.valid >= need;
    }
    g.cur = b;
    g.cur_records = 0;
    g.cur_max_records = max_records;
    return 1;
}

/* Append one record (g.mu held); returns whether buffers completed. */
static int append_record(const void *rec, size_t size)
{
    if (!ensure_buffer(size)) {
        g.dropped++;
        return 0;
    }
    memcpy(g.cur.buf + g.cur.valid, rec, size);
    g.cur.valid += (size + 7) & ~(size_t)7;
    g.cur_records++;
    if (g.cur.size - g.cur.valid < MAX_RECORD ||
        (g.buffer_records && g.cur_records >= g.buffer_records) ||
        (g.cur_max_records && g.cur_records >= g.cur_max_records))
        complete_current();
    return g.nheld > 0;
}

/* ---- what the driver tells us ---- */

/* The process id records carry. getpid() is a system call: asked once per
 * record it would make the fake, not the profiler, what a bench measures. */
static pid_t cached_pid;
static void forget_pid(void)
{
    cached_pid = 0;
}
static void register_forget_pid(void)
{
    pthread_atfork(NULL, NULL, forget_pid);
}
static uint32_t process_id(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_forget_pid);
    if (!cached_pid)
        cached_pid = getpid();
    return (uint32_t)cached_pid;
}

static void on_mem(void *user, const fake_mem_op *op)
{
    (void)user;
    fake_buffer out[MAX_HELD];
    int n = 0;
    pthread_mutex_lock(&g.mu);
    if (op->op == FAKE_OP_ALLOC || op->op == FAKE_OP_FREE) {
        if (!g.memory2 || op->kind == FAKE_MEM_VIRTUAL) {
            pthread_mutex_unlock(&g.mu);
            return;
        }
        g.memory_records++;
        if (g.drop_every && g.memory_records % g.drop_every == 0) {
            g.dropped++;
            pthread_mutex_unlock(&g.mu);
            return;
        }
        CUpti_ActivityMemory4 r;
        memset(&r, 0, sizeof r);
        r.kind = CUPTI_ACTIVITY_KIND_MEMORY2;
        r.memoryOperationType = op->op == FAKE_OP_ALLOC ? CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION
                                                        : CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_RELEASE;
        r.memoryKind = op->kind == FAKE_MEM_MANAGED  ? CUPTI_ACTIVITY_MEMORY_KIND_MANAGED
                       : op->kind == FAKE_MEM_PINNED ? CUPTI_ACTIVITY_MEMORY_KIND_PINNED
                                                     : CUPTI_ACTIVITY_MEMORY_KIND_DEVICE;
        r.correlationId = op->correlation_id;
        r.address = op->address;
        r.bytes = op->bytes;
        r.timestamp = op->time_ns;
        r.processId = process_id();
        r.deviceId = (uint32_t)op->device;
        r.contextId = op->context_id;
        r.streamId = op->stream_id;
        r.name = NULL;
        r.isAsync = (uint32_t)op->is_async;
        if (op->kind == FAKE_MEM_POOL) {
            r.memoryPoolConfig.memoryPoolType = CUPTI_ACTIVITY_MEMORY_POOL_TYPE_LOCAL;
            r.memoryPoolConfig.address = op->pool;
            r.memoryPoolConfig.releaseThreshold = op->pool_release_threshold;
            r.memoryPoolConfig.pool.size = op->pool_reserved;
            r.memoryPoolConfig.utilizedSize = op->pool_used;
        }
        r.source = NULL;
        if (append_record(&r, sizeof r) && !g.late)
            n = take_held(out);
    } else {
        if (!g.memory_pool) {
            pthread_mutex_unlock(&g.mu);
            return;
        }
        CUpti_ActivityMemoryPool3 r;
        memset(&r, 0, sizeof r);
        r.kind = CUPTI_ACTIVITY_KIND_MEMORY_POOL;
        r.memoryPoolOperationType = op->op == FAKE_OP_POOL_CREATED
                                        ? CUPTI_ACTIVITY_MEMORY_POOL_OPERATION_TYPE_CREATED
                                        : CUPTI_ACTIVITY_MEMORY_POOL_OPERATION_TYPE_TRIMMED;
        r.memoryPoolType = CUPTI_ACTIVITY_MEMORY_POOL_TYPE_LOCAL;
        r.correlationId = op->correlation_id;
        r.processId = process_id();
        r.deviceId = (uint32_t)op->device;
        r.minBytesToKeep = op->op == FAKE_OP_POOL_TRIMMED ? op->pool_reserved : 0;
        r.address = op->pool;
        r.size = op->pool_reserved;
        r.releaseThreshold = op->pool_release_threshold;
        r.timestamp = op->time_ns;
        r.utilizedSize = op->pool_used;
        r.isManagedPool = 0;
        if (append_record(&r, sizeof r) && !g.late)
            n = take_held(out);
    }
    CUpti_BuffersCallbackCompleteFunc done = g.completed;
    pthread_mutex_unlock(&g.mu);
    deliver(done, out, n, 0);
}

static void on_api(void *user, int site, uint32_t cbid, const char *name, const void *params,
                   CUresult *result, CUcontext ctx, uint32_t correlation_id)
{
    (void)user;
    pthread_mutex_lock(&g.mu);
    CUpti_CallbackFunc cb = g.subscribed && cbid < CUPTI_DRIVER_TRACE_CBID_SIZE &&
                                    g.driver_cb[cbid]
                                ? g.callback
                                : NULL;
    void *userdata = g.userdata;
    fake_context_info_fn info = g.ctx_info;
    pthread_mutex_unlock(&g.mu);
    if (!cb)
        return;
    uint32_t ctx_id = 0;
    if (ctx && info)
        info(ctx, &ctx_id, NULL);
    if (site == FAKE_SITE_ENTER)
        t_correlation_data = 0;
    CUpti_CallbackData data;
    memset(&data, 0, sizeof data);
    data.callbackSite = site == FAKE_SITE_ENTER ? CUPTI_API_ENTER : CUPTI_API_EXIT;
    data.functionName = name;
    data.functionParams = params;
    data.functionReturnValue = result;
    data.symbolName = NULL;
    data.context = ctx;
    data.contextUid = ctx_id;
    data.correlationData = &t_correlation_data;
    data.correlationId = correlation_id;
    cb(userdata, CUPTI_CB_DOMAIN_DRIVER_API, cbid, &data);
}

/* Find the fake driver (already loaded by the program) and register. */
static CUptiResult attach(void)
{
    if (g.attached)
        return CUPTI_SUCCESS;
    void *h = dlopen("libcuda.so.1", RTLD_NOLOAD | RTLD_LAZY);
    fake_register_tracer_fn reg = h ? (fake_register_tracer_fn)dlsym(h, FAKE_TRACER_REGISTER_SYMBOL)
                                    : NULL;
    if (h)
        dlclose(h); /* NOLOAD took a reference; the program keeps its own */
    if (!reg)
        return CUPTI_ERROR_NOT_INITIALIZED;
    fake_tracer t = {on_api, on_mem, NULL};
    if (reg(FAKE_TRACER_VERSION, &t, &g.ctx_info) != CUDA_SUCCESS)
        return CUPTI_ERROR_NOT_INITIALIZED;
    g.attached = 1;
    return CUPTI_SUCCESS;
}

/* Lock, read options, attach; returns the attach result with g.mu held. */
static CUptiResult enter(void)
{
    pthread_mutex_lock(&g.mu);
    read_options();
    return attach();
}

/* ---- the API ---- */

static const struct {
    CUptiResult code;
    const char *text;
} results[] = {
    {CUPTI_SUCCESS, "CUPTI_SUCCESS"},
    {CUPTI_ERROR_INVALID_PARAMETER, "CUPTI_ERROR_INVALID_PARAMETER"},
    {CUPTI_ERROR_INVALID_DEVICE, "CUPTI_ERROR_INVALID_DEVICE"},
    {CUPTI_ERROR_INVALID_CONTEXT, "CUPTI_ERROR_INVALID_CONTEXT"},
    {CUPTI_ERROR_INVALID_OPERATION, "CUPTI_ERROR_INVALID_OPERATION"},
    {CUPTI_ERROR_OUT_OF_MEMORY, "CUPTI_ERROR_OUT_OF_MEMORY"},
    {CUPTI_ERROR_MAX_LIMIT_REACHED, "CUPTI_ERROR_MAX_LIMIT_REACHED"},
    {CUPTI_ERROR_NOT_COMPATIBLE, "CUPTI_ERROR_NOT_COMPATIBLE"},
    {CUPTI_ERROR_NOT_INITIALIZED, "CUPTI_ERROR_NOT_INITIALIZED"},
    {CUPTI_ERROR_INVALID_KIND, "CUPTI_ERROR_INVALID_KIND"},
    {CUPTI_ERROR_NOT_SUPPORTED, "CUPTI_ERROR_NOT_SUPPORTED"},
    {CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED,
     "CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED"},
    {CUPTI_ERROR_UNKNOWN, "CUPTI_ERROR_UNKNOWN"},
};

FAKE_EXPORT CUptiResult CUPTIAPI cuptiGetResultString(CUptiResult result, const char **str)
{
    if (!str)
        return CUPTI_ERROR_INVALID_PARAMETER;
    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++)
        if (results[i].code == result) {
            *str = results[i].text;
            return CUPTI_SUCCESS;
        }
    *str = "CUPTI_ERROR_UNKNOWN";
    return CUPTI_ERROR_INVALID_PARAMETER;
}

/* The headers' version, or FAKE_CUPTI's version=N (an older CUPTI, say,
 * whose records the client must not read as the CUDA 13 layouts). */
FAKE_EXPORT CUptiResult CUPTIAPI cuptiGetVersion(uint32_t *version)
{
    pthread_mutex_lock(&g.mu);
    read_options();
    uint32_t v = g.version_set ? g.version : CUPTI_API_VERSION;
    pthread_mutex_unlock(&g.mu);
    if (!version)
        return CUPTI_ERROR_INVALID_PARAMETER;
    *version = v;
    return CUPTI_SUCCESS;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiGetLastError(void)
{
    return CUPTI_SUCCESS;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiGetTimestamp(uint64_t *timestamp)
{
    pthread_mutex_lock(&g.mu);
    read_options();
    int fail = g.fail_timestamp;
    pthread_mutex_unlock(&g.mu);
    if (!timestamp)
        return CUPTI_ERROR_INVALID_PARAMETER;
    if (fail)
        return CUPTI_ERROR_UNKNOWN;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    *timestamp = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    return CUPTI_SUCCESS;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiGetContextId(CUcontext context, uint32_t *contextId)
{
    CUptiResult r = enter();
    fake_context_info_fn info = g.ctx_info;
    pthread_mutex_unlock(&g.mu);
    if (r != CUPTI_SUCCESS)
        return r;
    if (!contextId)
        return CUPTI_ERROR_INVALID_PARAMETER;
    return info(context, contextId, NULL) == CUDA_SUCCESS ? CUPTI_SUCCESS
                                                          : CUPTI_ERROR_INVALID_CONTEXT;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiGetDeviceId(CUcontext context, uint32_t *deviceId)
{
    CUptiResult r = enter();
    fake_context_info_fn info = g.ctx_info;
    pthread_mutex_unlock(&g.mu);
    if (r != CUPTI_SUCCESS)
        return r;
    if (!deviceId)
        return CUPTI_ERROR_INVALID_PARAMETER;
    if (!context) { /* the current context, as CUPTI does */
        void *h = dlopen("libcuda.so.1", RTLD_NOLOAD | RTLD_LAZY);
        CUresult (*get)(CUcontext *) = h ? (CUresult(*)(CUcontext *))dlsym(h, "cuCtxGetCurrent")
                                          : NULL;
        if (h)
            dlclose(h);
        if (!get || get(&context) != CUDA_SUCCESS || !context)
            return CUPTI_ERROR_INVALID_CONTEXT;
    }
    int dev = 0;
    if (info(context, NULL, &dev) != CUDA_SUCCESS)
        return CUPTI_ERROR_INVALID_CONTEXT;
    *deviceId = (uint32_t)dev;
    return CUPTI_SUCCESS;
}

static CUptiResult subscribe(CUpti_SubscriberHandle *subscriber, CUpti_CallbackFunc callback,
                             void *userdata, CUpti_SubscriberParams *params)
{
    if (!subscriber)
        return CUPTI_ERROR_INVALID_PARAMETER;
    CUptiResult r = enter();
    if (r == CUPTI_SUCCESS && (g.subscribed || g.fail_subscribe)) {
        r = CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED;
        if (params && params->oldSubscriberName && params->oldSubscriberSize > 0)
            snprintf(params->oldSubscriberName, params->oldSubscriberSize, "%s",
                     g.subscribed ? "CUPTI" : "fake profiling tool");
    }
    if (r == CUPTI_SUCCESS) {
        g.subscribed = 1;
        g.callback = callback;
        g.userdata = userdata;
        memset(g.driver_cb, 0, sizeof g.driver_cb);
        *subscriber = &g.subscriber;
    }
    pthread_mutex_unlock(&g.mu);
    return r;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiSubscribe(CUpti_SubscriberHandle *subscriber,
                                                CUpti_CallbackFunc callback, void *userdata)
{
    return subscribe(subscriber, callback, userdata, NULL);
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiSubscribe_v2(CUpti_SubscriberHandle *subscriber,
                                                   CUpti_CallbackFunc callback, void *userdata,
                                                   CUpti_SubscriberParams *pParams)
{
    if (pParams && pParams->structSize == 0)
        return CUPTI_ERROR_INVALID_PARAMETER;
    return subscribe(subscriber, callback, userdata, pParams);
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiUnsubscribe(CUpti_SubscriberHandle subscriber)
{
    CUptiResult r = enter();
    if (r == CUPTI_SUCCESS && (!g.subscribed || subscriber != &g.subscriber))
        r = CUPTI_ERROR_INVALID_PARAMETER;
    if (r == CUPTI_SUCCESS) {
        g.subscribed = 0;
        g.callback = NULL;
        memset(g.driver_cb, 0, sizeof g.driver_cb);
    }
    pthread_mutex_unlock(&g.mu);
    return r;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiEnableCallback(uint32_t enable,
                                                     CUpti_SubscriberHandle subscriber,
                                                     CUpti_CallbackDomain domain,
                                                     CUpti_CallbackId cbid)
{
    CUptiResult r = enter();
    if (r == CUPTI_SUCCESS && (!g.subscribed || subscriber != &g.subscriber))
        r = CUPTI_ERROR_INVALID_PARAMETER;
    if (r == CUPTI_SUCCESS && g.fail_enable_callback)
        r = CUPTI_ERROR_NOT_COMPATIBLE;
    if (r == CUPTI_SUCCESS && domain == CUPTI_CB_DOMAIN_DRIVER_API) {
        if (cbid == 0 || cbid >= CUPTI_DRIVER_TRACE_CBID_SIZE)
            r = CUPTI_ERROR_INVALID_PARAMETER;
        else
            g.driver_cb[cbid] = enable ? 1 : 0;
    } else if (r == CUPTI_SUCCESS && (domain <= CUPTI_CB_DOMAIN_INVALID ||
                                      domain > CUPTI_CB_DOMAIN_STATE)) {
        r = CUPTI_ERROR_INVALID_PARAMETER;
    } /* other domains are accepted and never called: the fake has no runtime or NVTX */
    pthread_mutex_unlock(&g.mu);
    return r;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiEnableDomain(uint32_t enable,
                                                   CUpti_SubscriberHandle subscriber,
                                                   CUpti_CallbackDomain domain)
{
    CUptiResult r = enter();
    if (r == CUPTI_SUCCESS && (!g.subscribed || subscriber != &g.subscriber))
        r = CUPTI_ERROR_INVALID_PARAMETER;
    if (r == CUPTI_SUCCESS && g.fail_enable_callback)
        r = CUPTI_ERROR_NOT_COMPATIBLE;
    if (r == CUPTI_SUCCESS && domain == CUPTI_CB_DOMAIN_DRIVER_API)
        for (int i = 1; i < CUPTI_DRIVER_TRACE_CBID_SIZE; i++)
            g.driver_cb[i] = enable ? 1 : 0;
    else if (r == CUPTI_SUCCESS &&
             (domain <= CUPTI_CB_DOMAIN_INVALID || domain > CUPTI_CB_DOMAIN_STATE))
        r = CUPTI_ERROR_INVALID_PARAMETER;
    pthread_mutex_unlock(&g.mu);
    return r;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiActivityRegisterCallbacks(
    CUpti_BuffersCallbackRequestFunc funcBufferRequested,
    CUpti_BuffersCallbackCompleteFunc funcBufferCompleted)
{
    if (!funcBufferRequested || !funcBufferCompleted)
        return CUPTI_ERROR_INVALID_PARAMETER;
    CUptiResult r = enter();
    if (r == CUPTI_SUCCESS && g.fail_register)
        r = CUPTI_ERROR_NOT_INITIALIZED;
    if (r == CUPTI_SUCCESS) {
        g.requested = funcBufferRequested;
        g.completed = funcBufferCompleted;
    }
    pthread_mutex_unlock(&g.mu);
    return r;
}

static CUptiResult activity_switch(CUpti_ActivityKind kind, int on)
{
    CUptiResult r = enter();
    if (r == CUPTI_SUCCESS && on && g.fail_activity_enable)
        r = CUPTI_ERROR_NOT_COMPATIBLE;
    if (r == CUPTI_SUCCESS) {
        if (kind == CUPTI_ACTIVITY_KIND_MEMORY2)
            g.memory2 = on;
        else if (kind == CUPTI_ACTIVITY_KIND_MEMORY_POOL)
            g.memory_pool = on;
        else if (kind <= CUPTI_ACTIVITY_KIND_INVALID || kind >= CUPTI_ACTIVITY_KIND_COUNT)
            r = CUPTI_ERROR_INVALID_KIND;
        else
            r = CUPTI_ERROR_NOT_COMPATIBLE; /* the fake records memory only */
    }
    pthread_mutex_unlock(&g.mu);
    return r;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiActivityEnable(CUpti_ActivityKind kind)
{
    return activity_switch(kind, 1);
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiActivityDisable(CUpti_ActivityKind kind)
{
    return activity_switch(kind, 0);
}

/* The periodic flush: every period, every completed (full) buffer goes to
 * the client, from this thread, as CUPTI's own worker would do it. Detached:
 * it lives as long as the process. */
static void *period_thread(void *arg)
{
    (void)arg;
    static fake_buffer out[MAX_HELD];
    pthread_mutex_lock(&g.mu);
    for (;;) {
        while (g.period_ms == 0)
            pthread_cond_wait(&g.period_cv, &g.mu);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)g.period_ms * 1000000ull;
        until.tv_sec += (time_t)(ns / 1000000000ull);
        until.tv_nsec = (long)(ns % 1000000000ull);
        if (pthread_cond_timedwait(&g.period_cv, &g.mu, &until) == 0 || g.period_ms == 0)
            continue; /* the period changed: start over */
        /* as CUPTI's header says of the periodic flush: full buffers
         * only; the one being filled stays (a client that wants it asks
         * with cuptiActivityFlushAll) */
        int n = take_held(out);
        CUpti_BuffersCallbackCompleteFunc done = g.completed;
        int late = g.late;
        pthread_mutex_unlock(&g.mu);
        deliver(done, out, n, late);
        pthread_mutex_lock(&g.mu);
    }
    return NULL;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiActivityFlushPeriod(uint32_t time)
{
    CUptiResult r = enter();
    if (r == CUPTI_SUCCESS) {
        g.period_ms = time;
        if (time && !g.period_thread) {
            pthread_t t;
            pthread_attr_t attr;
            pthread_attr_init(&attr);
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            if (pthread_create(&t, &attr, period_thread, NULL) == 0)
                g.period_thread = 1;
            else
                r = CUPTI_ERROR_UNKNOWN;
            pthread_attr_destroy(&attr);
        }
        pthread_cond_broadcast(&g.period_cv);
    }
    pthread_mutex_unlock(&g.mu);
    return r;
}

struct late_delivery {
    CUpti_BuffersCallbackCompleteFunc done;
    fake_buffer *bufs;
    int n;
};

static void *late_thread(void *arg)
{
    struct late_delivery *d = arg;
    deliver(d->done, d->bufs, d->n, 1);
    return NULL;
}

/* The program's hook (see the top of the file), or NULL. */
typedef void (*flush_hook_fn)(void);
static flush_hook_fn hook_found;

static void look_up_hook(void)
{
    void *p = dlsym(RTLD_DEFAULT, "fake_cupti_flush_hook");
    memcpy(&hook_found, &p, sizeof p);
}

static flush_hook_fn flush_hook(void)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, look_up_hook);
    return hook_found;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiActivityFlushAll(uint32_t flag)
{
    static fake_buffer out[MAX_HELD + 16];
    static pthread_mutex_t flush_mu = PTHREAD_MUTEX_INITIALIZER;
    flush_hook_fn hook = flush_hook();
    if (hook)
        hook();
    pthread_mutex_lock(&flush_mu); /* one flush at a time: `out` is shared */
    CUptiResult r = enter();
    if (r == CUPTI_SUCCESS && !g.requested)
        r = CUPTI_ERROR_INVALID_OPERATION;
    if (r == CUPTI_SUCCESS && g.fail_flush)
        r = CUPTI_ERROR_UNKNOWN;
    int n = 0;
    if (r == CUPTI_SUCCESS) {
        if (g.cur.buf && (g.cur.valid > 0 || (flag & CUPTI_ACTIVITY_FLAG_FLUSH_FORCED)))
            complete_current();
        n = take_held(out);
        if (flag & CUPTI_ACTIVITY_FLAG_FLUSH_FORCED) /* give every buffer back */
            while (g.nspare > 0)
                out[n++] = g.spare[--g.nspare];
    }
    int late = g.late;
    CUpti_BuffersCallbackCompleteFunc done = g.completed;
    pthread_mutex_unlock(&g.mu);
    if (n > 0 && late) {
        struct late_delivery d = {done, out, n};
        pthread_t t;
        if (pthread_create(&t, NULL, late_thread, &d) == 0)
            pthread_join(t, NULL);
        else
            deliver(done, out, n, 1);
    } else if (n > 0) {
        deliver(done, out, n, 0);
    }
    pthread_mutex_unlock(&flush_mu);
    return r;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiActivityFlush(CUcontext context, uint32_t streamId,
                                                    uint32_t flag)
{
    (void)context;
    (void)streamId;
    return cuptiActivityFlushAll(flag);
}

/* Walk a buffer's records: *record NULL starts at the first one. */
FAKE_EXPORT CUptiResult CUPTIAPI cuptiActivityGetNextRecord(uint8_t *buffer,
                                                            size_t validBufferSizeBytes,
                                                            CUpti_Activity **record)
{
    if (!buffer || !record)
        return CUPTI_ERROR_INVALID_PARAMETER;
    size_t off = 0;
    if (*record) {
        uint8_t *prev = (uint8_t *)*record;
        if (prev < buffer || prev >= buffer + validBufferSizeBytes)
            return CUPTI_ERROR_INVALID_PARAMETER;
        size_t size;
        switch ((*record)->kind) {
        case CUPTI_ACTIVITY_KIND_MEMORY2: size = sizeof(CUpti_ActivityMemory4); break;
        case CUPTI_ACTIVITY_KIND_MEMORY_POOL: size = sizeof(CUpti_ActivityMemoryPool3); break;
        default: return CUPTI_ERROR_INVALID_KIND;
        }
        off = (size_t)(prev - buffer) + ((size + 7) & ~(size_t)7);
    }
    if (off >= validBufferSizeBytes) {
        *record = NULL;
        return CUPTI_ERROR_MAX_LIMIT_REACHED;
    }
    *record = (CUpti_Activity *)(buffer + off);
    return CUPTI_SUCCESS;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiActivityGetNumDroppedRecords(CUcontext context,
                                                                   uint32_t streamId,
                                                                   size_t *dropped)
{
    (void)streamId;
    if (!dropped)
        return CUPTI_ERROR_INVALID_PARAMETER;
    pthread_mutex_lock(&g.mu);
    /* every record goes to the global queue: contexts have none */
    *dropped = context ? 0 : g.dropped;
    if (!context)
        g.dropped = 0;
    pthread_mutex_unlock(&g.mu);
    return CUPTI_SUCCESS;
}

FAKE_EXPORT CUptiResult CUPTIAPI cuptiFinalize(void)
{
    pthread_mutex_lock(&g.mu);
    g.subscribed = 0;
    g.callback = NULL;
    g.memory2 = g.memory_pool = 0;
    memset(g.driver_cb, 0, sizeof g.driver_cb);
    pthread_mutex_unlock(&g.mu);
    return CUPTI_SUCCESS;
}
