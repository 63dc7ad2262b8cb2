/* fake_tracer.h — the private link between the test fakes: the fake driver
 * (libcuda.so.1) reports every API call and every memory operation to one
 * registered tracer, the fake CUPTI (libcupti.so), which turns them into
 * driver-API callbacks and activity records as the real CUPTI would.
 *
 * The fake CUPTI is loaded after the driver (by the injection library, with
 * dlopen), so it finds the driver with dlopen("libcuda.so.1", RTLD_NOLOAD)
 * and dlsym(FAKE_TRACER_REGISTER_SYMBOL). Nothing else uses this header. */
#ifndef WARMCAL_FAKE_TRACER_H
#define WARMCAL_FAKE_TRACER_H

#include <stdint.h>
#include <cuda.h>

#define FAKE_TRACER_VERSION 1
#define FAKE_TRACER_REGISTER_SYMBOL "fake_cuda_register_tracer"

/* Where a block lives, as the driver knows it. */
typedef enum {
    FAKE_MEM_DEVICE = 1,  /* cuMemAlloc */
    FAKE_MEM_POOL = 2,    /* cuMemAllocAsync from the device's default pool */
    FAKE_MEM_VIRTUAL = 3, /* cuMemCreate physical allocation (address = the handle) */
    FAKE_MEM_MANAGED = 4, /* cuMemAllocManaged */
    FAKE_MEM_PINNED = 5   /* cuMemHostAlloc: host memory, no device bytes */
} fake_mem_kind;

typedef enum {
    FAKE_OP_ALLOC = 1,
    FAKE_OP_FREE = 2,
    FAKE_OP_POOL_CREATED = 3, /* the device's default pool came into use */
    FAKE_OP_POOL_TRIMMED = 4  /* the pool gave reserved memory back */
} fake_mem_op_kind;

/* One successful memory operation (failed ones are seen only through the
 * API exit callback, as with the real CUPTI). */
typedef struct {
    int op;                 /* a fake_mem_op_kind */
    int kind;               /* a fake_mem_kind (ALLOC/FREE) */
    uint64_t time_ns;       /* CLOCK_MONOTONIC, taken when the driver did it */
    uint64_t address;       /* device/host address, or the cuMemCreate handle */
    uint64_t bytes;         /* the size asked for (FREE: the block's size) */
    int device;
    uint32_t context_id;    /* 1, 2, ... per context */
    uint32_t stream_id;     /* 0 when no stream is involved */
    uint32_t correlation_id;/* of the API call that did it */
    int is_async;           /* stream-ordered */
    /* the default pool, for POOL blocks and pool operations */
    uint64_t pool;          /* the pool's handle as an integer */
    uint64_t pool_reserved; /* the pool's reserved size after the operation */
    uint64_t pool_used;     /* bytes handed out from the pool after the operation */
    uint64_t pool_release_threshold;
} fake_mem_op;

enum { FAKE_SITE_ENTER = 0, FAKE_SITE_EXIT = 1 };

/* The tracer's callbacks. Both are called with no driver lock held, on the
 * thread that made the call; they may call the driver. */
typedef struct {
    /* Every driver API call, before (result is CUDA_SUCCESS) and after it
     * ran. cbid is the CUPTI_DRIVER_TRACE_CBID_* of the function, name its
     * exported name ("cuMemAlloc_v2"), params points at its
     * <name>_params struct from generated_cuda_meta.h. ctx is the thread's
     * current context (may be NULL). */
    void (*api)(void *user, int site, uint32_t cbid, const char *name, const void *params,
                CUresult *result, CUcontext ctx, uint32_t correlation_id);
    /* Every successful memory operation, just before the exit callback of
     * the call that made it. */
    void (*mem)(void *user, const fake_mem_op *op);
    void *user;
} fake_tracer;

/* Ask the driver about a context: its id (the one in fake_mem_op) and
 * device. Returns CUDA_SUCCESS or CUDA_ERROR_INVALID_CONTEXT. */
typedef CUresult (*fake_context_info_fn)(CUcontext ctx, uint32_t *id, int *device);

/* Register the tracer (one at a time; NULL removes it). version must be
 * FAKE_TRACER_VERSION. On success *info receives the context query. */
typedef CUresult (*fake_register_tracer_fn)(int version, const fake_tracer *tracer,
                                            fake_context_info_fn *info);

/* The driver's test hook, also exported: take (bytes > 0) or give back
 * (bytes < 0) device memory that no API call reports, as library
 * workspaces do. */
typedef CUresult (*fake_hidden_alloc_fn)(int device, long long bytes);

#endif
