/* test_fakes.c — the fake driver and the fake CUPTI behave like the real
 * ones for what the profiler uses: device memory accounting, failures with
 * CUDA_ERROR_OUT_OF_MEMORY, the injection loaded once by cuInit, records laid
 * out as CUpti_ActivityMemory4 / CUpti_ActivityMemoryPool3 in client
 * buffers, driver-API callbacks, and the FAKE_CUPTI failure switches.
 * Usage: test_fakes CASE (the environment comes from CMake). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cupti.h> /* with cuda.h and the params structs of generated_cuda_meta.h */

#include "check.h"

#define MiB (1024ull * 1024ull)
#define GiB (1024ull * MiB)

static CUcontext ctx;

static void setup(void)
{
    CUdevice dev;
    CHECK(cuInit(0) == CUDA_SUCCESS);
    CHECK(cuDeviceGet(&dev, 0) == CUDA_SUCCESS);
    CHECK(cuDevicePrimaryCtxRetain(&ctx, dev) == CUDA_SUCCESS);
    CHECK(cuCtxSetCurrent(ctx) == CUDA_SUCCESS);
}

static uint64_t free_now(void)
{
    size_t f = 0, t = 0;
    CHECK(cuMemGetInfo(&f, &t) == CUDA_SUCCESS);
    return f;
}

static CUresult hidden_alloc(int device, long long bytes)
{
    CUresult (*fn)(int, long long) =
        (CUresult(*)(int, long long))dlsym(RTLD_DEFAULT, "fake_cuda_hidden_alloc");
    CHECK(fn != NULL);
    return fn ? fn(device, bytes) : CUDA_ERROR_UNKNOWN;
}

/* ---- the driver: FAKE_CUDA_TOTAL=1G, FAKE_CUDA_CONTEXT_BYTES=100M,
 * FAKE_CUDA_DEVICES=2, FAKE_CUDA_NAME="Test GPU" ---- */

static void driver_reports_devices_and_fails_without_a_context(void)
{
    CUdeviceptr p;
    CHECK(cuMemAlloc(&p, 1) == CUDA_ERROR_NOT_INITIALIZED);
    CHECK(cuInit(0) == CUDA_SUCCESS);
    int n = 0, v = 0;
    CHECK(cuDeviceGetCount(&n) == CUDA_SUCCESS);
    CHECK(n == 2);
    CHECK(cuDriverGetVersion(&v) == CUDA_SUCCESS);
    CHECK(v == 13000);
    char name[64];
    CHECK(cuDeviceGetName(name, sizeof name, 1) == CUDA_SUCCESS);
    CHECK(strcmp(name, "Test GPU") == 0);
    size_t total = 0;
    CHECK(cuDeviceTotalMem(&total, 0) == CUDA_SUCCESS);
    CHECK_EQ_U64(total, GiB);
    CUdevice d;
    CHECK(cuDeviceGet(&d, 2) == CUDA_ERROR_INVALID_DEVICE);
    CHECK(cuMemAlloc(&p, 1) == CUDA_ERROR_INVALID_CONTEXT);
    size_t f, t;
    CHECK(cuMemGetInfo(&f, &t) == CUDA_ERROR_INVALID_CONTEXT);
    const char *s = NULL;
    CHECK(cuGetErrorName(CUDA_ERROR_OUT_OF_MEMORY, &s) == CUDA_SUCCESS);
    CHECK(s && strcmp(s, "CUDA_ERROR_OUT_OF_MEMORY") == 0);
    CHECK(cuGetErrorString(CUDA_ERROR_OUT_OF_MEMORY, &s) == CUDA_SUCCESS);
    CHECK(s && strcmp(s, "out of memory") == 0);
    CHECK(cuGetErrorName((CUresult)12345, &s) == CUDA_ERROR_INVALID_VALUE);
}

static void driver_accounts_every_kind_of_memory(void)
{
    setup();
    CHECK_EQ_U64(free_now(), GiB - 100 * MiB); /* the context's own overhead */
    uint64_t f0 = free_now();

    CUdeviceptr a, b, m;
    CHECK(cuMemAlloc(&a, 10 * MiB) == CUDA_SUCCESS);
    CHECK_EQ_U64(free_now(), f0 - 10 * MiB);
    CHECK(cuMemAllocManaged(&m, 3 * MiB, CU_MEM_ATTACH_GLOBAL) == CUDA_SUCCESS);
    memset((void *)(uintptr_t)m, 1, 3 * MiB); /* managed memory is host-accessible */
    CHECK_EQ_U64(free_now(), f0 - 13 * MiB);
    void *h = NULL;
    CHECK(cuMemHostAlloc(&h, 64 * MiB, 0) == CUDA_SUCCESS);
    memset(h, 1, 4096);
    CHECK_EQ_U64(free_now(), f0 - 13 * MiB); /* pinned host memory is not device memory */
    CHECK(cuMemFreeHost(h) == CUDA_SUCCESS);

    /* stream-ordered: the pool reserves in 32 MiB steps and keeps them */
    CUstream s;
    CHECK(cuStreamCreate(&s, 0) == CUDA_SUCCESS);
    CHECK(cuMemAllocAsync(&b, 5 * MiB, s) == CUDA_SUCCESS);
    CHECK_EQ_U64(free_now(), f0 - 13 * MiB - 32 * MiB);
    CUdeviceptr b2;
    CHECK(cuMemAllocAsync(&b2, 30 * MiB, s) == CUDA_SUCCESS);
    CHECK_EQ_U64(free_now(), f0 - 13 * MiB - 64 * MiB);
    CHECK(cuMemFreeAsync(b, s) == CUDA_SUCCESS);
    CHECK(cuMemFreeAsync(b2, s) == CUDA_SUCCESS);
    CHECK(cuStreamSynchronize(s) == CUDA_SUCCESS);
    CHECK_EQ_U64(free_now(), f0 - 13 * MiB - 64 * MiB);
    CUmemoryPool pool;
    CHECK(cuDeviceGetDefaultMemPool(&pool, 0) == CUDA_SUCCESS);
    CHECK(cuMemAllocAsync(&b, MiB, s) == CUDA_SUCCESS);
    cuuint64_t reserved = 0, used = 0;
    CHECK(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &reserved) ==
          CUDA_SUCCESS);
    CHECK(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used) == CUDA_SUCCESS);
    CHECK_EQ_U64(reserved, 64 * MiB);
    CHECK_EQ_U64(used, MiB);
    CHECK(cuMemFree(b) == CUDA_SUCCESS); /* cuMemFree takes stream-ordered blocks too */
    CHECK(cuMemPoolGetAttribute(pool, CU_MEMPOOL_ATTR_USED_MEM_CURRENT, &used) == CUDA_SUCCESS);
    CHECK_EQ_U64(used, 0);
    CHECK_EQ_U64(free_now(), f0 - 13 * MiB - 64 * MiB);
    CHECK(cuMemPoolTrimTo(pool, 0) == CUDA_SUCCESS);
    CHECK_EQ_U64(free_now(), f0 - 13 * MiB);
    CHECK(cuStreamDestroy(s) == CUDA_SUCCESS);

    /* virtual memory: physical allocations count, mappings do not */
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    size_t gran = 0;
    CHECK(cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM) ==
          CUDA_SUCCESS);
    CHECK_EQ_U64(gran, 2 * MiB);
    CUmemGenericAllocationHandle mh;
    CHECK(cuMemCreate(&mh, 3 * MiB, &prop, 0) == CUDA_ERROR_INVALID_VALUE);
    CHECK(cuMemCreate(&mh, 4 * MiB, &prop, 0) == CUDA_SUCCESS);
    CUdeviceptr va;
    CHECK(cuMemAddressReserve(&va, 8 * MiB, 0, 0, 0) == CUDA_SUCCESS);
    CHECK(cuMemMap(va, 4 * MiB, 0, mh, 0) == CUDA_SUCCESS);
    CHECK_EQ_U64(free_now(), f0 - 17 * MiB);
    CHECK(cuMemUnmap(va, 4 * MiB) == CUDA_SUCCESS);
    CHECK(cuMemAddressFree(va, 8 * MiB) == CUDA_SUCCESS);
    CHECK(cuMemRelease(mh) == CUDA_SUCCESS);
    CHECK_EQ_U64(free_now(), f0 - 13 * MiB);

    /* memory no API reports */
    CHECK(hidden_alloc(0, 7 * MiB) == CUDA_SUCCESS);
    CHECK_EQ_U64(free_now(), f0 - 20 * MiB);
    CHECK(hidden_alloc(0, -7 * (long long)MiB) == CUDA_SUCCESS);

    /* out of memory: exactly the free bytes fit, one more does not */
    uint64_t f = free_now();
    CUdeviceptr big;
    CHECK(cuMemAlloc(&big, f + 1) == CUDA_ERROR_OUT_OF_MEMORY);
    CHECK(cuMemAllocAsync(&big, f + 1, NULL) == CUDA_ERROR_OUT_OF_MEMORY);
    CHECK(cuMemAlloc(&big, f) == CUDA_SUCCESS);
    CHECK_EQ_U64(free_now(), 0);
    CHECK(cuMemFree(big) == CUDA_SUCCESS);
    CHECK(cuMemFree(a) == CUDA_SUCCESS);
    CHECK(cuMemFree(a) == CUDA_ERROR_INVALID_VALUE);
    CHECK(cuMemFree(m) == CUDA_SUCCESS);
    CHECK_EQ_U64(free_now(), f0);

    /* a second context on the other device takes its own overhead there only */
    CUcontext c2;
    CHECK(cuCtxCreate(&c2, NULL, 0, 1) == CUDA_SUCCESS);
    CUdevice d = -1;
    CHECK(cuCtxGetDevice(&d) == CUDA_SUCCESS);
    CHECK(d == 1);
    CHECK_EQ_U64(free_now(), GiB - 100 * MiB);
    CHECK(cuCtxDestroy(c2) == CUDA_SUCCESS);
    CUcontext cur = (CUcontext)1;
    CHECK(cuCtxGetCurrent(&cur) == CUDA_SUCCESS);
    CHECK(cur == NULL);
    CHECK(cuCtxSetCurrent(ctx) == CUDA_SUCCESS);
    CHECK(cuCtxSynchronize() == CUDA_SUCCESS);
    CHECK(cuDevicePrimaryCtxRelease(0) == CUDA_SUCCESS);
}

/* ---- the injection: CUDA_INJECTION64_PATH is the probe library ---- */

static void *inject_thread(void *arg)
{
    (void)arg;
    CHECK(cuInit(0) == CUDA_SUCCESS);
    return NULL;
}

static void driver_calls_the_injection_once(void)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        CHECK(pthread_create(&t[i], NULL, inject_thread, NULL) == 0);
    CHECK(cuInit(0) == CUDA_SUCCESS);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    void *h = dlopen(getenv("CUDA_INJECTION64_PATH"), RTLD_NOLOAD | RTLD_LAZY);
    CHECK(h != NULL);
    int *calls = h ? (int *)dlsym(h, "probe_injection_calls") : NULL;
    CHECK(calls && *calls == 1);
    int *inner = h ? (int *)dlsym(h, "probe_injection_inner_init") : NULL;
    CHECK(inner && *inner == CUDA_SUCCESS); /* cuInit from inside InitializeInjection */
    if (h)
        dlclose(h);
}

static void driver_ignores_a_missing_injection(void)
{
    CHECK(cuInit(0) == CUDA_SUCCESS);
    setup();
    CUdeviceptr p;
    CHECK(cuMemAlloc(&p, MiB) == CUDA_SUCCESS);
}

/* ---- CUPTI: a client as a profiler writes it ---- */

static struct {
    CUptiResult (*subscribe)(CUpti_SubscriberHandle *, CUpti_CallbackFunc, void *);
    CUptiResult (*enable_domain)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain);
    CUptiResult (*enable_callback)(uint32_t, CUpti_SubscriberHandle, CUpti_CallbackDomain,
                                   CUpti_CallbackId);
    CUptiResult (*activity_enable)(CUpti_ActivityKind);
    CUptiResult (*register_callbacks)(CUpti_BuffersCallbackRequestFunc,
                                      CUpti_BuffersCallbackCompleteFunc);
    CUptiResult (*flush_all)(uint32_t);
    CUptiResult (*next_record)(uint8_t *, size_t, CUpti_Activity **);
    CUptiResult (*dropped)(CUcontext, uint32_t, size_t *);
    CUptiResult (*timestamp)(uint64_t *);
    CUptiResult (*result_string)(CUptiResult, const char **);
    CUptiResult (*unsubscribe)(CUpti_SubscriberHandle);
    CUptiResult (*version)(uint32_t *);
} cupti;

static void load_cupti(void)
{
    const char *path = getenv("FAKE_TEST_CUPTI");
    void *h = path ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
    if (!h) {
        fprintf(stderr, "cannot load FAKE_TEST_CUPTI: %s\n", dlerror());
        exit(1);
    }
#define SYM(field, name) *(void **)&cupti.field = dlsym(h, name)
    SYM(subscribe, "cuptiSubscribe");
    SYM(enable_domain, "cuptiEnableDomain");
    SYM(enable_callback, "cuptiEnableCallback");
    SYM(activity_enable, "cuptiActivityEnable");
    SYM(register_callbacks, "cuptiActivityRegisterCallbacks");
    SYM(flush_all, "cuptiActivityFlushAll");
    SYM(next_record, "cuptiActivityGetNextRecord");
    SYM(dropped, "cuptiActivityGetNumDroppedRecords");
    SYM(timestamp, "cuptiGetTimestamp");
    SYM(result_string, "cuptiGetResultString");
    SYM(unsubscribe, "cuptiUnsubscribe");
    SYM(version, "cuptiGetVersion");
#undef SYM
}

#define MAX_SEEN 256
static struct {
    pthread_mutex_t mu;
    CUpti_ActivityMemory4 mem[MAX_SEEN];
    int nmem;
    CUpti_ActivityMemoryPool3 pool[16];
    int npool;
    int buffers_requested, buffers_completed;
    pthread_t completed_on[64];
    /* callbacks */
    int enters, exits;
    size_t oom_bytes;
    CUresult oom_result;
    uint32_t last_enter_correlation, mismatched_correlation;
} seen = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void CUPTIAPI buffer_requested(uint8_t **buffer, size_t *size, size_t *max_records)
{
    *size = 64 * 1024;
    *buffer = aligned_alloc(8, *size);
    *max_records = 0;
    pthread_mutex_lock(&seen.mu);
    seen.buffers_requested++;
    pthread_mutex_unlock(&seen.mu);
}

static void CUPTIAPI buffer_completed(CUcontext c, uint32_t stream, uint8_t *buffer, size_t size,
                                      size_t valid)
{
    (void)c;
    (void)stream;
    (void)size;
    CUpti_Activity *rec = NULL;
    pthread_mutex_lock(&seen.mu);
    if (seen.buffers_completed < 64)
        seen.completed_on[seen.buffers_completed] = pthread_self();
    seen.buffers_completed++;
    CUptiResult r;
    while ((r = cupti.next_record(buffer, valid, &rec)) == CUPTI_SUCCESS) {
        CHECK(((uintptr_t)rec & 7) == 0);
        if (rec->kind == CUPTI_ACTIVITY_KIND_MEMORY2 && seen.nmem < MAX_SEEN)
            memcpy(&seen.mem[seen.nmem++], rec, sizeof(CUpti_ActivityMemory4));
        else if (rec->kind == CUPTI_ACTIVITY_KIND_MEMORY_POOL && seen.npool < 16)
            memcpy(&seen.pool[seen.npool++], rec, sizeof(CUpti_ActivityMemoryPool3));
        else
            CHECK(!"unexpected record kind");
    }
    CHECK(r == CUPTI_ERROR_MAX_LIMIT_REACHED);
    pthread_mutex_unlock(&seen.mu);
    free(buffer);
}

static void CUPTIAPI on_callback(void *userdata, CUpti_CallbackDomain domain, CUpti_CallbackId cbid,
                                 const void *data)
{
    const CUpti_CallbackData *cb = data;
    CHECK(userdata == &seen);
    CHECK(domain == CUPTI_CB_DOMAIN_DRIVER_API);
    pthread_mutex_lock(&seen.mu);
    if (cb->callbackSite == CUPTI_API_ENTER) {
        seen.enters++;
        seen.last_enter_correlation = cb->correlationId;
        *cb->correlationData = 42;
    } else {
        seen.exits++;
        if (cb->correlationId != seen.last_enter_correlation || *cb->correlationData != 42)
            seen.mismatched_correlation++;
        CUresult r = *(CUresult *)cb->functionReturnValue;
        if (cbid == CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2 && r != CUDA_SUCCESS) {
            CHECK(strcmp(cb->functionName, "cuMemAlloc_v2") == 0);
            seen.oom_bytes = ((const cuMemAlloc_v2_params *)cb->functionParams)->bytesize;
            seen.oom_result = r;
        }
    }
    pthread_mutex_unlock(&seen.mu);
}

static void start_client(void)
{
    load_cupti();
    CHECK(cupti.register_callbacks(buffer_requested, buffer_completed) == CUPTI_SUCCESS);
    CHECK(cupti.activity_enable(CUPTI_ACTIVITY_KIND_MEMORY2) == CUPTI_SUCCESS);
    CHECK(cupti.activity_enable(CUPTI_ACTIVITY_KIND_MEMORY_POOL) == CUPTI_SUCCESS);
    CHECK(cupti.activity_enable(CUPTI_ACTIVITY_KIND_KERNEL) == CUPTI_ERROR_NOT_COMPATIBLE);
}

static void cupti_delivers_memory_records_as_the_real_one(void)
{
    setup();
    start_client();
    uint32_t v = 0; /* the version of the headers whose layouts it delivers */
    CHECK(cupti.version(&v) == CUPTI_SUCCESS);
    CHECK_EQ_U64(v, CUPTI_API_VERSION);
    uint64_t t0 = 0, t1 = 0;
    CHECK(cupti.timestamp(&t0) == CUPTI_SUCCESS);
    CUdeviceptr a, p;
    CHECK(cuMemAlloc(&a, 10 * MiB) == CUDA_SUCCESS);
    CHECK(cuMemAllocAsync(&p, 5 * MiB, NULL) == CUDA_SUCCESS);
    CHECK(cuMemFreeAsync(p, NULL) == CUDA_SUCCESS);
    CUdeviceptr m;
    CHECK(cuMemAllocManaged(&m, MiB, CU_MEM_ATTACH_GLOBAL) == CUDA_SUCCESS);
    void *h;
    CHECK(cuMemHostAlloc(&h, 2 * MiB, 0) == CUDA_SUCCESS);
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    CUmemGenericAllocationHandle mh;
    CHECK(cuMemCreate(&mh, 2 * MiB, &prop, 0) == CUDA_SUCCESS); /* no record: callbacks only */
    CHECK(cuMemRelease(mh) == CUDA_SUCCESS);
    CHECK(cuMemFree(a) == CUDA_SUCCESS);
    CHECK(cupti.timestamp(&t1) == CUPTI_SUCCESS);
    CHECK(cupti.flush_all(0) == CUPTI_SUCCESS);

    CHECK_EQ_U64(seen.nmem, 6);
    CHECK_EQ_U64(seen.npool, 1);
    if (seen.nmem == 6) {
        const CUpti_ActivityMemory4 *r = seen.mem;
        CHECK(r[0].memoryOperationType == CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION);
        CHECK(r[0].memoryKind == CUPTI_ACTIVITY_MEMORY_KIND_DEVICE);
        CHECK(r[0].address == a && r[0].bytes == 10 * MiB);
        CHECK(r[0].memoryPoolConfig.memoryPoolType == CUPTI_ACTIVITY_MEMORY_POOL_TYPE_INVALID);
        CHECK(r[0].contextId == 1 && r[0].deviceId == 0 && r[0].name == NULL);
        CHECK(r[1].memoryKind == CUPTI_ACTIVITY_MEMORY_KIND_DEVICE && r[1].address == p);
        CHECK(r[1].memoryPoolConfig.memoryPoolType == CUPTI_ACTIVITY_MEMORY_POOL_TYPE_LOCAL);
        CHECK_EQ_U64(r[1].memoryPoolConfig.pool.size, 32 * MiB);
        CHECK_EQ_U64(r[1].memoryPoolConfig.utilizedSize, 5 * MiB);
        CHECK(r[1].isAsync == 1 && r[1].streamId == 7);
        CHECK(r[2].memoryOperationType == CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_RELEASE);
        CHECK_EQ_U64(r[2].memoryPoolConfig.utilizedSize, 0);
        CHECK(r[3].memoryKind == CUPTI_ACTIVITY_MEMORY_KIND_MANAGED && r[3].address == m);
        CHECK(r[4].memoryKind == CUPTI_ACTIVITY_MEMORY_KIND_PINNED &&
              r[4].address == (uint64_t)(uintptr_t)h);
        CHECK(r[5].memoryOperationType == CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_RELEASE &&
              r[5].address == a && r[5].bytes == 10 * MiB);
        for (int i = 0; i < 6; i++) {
            CHECK(r[i].timestamp >= t0 && r[i].timestamp <= t1);
            CHECK(i == 0 || r[i].timestamp >= r[i - 1].timestamp);
        }
    }
    if (seen.npool == 1) {
        CHECK(seen.pool[0].memoryPoolOperationType ==
              CUPTI_ACTIVITY_MEMORY_POOL_OPERATION_TYPE_CREATED);
        CHECK_EQ_U64(seen.pool[0].size, 32 * MiB);
        CHECK(seen.pool[0].address == seen.mem[1].memoryPoolConfig.address);
    }
    /* an empty flush delivers nothing; a forced one gives the buffer back */
    int before = seen.buffers_completed;
    CHECK(cupti.flush_all(0) == CUPTI_SUCCESS);
    CHECK_EQ_U64(seen.buffers_completed, before);
    CHECK(cuMemFreeHost(h) == CUDA_SUCCESS);
    CHECK(cupti.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED) == CUPTI_SUCCESS);
    CHECK_EQ_U64(seen.buffers_completed, seen.buffers_requested);
    size_t dropped = 1;
    CHECK(cupti.dropped(NULL, 0, &dropped) == CUPTI_SUCCESS);
    CHECK_EQ_U64(dropped, 0);
}

static void cupti_calls_back_on_enter_and_exit_with_the_params(void)
{
    setup();
    start_client();
    CUpti_SubscriberHandle sub, sub2;
    CHECK(cupti.subscribe(&sub, on_callback, &seen) == CUPTI_SUCCESS);
    CHECK(cupti.subscribe(&sub2, on_callback, &seen) ==
          CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED);
    CHECK(cupti.enable_callback(1, sub, CUPTI_CB_DOMAIN_DRIVER_API,
                                CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2) == CUPTI_SUCCESS);
    size_t f, t;
    CHECK(cuMemGetInfo(&f, &t) == CUDA_SUCCESS); /* not enabled: no callback */
    CHECK_EQ_U64(seen.enters, 0);
    CUdeviceptr p;
    CHECK(cuMemAlloc(&p, f + 1) == CUDA_ERROR_OUT_OF_MEMORY);
    CHECK_EQ_U64(seen.enters, 1);
    CHECK_EQ_U64(seen.exits, 1);
    CHECK_EQ_U64(seen.oom_bytes, f + 1);
    CHECK(seen.oom_result == CUDA_ERROR_OUT_OF_MEMORY);
    CHECK(cupti.enable_domain(1, sub, CUPTI_CB_DOMAIN_DRIVER_API) == CUPTI_SUCCESS);
    CHECK(cuMemAlloc(&p, MiB) == CUDA_SUCCESS);
    CHECK(cuMemFree(p) == CUDA_SUCCESS);
    CHECK_EQ_U64(seen.enters, 3);
    CHECK_EQ_U64(seen.exits, 3);
    CHECK_EQ_U64(seen.mismatched_correlation, 0);
    CHECK(cupti.unsubscribe(sub) == CUPTI_SUCCESS);
    CHECK(cuMemAlloc(&p, MiB) == CUDA_SUCCESS);
    CHECK_EQ_U64(seen.enters, 3);
    CHECK(cupti.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED) == CUPTI_SUCCESS);
}

/* FAKE_CUPTI=drop=3,buffer_records=2 */
static void cupti_drops_every_nth_record_and_counts_it(void)
{
    setup();
    start_client();
    CUdeviceptr p[5];
    for (int i = 0; i < 5; i++)
        CHECK(cuMemAlloc(&p[i], MiB) == CUDA_SUCCESS);
    for (int i = 0; i < 5; i++)
        CHECK(cuMemFree(p[i]) == CUDA_SUCCESS);
    CHECK(cupti.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED) == CUPTI_SUCCESS);
    CHECK_EQ_U64(seen.nmem, 7); /* records 3, 6 and 9 of 10 are gone */
    size_t dropped = 0;
    CHECK(cupti.dropped(NULL, 0, &dropped) == CUPTI_SUCCESS);
    CHECK_EQ_U64(dropped, 3);
    CHECK(cupti.dropped(NULL, 0, &dropped) == CUPTI_SUCCESS);
    CHECK_EQ_U64(dropped, 0); /* reset by the call, as documented */
    CHECK(seen.buffers_completed >= 4);
    CHECK_EQ_U64(seen.buffers_completed, seen.buffers_requested);
}

/* FAKE_CUPTI=late,buffer_records=1 */
static void cupti_late_delivers_at_flush_in_reverse_from_another_thread(void)
{
    setup();
    start_client();
    CUdeviceptr p[4];
    for (int i = 0; i < 4; i++)
        CHECK(cuMemAlloc(&p[i], (uint64_t)(i + 1) * MiB) == CUDA_SUCCESS);
    CHECK_EQ_U64(seen.nmem, 0);
    CHECK(cupti.flush_all(0) == CUPTI_SUCCESS);
    CHECK_EQ_U64(seen.nmem, 4);
    for (int i = 0; i < seen.nmem; i++)
        CHECK_EQ_U64(seen.mem[i].bytes, (uint64_t)(4 - i) * MiB);
    for (int i = 0; i < seen.buffers_completed && i < 64; i++)
        CHECK(!pthread_equal(seen.completed_on[i], pthread_self()));
    CHECK(cupti.flush_all(CUPTI_ACTIVITY_FLAG_FLUSH_FORCED) == CUPTI_SUCCESS);
    CHECK_EQ_U64(seen.buffers_completed, seen.buffers_requested);
}

/* FAKE_CUPTI=fail=subscribe,fail=activity_enable,fail=register_callbacks,fail=timestamp,
 * version=24 (CUDA 12.6's CUPTI) */
static void cupti_fails_where_it_is_told_to(void)
{
    setup();
    load_cupti();
    uint32_t v = 0;
    CHECK(cupti.version(&v) == CUPTI_SUCCESS);
    CHECK_EQ_U64(v, 24);
    CUpti_SubscriberHandle sub;
    CHECK(cupti.subscribe(&sub, on_callback, &seen) ==
          CUPTI_ERROR_MULTIPLE_SUBSCRIBERS_NOT_SUPPORTED);
    CHECK(cupti.activity_enable(CUPTI_ACTIVITY_KIND_MEMORY2) == CUPTI_ERROR_NOT_COMPATIBLE);
    CHECK(cupti.register_callbacks(buffer_requested, buffer_completed) ==
          CUPTI_ERROR_NOT_INITIALIZED);
    uint64_t t;
    CHECK(cupti.timestamp(&t) != CUPTI_SUCCESS);
    const char *s = NULL;
    CHECK(cupti.result_string(CUPTI_ERROR_NOT_COMPATIBLE, &s) == CUPTI_SUCCESS);
    CHECK(s && strcmp(s, "CUPTI_ERROR_NOT_COMPATIBLE") == 0);
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    if (!strcmp(c, "driver")) {
        RUN(driver_reports_devices_and_fails_without_a_context);
        RUN(driver_accounts_every_kind_of_memory);
    } else if (!strcmp(c, "injection")) {
        RUN(driver_calls_the_injection_once);
    } else if (!strcmp(c, "injection-missing")) {
        RUN(driver_ignores_a_missing_injection);
    } else if (!strcmp(c, "records")) {
        RUN(cupti_delivers_memory_records_as_the_real_one);
    } else if (!strcmp(c, "callbacks")) {
        RUN(cupti_calls_back_on_enter_and_exit_with_the_params);
    } else if (!strcmp(c, "drop")) {
        RUN(cupti_drops_every_nth_record_and_counts_it);
    } else if (!strcmp(c, "late")) {
        RUN(cupti_late_delivers_at_flush_in_reverse_from_another_thread);
    } else if (!strcmp(c, "fail")) {
        RUN(cupti_fails_where_it_is_told_to);
    } else {
        fprintf(stderr, "usage: test_fakes driver|injection|injection-missing|records|callbacks|"
                        "drop|late|fail\n");
        return 2;
    }
    CHECK_DONE();
}
