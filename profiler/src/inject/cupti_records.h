/* cupti_records.h — CUPTI activity records and driver-API callbacks turned
 * into spool events. Pure functions over the real CUPTI 13 structs (no
 * state, no CUPTI or driver calls), so that tests and the bench feed them
 * records built by hand. Internal to libwarmcal-inject.so. */
#ifndef WARMCAL_CUPTI_RECORDS_H
#define WARMCAL_CUPTI_RECORDS_H

#include <stdint.h>
#include <cupti.h>
#include "warmcal/spool.h"

/* What a record or callback means for the profiler. */
typedef enum {
    WARMCAL__PARSED_NONE = 0,  /* nothing to record: another kind, a success we learn from records, ... */
    WARMCAL__PARSED_EVENT = 1, /* .event is filled */
    WARMCAL__PARSED_POOL = 2   /* .pool is filled */
} warmcal__parsed_type;

/* The device an event belongs to, when it is not a device ordinal. */
#define WARMCAL__DEVICE_UNKNOWN UINT32_MAX       /* the record does not say: the current context's */
#define WARMCAL__DEVICE_HOST (UINT32_MAX - 1u)   /* pinned host memory: not bound to one device */

typedef struct {
    int type;            /* a warmcal__parsed_type */
    uint32_t device;     /* device ordinal, or WARMCAL__DEVICE_UNKNOWN / _HOST */
    warmcal_spool_event event;
    warmcal_spool_pool pool;
    int event_has_pool;  /* an EVENT from a local pool: .pool holds the pool's size after it */
} warmcal__parsed;

/* Parse one activity record (CUPTI_ACTIVITY_KIND_MEMORY2 as
 * CUpti_ActivityMemory4, CUPTI_ACTIVITY_KIND_MEMORY_POOL as
 * CUpti_ActivityMemoryPool3). Allocation -> WARMCAL_EV_ALLOC, release ->
 * WARMCAL_EV_FREE, with the memory kind: device, array and static device
 * memory -> DEVICE, memory from a stream-ordered pool -> POOL, managed ->
 * MANAGED, pinned -> PINNED_HOST (device WARMCAL__DEVICE_HOST). Pageable
 * and unknown memory, and other record kinds, give WARMCAL__PARSED_NONE.
 * A block from a local stream-ordered pool also fills .pool with the pool's
 * size as the record gives it (event_has_pool): CUPTI writes pool records
 * only when a pool is created, trimmed or destroyed, so a pool's growth is
 * seen only there. A pool record gives the pool's reserved size after the
 * operation (0 once destroyed). Returns out->type. rec and out must not be NULL. */
int warmcal__cupti_parse_activity(const CUpti_Activity *rec, warmcal__parsed *out);

/* Parse a driver-API callback (domain CUPTI_CB_DOMAIN_DRIVER_API) at t_ns:
 * on the exit of an allocation call that failed with
 * CUDA_ERROR_OUT_OF_MEMORY, WARMCAL_EV_ALLOC_FAILED with the size asked for
 * (cuMemAlloc_v2, cuMemAllocPitch_v2, cuMemAllocAsync(_ptsz),
 * cuMemAllocFromPoolAsync(_ptsz), cuMemCreate, cuMemAllocManaged,
 * cuMemHostAlloc, cuMemAllocHost_v2); on the exit of a successful
 * cuMemCreate, WARMCAL_EV_ALLOC of the physical size at address = the
 * handle's value, kind VIRTUAL (PINNED_HOST for a host location); on the
 * exit of a successful cuMemRelease, WARMCAL_EV_FREE of that handle.
 * Device: cuMemCreate's location when on a device, else UNKNOWN (the
 * caller asks the current context) or HOST. Anything else, and entry
 * sites, give WARMCAL__PARSED_NONE. Returns out->type. */
int warmcal__cupti_parse_callback(CUpti_CallbackId cbid, const CUpti_CallbackData *cb,
                                  uint64_t t_ns, warmcal__parsed *out);

/* The driver-API callback ids warmcal__cupti_parse_callback understands, for
 * the caller to enable one by one; *count receives their number. */
const CUpti_CallbackId *warmcal__cupti_callback_ids(size_t *count);

#endif
