/* cupti_load.c — finds libcupti and the driver's entry points at run time,
 * so that libwarmcal-inject.so links neither (a server brings its own CUDA;
 * the build machine may have no driver at all). */
#define _GNU_SOURCE /* dlinfo and RTLD_NOLOAD */
#include "cupti_load.h"

#include <dlfcn.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Function pointers from dlsym: POSIX guarantees the conversion works;
 * memcpy keeps it clear of aliasing rules. Evaluates to whether it was found. */
#define RESOLVE(h, field, name) resolve_into((h), (name), &(field), sizeof(field))

static int resolve_into(void *h, const char *name, void *field, size_t size)
{
    void *p = dlsym(h, name);
    if (size != sizeof p)
        return 0;
    memcpy(field, &p, sizeof p);
    return p != NULL;
}

static const char *const cupti_names[] = {"libcupti.so", "libcupti.so.13"};

static void *try_open(const char *path)
{
    /* RTLD_LOCAL: the server may load another CUPTI-using library; ours must
     * not leak its symbols into the global scope */
    return dlopen(path, RTLD_NOW | RTLD_LOCAL);
}

static void set_loaded_path(warmcal__cupti_api *api, const char *fallback)
{
    struct link_map *lm = NULL;
    const char *p = fallback;
    if (dlinfo(api->handle, RTLD_DI_LINKMAP, &lm) == 0 && lm && lm->l_name && lm->l_name[0])
        p = lm->l_name;
    snprintf(api->path, sizeof api->path, "%s", p);
}

/* Append s to msg (bounded), for the list of places looked at. */
static void add(char *msg, size_t len, const char *s)
{
    size_t used = strlen(msg);
    if (used + 1 < len)
        snprintf(msg + used, len - used, "%s", s);
}

/* Try libcupti in dir+sub; path (4096 bytes) receives the file opened. A
 * file that exists but does not load is remembered in broken (the reason
 * the message gives, rather than "not found"). */
static void *open_in_dir(const char *dir, const char *sub, char *path, char *looked, size_t looked_len,
                         char *broken, size_t broken_len)
{
    for (size_t i = 0; i < sizeof cupti_names / sizeof cupti_names[0]; i++) {
        int n = snprintf(path, 4096, "%s%s/%s", dir, sub, cupti_names[i]);
        if (n < 0 || n >= 4096)
            return NULL;
        void *h = try_open(path);
        if (h)
            return h;
        if (!broken[0] && access(path, F_OK) == 0) {
            const char *why = dlerror();
            /* a truncated reason is still the reason */
            if (snprintf(broken, broken_len, "; %s exists but does not load: %s", path,
                         why ? why : "unknown error") < 0)
                broken[0] = '\0';
        }
    }
    if (looked[0])
        add(looked, looked_len, ", ");
    add(looked, looked_len, dir);
    add(looked, looked_len, sub);
    return NULL;
}

/* The CUDA release a cuptiGetVersion answer belongs to ("CUDA 13.0",
 * "CUDA 12"), from cupti_version.h's table. */
static void describe_version(uint32_t v, char *buf, size_t len)
{
    if (v >= 10000)
        snprintf(buf, len, "CUDA %u.%u", (unsigned)(v / 10000), (unsigned)(v / 100 % 100));
    else if (v >= 19)
        snprintf(buf, len, "CUDA 12");
    else if (v >= 13)
        snprintf(buf, len, "CUDA 11");
    else
        snprintf(buf, len, "CUDA 10 or older");
}

/* Refuse a libcupti older than the record layouts this library reads.
 * reused: it is the process's own (then WARMCAL_CUPTI_LIB cannot help). */
static int check_version(warmcal__cupti_api *api, int reused, char *msg, size_t len)
{
    uint32_t v = 0;
    CUptiResult rc = api->get_version(&v);
    if (rc != CUPTI_SUCCESS) {
        char buf[96];
        snprintf(msg, len, "cuptiGetVersion failed for libcupti at %s: %s", api->path,
                 warmcal__cupti_error(api, rc, buf, sizeof buf));
        return -1;
    }
    api->version = v;
    if (v >= WARMCAL__CUPTI_MIN_VERSION)
        return 0;
    char have[32], need[32];
    describe_version(v, have, sizeof have);
    describe_version(WARMCAL__CUPTI_MIN_VERSION, need, sizeof need);
    snprintf(msg, len,
             "libcupti at %s has CUPTI API version %u (%s); warmcal needs at least %u (%s), the CUDA %u "
             "CUPTI it was built with, to read its memory records%s",
             api->path, (unsigned)v, have, (unsigned)WARMCAL__CUPTI_MIN_VERSION, need,
             (unsigned)(CUPTI_API_VERSION / 10000),
             reused ? ": the server loaded that libcupti itself (e.g. a CUDA 12 PyTorch wheel) and a "
                      "second one cannot join it; profile a build of the server for CUDA 13 or later"
                    : " (set WARMCAL_CUPTI_LIB to a CUDA 13 libcupti.so, or CUDA_HOME to a CUDA 13 toolkit)");
    return -1;
}

static int resolve_cupti(warmcal__cupti_api *api, int reused, char *msg, size_t len)
{
    void *h = api->handle;
    const char *missing = NULL;
#define REQUIRE(field, name) \
    if (!missing && !RESOLVE(h, api->field, name)) \
        missing = name;
    REQUIRE(get_version, "cuptiGetVersion")
    REQUIRE(get_timestamp, "cuptiGetTimestamp")
    REQUIRE(activity_enable, "cuptiActivityEnable")
    REQUIRE(activity_disable, "cuptiActivityDisable")
    REQUIRE(activity_register_callbacks, "cuptiActivityRegisterCallbacks")
    REQUIRE(activity_get_next_record, "cuptiActivityGetNextRecord")
    REQUIRE(activity_get_num_dropped_records, "cuptiActivityGetNumDroppedRecords")
    REQUIRE(activity_flush_all, "cuptiActivityFlushAll")
    REQUIRE(subscribe, "cuptiSubscribe")
    REQUIRE(unsubscribe, "cuptiUnsubscribe")
    REQUIRE(enable_callback, "cuptiEnableCallback")
#undef REQUIRE
    if (missing) {
        snprintf(msg, len, "%s has no %s (the profiler needs the CUPTI of CUDA 13 or later)", api->path, missing);
        return -1;
    }
    RESOLVE(h, api->get_result_string, "cuptiGetResultString");
    RESOLVE(h, api->activity_flush_period, "cuptiActivityFlushPeriod");
#ifdef WARMCAL__HAVE_SUBSCRIBE_V2
    RESOLVE(h, api->subscribe_v2, "cuptiSubscribe_v2");
#endif
    return check_version(api, reused, msg, len);
}

/* The first libcupti the process has loaded: dl_iterate_phdr's walk over
 * the loaded objects, matched by file name. */
typedef struct {
    char *path;
    size_t len;
    int found;
} loaded_search;

static int match_cupti(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    loaded_search *ls = data;
    const char *name = info->dlpi_name;
    if (!name || !name[0])
        return 0; /* the program itself, or the vDSO */
    const char *base = strrchr(name, '/');
    base = base ? base + 1 : name;
    if (strncmp(base, "libcupti.so", strlen("libcupti.so")) != 0)
        return 0;
    if (snprintf(ls->path, ls->len, "%s", name) >= (int)ls->len)
        return 0; /* a path we cannot hold is not one we can reopen */
    ls->found = 1;
    return 1;
}

static int find_loaded_cupti(char *path, size_t len)
{
    loaded_search ls = {path, len, 0};
    dl_iterate_phdr(match_cupti, &ls);
    return ls.found;
}

/* Whether lib (a path, or a bare name for the loader's search) is the
 * loaded library at path `loaded`: the same file (links followed), or, for
 * a name, the object the loader already maps under it. */
static int same_library(const char *lib, const char *loaded)
{
    struct stat sa, sb;
    if (stat(lib, &sa) == 0 && stat(loaded, &sb) == 0)
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    void *a = dlopen(lib, RTLD_NOLOAD | RTLD_LAZY), *b = dlopen(loaded, RTLD_NOLOAD | RTLD_LAZY);
    int same = a && a == b;
    if (a)
        dlclose(a); /* NOLOAD took a reference each: give them back */
    if (b)
        dlclose(b);
    return same;
}

int warmcal__cupti_load(warmcal__cupti_api *api, char *msg, size_t len)
{
    memset(api, 0, sizeof *api);
    char loaded[4096];
    int have_loaded = find_loaded_cupti(loaded, sizeof loaded);
    const char *lib = getenv("WARMCAL_CUPTI_LIB");
    if (lib && lib[0]) {
        if (have_loaded && !same_library(lib, loaded)) {
            snprintf(msg, len,
                     "WARMCAL_CUPTI_LIB=%s is not the libcupti this process already loaded (%s), and two "
                     "copies of CUPTI cannot share a process: unset WARMCAL_CUPTI_LIB, or set it to %s",
                     lib, loaded, loaded);
            return -1;
        }
        api->handle = try_open(lib);
        if (!api->handle) {
            const char *why = dlerror();
            snprintf(msg, len, "cannot load WARMCAL_CUPTI_LIB=%s: %s", lib, why ? why : "unknown error");
            return -1;
        }
        set_loaded_path(api, lib);
        return resolve_cupti(api, have_loaded, msg, len);
    }
    if (have_loaded) {
        /* the server's own CUPTI (PyTorch's wheel brings one): share it */
        api->handle = dlopen(loaded, RTLD_NOLOAD | RTLD_NOW);
        if (!api->handle) {
            const char *why = dlerror();
            snprintf(msg, len, "cannot reuse the libcupti already loaded (%s): %s", loaded,
                     why ? why : "unknown error");
            return -1;
        }
        set_loaded_path(api, loaded);
        return resolve_cupti(api, 1, msg, len);
    }

    const char *opened = NULL;
    for (size_t i = sizeof cupti_names / sizeof cupti_names[0]; i-- > 0 && !api->handle;) {
        /* the loader's own search (LD_LIBRARY_PATH, RUNPATH, ld.so.cache): .13 first */
        api->handle = try_open(cupti_names[i]);
        opened = cupti_names[i];
    }
    char looked[1024] = "", broken[1024] = "", path[4096];
    const char *home = getenv("CUDA_HOME");
    const char *homes[2] = {home && home[0] ? home : NULL, "/usr/local/cuda"};
    const char *subs[] = {"/extras/CUPTI/lib64", "/lib64", "/lib"};
    for (int i = 0; i < 2 && !api->handle; i++) {
        if (!homes[i] || (i == 1 && homes[0] && strcmp(homes[0], homes[1]) == 0))
            continue;
        for (size_t j = 0; j < sizeof subs / sizeof subs[0] && !api->handle; j++) {
            api->handle = open_in_dir(homes[i], subs[j], path, looked, sizeof looked, broken, sizeof broken);
            opened = path;
        }
    }
    if (!api->handle) {
        snprintf(msg, len,
                 "libcupti not found: looked on the loader's path for libcupti.so.13 and libcupti.so, "
                 "then in %s%s%s; set WARMCAL_CUPTI_LIB to the file or CUDA_HOME to the toolkit",
                 looked, home && home[0] ? "" : " (CUDA_HOME is not set)", broken);
        return -1;
    }
    set_loaded_path(api, opened);
    return resolve_cupti(api, 0, msg, len);
}

const char *warmcal__cupti_error(const warmcal__cupti_api *api, CUptiResult rc, char *buf, size_t len)
{
    const char *s = NULL;
    if (api && api->get_result_string && api->get_result_string(rc, &s) == CUPTI_SUCCESS && s)
        snprintf(buf, len, "%s", s);
    else
        snprintf(buf, len, "CUPTI error %d", (int)rc);
    return buf;
}

int warmcal__driver_load(warmcal__driver_api *api, char *msg, size_t len)
{
    memset(api, 0, sizeof *api);
    /* RTLD_NOLOAD: the process's own driver or nothing; never a second copy */
    api->handle = dlopen("libcuda.so.1", RTLD_NOLOAD | RTLD_LAZY);
    if (!api->handle) {
        snprintf(msg, len, "libcuda.so.1 is not loaded in this process");
        return -1;
    }
    RESOLVE(api->handle, api->mem_get_info, "cuMemGetInfo_v2");
    RESOLVE(api->handle, api->ctx_get_current, "cuCtxGetCurrent");
    RESOLVE(api->handle, api->ctx_get_device, "cuCtxGetDevice");
    RESOLVE(api->handle, api->device_get, "cuDeviceGet");
    RESOLVE(api->handle, api->device_get_name, "cuDeviceGetName");
    RESOLVE(api->handle, api->device_total_mem, "cuDeviceTotalMem_v2");
    RESOLVE(api->handle, api->driver_get_version, "cuDriverGetVersion");
    return 0;
}
