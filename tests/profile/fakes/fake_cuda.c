/* fake_cuda.c — a CUDA driver without a GPU, built as libcuda.so.1 against
 * the real CUDA 13 cuda.h, so that any C program linked with -lcuda runs on
 * it: devices, contexts, streams and memory are bookkeeping over devices
 * whose sizes come from the environment (docs/testing.md lists the
 * variables). cuInit loads CUDA_INJECTION64_PATH and calls its
 * InitializeInjection once, as the real driver does, and a tracer (the fake
 * CUPTI, fake_tracer.h) sees every API call and memory operation. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* cupti.h brings cuda.h, the callback ids (cupti_driver_cbid.h) and the
 * params structs (generated_cuda_meta.h) the tracer is handed; nothing of
 * CUPTI is linked. */
#include <cupti.h>

#include "fake_tracer.h"

#define FAKE_EXPORT __attribute__((visibility("default")))
#define MAX_DEVICES 16
#define MiB (1024ull * 1024ull)
#define GiB (1024ull * MiB)

/* Lets a test check that this fake, not a real driver, was loaded. */
FAKE_EXPORT const char fake_cuda_marker[] = "warmcal fake libcuda.so.1";

struct CUctx_st {
    uint32_t id;
    int device;
    int primary;
    int live;
    struct CUctx_st *next; /* every context ever made: kept, never freed */
};

struct CUstream_st {
    uint32_t id;
    CUcontext ctx;
    int live;
    struct CUstream_st *next;
};

struct CUmemPoolHandle_st {
    int device;
    int created;
    uint64_t reserved, used, release_threshold;
};

typedef struct {
    char name[256];
    uint64_t total;
    uint64_t taken; /* contexts + blocks + pool reservation + hidden */
    int primary_refs;
    struct CUctx_st primary;
    struct CUmemPoolHandle_st pool;
    uint64_t next_address;
} fake_device;

typedef struct {
    uint64_t address, bytes;
    int kind, device;
    uint64_t mapping_bytes; /* host memory behind managed/pinned blocks */
} fake_block;

static struct {
    pthread_mutex_t mu;
    int initialized;
    int ndevices;
    uint64_t context_bytes, pool_granule;
    fake_device dev[MAX_DEVICES];
    struct CUctx_st *contexts;
    struct CUstream_st *streams;
    uint32_t next_context_id, next_stream_id;
    uint64_t next_handle, next_va;
    fake_block *blocks;
    size_t nblocks, cap;
    int have_tracer;
    fake_tracer tracer;
} g = {.mu = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local CUcontext t_current;
static _Thread_local int t_depth; /* calls made from inside a tracer callback are not traced */
static atomic_uint g_correlation;

/* ---- environment ---- */

/* A size in bytes: a plain integer, optionally followed by K, M or G (binary). */
static uint64_t env_size(const char *name, uint64_t fallback)
{
    const char *v = getenv(name);
    if (!v || !*v)
        return fallback;
    char *end;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (errno || end == v)
        goto bad;
    switch (*end) {
    case 'K': n *= 1024ull; end++; break;
    case 'M': n *= MiB; end++; break;
    case 'G': n *= GiB; end++; break;
    default: break;
    }
    if (*end == 'i')
        end++;
    if (*end == 'B')
        end++;
    if (*end)
        goto bad;
    return n;
bad:
    fprintf(stderr, "fake libcuda: %s=%s is not a size; using %llu\n", name, v,
            (unsigned long long)fallback);
    return fallback;
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- tracing: one call's state between its enter and exit callbacks ---- */

typedef struct {
    int traced;
    fake_tracer tracer;
    uint32_t cbid;
    const char *name;
    const void *params;
    uint32_t correlation;
    fake_mem_op ops[2];
    int nops;
} call_state;

static void api_enter(call_state *cs, uint32_t cbid, const char *name, const void *params)
{
    memset(cs, 0, sizeof *cs);
    cs->cbid = cbid;
    cs->name = name;
    cs->params = params;
    cs->correlation = atomic_fetch_add(&g_correlation, 1) + 1;
    if (t_depth > 0)
        return;
    pthread_mutex_lock(&g.mu);
    if (g.have_tracer) {
        cs->traced = 1;
        cs->tracer = g.tracer;
    }
    pthread_mutex_unlock(&g.mu);
    if (cs->traced && cs->tracer.api) {
        CUresult r = CUDA_SUCCESS;
        t_depth++;
        cs->tracer.api(cs->tracer.user, FAKE_SITE_ENTER, cbid, name, params, &r, t_current,
                       cs->correlation);
        t_depth--;
    }
}

static CUresult api_exit(call_state *cs, CUresult r)
{
    if (!cs->traced)
        return r;
    t_depth++;
    for (int i = 0; i < cs->nops; i++)
        if (cs->tracer.mem)
            cs->tracer.mem(cs->tracer.user, &cs->ops[i]);
    if (cs->tracer.api)
        cs->tracer.api(cs->tracer.user, FAKE_SITE_EXIT, cs->cbid, cs->name, cs->params, &r,
                       t_current, cs->correlation);
    t_depth--;
    return r;
}

#define CBID(fn) CUPTI_DRIVER_TRACE_CBID_##fn
/* Open a traced call of fn whose arguments are in the local `p`. */
#define ENTER(fn)                                                                                  \
    call_state cs_;                                                                                \
    api_enter(&cs_, CBID(fn), #fn, &p)
#define RETURN(expr) return api_exit(&cs_, (expr))

/* Queue a memory operation for the tracer (called with g.mu held). */
static fake_mem_op *queue_op(call_state *cs, int op, int kind, int device)
{
    fake_mem_op *o = &cs->ops[cs->nops < 2 ? cs->nops++ : 1];
    memset(o, 0, sizeof *o);
    o->op = op;
    o->kind = kind;
    o->device = device;
    o->time_ns = now_ns();
    o->correlation_id = cs->correlation;
    return o;
}

static void fill_pool(fake_mem_op *o, const struct CUmemPoolHandle_st *pool)
{
    o->pool = (uint64_t)(uintptr_t)pool;
    o->pool_reserved = pool->reserved;
    o->pool_used = pool->used;
    o->pool_release_threshold = pool->release_threshold;
}

/* ---- state helpers (g.mu held) ---- */

static uint64_t free_bytes(const fake_device *d)
{
    return d->taken < d->total ? d->total - d->taken : 0;
}

static CUresult current_ctx(CUcontext *out)
{
    if (!g.initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    if (!t_current)
        return CUDA_ERROR_INVALID_CONTEXT;
    if (!t_current->live)
        return CUDA_ERROR_CONTEXT_IS_DESTROYED;
    *out = t_current;
    return CUDA_SUCCESS;
}

static CUresult valid_device(CUdevice dev)
{
    if (!g.initialized)
        return CUDA_ERROR_NOT_INITIALIZED;
    return dev >= 0 && dev < g.ndevices ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE;
}

static fake_block *find_block(uint64_t address, int kind)
{
    for (size_t i = 0; i < g.nblocks; i++)
        if (g.blocks[i].address == address && g.blocks[i].kind == kind)
            return &g.blocks[i];
    return NULL;
}

static CUresult add_block(uint64_t address, uint64_t bytes, int kind, int device,
                          uint64_t mapping_bytes)
{
    if (g.nblocks == g.cap) {
        size_t cap = g.cap ? g.cap * 2 : 64;
        fake_block *b = realloc(g.blocks, cap * sizeof *b);
        if (!b)
            return CUDA_ERROR_OUT_OF_MEMORY;
        g.blocks = b;
        g.cap = cap;
    }
    g.blocks[g.nblocks++] = (fake_block){address, bytes, kind, device, mapping_bytes};
    return CUDA_SUCCESS;
}

static void remove_block(fake_block *b)
{
    *b = g.blocks[--g.nblocks];
}

/* A device address range of `bytes`, never handed out twice. */
static uint64_t take_address(fake_device *d, uint64_t bytes)
{
    uint64_t a = d->next_address;
    d->next_address += (bytes + 0xfffff) & ~(uint64_t)0xfffff; /* 1 MiB steps */
    if (bytes == 0)
        d->next_address += 0x100000;
    return a;
}

static uint32_t stream_id(CUstream s)
{
    if (s == NULL || s == CU_STREAM_LEGACY)
        return 7; /* the legacy default stream, as CUPTI numbers it */
    if (s == CU_STREAM_PER_THREAD)
        return 8;
    return s->id;
}

/* Charge `bytes` of device memory; CUDA_ERROR_OUT_OF_MEMORY when not free. */
static CUresult charge(fake_device *d, uint64_t bytes)
{
    if (bytes > free_bytes(d))
        return CUDA_ERROR_OUT_OF_MEMORY;
    d->taken += bytes;
    return CUDA_SUCCESS;
}

static void refund(fake_device *d, uint64_t bytes)
{
    d->taken = bytes < d->taken ? d->taken - bytes : 0;
}

/* ---- initialisation and the injection ---- */

static pthread_mutex_t inj_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t inj_cv = PTHREAD_COND_INITIALIZER;
static int inj_state; /* 0 not yet, 1 loading, 2 done */
static pthread_t inj_owner;

/* Load CUDA_INJECTION64_PATH and call InitializeInjection, once per process.
 * Other threads calling cuInit meanwhile wait; the loading thread itself
 * (the injection calling cuInit) goes on. */
static void load_injection(void)
{
    pthread_mutex_lock(&inj_mu);
    if (inj_state == 1 && pthread_equal(inj_owner, pthread_self())) {
        pthread_mutex_unlock(&inj_mu);
        return;
    }
    while (inj_state == 1)
        pthread_cond_wait(&inj_cv, &inj_mu);
    if (inj_state == 2) {
        pthread_mutex_unlock(&inj_mu);
        return;
    }
    inj_state = 1;
    inj_owner = pthread_self();
    pthread_mutex_unlock(&inj_mu);

    const char *path = getenv("CUDA_INJECTION64_PATH");
    if (path && *path) {
        void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            fprintf(stderr, "fake libcuda: cannot load CUDA_INJECTION64_PATH: %s\n", dlerror());
        } else {
            int (*init)(void) = (int (*)(void))dlsym(h, "InitializeInjection");
            if (!init)
                fprintf(stderr, "fake libcuda: %s has no InitializeInjection\n", path);
            else
                (void)init();
        }
    }

    pthread_mutex_lock(&inj_mu);
    inj_state = 2;
    pthread_cond_broadcast(&inj_cv);
    pthread_mutex_unlock(&inj_mu);
}

static void init_devices(void)
{
    long n = (long)env_size("FAKE_CUDA_DEVICES", 1);
    if (n < 0 || n > MAX_DEVICES)
        n = 1;
    g.ndevices = (int)n;
    g.context_bytes = env_size("FAKE_CUDA_CONTEXT_BYTES", 300 * MiB);
    g.pool_granule = env_size("FAKE_CUDA_POOL_GRANULE", 32 * MiB);
    if (g.pool_granule == 0)
        g.pool_granule = 1;
    uint64_t total = env_size("FAKE_CUDA_TOTAL", 16 * GiB);
    const char *name = getenv("FAKE_CUDA_NAME");
    for (int i = 0; i < g.ndevices; i++) {
        fake_device *d = &g.dev[i];
        snprintf(d->name, sizeof d->name, "%s", name && *name ? name : "NVIDIA Fake GPU");
        d->total = total;
        d->primary.device = i;
        d->primary.primary = 1;
        d->pool.device = i;
        d->next_address = 0x100000000000ull + ((uint64_t)i << 40);
    }
    g.next_context_id = 1;
    g.next_stream_id = 13;
    g.next_handle = 0x10000;
    g.next_va = 0x200000000000ull;
    g.initialized = 1;
}

FAKE_EXPORT CUresult CUDAAPI cuInit(unsigned int Flags)
{
    cuInit_params p = {Flags};
    ENTER(cuInit);
    if (Flags != 0)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    if (!g.initialized)
        init_devices();
    pthread_mutex_unlock(&g.mu);
    load_injection();
    RETURN(CUDA_SUCCESS);
}

FAKE_EXPORT CUresult CUDAAPI cuDriverGetVersion(int *driverVersion)
{
    cuDriverGetVersion_params p = {driverVersion};
    ENTER(cuDriverGetVersion);
    if (!driverVersion)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    const char *v = getenv("FAKE_CUDA_DRIVER_VERSION");
    *driverVersion = v && *v ? atoi(v) : 13000;
    RETURN(CUDA_SUCCESS);
}

/* ---- devices ---- */

FAKE_EXPORT CUresult CUDAAPI cuDeviceGetCount(int *count)
{
    cuDeviceGetCount_params p = {count};
    ENTER(cuDeviceGetCount);
    if (!count)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUresult r = g.initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    if (r == CUDA_SUCCESS)
        *count = g.ndevices;
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuDeviceGet(CUdevice *device, int ordinal)
{
    cuDeviceGet_params p = {device, ordinal};
    ENTER(cuDeviceGet);
    if (!device)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUresult r = valid_device(ordinal);
    if (r == CUDA_SUCCESS)
        *device = ordinal;
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuDeviceGetName(char *name, int len, CUdevice dev)
{
    cuDeviceGetName_params p = {name, len, dev};
    ENTER(cuDeviceGetName);
    if (!name || len <= 0)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUresult r = valid_device(dev);
    if (r == CUDA_SUCCESS)
        snprintf(name, (size_t)len, "%s", g.dev[dev].name);
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
    cuDeviceTotalMem_v2_params p = {bytes, dev};
    ENTER(cuDeviceTotalMem_v2);
    if (!bytes)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUresult r = valid_device(dev);
    if (r == CUDA_SUCCESS)
        *bytes = g.dev[dev].total;
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

/* ---- contexts ---- */

FAKE_EXPORT CUresult CUDAAPI cuDevicePrimaryCtxRetain(CUcontext *pctx, CUdevice dev)
{
    cuDevicePrimaryCtxRetain_params p = {pctx, dev};
    ENTER(cuDevicePrimaryCtxRetain);
    if (!pctx)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUresult r = valid_device(dev);
    if (r == CUDA_SUCCESS) {
        fake_device *d = &g.dev[dev];
        if (d->primary_refs == 0) {
            r = charge(d, g.context_bytes);
            if (r == CUDA_SUCCESS) {
                if (d->primary.id == 0) {
                    d->primary.id = g.next_context_id++;
                    d->primary.next = g.contexts;
                    g.contexts = &d->primary;
                }
                d->primary.live = 1;
            }
        }
        if (r == CUDA_SUCCESS) {
            d->primary_refs++;
            *pctx = &d->primary;
        }
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuDevicePrimaryCtxRelease_v2(CUdevice dev)
{
    cuDevicePrimaryCtxRelease_v2_params p = {dev};
    ENTER(cuDevicePrimaryCtxRelease_v2);
    pthread_mutex_lock(&g.mu);
    CUresult r = valid_device(dev);
    if (r == CUDA_SUCCESS) {
        fake_device *d = &g.dev[dev];
        if (d->primary_refs == 0) {
            r = CUDA_ERROR_INVALID_CONTEXT;
        } else if (--d->primary_refs == 0) {
            d->primary.live = 0;
            refund(d, g.context_bytes);
        }
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuCtxCreate_v4(CUcontext *pctx, CUctxCreateParams *ctxCreateParams,
                                            unsigned int flags, CUdevice dev)
{
    cuCtxCreate_v4_params p = {pctx, ctxCreateParams, flags, dev};
    ENTER(cuCtxCreate_v4);
    if (!pctx)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUresult r = valid_device(dev);
    struct CUctx_st *c = NULL;
    if (r == CUDA_SUCCESS) {
        c = calloc(1, sizeof *c);
        r = c ? charge(&g.dev[dev], g.context_bytes) : CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (r == CUDA_SUCCESS) {
        c->id = g.next_context_id++;
        c->device = dev;
        c->live = 1;
        c->next = g.contexts;
        g.contexts = c;
        *pctx = c;
        t_current = c; /* a new context is made current, as the driver does */
    } else {
        free(c);
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuCtxDestroy_v2(CUcontext ctx)
{
    cuCtxDestroy_v2_params p = {ctx};
    ENTER(cuCtxDestroy_v2);
    pthread_mutex_lock(&g.mu);
    CUresult r = g.initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    if (r == CUDA_SUCCESS && (!ctx || !ctx->live || ctx->primary))
        r = CUDA_ERROR_INVALID_CONTEXT;
    if (r == CUDA_SUCCESS) {
        ctx->live = 0;
        refund(&g.dev[ctx->device], g.context_bytes);
        if (t_current == ctx)
            t_current = NULL;
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuCtxSetCurrent(CUcontext ctx)
{
    cuCtxSetCurrent_params p = {ctx};
    ENTER(cuCtxSetCurrent);
    pthread_mutex_lock(&g.mu);
    CUresult r = g.initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    if (r == CUDA_SUCCESS && ctx && !ctx->live)
        r = CUDA_ERROR_INVALID_CONTEXT;
    if (r == CUDA_SUCCESS)
        t_current = ctx;
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuCtxGetCurrent(CUcontext *pctx)
{
    cuCtxGetCurrent_params p = {pctx};
    ENTER(cuCtxGetCurrent);
    if (!pctx)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUresult r = g.initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    if (r == CUDA_SUCCESS)
        *pctx = t_current;
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuCtxGetDevice(CUdevice *device)
{
    cuCtxGetDevice_params p = {device};
    ENTER(cuCtxGetDevice);
    if (!device)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUcontext c;
    CUresult r = current_ctx(&c);
    if (r == CUDA_SUCCESS)
        *device = c->device;
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuCtxSynchronize(void)
{
    /* no parameters: CUPTI passes a NULL params pointer for it */
    call_state cs_;
    api_enter(&cs_, CBID(cuCtxSynchronize), "cuCtxSynchronize", NULL);
    pthread_mutex_lock(&g.mu);
    CUcontext c;
    CUresult r = current_ctx(&c);
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

/* ---- streams ---- */

FAKE_EXPORT CUresult CUDAAPI cuStreamCreate(CUstream *phStream, unsigned int Flags)
{
    cuStreamCreate_params p = {phStream, Flags};
    ENTER(cuStreamCreate);
    if (!phStream)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUcontext c;
    CUresult r = current_ctx(&c);
    if (r == CUDA_SUCCESS) {
        struct CUstream_st *s = calloc(1, sizeof *s);
        if (!s) {
            r = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            s->id = g.next_stream_id++;
            s->ctx = c;
            s->live = 1;
            s->next = g.streams;
            g.streams = s;
            *phStream = s;
        }
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuStreamDestroy_v2(CUstream hStream)
{
    cuStreamDestroy_v2_params p = {hStream};
    ENTER(cuStreamDestroy_v2);
    pthread_mutex_lock(&g.mu);
    CUresult r = g.initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    if (r == CUDA_SUCCESS && (!hStream || hStream == CU_STREAM_LEGACY ||
                              hStream == CU_STREAM_PER_THREAD || !hStream->live))
        r = CUDA_ERROR_INVALID_HANDLE;
    if (r == CUDA_SUCCESS)
        hStream->live = 0; /* kept in the list: other threads may still hold it */
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuStreamSynchronize(CUstream hStream)
{
    cuStreamSynchronize_params p = {hStream};
    ENTER(cuStreamSynchronize);
    pthread_mutex_lock(&g.mu);
    CUcontext c;
    CUresult r = current_ctx(&c);
    if (r == CUDA_SUCCESS && hStream && hStream != CU_STREAM_LEGACY &&
        hStream != CU_STREAM_PER_THREAD && !hStream->live)
        r = CUDA_ERROR_INVALID_HANDLE;
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

/* ---- memory ---- */

FAKE_EXPORT CUresult CUDAAPI cuMemGetInfo_v2(size_t *free, size_t *total)
{
    cuMemGetInfo_v2_params p = {free, total};
    ENTER(cuMemGetInfo_v2);
    if (!free || !total)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUcontext c;
    CUresult r = current_ctx(&c);
    if (r == CUDA_SUCCESS) {
        *free = free_bytes(&g.dev[c->device]);
        *total = g.dev[c->device].total;
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

/* A device-resident block (device or managed) for the current context. */
static CUresult alloc_device_block(call_state *cs, CUdeviceptr *dptr, size_t bytes, int kind)
{
    if (!dptr || bytes == 0)
        return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&g.mu);
    CUcontext c;
    CUresult r = current_ctx(&c);
    fake_device *d = r == CUDA_SUCCESS ? &g.dev[c->device] : NULL;
    if (r == CUDA_SUCCESS)
        r = charge(d, bytes);
    uint64_t address = 0, mapping = 0;
    if (r == CUDA_SUCCESS && kind == FAKE_MEM_MANAGED) {
        /* managed memory is host-accessible: back it with lazily mapped pages */
        void *m = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            refund(d, bytes);
            r = CUDA_ERROR_OUT_OF_MEMORY;
        } else {
            address = (uint64_t)(uintptr_t)m;
            mapping = bytes;
        }
    } else if (r == CUDA_SUCCESS) {
        address = take_address(d, bytes);
    }
    if (r == CUDA_SUCCESS) {
        r = add_block(address, bytes, kind, c->device, mapping);
        if (r != CUDA_SUCCESS) {
            refund(d, bytes);
            if (mapping)
                munmap((void *)(uintptr_t)address, mapping);
        }
    }
    if (r == CUDA_SUCCESS) {
        *dptr = address;
        fake_mem_op *o = queue_op(cs, FAKE_OP_ALLOC, kind, c->device);
        o->address = address;
        o->bytes = bytes;
        o->context_id = c->id;
    }
    pthread_mutex_unlock(&g.mu);
    return r;
}

static CUresult free_device_block(call_state *cs, uint64_t address, int kind)
{
    pthread_mutex_lock(&g.mu);
    CUcontext c;
    CUresult r = current_ctx(&c);
    fake_block *b = NULL;
    if (r == CUDA_SUCCESS) {
        b = find_block(address, kind);
        if (!b)
            r = CUDA_ERROR_INVALID_VALUE;
    }
    if (r == CUDA_SUCCESS) {
        fake_mem_op *o = queue_op(cs, FAKE_OP_FREE, kind, b->device);
        o->address = address;
        o->bytes = b->bytes;
        o->context_id = c->id;
        if (kind == FAKE_MEM_POOL) { /* back to its pool, which keeps the bytes reserved */
            struct CUmemPoolHandle_st *pool = &g.dev[b->device].pool;
            pool->used -= b->bytes;
            fill_pool(o, pool);
        } else if (kind != FAKE_MEM_PINNED) {
            refund(&g.dev[b->device], b->bytes);
        }
        if (b->mapping_bytes)
            munmap((void *)(uintptr_t)b->address, b->mapping_bytes);
        remove_block(b);
    }
    pthread_mutex_unlock(&g.mu);
    return r;
}

FAKE_EXPORT CUresult CUDAAPI cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytesize)
{
    cuMemAlloc_v2_params p = {dptr, bytesize};
    ENTER(cuMemAlloc_v2);
    RETURN(alloc_device_block(&cs_, dptr, bytesize, FAKE_MEM_DEVICE));
}

FAKE_EXPORT CUresult CUDAAPI cuMemFree_v2(CUdeviceptr dptr)
{
    cuMemFree_v2_params p = {dptr};
    ENTER(cuMemFree_v2);
    if (dptr == 0)
        RETURN(CUDA_SUCCESS);
    pthread_mutex_lock(&g.mu);
    /* cuMemFree releases managed blocks, and stream-ordered ones (synchronously) */
    int kind = find_block(dptr, FAKE_MEM_MANAGED) ? FAKE_MEM_MANAGED
               : find_block(dptr, FAKE_MEM_POOL)  ? FAKE_MEM_POOL
                                                  : FAKE_MEM_DEVICE;
    pthread_mutex_unlock(&g.mu);
    RETURN(free_device_block(&cs_, dptr, kind));
}

FAKE_EXPORT CUresult CUDAAPI cuMemAllocManaged(CUdeviceptr *dptr, size_t bytesize,
                                               unsigned int flags)
{
    cuMemAllocManaged_params p = {dptr, bytesize, flags};
    ENTER(cuMemAllocManaged);
    RETURN(alloc_device_block(&cs_, dptr, bytesize, FAKE_MEM_MANAGED));
}

/* Pinned host memory: real, usable pages that take no device memory. */
FAKE_EXPORT CUresult CUDAAPI cuMemHostAlloc(void **pp, size_t bytesize, unsigned int Flags)
{
    cuMemHostAlloc_params p = {pp, bytesize, Flags};
    ENTER(cuMemHostAlloc);
    if (!pp || bytesize == 0)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUcontext c;
    CUresult r = current_ctx(&c);
    void *m = NULL;
    if (r == CUDA_SUCCESS) {
        m = mmap(NULL, bytesize, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
            r = CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (r == CUDA_SUCCESS) {
        r = add_block((uint64_t)(uintptr_t)m, bytesize, FAKE_MEM_PINNED, c->device, bytesize);
        if (r != CUDA_SUCCESS)
            munmap(m, bytesize);
    }
    if (r == CUDA_SUCCESS) {
        *pp = m;
        fake_mem_op *o = queue_op(&cs_, FAKE_OP_ALLOC, FAKE_MEM_PINNED, c->device);
        o->address = (uint64_t)(uintptr_t)m;
        o->bytes = bytesize;
        o->context_id = c->id;
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuMemFreeHost(void *ptr)
{
    cuMemFreeHost_params p = {ptr};
    ENTER(cuMemFreeHost);
    RETURN(free_device_block(&cs_, (uint64_t)(uintptr_t)ptr, FAKE_MEM_PINNED));
}

/* ---- stream-ordered allocation from each device's default pool ---- */

FAKE_EXPORT CUresult CUDAAPI cuDeviceGetDefaultMemPool(CUmemoryPool *pool_out, CUdevice dev)
{
    cuDeviceGetDefaultMemPool_params p = {pool_out, dev};
    ENTER(cuDeviceGetDefaultMemPool);
    if (!pool_out)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUresult r = valid_device(dev);
    if (r == CUDA_SUCCESS)
        *pool_out = &g.dev[dev].pool;
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuMemAllocAsync(CUdeviceptr *dptr, size_t bytesize, CUstream hStream)
{
    cuMemAllocAsync_params p = {dptr, bytesize, hStream};
    ENTER(cuMemAllocAsync);
    if (!dptr || bytesize == 0)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUcontext c;
    CUresult r = current_ctx(&c);
    fake_device *d = r == CUDA_SUCCESS ? &g.dev[c->device] : NULL;
    struct CUmemPoolHandle_st *pool = d ? &d->pool : NULL;
    uint64_t grow = 0;
    if (r == CUDA_SUCCESS && pool->used + bytesize > pool->reserved) {
        uint64_t want = pool->used + bytesize;
        want = (want + g.pool_granule - 1) / g.pool_granule * g.pool_granule;
        grow = want - pool->reserved;
        r = charge(d, grow);
    }
    uint64_t address = 0;
    if (r == CUDA_SUCCESS) {
        address = take_address(d, bytesize);
        r = add_block(address, bytesize, FAKE_MEM_POOL, c->device, 0);
        if (r != CUDA_SUCCESS)
            refund(d, grow);
    }
    if (r == CUDA_SUCCESS) {
        pool->reserved += grow;
        pool->used += bytesize;
        if (!pool->created) {
            pool->created = 1;
            fake_mem_op *o = queue_op(&cs_, FAKE_OP_POOL_CREATED, FAKE_MEM_POOL, c->device);
            fill_pool(o, pool);
            o->context_id = c->id;
        }
        fake_mem_op *o = queue_op(&cs_, FAKE_OP_ALLOC, FAKE_MEM_POOL, c->device);
        o->address = address;
        o->bytes = bytesize;
        o->context_id = c->id;
        o->stream_id = stream_id(hStream);
        o->is_async = 1;
        fill_pool(o, pool);
        *dptr = address;
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuMemFreeAsync(CUdeviceptr dptr, CUstream hStream)
{
    cuMemFreeAsync_params p = {dptr, hStream};
    ENTER(cuMemFreeAsync);
    pthread_mutex_lock(&g.mu);
    CUcontext c;
    CUresult r = current_ctx(&c);
    fake_block *b = NULL;
    if (r == CUDA_SUCCESS) {
        b = find_block(dptr, FAKE_MEM_POOL);
        if (!b)
            r = CUDA_ERROR_INVALID_VALUE;
    }
    if (r == CUDA_SUCCESS) {
        /* the pool keeps its reservation: freed bytes stay with it for reuse */
        struct CUmemPoolHandle_st *pool = &g.dev[b->device].pool;
        pool->used -= b->bytes;
        fake_mem_op *o = queue_op(&cs_, FAKE_OP_FREE, FAKE_MEM_POOL, b->device);
        o->address = dptr;
        o->bytes = b->bytes;
        o->context_id = c->id;
        o->stream_id = stream_id(hStream);
        o->is_async = 1;
        fill_pool(o, pool);
        remove_block(b);
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuMemPoolTrimTo(CUmemoryPool pool, size_t minBytesToKeep)
{
    cuMemPoolTrimTo_params p = {pool, minBytesToKeep};
    ENTER(cuMemPoolTrimTo);
    pthread_mutex_lock(&g.mu);
    CUresult r = g.initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    if (r == CUDA_SUCCESS && (!pool || pool->device < 0 || pool->device >= g.ndevices ||
                              pool != &g.dev[pool->device].pool))
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        uint64_t keep = pool->used > minBytesToKeep ? pool->used : minBytesToKeep;
        keep = (keep + g.pool_granule - 1) / g.pool_granule * g.pool_granule;
        if (keep < pool->reserved) {
            refund(&g.dev[pool->device], pool->reserved - keep);
            pool->reserved = keep;
            fake_mem_op *o = queue_op(&cs_, FAKE_OP_POOL_TRIMMED, FAKE_MEM_POOL, pool->device);
            fill_pool(o, pool);
            o->context_id = t_current ? t_current->id : 0;
        }
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuMemPoolGetAttribute(CUmemoryPool pool, CUmemPool_attribute attr,
                                                   void *value)
{
    cuMemPoolGetAttribute_params p = {pool, attr, value};
    ENTER(cuMemPoolGetAttribute);
    pthread_mutex_lock(&g.mu);
    CUresult r = g.initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    if (r == CUDA_SUCCESS && (!value || !pool || pool->device < 0 ||
                              pool->device >= g.ndevices || pool != &g.dev[pool->device].pool))
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        switch (attr) {
        case CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT: *(cuuint64_t *)value = pool->reserved; break;
        case CU_MEMPOOL_ATTR_USED_MEM_CURRENT: *(cuuint64_t *)value = pool->used; break;
        case CU_MEMPOOL_ATTR_RELEASE_THRESHOLD:
            *(cuuint64_t *)value = pool->release_threshold;
            break;
        default: r = CUDA_ERROR_NOT_SUPPORTED; break;
        }
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

/* ---- virtual memory: physical allocations are charged, mappings are bookkeeping ---- */

FAKE_EXPORT CUresult CUDAAPI cuMemGetAllocationGranularity(size_t *granularity,
                                                           const CUmemAllocationProp *prop,
                                                           CUmemAllocationGranularity_flags option)
{
    cuMemGetAllocationGranularity_params p = {granularity, prop, option};
    ENTER(cuMemGetAllocationGranularity);
    if (!granularity || !prop)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    *granularity = 2 * MiB;
    RETURN(CUDA_SUCCESS);
}

FAKE_EXPORT CUresult CUDAAPI cuMemCreate(CUmemGenericAllocationHandle *handle, size_t size,
                                         const CUmemAllocationProp *prop, unsigned long long flags)
{
    cuMemCreate_params p = {handle, size, prop, flags};
    ENTER(cuMemCreate);
    if (!handle || !prop || size == 0 || size % (2 * MiB) != 0 ||
        prop->type != CU_MEM_ALLOCATION_TYPE_PINNED ||
        prop->location.type != CU_MEM_LOCATION_TYPE_DEVICE)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    int dev = prop->location.id;
    CUresult r = valid_device(dev);
    if (r == CUDA_SUCCESS)
        r = charge(&g.dev[dev], size);
    uint64_t h = 0;
    if (r == CUDA_SUCCESS) {
        h = g.next_handle++;
        r = add_block(h, size, FAKE_MEM_VIRTUAL, dev, 0);
        if (r != CUDA_SUCCESS)
            refund(&g.dev[dev], size);
    }
    if (r == CUDA_SUCCESS) {
        *handle = h;
        fake_mem_op *o = queue_op(&cs_, FAKE_OP_ALLOC, FAKE_MEM_VIRTUAL, dev);
        o->address = h;
        o->bytes = size;
        o->context_id = t_current ? t_current->id : 0;
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuMemRelease(CUmemGenericAllocationHandle handle)
{
    cuMemRelease_params p = {handle};
    ENTER(cuMemRelease);
    pthread_mutex_lock(&g.mu);
    CUresult r = g.initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    fake_block *b = r == CUDA_SUCCESS ? find_block(handle, FAKE_MEM_VIRTUAL) : NULL;
    if (r == CUDA_SUCCESS && !b)
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        /* released at once: the fake does not wait for mappings to go */
        fake_mem_op *o = queue_op(&cs_, FAKE_OP_FREE, FAKE_MEM_VIRTUAL, b->device);
        o->address = handle;
        o->bytes = b->bytes;
        o->context_id = t_current ? t_current->id : 0;
        refund(&g.dev[b->device], b->bytes);
        remove_block(b);
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuMemAddressReserve(CUdeviceptr *ptr, size_t size, size_t alignment,
                                                 CUdeviceptr addr, unsigned long long flags)
{
    cuMemAddressReserve_params p = {ptr, size, alignment, addr, flags};
    ENTER(cuMemAddressReserve);
    if (!ptr || size == 0)
        RETURN(CUDA_ERROR_INVALID_VALUE);
    pthread_mutex_lock(&g.mu);
    CUresult r = g.initialized ? CUDA_SUCCESS : CUDA_ERROR_NOT_INITIALIZED;
    if (r == CUDA_SUCCESS) {
        *ptr = g.next_va;
        g.next_va += (size + 2 * MiB - 1) / (2 * MiB) * (2 * MiB);
    }
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuMemAddressFree(CUdeviceptr ptr, size_t size)
{
    cuMemAddressFree_params p = {ptr, size};
    ENTER(cuMemAddressFree);
    RETURN(ptr && size ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE);
}

FAKE_EXPORT CUresult CUDAAPI cuMemMap(CUdeviceptr ptr, size_t size, size_t offset,
                                      CUmemGenericAllocationHandle handle, unsigned long long flags)
{
    cuMemMap_params p = {ptr, size, offset, handle, flags};
    ENTER(cuMemMap);
    pthread_mutex_lock(&g.mu);
    fake_block *b = find_block(handle, FAKE_MEM_VIRTUAL);
    CUresult r = !ptr || !b || offset + size > b->bytes ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS;
    pthread_mutex_unlock(&g.mu);
    RETURN(r);
}

FAKE_EXPORT CUresult CUDAAPI cuMemUnmap(CUdeviceptr ptr, size_t size)
{
    cuMemUnmap_params p = {ptr, size};
    ENTER(cuMemUnmap);
    RETURN(ptr && size ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE);
}

FAKE_EXPORT CUresult CUDAAPI cuMemSetAccess(CUdeviceptr ptr, size_t size,
                                            const CUmemAccessDesc *desc, size_t count)
{
    cuMemSetAccess_params p = {ptr, size, desc, count};
    ENTER(cuMemSetAccess);
    RETURN(ptr && size && desc && count ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE);
}

/* ---- errors ---- */

static const struct {
    CUresult code;
    const char *name, *text;
} errors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_CONTEXT_IS_DESTROYED, "CUDA_ERROR_CONTEXT_IS_DESTROYED",
     "context is destroyed"},
    {CUDA_ERROR_NOT_SUPPORTED, "CUDA_ERROR_NOT_SUPPORTED", "operation not supported"},
    {CUDA_ERROR_UNKNOWN, "CUDA_ERROR_UNKNOWN", "unknown error"},
};

static CUresult error_lookup(CUresult error, const char **pStr, int text)
{
    if (!pStr)
        return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].code == error) {
            *pStr = text ? errors[i].text : errors[i].name;
            return CUDA_SUCCESS;
        }
    *pStr = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

FAKE_EXPORT CUresult CUDAAPI cuGetErrorName(CUresult error, const char **pStr)
{
    cuGetErrorName_params p = {error, pStr};
    ENTER(cuGetErrorName);
    RETURN(error_lookup(error, pStr, 0));
}

FAKE_EXPORT CUresult CUDAAPI cuGetErrorString(CUresult error, const char **pStr)
{
    cuGetErrorString_params p = {error, pStr};
    ENTER(cuGetErrorString);
    RETURN(error_lookup(error, pStr, 1));
}

/* ---- test hooks ---- */

FAKE_EXPORT CUresult fake_cuda_hidden_alloc(int device, long long bytes)
{
    pthread_mutex_lock(&g.mu);
    CUresult r = valid_device(device);
    if (r == CUDA_SUCCESS) {
        if (bytes >= 0)
            r = charge(&g.dev[device], (uint64_t)bytes);
        else
            refund(&g.dev[device], (uint64_t)(-(bytes + 1)) + 1);
    }
    pthread_mutex_unlock(&g.mu);
    return r;
}

static CUresult context_info(CUcontext ctx, uint32_t *id, int *device)
{
    pthread_mutex_lock(&g.mu);
    CUresult r = CUDA_ERROR_INVALID_CONTEXT;
    for (struct CUctx_st *c = g.contexts; c; c = c->next)
        if (c == ctx) {
            if (id)
                *id = c->id;
            if (device)
                *device = c->device;
            r = CUDA_SUCCESS;
        }
    pthread_mutex_unlock(&g.mu);
    return r;
}

FAKE_EXPORT CUresult fake_cuda_register_tracer(int version, const fake_tracer *tracer,
                                               fake_context_info_fn *info)
{
    if (version != FAKE_TRACER_VERSION)
        return CUDA_ERROR_NOT_SUPPORTED;
    pthread_mutex_lock(&g.mu);
    g.have_tracer = tracer != NULL;
    if (tracer)
        g.tracer = *tracer;
    pthread_mutex_unlock(&g.mu);
    if (info)
        *info = context_info;
    return CUDA_SUCCESS;
}
