/* fake_cuda.c — a scripted stand-in for the NVIDIA driver, built as
 * libcuda.so.1 in its own folder: tests put that folder first on
 * LD_LIBRARY_PATH and the gate's probe dlopens this instead of a driver.
 * It exports the few entry points the probe uses, with the real signatures,
 * and takes its behaviour from the environment, read at every call:
 *   FAKE_CUDA_FREE, FAKE_CUDA_TOTAL   bytes (plain integers; 70 and 80 GiB by default)
 *   FAKE_CUDA_NAME                    the device name ("Fake CUDA device")
 *   FAKE_CUDA_NO_CONTEXT=1            cuCtxGetCurrent succeeds with no context
 *   FAKE_CUDA_FAIL=NAME               that call fails ("cuMemGetInfo" matches _v2)
 *   FAKE_CUDA_FAIL_CODE=N             with this CUresult (201, CUDA_ERROR_INVALID_CONTEXT) */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#ifdef WARMCAL_HAVE_CUDA_H
#include <cuda.h>
#else
typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_VALUE 1
#endif
#ifndef CUDAAPI
#define CUDAAPI
#endif

/* Tests look this up to make sure the fake, not a real driver, was loaded. */
const char warmcal_fake_cuda[] = "warmcal fake libcuda.so.1";

/* Any non-NULL pointer serves: the probe only compares it with NULL. */
static char fake_context;

static unsigned long long env_u64(const char *name, unsigned long long fallback)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 10) : fallback;
}

/* The scripted failure for `function`, or CUDA_SUCCESS. A script naming a
 * prefix ("cuMemGetInfo") fails the versioned entry point too. */
static CUresult scripted(const char *function)
{
    const char *fail = getenv("FAKE_CUDA_FAIL");
    if (!fail || !*fail || strncmp(function, fail, strlen(fail)) != 0)
        return CUDA_SUCCESS;
    return (CUresult)env_u64("FAKE_CUDA_FAIL_CODE", 201);
}

CUresult CUDAAPI cuInit(unsigned int flags)
{
    if (flags != 0)
        return CUDA_ERROR_INVALID_VALUE;
    return scripted("cuInit");
}

CUresult CUDAAPI cuCtxGetCurrent(CUcontext *pctx)
{
    if (!pctx)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = scripted("cuCtxGetCurrent");
    if (rc != CUDA_SUCCESS)
        return rc;
    const char *none = getenv("FAKE_CUDA_NO_CONTEXT");
    *pctx = none && strcmp(none, "1") == 0 ? NULL : (CUcontext)(void *)&fake_context;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuCtxGetDevice(CUdevice *device)
{
    if (!device)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = scripted("cuCtxGetDevice");
    if (rc == CUDA_SUCCESS)
        *device = 0;
    return rc;
}

CUresult CUDAAPI cuDeviceGetName(char *name, int len, CUdevice dev)
{
    if (!name || len <= 0 || dev != 0)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = scripted("cuDeviceGetName");
    if (rc != CUDA_SUCCESS)
        return rc;
    const char *v = getenv("FAKE_CUDA_NAME");
    const char *text = v ? v : "Fake CUDA device";
    /* like the driver: as much as fits, always terminated */
    size_t n = strlen(text), cap = (size_t)len - 1;
    if (n > cap)
        n = cap;
    memcpy(name, text, n);
    name[n] = '\0';
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuMemGetInfo_v2(size_t *free_bytes, size_t *total_bytes)
{
    if (!free_bytes || !total_bytes)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult rc = scripted("cuMemGetInfo_v2");
    if (rc != CUDA_SUCCESS)
        return rc;
    *free_bytes = (size_t)env_u64("FAKE_CUDA_FREE", 70ull << 30);
    *total_bytes = (size_t)env_u64("FAKE_CUDA_TOTAL", 80ull << 30);
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGetErrorName(CUresult error, const char **pstr)
{
    if (!pstr)
        return CUDA_ERROR_INVALID_VALUE;
    switch ((int)error) {
    case 0: *pstr = "CUDA_SUCCESS"; break;
    case 1: *pstr = "CUDA_ERROR_INVALID_VALUE"; break;
    case 3: *pstr = "CUDA_ERROR_NOT_INITIALIZED"; break;
    case 100: *pstr = "CUDA_ERROR_NO_DEVICE"; break;
    case 201: *pstr = "CUDA_ERROR_INVALID_CONTEXT"; break;
    default: *pstr = NULL; return CUDA_ERROR_INVALID_VALUE; /* as the driver does */
    }
    return CUDA_SUCCESS;
}
