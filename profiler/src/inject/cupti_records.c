/* cupti_records.c — what a CUPTI memory record or driver-API callback means
 * as a spool event. Pure: no state, no calls into CUPTI or the driver, so
 * the unit tests and tools/bench/inject.c run it on records built by hand. */
#include "cupti_records.h"

#include <string.h>

static void clear(warmcal__parsed *out)
{
    memset(out, 0, sizeof *out);
    out->type = WARMCAL__PARSED_NONE;
    out->device = WARMCAL__DEVICE_UNKNOWN;
}

static int set_event(warmcal__parsed *out, uint32_t device, uint64_t t_ns, uint8_t kind,
                     uint8_t mem_kind, uint64_t bytes, uint64_t address)
{
    out->type = WARMCAL__PARSED_EVENT;
    out->device = mem_kind == WARMCAL_MEM_PINNED_HOST ? WARMCAL__DEVICE_HOST : device;
    out->event.time_ns = t_ns;
    out->event.kind = kind;
    out->event.mem_kind = mem_kind;
    out->event.bytes = bytes;
    out->event.address = address;
    return out->type;
}

/* The warmcal kind of a CUPTI memory kind, or -1 for memory that is not the
 * device's nor pinned (pageable host memory, unknown). */
static int mem_kind_of(const CUpti_ActivityMemory4 *m)
{
    int pooled = m->memoryPoolConfig.memoryPoolType != CUPTI_ACTIVITY_MEMORY_POOL_TYPE_INVALID;
    switch (m->memoryKind) {
    case CUPTI_ACTIVITY_MEMORY_KIND_DEVICE:
    case CUPTI_ACTIVITY_MEMORY_KIND_ARRAY:
    case CUPTI_ACTIVITY_MEMORY_KIND_DEVICE_STATIC:
        return pooled ? WARMCAL_MEM_POOL : WARMCAL_MEM_DEVICE;
    case CUPTI_ACTIVITY_MEMORY_KIND_MANAGED:
    case CUPTI_ACTIVITY_MEMORY_KIND_MANAGED_STATIC:
        /* a managed pool's blocks are still managed memory: the kind says
         * where the bytes live, the pool only how they were obtained */
        return WARMCAL_MEM_MANAGED;
    case CUPTI_ACTIVITY_MEMORY_KIND_PINNED:
        return WARMCAL_MEM_PINNED_HOST;
    default:
        return -1;
    }
}

static int parse_memory(const CUpti_ActivityMemory4 *m, warmcal__parsed *out)
{
    uint8_t kind;
    if (m->memoryOperationType == CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION)
        kind = WARMCAL_EV_ALLOC;
    else if (m->memoryOperationType == CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_RELEASE)
        kind = WARMCAL_EV_FREE;
    else
        return out->type;
    int mem_kind = mem_kind_of(m);
    if (mem_kind < 0)
        return out->type;
    if (m->memoryPoolConfig.memoryPoolType == CUPTI_ACTIVITY_MEMORY_POOL_TYPE_LOCAL) {
        /* pool records come only at create/trim/destroy: growth shows here */
        out->event_has_pool = 1;
        out->pool.time_ns = m->timestamp;
        out->pool.pool = m->memoryPoolConfig.address;
        out->pool.reserved_bytes = m->memoryPoolConfig.pool.size;
        out->pool.used_bytes = m->memoryPoolConfig.utilizedSize;
    }
    return set_event(out, m->deviceId, m->timestamp, kind, (uint8_t)mem_kind, m->bytes, m->address);
}

static int parse_pool(const CUpti_ActivityMemoryPool3 *p, warmcal__parsed *out)
{
    uint64_t reserved;
    switch (p->memoryPoolOperationType) {
    case CUPTI_ACTIVITY_MEMORY_POOL_OPERATION_TYPE_CREATED:
    case CUPTI_ACTIVITY_MEMORY_POOL_OPERATION_TYPE_TRIMMED:
        reserved = p->size;
        break;
    case CUPTI_ACTIVITY_MEMORY_POOL_OPERATION_TYPE_DESTROYED:
        reserved = 0;
        break;
    default:
        return out->type;
    }
    out->type = WARMCAL__PARSED_POOL;
    out->device = p->deviceId;
    out->pool.time_ns = p->timestamp;
    out->pool.pool = p->address;
    out->pool.reserved_bytes = reserved;
    out->pool.used_bytes = reserved ? p->utilizedSize : 0;
    return out->type;
}

int warmcal__cupti_parse_activity(const CUpti_Activity *rec, warmcal__parsed *out)
{
    clear(out);
    switch (rec->kind) {
    case CUPTI_ACTIVITY_KIND_MEMORY2:
        return parse_memory((const CUpti_ActivityMemory4 *)(const void *)rec, out);
    case CUPTI_ACTIVITY_KIND_MEMORY_POOL:
        return parse_pool((const CUpti_ActivityMemoryPool3 *)(const void *)rec, out);
    default:
        return out->type;
    }
}

static const CUpti_CallbackId callback_ids[] = {
    CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2,
    CUPTI_DRIVER_TRACE_CBID_cuMemAllocPitch_v2,
    CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync,
    CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync,
    CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync_ptsz,
    CUPTI_DRIVER_TRACE_CBID_cuMemCreate,
    CUPTI_DRIVER_TRACE_CBID_cuMemRelease,
    CUPTI_DRIVER_TRACE_CBID_cuMemAllocManaged,
    CUPTI_DRIVER_TRACE_CBID_cuMemHostAlloc,
    CUPTI_DRIVER_TRACE_CBID_cuMemAllocHost_v2,
};

const CUpti_CallbackId *warmcal__cupti_callback_ids(size_t *count)
{
    *count = sizeof callback_ids / sizeof callback_ids[0];
    return callback_ids;
}

static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    return b && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

static int is_host_location(CUmemLocationType t)
{
    return t == CU_MEM_LOCATION_TYPE_HOST || t == CU_MEM_LOCATION_TYPE_HOST_NUMA ||
           t == CU_MEM_LOCATION_TYPE_HOST_NUMA_CURRENT;
}

int warmcal__cupti_parse_callback(CUpti_CallbackId cbid, const CUpti_CallbackData *cb,
                                  uint64_t t_ns, warmcal__parsed *out)
{
    clear(out);
    if (!cb || cb->callbackSite != CUPTI_API_EXIT || !cb->functionParams || !cb->functionReturnValue)
        return out->type;
    CUresult rc = *(const CUresult *)cb->functionReturnValue;
    const void *params = cb->functionParams;

    if (cbid == CUPTI_DRIVER_TRACE_CBID_cuMemCreate) {
        const cuMemCreate_params *p = params;
        uint32_t device = WARMCAL__DEVICE_UNKNOWN;
        uint8_t mem_kind = WARMCAL_MEM_VIRTUAL;
        if (p->prop && p->prop->location.type == CU_MEM_LOCATION_TYPE_DEVICE && p->prop->location.id >= 0)
            device = (uint32_t)p->prop->location.id;
        else if (p->prop && is_host_location(p->prop->location.type))
            mem_kind = WARMCAL_MEM_PINNED_HOST;
        if (rc == CUDA_SUCCESS && p->handle)
            return set_event(out, device, t_ns, WARMCAL_EV_ALLOC, mem_kind, p->size, (uint64_t)*p->handle);
        if (rc == CUDA_ERROR_OUT_OF_MEMORY)
            return set_event(out, device, t_ns, WARMCAL_EV_ALLOC_FAILED, mem_kind, p->size, 0);
        return out->type;
    }
    if (cbid == CUPTI_DRIVER_TRACE_CBID_cuMemRelease) {
        const cuMemRelease_params *p = params;
        /* the handle's device is not in the call: the caller does not filter frees */
        if (rc == CUDA_SUCCESS)
            return set_event(out, WARMCAL__DEVICE_UNKNOWN, t_ns, WARMCAL_EV_FREE, WARMCAL_MEM_VIRTUAL, 0,
                             (uint64_t)p->handle);
        return out->type;
    }
    /* successful allocations below come as activity records; only failures need the call */
    if (rc != CUDA_ERROR_OUT_OF_MEMORY)
        return out->type;
    uint64_t bytes;
    uint8_t mem_kind;
    switch (cbid) {
    case CUPTI_DRIVER_TRACE_CBID_cuMemAlloc_v2:
        bytes = ((const cuMemAlloc_v2_params *)params)->bytesize;
        mem_kind = WARMCAL_MEM_DEVICE;
        break;
    case CUPTI_DRIVER_TRACE_CBID_cuMemAllocPitch_v2: {
        const cuMemAllocPitch_v2_params *p = params;
        bytes = mul_sat(p->WidthInBytes, p->Height);
        mem_kind = WARMCAL_MEM_DEVICE;
        break;
    }
    case CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync:
    case CUPTI_DRIVER_TRACE_CBID_cuMemAllocAsync_ptsz:
        /* the _ptsz variants take the same parameters */
        bytes = ((const cuMemAllocAsync_params *)params)->bytesize;
        mem_kind = WARMCAL_MEM_POOL;
        break;
    case CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync:
    case CUPTI_DRIVER_TRACE_CBID_cuMemAllocFromPoolAsync_ptsz:
        bytes = ((const cuMemAllocFromPoolAsync_params *)params)->bytesize;
        mem_kind = WARMCAL_MEM_POOL;
        break;
    case CUPTI_DRIVER_TRACE_CBID_cuMemAllocManaged:
        bytes = ((const cuMemAllocManaged_params *)params)->bytesize;
        mem_kind = WARMCAL_MEM_MANAGED;
        break;
    case CUPTI_DRIVER_TRACE_CBID_cuMemHostAlloc:
        bytes = ((const cuMemHostAlloc_params *)params)->bytesize;
        mem_kind = WARMCAL_MEM_PINNED_HOST;
        break;
    case CUPTI_DRIVER_TRACE_CBID_cuMemAllocHost_v2:
        bytes = ((const cuMemAllocHost_v2_params *)params)->bytesize;
        mem_kind = WARMCAL_MEM_PINNED_HOST;
        break;
    default:
        return out->type;
    }
    return set_event(out, WARMCAL__DEVICE_UNKNOWN, t_ns, WARMCAL_EV_ALLOC_FAILED, mem_kind, bytes, 0);
}
