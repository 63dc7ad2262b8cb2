/* probe.c — the gate's free-memory probes: the CUDA driver, loaded at run
 * time so that warmcal-gate builds, links and runs where there is none, and
 * the simulated probe that reads WARMCAL_SIM_FREE_BYTES. Nothing here prints:
 * every failure becomes a warmcal_error with a text a server can log. */
#define _POSIX_C_SOURCE 200809L
#include "probe.h"

#include "warmcal/units.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The real header's types when the toolkit is installed; otherwise the same
 * ABI spelled out (CUresult is a C enum, an int; CUdevice an int; a context
 * an opaque pointer). Only the driver's exported symbols are ever used. */
#ifdef WARMCAL_HAVE_CUDA_H
#include <cuda.h>
#else
typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
#define CUDA_SUCCESS 0
#endif
#ifndef CUDAAPI
#define CUDAAPI
#endif

typedef CUresult(CUDAAPI *cu_init_fn)(unsigned int flags);
typedef CUresult(CUDAAPI *cu_ctx_get_current_fn)(CUcontext *ctx);
typedef CUresult(CUDAAPI *cu_ctx_get_device_fn)(CUdevice *dev);
typedef CUresult(CUDAAPI *cu_device_get_name_fn)(char *name, int len, CUdevice dev);
typedef CUresult(CUDAAPI *cu_mem_get_info_fn)(size_t *free_bytes, size_t *total_bytes);
/* the unversioned cuMemGetInfo is the pre-CUDA-3.2 ABI, 32-bit sizes; cuda.h
 * maps the name to cuMemGetInfo_v2, but dlsym sees the real symbols */
typedef CUresult(CUDAAPI *cu_mem_get_info_v1_fn)(unsigned int *free_bytes, unsigned int *total_bytes);
typedef CUresult(CUDAAPI *cu_get_error_name_fn)(CUresult error, const char **text);

#define DRIVER_SONAME "libcuda.so.1"

/* Loaded once per process (pthread_once) and never unloaded: a driver that
 * was missing at the first probe does not appear later, and unloading
 * libcuda under a framework that also uses it is never safe. */
static struct {
    void *handle;
    cu_init_fn init;
    cu_ctx_get_current_fn ctx_get_current;
    cu_ctx_get_device_fn ctx_get_device;
    cu_device_get_name_fn device_get_name;
    cu_mem_get_info_fn mem_get_info;       /* cuMemGetInfo_v2, or NULL */
    cu_mem_get_info_v1_fn mem_get_info_v1; /* cuMemGetInfo, only without _v2 */
    cu_get_error_name_fn get_error_name; /* optional */
    char failure[WARMCAL_ERROR_TEXT_LEN]; /* why loading failed, "" when loaded */
} driver;

static pthread_once_t driver_once = PTHREAD_ONCE_INIT;

static void *symbol(const char *name)
{
    return dlsym(driver.handle, name);
}

static void load_driver(void)
{
    driver.handle = dlopen(DRIVER_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!driver.handle) {
        const char *why = dlerror();
        snprintf(driver.failure, sizeof driver.failure,
                 "cannot load " DRIVER_SONAME " (no NVIDIA driver here?): %s; use a value, a "
                 "callback or WARMCAL_SIM_FREE_BYTES",
                 why ? why : "unknown dlopen error");
        return;
    }
    /* a function pointer from dlsym's void *: POSIX guarantees it works */
    driver.init = (cu_init_fn)symbol("cuInit");
    driver.ctx_get_current = (cu_ctx_get_current_fn)symbol("cuCtxGetCurrent");
    driver.ctx_get_device = (cu_ctx_get_device_fn)symbol("cuCtxGetDevice");
    driver.device_get_name = (cu_device_get_name_fn)symbol("cuDeviceGetName");
    driver.mem_get_info = (cu_mem_get_info_fn)symbol("cuMemGetInfo_v2");
    if (!driver.mem_get_info) /* drivers older than CUDA 3.2 export only this one */
        driver.mem_get_info_v1 = (cu_mem_get_info_v1_fn)symbol("cuMemGetInfo");
    driver.get_error_name = (cu_get_error_name_fn)symbol("cuGetErrorName");
    const char *missing = !driver.init              ? "cuInit"
                          : !driver.ctx_get_current ? "cuCtxGetCurrent"
                          : !driver.ctx_get_device  ? "cuCtxGetDevice"
                          : !driver.device_get_name ? "cuDeviceGetName"
                          : !driver.mem_get_info && !driver.mem_get_info_v1
                              ? "cuMemGetInfo_v2 or cuMemGetInfo"
                              : NULL;
    if (missing)
        snprintf(driver.failure, sizeof driver.failure,
                 DRIVER_SONAME " was loaded but exports no %s (a driver too old or not "
                 "NVIDIA's?); use a value, a callback or WARMCAL_SIM_FREE_BYTES",
                 missing);
}

/* Name a failed driver call and its CUresult, and return the error code. */
static int call_failed(warmcal_error *err, const char *function, CUresult rc)
{
    const char *name = NULL;
    if (driver.get_error_name && driver.get_error_name(rc, &name) != CUDA_SUCCESS)
        name = NULL;
    if (name)
        return warmcal_error_set(err, WARMCAL_E_UNSUPPORTED, NULL, NULL,
                                 "CUDA driver call %s failed: %s (%d)", function, name, (int)rc);
    return warmcal_error_set(err, WARMCAL_E_UNSUPPORTED, NULL, NULL,
                             "CUDA driver call %s failed: CUresult %d", function, (int)rc);
}

int warmcal__probe_cuda(uint64_t *free_bytes, uint64_t *total_bytes, char *name, size_t name_len,
                        warmcal_error *err)
{
    if (!free_bytes)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "CUDA probe: no place for the free bytes");
    if (name && name_len)
        name[0] = '\0';
    pthread_once(&driver_once, load_driver);
    if (driver.failure[0])
        return warmcal_error_set(err, WARMCAL_E_UNSUPPORTED, NULL, NULL, "%s", driver.failure);

    CUresult rc = driver.init(0);
    if (rc != CUDA_SUCCESS)
        return call_failed(err, "cuInit", rc);
    CUcontext ctx = NULL;
    rc = driver.ctx_get_current(&ctx);
    if (rc != CUDA_SUCCESS)
        return call_failed(err, "cuCtxGetCurrent", rc);
    /* the gate never creates a context: one made here would hold hundreds
     * of MiB on the device that the framework then could not use */
    if (!ctx)
        return warmcal_error_set(err, WARMCAL_E_UNSUPPORTED, NULL, NULL,
                                 "no current CUDA context on this thread: probe after the "
                                 "framework has initialised CUDA (or pass the free memory "
                                 "yourself)");
    size_t free_now = 0, total = 0;
    if (driver.mem_get_info) {
        rc = driver.mem_get_info(&free_now, &total);
        if (rc != CUDA_SUCCESS)
            return call_failed(err, "cuMemGetInfo_v2", rc);
    } else {
        unsigned int free32 = 0, total32 = 0;
        rc = driver.mem_get_info_v1(&free32, &total32);
        if (rc != CUDA_SUCCESS)
            return call_failed(err, "cuMemGetInfo", rc);
        free_now = free32;
        total = total32;
    }
    if (name && name_len) {
        CUdevice dev = 0;
        rc = driver.ctx_get_device(&dev);
        if (rc != CUDA_SUCCESS)
            return call_failed(err, "cuCtxGetDevice", rc);
        int len = name_len > INT_MAX ? INT_MAX : (int)name_len;
        rc = driver.device_get_name(name, len, dev);
        if (rc != CUDA_SUCCESS) {
            name[0] = '\0';
            return call_failed(err, "cuDeviceGetName", rc);
        }
        name[name_len - 1] = '\0';
    }
    *free_bytes = free_now;
    if (total_bytes)
        *total_bytes = total;
    return WARMCAL_OK;
}

int warmcal__probe_simulated(uint64_t *free_bytes, warmcal_error *err)
{
    if (!free_bytes)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "simulated probe: no place for the free bytes");
    const char *text = getenv("WARMCAL_SIM_FREE_BYTES");
    if (!text)
        return warmcal_error_set(err, WARMCAL_E_UNSUPPORTED, NULL, "WARMCAL_SIM_FREE_BYTES",
                                 "not set: the simulated probe reads this rank's free device "
                                 "memory from it (bytes, units allowed: 70GiB)");
    return warmcal_parse_bytes(text, free_bytes, "WARMCAL_SIM_FREE_BYTES", err);
}
