/* The CUPTI record parser (profiler/src/inject/cupti_records.c): memory and
 * pool activity records, and driver-API callbacks, built with the real
 * CUPTI 13 structs, give the spool events the profiler must write; records
 * and calls that say nothing about device memory give none. */
#include "../check.h"
#include "cupti_records.h"

#define MiB (1ull << 20)

static CUpti_ActivityMemory4 memory_record(CUpti_ActivityMemoryOperationType op, CUpti_ActivityMemoryKind kind)
{
    CUpti_ActivityMemory4 m;
    memset(&m, 0, sizeof m);
    m.kind = CUPTI_ACTIVITY_KIND_MEMORY2;
    m.memoryOperationType = op;
    m.memoryKind = kind;
    m.address = 0x7f0000200000ull;
    m.bytes = 64 * MiB;
    m.timestamp = 123456789ull;
    m.deviceId = 2;
    m.memoryPoolConfig.memoryPoolType = CUPTI_ACTIVITY_MEMORY_POOL_TYPE_INVALID;
    return m;
}

static int parse(const void *rec, warmcal__parsed *p)
{
    return warmcal__cupti_parse_activity((const CUpti_Activity *)rec, p);
}

static void device_allocation_and_release_keep_address_size_time_device(void)
{
    warmcal__parsed p;
    CUpti_ActivityMemory4 m = memory_record(CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION,
                                            CUPTI_ACTIVITY_MEMORY_KIND_DEVICE);
    CHECK(parse(&m, &p) == WARMCAL__PARSED_EVENT);
    CHECK_EQ_U64(p.event.kind, WARMCAL_EV_ALLOC);
    CHECK_EQ_U64(p.event.mem_kind, WARMCAL_MEM_DEVICE);
    CHECK_EQ_U64(p.event.address, 0x7f0000200000ull);
    CHECK_EQ_U64(p.event.bytes, 64 * MiB);
    CHECK_EQ_U64(p.event.time_ns, 123456789ull);
    CHECK_EQ_U64(p.device, 2);

    m.memoryOperationType = CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_RELEASE;
    m.timestamp = 223456789ull;
    CHECK(parse(&m, &p) == WARMCAL__PARSED_EVENT);
    CHECK_EQ_U64(p.event.kind, WARMCAL_EV_FREE);
    CHECK_EQ_U64(p.event.address, 0x7f0000200000ull);
    CHECK_EQ_U64(p.event.time_ns, 223456789ull);
    CHECK_EQ_U64(p.device, 2);
}

static void each_memory_kind_maps_to_its_warmcal_kind(void)
{
    static const struct {
        CUpti_ActivityMemoryKind cupti;
        int pooled;
        int expect; /* a warmcal_mem_kind, or -1: no event */
    } cases[] = {
        {CUPTI_ACTIVITY_MEMORY_KIND_DEVICE, 0, WARMCAL_MEM_DEVICE},
        {CUPTI_ACTIVITY_MEMORY_KIND_ARRAY, 0, WARMCAL_MEM_DEVICE},
        {CUPTI_ACTIVITY_MEMORY_KIND_DEVICE_STATIC, 0, WARMCAL_MEM_DEVICE},
        {CUPTI_ACTIVITY_MEMORY_KIND_DEVICE, 1, WARMCAL_MEM_POOL},
        {CUPTI_ACTIVITY_MEMORY_KIND_MANAGED, 0, WARMCAL_MEM_MANAGED},
        {CUPTI_ACTIVITY_MEMORY_KIND_MANAGED_STATIC, 0, WARMCAL_MEM_MANAGED},
        {CUPTI_ACTIVITY_MEMORY_KIND_MANAGED, 1, WARMCAL_MEM_MANAGED},
        {CUPTI_ACTIVITY_MEMORY_KIND_PINNED, 0, WARMCAL_MEM_PINNED_HOST},
        {CUPTI_ACTIVITY_MEMORY_KIND_PAGEABLE, 0, -1},
        {CUPTI_ACTIVITY_MEMORY_KIND_UNKNOWN, 0, -1},
        {(CUpti_ActivityMemoryKind)99, 0, -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        warmcal__parsed p;
        CUpti_ActivityMemory4 m = memory_record(CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION, cases[i].cupti);
        if (cases[i].pooled) {
            m.memoryPoolConfig.memoryPoolType = CUPTI_ACTIVITY_MEMORY_POOL_TYPE_LOCAL;
            m.memoryPoolConfig.address = 0x7f1000000000ull;
        }
        int type = parse(&m, &p);
        if (cases[i].expect < 0) {
            CHECK(type == WARMCAL__PARSED_NONE);
            continue;
        }
        CHECK(type == WARMCAL__PARSED_EVENT);
        CHECK_EQ_U64(p.event.mem_kind, cases[i].expect);
        /* pinned host memory is not one device's: never filtered by device */
        CHECK_EQ_U64(p.device, cases[i].expect == WARMCAL_MEM_PINNED_HOST ? WARMCAL__DEVICE_HOST : 2u);
    }
}

static void imported_pool_memory_is_pool_memory(void)
{
    warmcal__parsed p;
    CUpti_ActivityMemory4 m = memory_record(CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION,
                                            CUPTI_ACTIVITY_MEMORY_KIND_DEVICE);
    m.memoryPoolConfig.memoryPoolType = CUPTI_ACTIVITY_MEMORY_POOL_TYPE_IMPORTED;
    CHECK(parse(&m, &p) == WARMCAL__PARSED_EVENT);
    CHECK_EQ_U64(p.event.mem_kind, WARMCAL_MEM_POOL);
}

static void invalid_memory_operation_gives_nothing(void)
{
    warmcal__parsed p;
    CUpti_ActivityMemory4 m = memory_record(CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_INVALID,
                                            CUPTI_ACTIVITY_MEMORY_KIND_DEVICE);
    CHECK(parse(&m, &p) == WARMCAL__PARSED_NONE);
}

static void pool_records_give_the_reserved_size_after_the_operation(void)
{
    CUpti_ActivityMemoryPool3 r;
    memset(&r, 0, sizeof r);
    r.kind = CUPTI_ACTIVITY_KIND_MEMORY_POOL;
    r.memoryPoolType = CUPTI_ACTIVITY_MEMORY_POOL_TYPE_LOCAL;
    r.memoryPoolOperationType = CUPTI_ACTIVITY_MEMORY_POOL_OPERATION_TYPE_CREATED;
    r.address = 0x7f1000000000ull;
    r.size = 256 * MiB;
    r.utilizedSize = 32 * MiB;
    r.timestamp = 555;
    r.deviceId = 1;
    warmcal__parsed p;
    CHECK(parse(&r, &p) == WARMCAL__PARSED_POOL);
    CHECK_EQ_U64(p.pool.pool, 0x7f1000000000ull);
    CHECK_EQ_U64(p.pool.reserved_bytes, 256 * MiB);
    CHECK_EQ_U64(p.pool.used_bytes, 32 * MiB);
    CHECK_EQ_U64(p.pool.time_ns, 555);
    CHECK_EQ_U64(p.device, 1);

    r.memoryPoolOperationType = CUPTI_ACTIVITY_MEMORY_POOL_OPERATION_TYPE_TRIMMED;
    r.size = 64 * MiB;
    CHECK(parse(&r, &p) == WARMCAL__PARSED_POOL);
    CHECK_EQ_U64(p.pool.reserved_bytes, 64 * MiB);

    r.memoryPoolOperationType = CUPTI_ACTIVITY_MEMORY_POOL_OPERATION_TYPE_DESTROYED;
    CHECK(parse(&r, &p) == WARMCAL__PARSED_POOL);
    CHECK_EQ_U64(p.pool.reserved_bytes, 0);
    CHECK_EQ_U64(p.pool.used_bytes, 0);

    r.memoryPoolOperationType = CUPTI_ACTIVITY_MEMORY_POOL_OPERATION_TYPE_INVALID;
    CHECK(parse(&r, &p) == WARMCAL__PARSED_NONE);
}

static void other_activity_kinds_are_ignored(void)
{
    /* a record of a kind the profiler never enables, laid out as CUPTI would */
    CUpti_ActivityAPI api;
    memset(&api, 0, sizeof api);
    api.kind = CUPTI_ACTIVITY_KIND_DRIVER;
    warmcal__parsed p;
    CHECK(parse(&api, &p) == WARMCAL__PARSED_NONE);
    CUpti_ActivityMemory4 old = memory_record(CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION,
                                              CUPTI_ACTIVITY_MEMORY_KIND_DEVICE);
    old.kind = CUPTI_ACTIVITY_KIND_MEMORY; /* the older, single-record kind: another layout */
    CHECK(parse(&old, &p) == WARMCAL__PARSED_NONE);
}

/* ---- callbacks ---- */

static CUpti_CallbackData callback(CUpti_ApiCallbackSite site, const void *params, CUresult *rc)
{
    CUpti_CallbackData cb;
    memset(&cb, 0, sizeof cb);
    cb.callbackSite = site;
    cb.functionParams = params;
    cb.functionReturnValue = rc;
    return cb;
}

static void out_of_memory_gives_the_size_asked_for_and_the_kind(void)
{
    CUdeviceptr dptr = 0;
    void *host = NULL;
    size_t pitch = 0;
    CUresult oom = CUDA_ERROR_OUT_OF_MEMORY;
    cuMemAlloc_v2_params alloc = {&dptr, 3 * MiB};
    cuMemAllocPitch_v2_params pitched = {&dptr, &pitch, 1000, 3000, 4};
    cuMemAllocAsync_params async = {&dptr, 5 * MiB, NULL};
    cuMemAllocFromPoolAsync_params from_pool = {&dptr, 6 * MiB, NULL, NULL};
    cuMemAllocManaged_params managed = {&dptr, 7 * MiB, 1};
    cuMemHostAlloc_params host_alloc = {&host, 8 * MiB, 0};
    cuMemAllocHost_v2_params host_v2 = {&host, 9 * MiB};
    static const struct {
        CUpti_CallbackId cbid;
        int which;
        uint64_t bytes;
        int mem_kind;
    } cases[] = {
        {CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2, 0, 3 * MiB, WARMCAL_MEM_DEVICE},
        {CUPTI_DRIVER_TRACE_CBID_cuMemAllocPitch_v2, 1, 3000000, WARMCAL_MEM_DEVICE},
        {CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync, 2, 5 * MiB, WARMCAL_MEM_POOL},
        {CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync_ptsz, 2, 5 * MiB, WARMCAL_MEM_POOL},
        {CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync, 3, 6 * MiB, WARMCAL_MEM_POOL},
        {CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync_ptsz, 3, 6 * MiB, WARMCAL_MEM_POOL},
        {CUPTI_DRIVER_TRACE_CBID_cuMemAllocManaged, 4, 7 * MiB, WARMCAL_MEM_MANAGED},
        {CUPTI_DRIVER_TRACE_CBID_cuMemHostAlloc, 5, 8 * MiB, WARMCAL_MEM_PINNED_HOST},
        {CUPTI_DRIVER_TRACE_CBID_cuMemAllocHost_v2, 6, 9 * MiB, WARMCAL_MEM_PINNED_HOST},
    };
    const void *params[] = {&alloc, &pitched, &async, &from_pool, &managed, &host_alloc, &host_v2};
    size_t n_ids = 0;
    const CUpti_CallbackId *ids = warmcal__cupti_callback_ids(&n_ids);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CUpti_CallbackData cb = callback(CUPTI_API_EXIT, params[cases[i].which], &oom);
        warmcal__parsed p;
        CHECK(warmcal__cupti_parse_callback(cases[i].cbid, &cb, 77, &p) == WARMCAL__PARSED_EVENT);
        CHECK_EQ_U64(p.event.kind, WARMCAL_EV_ALLOC_FAILED);
        CHECK_EQ_U64(p.event.bytes, cases[i].bytes);
        CHECK_EQ_U64(p.event.mem_kind, cases[i].mem_kind);
        CHECK_EQ_U64(p.event.time_ns, 77);
        CHECK_EQ_U64(p.device, cases[i].mem_kind == WARMCAL_MEM_PINNED_HOST ? WARMCAL__DEVICE_HOST
                                                                              : WARMCAL__DEVICE_UNKNOWN);
        /* the profiler enables exactly the callbacks it understands */
        int listed = 0;
        for (size_t j = 0; j < n_ids; j++)
            listed |= ids[j] == cases[i].cbid;
        CHECK(listed);

        /* the same call on entry, or failing otherwise, or succeeding: nothing */
        CUresult other = CUDA_ERROR_INVALID_VALUE, ok = CUDA_SUCCESS;
        cb = callback(CUPTI_API_ENTER, params[cases[i].which], &oom);
        CHECK(warmcal__cupti_parse_callback(cases[i].cbid, &cb, 77, &p) == WARMCAL__PARSED_NONE);
        cb = callback(CUPTI_API_EXIT, params[cases[i].which], &other);
        CHECK(warmcal__cupti_parse_callback(cases[i].cbid, &cb, 77, &p) == WARMCAL__PARSED_NONE);
        cb = callback(CUPTI_API_EXIT, params[cases[i].which], &ok);
        CHECK(warmcal__cupti_parse_callback(cases[i].cbid, &cb, 77, &p) == WARMCAL__PARSED_NONE);
    }
}

static void pitched_size_saturates_instead_of_wrapping(void)
{
    CUdeviceptr dptr = 0;
    size_t pitch = 0;
    CUresult oom = CUDA_ERROR_OUT_OF_MEMORY;
    cuMemAllocPitch_v2_params huge = {&dptr, &pitch, SIZE_MAX / 2, 4, 4};
    CUpti_CallbackData cb = callback(CUPTI_API_EXIT, &huge, &oom);
    warmcal__parsed p;
    CHECK(warmcal__cupti_parse_callback(CUPTI_DRIVER_TRACE_CBID_cuMemAllocPitch_v2, &cb, 1, &p) ==
          WARMCAL__PARSED_EVENT);
    CHECK_EQ_U64(p.event.bytes, UINT64_MAX);
}

static void virtual_memory_create_and_release_are_alloc_and_free_of_the_handle(void)
{
    CUmemGenericAllocationHandle handle = 0x5a5a0001ull;
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 3;
    cuMemCreate_params create = {&handle, 2 * 1024 * MiB, &prop, 0};
    CUresult ok = CUDA_SUCCESS, oom = CUDA_ERROR_OUT_OF_MEMORY;
    CUpti_CallbackData cb = callback(CUPTI_API_EXIT, &create, &ok);
    warmcal__parsed p;
    CHECK(warmcal__cupti_parse_callback(CUPTI_DRIVER_TRACE_CBID_cuMemCreate, &cb, 10, &p) == WARMCAL__PARSED_EVENT);
    CHECK_EQ_U64(p.event.kind, WARMCAL_EV_ALLOC);
    CHECK_EQ_U64(p.event.mem_kind, WARMCAL_MEM_VIRTUAL);
    CHECK_EQ_U64(p.event.address, 0x5a5a0001ull);
    CHECK_EQ_U64(p.event.bytes, 2 * 1024 * MiB);
    CHECK_EQ_U64(p.device, 3);

    cb = callback(CUPTI_API_EXIT, &create, &oom);
    CHECK(warmcal__cupti_parse_callback(CUPTI_DRIVER_TRACE_CBID_cuMemCreate, &cb, 11, &p) == WARMCAL__PARSED_EVENT);
    CHECK_EQ_U64(p.event.kind, WARMCAL_EV_ALLOC_FAILED);
    CHECK_EQ_U64(p.event.bytes, 2 * 1024 * MiB);
    CHECK_EQ_U64(p.event.mem_kind, WARMCAL_MEM_VIRTUAL);
    CHECK_EQ_U64(p.device, 3);

    /* physical memory on the host (CUDA 12.2+) is pinned host memory */
    prop.location.type = CU_MEM_LOCATION_TYPE_HOST_NUMA;
    prop.location.id = 0;
    cb = callback(CUPTI_API_EXIT, &create, &ok);
    CHECK(warmcal__cupti_parse_callback(CUPTI_DRIVER_TRACE_CBID_cuMemCreate, &cb, 12, &p) == WARMCAL__PARSED_EVENT);
    CHECK_EQ_U64(p.event.mem_kind, WARMCAL_MEM_PINNED_HOST);
    CHECK_EQ_U64(p.device, WARMCAL__DEVICE_HOST);

    cuMemRelease_params release = {0x5a5a0001ull};
    cb = callback(CUPTI_API_EXIT, &release, &ok);
    CHECK(warmcal__cupti_parse_callback(CUPTI_DRIVER_TRACE_CBID_cuMemRelease, &cb, 13, &p) == WARMCAL__PARSED_EVENT);
    CHECK_EQ_U64(p.event.kind, WARMCAL_EV_FREE);
    CHECK_EQ_U64(p.event.address, 0x5a5a0001ull);
    CHECK_EQ_U64(p.event.time_ns, 13);
    CHECK_EQ_U64(p.device, WARMCAL__DEVICE_UNKNOWN);

    CUresult bad = CUDA_ERROR_INVALID_VALUE;
    cb = callback(CUPTI_API_EXIT, &release, &bad);
    CHECK(warmcal__cupti_parse_callback(CUPTI_DRIVER_TRACE_CBID_cuMemRelease, &cb, 14, &p) == WARMCAL__PARSED_NONE);
}

static void other_calls_and_missing_data_give_nothing(void)
{
    CUresult oom = CUDA_ERROR_OUT_OF_MEMORY;
    cuMemFree_v2_params f = {0x1000};
    CUpti_CallbackData cb = callback(CUPTI_API_EXIT, &f, &oom);
    warmcal__parsed p;
    CHECK(warmcal__cupti_parse_callback(CUPTI_DRIVER_TRACE_CBID_cuMemFree_v2, &cb, 1, &p) == WARMCAL__PARSED_NONE);
    cb = callback(CUPTI_API_EXIT, NULL, &oom);
    CHECK(warmcal__cupti_parse_callback(CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2, &cb, 1, &p) == WARMCAL__PARSED_NONE);
    cb = callback(CUPTI_API_EXIT, &f, NULL);
    CHECK(warmcal__cupti_parse_callback(CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2, &cb, 1, &p) == WARMCAL__PARSED_NONE);
    CHECK(warmcal__cupti_parse_callback(CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2, NULL, 1, &p) == WARMCAL__PARSED_NONE);
}

int main(int argc, char **argv)
{
    const char *part = argc > 1 ? argv[1] : "all";
    int all = strcmp(part, "all") == 0;
    if (all || strcmp(part, "records") == 0) {
        RUN(device_allocation_and_release_keep_address_size_time_device);
        RUN(each_memory_kind_maps_to_its_warmcal_kind);
        RUN(imported_pool_memory_is_pool_memory);
        RUN(invalid_memory_operation_gives_nothing);
        RUN(pool_records_give_the_reserved_size_after_the_operation);
        RUN(other_activity_kinds_are_ignored);
    }
    if (all || strcmp(part, "callbacks") == 0) {
        RUN(out_of_memory_gives_the_size_asked_for_and_the_kind);
        RUN(pitched_size_saturates_instead_of_wrapping);
        RUN(virtual_memory_create_and_release_are_alloc_and_free_of_the_handle);
        RUN(other_calls_and_missing_data_give_nothing);
    }
    CHECK_DONE();
}
