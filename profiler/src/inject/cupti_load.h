/* cupti_load.h — libcupti and the driver's functions, found at run time.
 * The injected library links neither: libcupti is dlopen()ed from the
 * toolkit's usual places, the driver is the libcuda.so.1 already loaded by
 * the process that called InitializeInjection. Internal. */
#ifndef WARMCAL_CUPTI_LOAD_H
#define WARMCAL_CUPTI_LOAD_H

#include <stddef.h>
#include <cupti.h>

/* cuptiSubscribe_v2 and its CUpti_SubscriberParams (a subscriber name, and
 * the name of the tool that holds CUPTI when subscribing fails) came with
 * CUDA 12.6's headers; older headers have only cuptiSubscribe. */
#ifdef CUpti_SubscriberParams_STRUCT_SIZE
#define WARMCAL__HAVE_SUBSCRIBE_V2 1
#endif

/* The oldest libcupti whose activity records have the layouts this library
 * reads (CUpti_ActivityMemory4, CUpti_ActivityMemoryPool3, as the headers
 * it is built with define them): the first release of the headers' CUDA
 * major version. cuptiGetVersion says "xxyyzz" from CUDA 13.0 on (130000:
 * 13.0, 130001: 13.0 Update 1) and a small number before (CUDA 12.x:
 * 19..28). A later release keeps the records' layout within a major
 * version (new fields go into new structs), and CUDA 12's CUPTI lays out
 * MEMORY_POOL records differently (CUpti_ActivityMemoryPool2): read as
 * ours they would give wrong sizes with no error. */
#if !defined(CUPTI_API_VERSION) || CUPTI_API_VERSION < 130000
#error "the CUPTI headers of CUDA 13 or later are needed (cupti_version.h: CUPTI_API_VERSION 130000 or more)"
#endif
#define WARMCAL__CUPTI_MIN_VERSION ((uint32_t)(CUPTI_API_VERSION / 10000) * 10000u)

/* The CUPTI functions the profiler calls. All are required except
 * get_result_string (used for messages only), activity_flush_period and
 * subscribe_v2 (NULL when this libcupti lacks them: callers go without). */
typedef struct {
    void *handle;
    char path[4096]; /* the file that was loaded (dlinfo's, or the name given to dlopen) */
    uint32_t version; /* cuptiGetVersion's, at least WARMCAL__CUPTI_MIN_VERSION */
    CUptiResult (*get_version)(uint32_t *version);
    CUptiResult (*get_timestamp)(uint64_t *timestamp);
    CUptiResult (*activity_enable)(CUpti_ActivityKind kind);
    CUptiResult (*activity_disable)(CUpti_ActivityKind kind);
    CUptiResult (*activity_register_callbacks)(CUpti_BuffersCallbackRequestFunc requested,
                                               CUpti_BuffersCallbackCompleteFunc completed);
    CUptiResult (*activity_get_next_record)(uint8_t *buffer, size_t valid, CUpti_Activity **record);
    CUptiResult (*activity_get_num_dropped_records)(CUcontext ctx, uint32_t stream, size_t *dropped);
    CUptiResult (*activity_flush_all)(uint32_t flag);
    CUptiResult (*subscribe)(CUpti_SubscriberHandle *sub, CUpti_CallbackFunc cb, void *user);
    CUptiResult (*unsubscribe)(CUpti_SubscriberHandle sub);
    CUptiResult (*enable_callback)(uint32_t enable, CUpti_SubscriberHandle sub, CUpti_CallbackDomain domain,
                                   CUpti_CallbackId cbid);
    CUptiResult (*get_result_string)(CUptiResult result, const char **str);
    CUptiResult (*activity_flush_period)(uint32_t ms);
#ifdef WARMCAL__HAVE_SUBSCRIBE_V2
    CUptiResult (*subscribe_v2)(CUpti_SubscriberHandle *sub, CUpti_CallbackFunc cb, void *user,
                                CUpti_SubscriberParams *params);
#endif
} warmcal__cupti_api;

/* Load libcupti, never a second copy into a process that has one: CUPTI
 * keeps process-wide state (one subscriber, one set of activity buffers),
 * and PyTorch's pip wheels bring their own libcupti. In order:
 * WARMCAL_CUPTI_LIB when set (then that file only; refused when a different
 * libcupti is already loaded); a libcupti already loaded in the process
 * (any object whose file name starts with "libcupti.so", reused with
 * RTLD_NOLOAD); the loader's own search for libcupti.so.13 and
 * libcupti.so; then libcupti.so(.13) in $CUDA_HOME/extras/CUPTI/lib64,
 * $CUDA_HOME/lib64, $CUDA_HOME/lib and the same under /usr/local/cuda.
 * Resolves every function and asks cuptiGetVersion: a libcupti older than
 * WARMCAL__CUPTI_MIN_VERSION (a CUDA 12 one, as PyTorch's cu12 wheels
 * bring) is refused, its records being laid out otherwise. Returns 0, or
 * -1 with msg (len bytes) naming where it looked, what was missing, the
 * two copies, or the library's version and the one needed. */
int warmcal__cupti_load(warmcal__cupti_api *api, char *msg, size_t len);

/* A CUPTI result as text ("CUPTI_ERROR_NOT_INITIALIZED" or "CUPTI error 15"). */
const char *warmcal__cupti_error(const warmcal__cupti_api *api, CUptiResult rc, char *buf, size_t len);

/* The driver functions the profiler calls, from the loaded libcuda.so.1.
 * Any may be NULL (a driver without it): callers then go without. */
typedef struct {
    void *handle;
    CUresult (*mem_get_info)(size_t *free_bytes, size_t *total_bytes);       /* cuMemGetInfo_v2 */
    CUresult (*ctx_get_current)(CUcontext *ctx);                            /* cuCtxGetCurrent */
    CUresult (*ctx_get_device)(CUdevice *device);                           /* cuCtxGetDevice */
    CUresult (*device_get)(CUdevice *device, int ordinal);                  /* cuDeviceGet */
    CUresult (*device_get_name)(char *name, int len, CUdevice device);      /* cuDeviceGetName */
    CUresult (*device_total_mem)(size_t *bytes, CUdevice device);           /* cuDeviceTotalMem_v2 */
    CUresult (*driver_get_version)(int *version);                           /* cuDriverGetVersion */
} warmcal__driver_api;

/* Resolve the driver functions from the libcuda.so.1 already in the
 * process (RTLD_NOLOAD: never loads a driver itself). Returns 0, or -1
 * with msg when no driver is loaded. */
int warmcal__driver_load(warmcal__driver_api *api, char *msg, size_t len);

#endif
