/* test_probe.c — the gate's free-memory probes, one behaviour per run
 * (`test_probe CASE`): the CUDA probe against the scripted fake driver that
 * ctest puts first on LD_LIBRARY_PATH, without any driver, and against a
 * real one where there is a GPU; the simulated probe. The driver is loaded
 * once per process, so each case runs in its own. Exit 77: skipped. */
#define _POSIX_C_SOURCE 200809L
#include "probe.h"

#include "../../check.h"

#include <dlfcn.h>
#include <pthread.h>

#define SKIP 77
#define GIB (1024ull * 1024 * 1024)

/* 1 when the libcuda.so.1 that dlopen finds is the fake, 0 when it is
 * something else, -1 when there is none. */
static int which_driver(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h)
        return -1;
    int fake = dlsym(h, "warmcal_fake_cuda") != NULL;
    dlclose(h);
    return fake;
}

/* The fake must be the driver found, or these tests prove nothing. */
static int need_fake(void)
{
    int d = which_driver();
    if (d != 1)
        fprintf(stderr, "the fake libcuda.so.1 is not first on LD_LIBRARY_PATH (%s)\n",
                d < 0 ? "no libcuda.so.1 at all" : "a real driver was found");
    return d == 1;
}

/* ctest sets FAKE_CUDA_FREE=12345678901, FAKE_CUDA_TOTAL=80GiB and an H100 name. */
static void reads_free_memory_from_the_driver(void)
{
    uint64_t free_bytes = 0, total = 0;
    char name[128] = "stale";
    warmcal_error err = {0};
    CHECK(warmcal__probe_cuda(&free_bytes, &total, name, sizeof name, &err) == WARMCAL_OK);
    CHECK_EQ_U64(free_bytes, 12345678901ull);
    CHECK_EQ_U64(total, 80 * GIB);
    CHECK(strcmp(name, "NVIDIA H100 80GB HBM3") == 0);
    CHECK(err.code == 0);

    /* what the gate asks before every decision: free bytes only */
    free_bytes = 0;
    CHECK(warmcal__probe_cuda(&free_bytes, NULL, NULL, 0, &err) == WARMCAL_OK);
    CHECK_EQ_U64(free_bytes, 12345678901ull);

    /* a short buffer gets as much of the name as fits, terminated */
    char small[8];
    memset(small, 'x', sizeof small);
    CHECK(warmcal__probe_cuda(&free_bytes, NULL, small, sizeof small, &err) == WARMCAL_OK);
    CHECK(strcmp(small, "NVIDIA ") == 0);

    /* the driver is asked again each time, not cached */
    setenv("FAKE_CUDA_FREE", "1000", 1);
    CHECK(warmcal__probe_cuda(&free_bytes, &total, NULL, 0, &err) == WARMCAL_OK);
    CHECK_EQ_U64(free_bytes, 1000);

    CHECK(warmcal__probe_cuda(NULL, &total, NULL, 0, &err) == WARMCAL_E_INVAL);
}

static void says_there_is_no_driver(int *skipped)
{
    if (which_driver() >= 0) {
        fprintf(stderr, "SKIP: a libcuda.so.1 is installed here, the no-driver case cannot be shown\n");
        *skipped = 1;
        return;
    }
    for (int round = 0; round < 2; round++) { /* the failure is kept, and said again */
        uint64_t free_bytes = 42;
        char name[64] = "stale";
        warmcal_error err = {0};
        CHECK(warmcal__probe_cuda(&free_bytes, NULL, name, sizeof name, &err) ==
              WARMCAL_E_UNSUPPORTED);
        CHECK(err.code == WARMCAL_E_UNSUPPORTED);
        CHECK_STR_CONTAINS(err.text, "cannot load libcuda.so.1 (no NVIDIA driver here?): ");
        CHECK_STR_CONTAINS(err.text, "libcuda.so.1: cannot open shared object file");
        CHECK_STR_CONTAINS(err.text, "use a value, a callback or WARMCAL_SIM_FREE_BYTES");
        CHECK_EQ_U64(free_bytes, 42);
        CHECK(name[0] == '\0');
    }
}

static void says_there_is_no_context(void)
{
    uint64_t free_bytes = 42;
    warmcal_error err = {0};
    CHECK(warmcal__probe_cuda(&free_bytes, NULL, NULL, 0, &err) == WARMCAL_E_UNSUPPORTED);
    CHECK_STR_CONTAINS(err.text, "no current CUDA context on this thread: probe after the "
                                 "framework has initialised CUDA (or pass the free memory "
                                 "yourself)");
    CHECK_EQ_U64(free_bytes, 42);
}

/* ctest sets FAKE_CUDA_FAIL=cuMemGetInfo; the other calls are scripted here. */
static void names_the_failing_call(void)
{
    uint64_t free_bytes = 42;
    char name[64];
    warmcal_error err = {0};
    CHECK(warmcal__probe_cuda(&free_bytes, NULL, name, sizeof name, &err) ==
          WARMCAL_E_UNSUPPORTED);
    CHECK_STR_CONTAINS(err.text, "cuMemGetInfo_v2 failed: CUDA_ERROR_INVALID_CONTEXT (201)");
    CHECK_EQ_U64(free_bytes, 42);

    static const struct {
        const char *call, *code, *expect;
    } cases[] = {
        {"cuInit", "100", "cuInit failed: CUDA_ERROR_NO_DEVICE (100)"},
        {"cuCtxGetCurrent", "201", "cuCtxGetCurrent failed: CUDA_ERROR_INVALID_CONTEXT (201)"},
        {"cuCtxGetDevice", "3", "cuCtxGetDevice failed: CUDA_ERROR_NOT_INITIALIZED (3)"},
        {"cuDeviceGetName", "1", "cuDeviceGetName failed: CUDA_ERROR_INVALID_VALUE (1)"},
        /* a code cuGetErrorName does not know is given as a number */
        {"cuMemGetInfo", "999", "cuMemGetInfo_v2 failed: CUresult 999"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("FAKE_CUDA_FAIL", cases[i].call, 1);
        setenv("FAKE_CUDA_FAIL_CODE", cases[i].code, 1);
        warmcal_error_clear(&err);
        strcpy(name, "stale");
        CHECK(warmcal__probe_cuda(&free_bytes, NULL, name, sizeof name, &err) ==
              WARMCAL_E_UNSUPPORTED);
        CHECK_STR_CONTAINS(err.text, cases[i].expect);
        CHECK(name[0] == '\0');
    }
    /* the name is only asked for when wanted: its failure does not touch a free-only probe */
    warmcal_error_clear(&err);
    setenv("FAKE_CUDA_FAIL", "cuDeviceGetName", 1);
    CHECK(warmcal__probe_cuda(&free_bytes, NULL, NULL, 0, &err) == WARMCAL_OK);
}

#define THREADS 8

static void *probe_in_thread(void *arg)
{
    uint64_t *free_bytes = arg;
    warmcal_error err = {0};
    if (warmcal__probe_cuda(free_bytes, NULL, NULL, 0, &err) != WARMCAL_OK)
        *free_bytes = 0;
    return NULL;
}

/* Every thread's first probe races to load the driver: exactly one load. */
static void loads_the_driver_once_for_all_threads(void)
{
    pthread_t t[THREADS];
    uint64_t got[THREADS] = {0};
    for (int i = 0; i < THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, probe_in_thread, &got[i]) == 0);
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        CHECK_EQ_U64(got[i], 12345678901ull);
    }
}

/* ctest sets WARMCAL_SIM_FREE_BYTES=70GiB. */
static void simulated_reads_the_environment(void)
{
    uint64_t free_bytes = 0;
    warmcal_error err = {0};
    CHECK(warmcal__probe_simulated(&free_bytes, &err) == WARMCAL_OK);
    CHECK_EQ_U64(free_bytes, 70 * GIB);

    setenv("WARMCAL_SIM_FREE_BYTES", "123456789", 1);
    CHECK(warmcal__probe_simulated(&free_bytes, &err) == WARMCAL_OK);
    CHECK_EQ_U64(free_bytes, 123456789);

    setenv("WARMCAL_SIM_FREE_BYTES", "plenty", 1);
    CHECK(warmcal__probe_simulated(&free_bytes, &err) == WARMCAL_E_FIELD);
    CHECK(strcmp(err.where, "WARMCAL_SIM_FREE_BYTES") == 0);

    unsetenv("WARMCAL_SIM_FREE_BYTES");
    warmcal_error_clear(&err);
    CHECK(warmcal__probe_simulated(&free_bytes, &err) == WARMCAL_E_UNSUPPORTED);
    CHECK(strcmp(err.where, "WARMCAL_SIM_FREE_BYTES") == 0);
    CHECK_STR_CONTAINS(err.text, "not set");
    CHECK_EQ_U64(free_bytes, 123456789);

    CHECK(warmcal__probe_simulated(NULL, &err) == WARMCAL_E_INVAL);
}

/* On a machine with a GPU: make the primary context current, as a framework
 * would, and compare the probe with the driver's own answer. */
typedef int (*cu_int_fn)(unsigned int);
typedef int (*cu_device_get_fn)(int *, int);
typedef int (*cu_retain_fn)(void **, int);
typedef int (*cu_set_current_fn)(void *);
typedef int (*cu_release_fn)(int);

static void reads_a_real_device(int *skipped)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h || dlsym(h, "warmcal_fake_cuda")) {
        fprintf(stderr, "SKIP: no NVIDIA driver here\n");
        *skipped = 1;
        if (h)
            dlclose(h);
        return;
    }
    cu_int_fn init = (cu_int_fn)dlsym(h, "cuInit");
    cu_device_get_fn device_get = (cu_device_get_fn)dlsym(h, "cuDeviceGet");
    cu_retain_fn retain = (cu_retain_fn)dlsym(h, "cuDevicePrimaryCtxRetain");
    cu_set_current_fn set_current = (cu_set_current_fn)dlsym(h, "cuCtxSetCurrent");
    cu_release_fn release = (cu_release_fn)dlsym(h, "cuDevicePrimaryCtxRelease_v2");
    int dev = 0;
    void *ctx = NULL;
    if (!init || !device_get || !retain || !set_current || !release || init(0) != 0 ||
        device_get(&dev, 0) != 0) {
        fprintf(stderr, "SKIP: a driver but no usable device\n");
        *skipped = 1;
        dlclose(h);
        return;
    }
    uint64_t free_bytes = 0, total = 0;
    char name[128] = "";
    warmcal_error err = {0};
    /* before any context: the probe must refuse, not create one */
    CHECK(warmcal__probe_cuda(&free_bytes, &total, name, sizeof name, &err) ==
          WARMCAL_E_UNSUPPORTED);
    CHECK_STR_CONTAINS(err.text, "no current CUDA context");
    CHECK(retain(&ctx, dev) == 0 && set_current(ctx) == 0);
    warmcal_error_clear(&err);
    CHECK(warmcal__probe_cuda(&free_bytes, &total, name, sizeof name, &err) == WARMCAL_OK);
    fprintf(stderr, "device '%s': %" PRIu64 " of %" PRIu64 " bytes free\n", name, free_bytes,
            total);
    CHECK(total > 0 && free_bytes > 0 && free_bytes <= total);
    CHECK(name[0] != '\0');
    set_current(NULL);
    release(dev);
    dlclose(h);
}

int main(int argc, char **argv)
{
    const char *c = argc > 1 ? argv[1] : "";
    int skipped = 0;
    if (strcmp(c, "driver") == 0) {
        if (!need_fake())
            return 1;
        RUN(reads_free_memory_from_the_driver);
    } else if (strcmp(c, "no-driver") == 0) {
        says_there_is_no_driver(&skipped);
    } else if (strcmp(c, "no-context") == 0) {
        if (!need_fake())
            return 1;
        RUN(says_there_is_no_context);
    } else if (strcmp(c, "failing-call") == 0) {
        if (!need_fake())
            return 1;
        RUN(names_the_failing_call);
    } else if (strcmp(c, "threads") == 0) {
        if (!need_fake())
            return 1;
        RUN(loads_the_driver_once_for_all_threads);
    } else if (strcmp(c, "simulated") == 0) {
        RUN(simulated_reads_the_environment);
    } else if (strcmp(c, "real") == 0) {
        reads_a_real_device(&skipped);
    } else {
        fprintf(stderr, "usage: test_probe driver|no-driver|no-context|failing-call|threads|"
                        "simulated|real\n");
        return 2;
    }
    if (skipped && !check_failures)
        return SKIP;
    CHECK_DONE();
}
