/* warmcal/simdev.h — a simulated GPU: total memory, allocation granularity,
 * OOM when an allocation does not fit, a free-memory query. It is the twin
 * of the CUPTI source that runs without a GPU: it feeds the same recorder,
 * with the same events, so everything above it is the code production uses. */
#ifndef WARMCAL_SIMDEV_H
#define WARMCAL_SIMDEV_H

#include <stdint.h>
#include "warmcal/error.h"
#include "warmcal/recorder.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WARMCAL_SIMDEV_DEFAULT_GRANULARITY (2ull << 20)

typedef struct {
    uint64_t total_bytes;  /* device memory; required, > 0 */
    uint64_t granularity;  /* every device allocation is rounded up to this; 0: 2 MiB */
} warmcal_simdev_options;

typedef struct warmcal_simdev warmcal_simdev;

/* Create a device. rec, when not NULL, receives every event (it is borrowed:
 * it must outlive the device). *out is owned by the caller; release with
 * warmcal_simdev_close. Errors: WARMCAL_E_INVAL, WARMCAL_E_NOMEM. */
WARMCAL_API int warmcal_simdev_open(warmcal_simdev **out, const warmcal_simdev_options *opts,
                                    warmcal_recorder *rec, warmcal_error *err);

/* Allocate `bytes` (rounded up to the granularity for device kinds) and
 * return its address. When it does not fit, the failure is recorded with
 * the size asked for and WARMCAL_E_OOM is returned. Pinned host memory never
 * uses device memory. */
WARMCAL_API int warmcal_simdev_alloc(warmcal_simdev *d, uint64_t bytes, warmcal_mem_kind kind,
                                     uint64_t *address, warmcal_error *err);

/* Free a block from warmcal_simdev_alloc. An unknown address is
 * WARMCAL_E_INVAL and changes nothing. */
WARMCAL_API int warmcal_simdev_free(warmcal_simdev *d, uint64_t address, warmcal_error *err);

/* Take memory that no allocation API reports (CUDA context, library
 * workspaces, other processes on the same GPU): it lowers free memory but
 * produces no allocation event. WARMCAL_E_OOM when it does not fit. */
WARMCAL_API int warmcal_simdev_reserve_hidden(warmcal_simdev *d, uint64_t bytes, warmcal_error *err);

/* Device free memory now, as cuMemGetInfo would report it. */
WARMCAL_API uint64_t warmcal_simdev_free_bytes(const warmcal_simdev *d);
WARMCAL_API uint64_t warmcal_simdev_total_bytes(const warmcal_simdev *d);

/* Report free memory to the recorder (a device-free sample event). */
WARMCAL_API int warmcal_simdev_sample(warmcal_simdev *d, warmcal_error *err);

/* Release the device and its bookkeeping (not an event stream: blocks still
 * allocated produce no free events). NULL is allowed. */
WARMCAL_API void warmcal_simdev_close(warmcal_simdev *d);

#ifdef __cplusplus
}
#endif
#endif
