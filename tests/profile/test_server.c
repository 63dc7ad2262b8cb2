/* test_server.c — a plain C "server" for the end-to-end profiler tests: it
 * links -lcuda (the fake driver in tests) and marks its warmup passes with
 * NVTX ranges from the real nvtx3 headers, knowing nothing of warmcal. It
 * runs a scripted warmup — device, pool, virtual, managed and pinned memory,
 * several threads, an out-of-memory pass, memory no API reports, a pass that
 * allocates nothing — and writes the exact truth of every pass, from its own
 * accounting, as JSON for the tests to compare the traces with.
 *
 * Usage: test_server --truth-dir DIR [--crash-in-phase K] [--crash-wait-ms MS]
 *                    [--threads N] [--preload-cupti LIB] [--phase-before-init]
 *                    [--fork-in-phase-end] [--reopen-stderr FILE]
 *   --crash-in-phase K   kill itself (SIGKILL) inside phase K, MS ms after
 *                        its truth is written (default 0)
 *   --preload-cupti LIB  dlopen LIB before cuInit, as PyTorch brings its own
 *   --phase-before-init  mark a phase before the first CUDA call (not measured)
 *   --fork-in-phase-end  fork from another thread while phase 0's end is in
 *                        the profiler's flush; the child uses NVTX and exits
 *   --reopen-stderr FILE after cuInit, descriptor 2 becomes FILE (a daemon's)
 * Writes DIR/truth-rank-R.json (R from the launcher's environment). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cuda.h>
#include <nvtx3/nvToolsExt.h>

#define KiB 1024ull
#define MiB (1024ull * KiB)
#define GiB (1024ull * MiB)
#define MAX_PHASES 32
#define MAX_THREADS 16

/* Bits of the trace's lower_bound column (warmcal/spool.h), restated: the
 * server links nothing of warmcal. */
#define LB_UNEXPLAINED 2u
#define LB_NO_ALLOCATION 4u
#define LB_ABORTED 8u
#define LB_SLACK (2ull * MiB)

typedef struct {
    char label[32];
    uint64_t tokens;
    uint32_t batch;
    const char *outcome; /* "ok", "oom", "aborted" */
    uint64_t live_begin, live_peak, live_end;
    uint64_t pool_live_begin, pool_live_end; /* of those, stream-ordered pool blocks */
    uint64_t failed_alloc_bytes;
    uint64_t pinned_peak;
    uint64_t free_begin, free_end; /* cuMemGetInfo at the edges */
    uint64_t pool_begin;           /* the default pool's reservation at begin */
    uint64_t allocs_begin;         /* device allocations asked for before the phase */
    uint64_t records_begin, records_end; /* activity records made before begin / end */
    uint32_t lower_bound;
    int ended;
} phase_truth;

static struct {
    pthread_mutex_t mu;
    uint64_t live, pinned; /* device bytes (every kind but pinned) and pinned bytes live */
    uint64_t pool_live;    /* the part of live in stream-ordered pool blocks */
    uint64_t allocs;       /* device allocations asked for (failed ones too) */
    uint64_t records;      /* CUPTI memory records the fake makes (alloc/free but virtual) */
    phase_truth phases[MAX_PHASES];
    int nphases;
    phase_truth *cur;
    int rank, world;
    const char *truth_dir;
    int crash_in_phase;
    int crash_wait_ms;
    int threads;
    int fork_child_status; /* the forked child's exit status (--fork-in-phase-end), -1: none */
    CUcontext ctx;
    CUstream stream;
    CUmemoryPool pool;
    nvtxDomainHandle_t domain;
} S = {.mu = PTHREAD_MUTEX_INITIALIZER, .crash_in_phase = -1, .threads = 4, .fork_child_status = -1};

static void die(const char *what, CUresult r)
{
    const char *name = NULL;
    cuGetErrorName(r, &name);
    fprintf(stderr, "test_server: %s failed: %s (%d)\n", what, name ? name : "?", (int)r);
    exit(3);
}

#define CU(call)                                                                                   \
    do {                                                                                           \
        CUresult r_ = (call);                                                                      \
        if (r_ != CUDA_SUCCESS)                                                                    \
            die(#call, r_);                                                                        \
    } while (0)

static uint64_t device_free(void)
{
    size_t f, t;
    CU(cuMemGetInfo(&f, &t));
    return f;
}

static uint64_t pool_reserved(void)
{
    cuuint64_t v = 0;
    CU(cuMemPoolGetAttribute(S.pool, CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT, &v));
    return v;
}

/* ---- accounting: called after each driver call, under S.mu ---- */

static void grew(uint64_t bytes, int pinned, int record)
{
    pthread_mutex_lock(&S.mu);
    if (pinned)
        S.pinned += bytes;
    else
        S.live += bytes;
    S.records += (uint64_t)record;
    if (S.cur && !pinned && S.live > S.cur->live_peak)
        S.cur->live_peak = S.live;
    if (S.cur && pinned && S.pinned > S.cur->pinned_peak)
        S.cur->pinned_peak = S.pinned;
    pthread_mutex_unlock(&S.mu);
}

static void shrank(uint64_t bytes, int pinned, int record)
{
    pthread_mutex_lock(&S.mu);
    if (pinned)
        S.pinned -= bytes;
    else
        S.live -= bytes;
    S.records += (uint64_t)record;
    pthread_mutex_unlock(&S.mu);
}

/* An allocation of a device kind was asked for; r is what the driver said. */
static int asked(uint64_t bytes, CUresult r)
{
    pthread_mutex_lock(&S.mu);
    S.allocs++;
    if (r == CUDA_ERROR_OUT_OF_MEMORY && S.cur) {
        if (!S.cur->failed_alloc_bytes)
            S.cur->failed_alloc_bytes = bytes;
        S.cur->outcome = "oom";
    }
    pthread_mutex_unlock(&S.mu);
    if (r != CUDA_SUCCESS && r != CUDA_ERROR_OUT_OF_MEMORY)
        die("an allocation", r);
    return r == CUDA_SUCCESS;
}

/* ---- memory of every kind ---- */

static CUdeviceptr dev_alloc(uint64_t bytes)
{
    CUdeviceptr p = 0;
    if (asked(bytes, cuMemAlloc(&p, bytes)))
        grew(bytes, 0, 1);
    return p;
}

static void dev_free(CUdeviceptr p, uint64_t bytes)
{
    if (!p)
        return;
    CU(cuMemFree(p));
    shrank(bytes, 0, 1);
}

static CUdeviceptr pool_alloc(uint64_t bytes, CUstream s)
{
    CUdeviceptr p = 0;
    if (asked(bytes, cuMemAllocAsync(&p, bytes, s))) {
        pthread_mutex_lock(&S.mu);
        S.pool_live += bytes;
        pthread_mutex_unlock(&S.mu);
        grew(bytes, 0, 1);
    }
    return p;
}

static void pool_free(CUdeviceptr p, uint64_t bytes, CUstream s)
{
    CU(cuMemFreeAsync(p, s));
    pthread_mutex_lock(&S.mu);
    S.pool_live -= bytes;
    pthread_mutex_unlock(&S.mu);
    shrank(bytes, 0, 1);
}

static CUdeviceptr managed_alloc(uint64_t bytes)
{
    CUdeviceptr p = 0;
    if (asked(bytes, cuMemAllocManaged(&p, bytes, CU_MEM_ATTACH_GLOBAL)))
        grew(bytes, 0, 1);
    return p;
}

static void *pinned_alloc(uint64_t bytes)
{
    void *p = NULL;
    CU(cuMemHostAlloc(&p, bytes, CU_MEMHOSTALLOC_PORTABLE));
    grew(bytes, 1, 1);
    return p;
}

static void pinned_free(void *p, uint64_t bytes)
{
    CU(cuMemFreeHost(p));
    shrank(bytes, 1, 1);
}

/* Virtual memory as expandable segments use it: physical chunks mapped
 * into one reserved range. CUPTI makes no records for these. */
typedef struct {
    CUdeviceptr va;
    uint64_t va_bytes;
    CUmemGenericAllocationHandle h[8];
    uint64_t bytes[8];
    int n;
} segment;

static void segment_grow(segment *sg, uint64_t bytes)
{
    CUmemAllocationProp prop;
    memset(&prop, 0, sizeof prop);
    prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
    prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    prop.location.id = 0;
    size_t gran;
    CU(cuMemGetAllocationGranularity(&gran, &prop, CU_MEM_ALLOC_GRANULARITY_MINIMUM));
    bytes = (bytes + gran - 1) / gran * gran;
    CUmemGenericAllocationHandle h;
    if (!asked(bytes, cuMemCreate(&h, bytes, &prop, 0)))
        return;
    grew(bytes, 0, 0);
    uint64_t off = 0;
    for (int i = 0; i < sg->n; i++)
        off += sg->bytes[i];
    CU(cuMemMap(sg->va + off, bytes, 0, h, 0));
    CUmemAccessDesc access = {{CU_MEM_LOCATION_TYPE_DEVICE, 0}, CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
    CU(cuMemSetAccess(sg->va + off, bytes, &access, 1));
    sg->h[sg->n] = h;
    sg->bytes[sg->n++] = bytes;
}

static void segment_shrink(segment *sg)
{
    if (sg->n == 0)
        return;
    sg->n--;
    uint64_t off = 0;
    for (int i = 0; i < sg->n; i++)
        off += sg->bytes[i];
    CU(cuMemUnmap(sg->va + off, sg->bytes[sg->n]));
    CU(cuMemRelease(sg->h[sg->n]));
    shrank(sg->bytes[sg->n], 0, 0);
}

/* ---- phases, marked three ways as servers do ---- */

enum { STYLE_PUSH, STYLE_START, STYLE_DOMAIN };

typedef struct {
    int style;
    nvtxRangeId_t id;
} phase_mark;

static off_t own_spool_size(void);
static off_t spool_at_phase_begin = -1;

static void phase_begin(phase_mark *m, int style, const char *label, uint64_t tokens,
                        uint32_t batch)
{
    char msg[128];
    snprintf(msg, sizeof msg, "warmcal tokens=%llu batch=%u label=%s", (unsigned long long)tokens,
             batch, label);
    pthread_mutex_lock(&S.mu);
    phase_truth *p = &S.phases[S.nphases++];
    snprintf(p->label, sizeof p->label, "%s", label);
    p->tokens = tokens;
    p->batch = batch;
    p->outcome = "ok";
    p->live_begin = p->live_peak = S.live;
    p->pool_live_begin = S.pool_live;
    p->pinned_peak = S.pinned;
    p->allocs_begin = S.allocs;
    p->records_begin = S.records;
    pthread_mutex_unlock(&S.mu);
    p->free_begin = device_free(); /* what the profiler samples at the edge */
    p->pool_begin = pool_reserved();
    m->style = style;
    if (style == STYLE_PUSH) {
        nvtxRangePushA(msg);
    } else if (style == STYLE_START) {
        m->id = nvtxRangeStartA(msg);
    } else {
        nvtxEventAttributes_t a;
        memset(&a, 0, sizeof a);
        a.version = NVTX_VERSION;
        a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
        a.messageType = NVTX_MESSAGE_TYPE_ASCII;
        a.message.ascii = msg;
        nvtxDomainRangePushEx(S.domain, &a);
    }
    spool_at_phase_begin = own_spool_size(); /* the phase begin is written by now */
    pthread_mutex_lock(&S.mu);
    S.cur = p;
    pthread_mutex_unlock(&S.mu);
}

static void phase_end(phase_mark *m)
{
    pthread_mutex_lock(&S.mu);
    phase_truth *p = S.cur;
    S.cur = NULL;
    p->live_end = S.live;
    p->pool_live_end = S.pool_live;
    p->records_end = S.records;
    int no_allocation = S.allocs == p->allocs_begin && p->allocs_begin > 0;
    pthread_mutex_unlock(&S.mu);
    p->free_end = device_free();
    /* the documented rule (docs/calibration.md): free memory that fell by
     * more than the live blocks outside pools and the pools' reservations
     * grew is unexplained (a pool's blocks lie inside its reservation: counted
     * once, as the reservation) */
    if (p->free_begin > p->free_end) {
        uint64_t fell = p->free_begin - p->free_end;
        uint64_t outside_begin = p->live_begin - p->pool_live_begin;
        uint64_t outside_end = p->live_end - p->pool_live_end;
        uint64_t reserved = pool_reserved();
        uint64_t explained = (outside_end > outside_begin ? outside_end - outside_begin : 0) +
                             (reserved > p->pool_begin ? reserved - p->pool_begin : 0);
        if (fell > explained && fell - explained > LB_SLACK)
            p->lower_bound |= LB_UNEXPLAINED;
    }
    if (no_allocation)
        p->lower_bound |= LB_NO_ALLOCATION;
    p->ended = 1;
    if (m->style == STYLE_PUSH)
        nvtxRangePop();
    else if (m->style == STYLE_START)
        nvtxRangeEnd(m->id);
    else
        nvtxDomainRangePop(S.domain);
}

/* ---- the truth ---- */

static void write_truth(void)
{
    char path[4096], tmp[4200];
    snprintf(path, sizeof path, "%s/truth-rank-%d.json", S.truth_dir, S.rank);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) {
        perror(tmp);
        exit(3);
    }
    char name[256] = "";
    size_t total = 0;
    CUdevice dev;
    CU(cuDeviceGet(&dev, 0));
    CU(cuDeviceGetName(name, sizeof name, dev));
    CU(cuDeviceTotalMem(&total, dev));
    fprintf(f, "{\n  \"rank\": %d, \"world_size\": %d, \"pid\": %ld,\n", S.rank, S.world,
            (long)getpid());
    fprintf(f, "  \"gpu_name\": \"%s\", \"gpu_total_bytes\": %zu,\n", name, total);
    fprintf(f, "  \"records_total\": %llu, \"fork_child_status\": %d,\n  \"phases\": [",
            (unsigned long long)S.records, S.fork_child_status);
    for (int i = 0; i < S.nphases; i++) {
        const phase_truth *p = &S.phases[i];
        fprintf(f, "%s\n    {\"label\": \"%s\", \"tokens\": %llu, \"batch\": %u, \"outcome\": \"%s\",",
                i ? "," : "", p->label, (unsigned long long)p->tokens, p->batch, p->outcome);
        fprintf(f, " \"live_begin\": %llu, \"live_peak\": %llu,",
                (unsigned long long)p->live_begin, (unsigned long long)p->live_peak);
        if (p->ended)
            fprintf(f, " \"live_end\": %llu, \"device_free_end\": %llu,",
                    (unsigned long long)p->live_end, (unsigned long long)p->free_end);
        else
            fprintf(f, " \"live_end\": null, \"device_free_end\": null,");
        fprintf(f, " \"device_free_begin\": %llu, \"failed_alloc_bytes\": %llu,",
                (unsigned long long)p->free_begin, (unsigned long long)p->failed_alloc_bytes);
        fprintf(f, " \"pinned_peak\": %llu, \"lower_bound\": %u,",
                (unsigned long long)p->pinned_peak, p->lower_bound);
        fprintf(f, " \"records_begin\": %llu, \"records_end\": %llu}",
                (unsigned long long)p->records_begin,
                (unsigned long long)(p->ended ? p->records_end : S.records));
    }
    fprintf(f, "\n  ]\n}\n");
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        perror(path);
        exit(3);
    }
}

/* The size of this process's spool (WARMCAL_OUT/rank-R.<pid>.spool), or -1. */
static off_t own_spool_size(void)
{
    const char *dir = getenv("WARMCAL_OUT");
    DIR *d = dir ? opendir(dir) : NULL;
    if (!d)
        return -1;
    char suffix[32];
    snprintf(suffix, sizeof suffix, ".%ld.spool", (long)getpid());
    size_t ls = strlen(suffix);
    off_t size = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t ln = strlen(e->d_name);
        if (ln > ls && strcmp(e->d_name + ln - ls, suffix) == 0) {
            char path[4096];
            struct stat st;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (stat(path, &st) == 0)
                size = st.st_size;
        }
    }
    closedir(d);
    return size;
}

/* Inside phase `index`: die as a killed server does, the truth written first. */
static void maybe_crash(int index)
{
    if (index != S.crash_in_phase)
        return;
    pthread_mutex_lock(&S.mu);
    S.cur->outcome = "aborted";
    S.cur->lower_bound |= LB_ABORTED;
    pthread_mutex_unlock(&S.mu);
    write_truth();
    if (S.crash_wait_ms > 0) {
        /* a server that hangs a while before its launcher kills it: it
         * waits (at most crash_wait_ms) until the profiler has written to
         * its spool since the phase began (the phase's records sit in a
         * buffer that never fills: a periodic flush of it is what writes), so the test does not depend on how fast this machine
         * schedules the profiler's flusher thread */
        off_t begun = spool_at_phase_begin;
        for (int waited = 0; waited < S.crash_wait_ms; waited += 10) {
            if (own_spool_size() > begun)
                break;
            struct timespec ts = {0, 10 * 1000000L};
            while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
                ;
        }
    }
    raise(SIGKILL);
}

/* ---- a fork while the profiler flushes at a phase end (--fork-in-phase-end) ---- */

/* The fake CUPTI calls fake_cupti_flush_hook at the start of every
 * cuptiActivityFlushAll. Armed, it lets the forking thread fork and waits
 * until it has: the fork then happens while this thread is inside the
 * profiler's phase end, holding its phase lock. */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int armed, fork_now, forked;
    pthread_t armer; /* only this thread's flush forks (the profiler flushes from its own too) */
} F = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0};

__attribute__((visibility("default"))) void fake_cupti_flush_hook(void);
void fake_cupti_flush_hook(void)
{
    pthread_mutex_lock(&F.mu);
    if (F.armed && pthread_equal(pthread_self(), F.armer)) {
        F.armed = 0;
        F.fork_now = 1;
        pthread_cond_broadcast(&F.cv);
        while (!F.forked)
            pthread_cond_wait(&F.cv, &F.mu);
    }
    pthread_mutex_unlock(&F.mu);
}

/* In ASan builds, LeakSanitizer asks this before its leak check at exit.
 * The check locks the allocator, and GCC 12's runtime does not make its
 * allocator fork-safe: a parent thread that was inside malloc at the fork
 * leaves the child's check waiting forever (a sanitizer artifact, not a
 * lock of the profiler's). The child skips the check; its exit still runs
 * every atexit handler, the profiler's too. */
static volatile sig_atomic_t in_forked_child;
__attribute__((visibility("default"))) int __lsan_is_turned_off(void);
int __lsan_is_turned_off(void)
{
    return in_forked_child;
}

/* The child: NVTX ranges of every form (phase ones too: not measured, the
 * profiler is the parent's), then a normal exit. */
static void fork_child(void)
{
    in_forked_child = 1;
    nvtxRangePushA("warmcal tokens=3 label=child");
    nvtxRangePushA("child work");
    nvtxRangePop();
    nvtxRangePop();
    nvtxRangeId_t id = nvtxRangeStartA("warmcal tokens=4 label=child");
    nvtxRangeEnd(id);
    nvtxDomainHandle_t d = nvtxDomainCreateA("test_server_child");
    nvtxEventAttributes_t a;
    memset(&a, 0, sizeof a);
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = "warmcal tokens=5 label=child";
    nvtxDomainRangePushEx(d, &a);
    nvtxDomainRangePop(d);
    exit(0);
}

static void *forker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&F.mu);
    while (!F.fork_now)
        pthread_cond_wait(&F.cv, &F.mu);
    int go = F.fork_now > 0;
    pthread_mutex_unlock(&F.mu);
    if (!go) {
        fprintf(stderr, "test_server: the profiler's phase end never flushed CUPTI: no fork\n");
        S.fork_child_status = 998;
        return NULL;
    }
    pid_t pid = fork();
    if (pid == 0)
        fork_child();
    pthread_mutex_lock(&F.mu);
    F.forked = 1;
    pthread_cond_broadcast(&F.cv);
    pthread_mutex_unlock(&F.mu);
    if (pid < 0) {
        S.fork_child_status = 1000;
        return NULL;
    }
    /* a child stuck on a lock it inherited never ends: 30 s, then killed */
    int status = 0;
    for (int i = 0; i < 3000; i++) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            S.fork_child_status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            return NULL;
        }
        struct timespec ts = {0, 10000000L};
        nanosleep(&ts, NULL);
    }
    fprintf(stderr, "test_server: the forked child hung; killed\n");
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    S.fork_child_status = 999;
    return NULL;
}

/* ---- the scripted warmup ---- */

typedef struct {
    int index;
    pthread_barrier_t *barrier;
    uint64_t scale;
} worker_arg;

/* Every thread allocates all its blocks, then all wait, then all free: the
 * phase's peak is the sum whatever the interleaving. */
static void *worker(void *argp)
{
    worker_arg *a = argp;
    CU(cuCtxSetCurrent(S.ctx));
    CUstream s;
    CU(cuStreamCreate(&s, CU_STREAM_NON_BLOCKING));
    uint64_t d = (a->index + 1) * a->scale, q = 3 * MiB + a->index * MiB, m = 2 * MiB,
             h = (uint64_t)(a->index + 1) * MiB;
    CUdeviceptr pd = dev_alloc(d);
    CUdeviceptr pq = pool_alloc(q, s);
    CUdeviceptr pm = managed_alloc(m);
    void *ph = pinned_alloc(h);
    pthread_barrier_wait(a->barrier);
    dev_free(pd, d);
    pool_free(pq, q, s);
    dev_free(pm, m);
    pinned_free(ph, h);
    CU(cuStreamSynchronize(s));
    CU(cuStreamDestroy(s));
    return NULL;
}

static int rank_from_env(const char *const *names, int fallback)
{
    for (int i = 0; names[i]; i++) {
        const char *v = getenv(names[i]);
        if (v && *v)
            return atoi(v);
    }
    return fallback;
}

int main(int argc, char **argv)
{
    const char *preload_cupti = NULL, *reopen_stderr = NULL;
    int phase_before_init = 0, fork_in_phase_end = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--truth-dir") && i + 1 < argc)
            S.truth_dir = argv[++i];
        else if (!strcmp(argv[i], "--crash-in-phase") && i + 1 < argc)
            S.crash_in_phase = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--crash-wait-ms") && i + 1 < argc)
            S.crash_wait_ms = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            S.threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--preload-cupti") && i + 1 < argc)
            preload_cupti = argv[++i];
        else if (!strcmp(argv[i], "--phase-before-init"))
            phase_before_init = 1;
        else if (!strcmp(argv[i], "--fork-in-phase-end"))
            fork_in_phase_end = 1;
        else if (!strcmp(argv[i], "--reopen-stderr") && i + 1 < argc)
            reopen_stderr = argv[++i];
        else {
            fprintf(stderr, "usage: test_server --truth-dir DIR [--crash-in-phase K] [--crash-wait-ms MS] "
                            "[--threads N] [--preload-cupti LIB] [--phase-before-init] "
                            "[--fork-in-phase-end] [--reopen-stderr FILE]\n");
            return 2;
        }
    }
    if (!S.truth_dir || S.threads < 2 || S.threads > MAX_THREADS) {
        fprintf(stderr, "test_server: --truth-dir is required; --threads is 2..%d\n",
                MAX_THREADS);
        return 2;
    }
    static const char *const rank_vars[] = {"WARMCAL_RANK", "RANK", "OMPI_COMM_WORLD_RANK",
                                            "PMIX_RANK", "PMI_RANK", "SLURM_PROCID", NULL};
    static const char *const size_vars[] = {"WARMCAL_WORLD_SIZE", "WORLD_SIZE",
                                            "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_NTASKS",
                                            NULL};
    S.rank = rank_from_env(rank_vars, 0);
    S.world = rank_from_env(size_vars, 1);

    if (preload_cupti && !dlopen(preload_cupti, RTLD_NOW | RTLD_LOCAL)) {
        fprintf(stderr, "test_server: cannot load %s: %s\n", preload_cupti, dlerror());
        return 3;
    }
    if (phase_before_init) {
        /* no CUDA call yet: the profiler is not initialised, the phase not measured */
        nvtxRangePushA("warmcal tokens=64 label=early");
        nvtxRangePop();
    }

    /* start-up, outside any phase: a context, weights, a staging buffer */
    CUdevice dev;
    CU(cuInit(0));
    if (reopen_stderr) {
        /* as a daemon does: descriptor 2 now holds one of its own files */
        int fd = open(reopen_stderr, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || (fd != 2 && (dup2(fd, 2) != 2 || close(fd) != 0))) {
            perror(reopen_stderr);
            return 3;
        }
    }
    pthread_t forker_thread;
    if (fork_in_phase_end && pthread_create(&forker_thread, NULL, forker, NULL) != 0) {
        fprintf(stderr, "test_server: cannot start a thread\n");
        return 3;
    }
    CU(cuDeviceGet(&dev, 0));
    CU(cuDevicePrimaryCtxRetain(&S.ctx, dev));
    CU(cuCtxSetCurrent(S.ctx));
    CU(cuStreamCreate(&S.stream, 0));
    CU(cuDeviceGetDefaultMemPool(&S.pool, dev));
    S.domain = nvtxDomainCreateA("test_server");
    if (S.rank == 0) {
        /* rank 0 shares its GPU with something else: it is short of memory */
        CUresult (*hidden)(int, long long) =
            (CUresult(*)(int, long long))dlsym(RTLD_DEFAULT, "fake_cuda_hidden_alloc");
        if (hidden)
            CU(hidden(0, (long long)(9 * GiB)));
    }
    nvtxRangePushA("load_weights"); /* not a phase: ignored */
    uint64_t weights_bytes = 2 * GiB;
    CUdeviceptr weights = dev_alloc(weights_bytes);
    void *staging = pinned_alloc(64 * MiB);
    nvtxRangePop();

    /* a malformed phase message: one warning, no phase */
    nvtxRangePushA("warmcal tokens=x batch=1 label=bad");
    CUdeviceptr stray = dev_alloc(4 * MiB);
    dev_free(stray, 4 * MiB);
    nvtxRangePop();

    phase_mark m;
    int k = 0;

    /* 0: device memory, pinned host memory apart, ranges nested inside */
    nvtxRangePushA("warmup_step"); /* a plain range around a phase */
    phase_begin(&m, STYLE_PUSH, "decode", 128, 1);
    {
        uint64_t kv = 128 * 1 * 512 * KiB, act = 128 * 256 * KiB, tmp = 5 * MiB;
        CUdeviceptr pkv = dev_alloc(kv);
        nvtxRangePushA("attention"); /* not a phase */
        CUdeviceptr pact = dev_alloc(act);
        void *host = pinned_alloc(8 * MiB);
        maybe_crash(k);
        nvtxRangePop();
        nvtxRangePushA("warmcal tokens=1 batch=1 label=inner"); /* nested: ignored */
        dev_free(pact, act);
        CUdeviceptr ptmp = dev_alloc(tmp);
        nvtxRangePop();
        dev_free(ptmp, tmp);
        pinned_free(host, 8 * MiB);
        dev_free(pkv, kv);
    }
    if (fork_in_phase_end) {
        pthread_mutex_lock(&F.mu);
        F.armed = 1;
        F.armer = pthread_self();
        pthread_mutex_unlock(&F.mu);
    }
    phase_end(&m);
    if (fork_in_phase_end) {
        pthread_mutex_lock(&F.mu);
        if (F.armed) { /* the phase end never flushed CUPTI: no fork */
            F.armed = 0;
            F.fork_now = -1;
            pthread_cond_broadcast(&F.cv);
        }
        pthread_mutex_unlock(&F.mu);
        pthread_join(forker_thread, NULL);
    }
    nvtxRangePop();
    k++;

    /* 1: stream-ordered pool memory, marked with start/end */
    phase_begin(&m, STYLE_START, "decode", 256, 1);
    {
        uint64_t a = 256 * 512 * KiB, b = 40 * MiB, c = 7 * MiB;
        CUdeviceptr pa = pool_alloc(a, S.stream);
        CUdeviceptr pb = pool_alloc(b, S.stream);
        maybe_crash(k);
        pool_free(pa, a, S.stream);
        CUdeviceptr pc = pool_alloc(c, S.stream);
        pool_free(pb, b, S.stream);
        pool_free(pc, c, S.stream);
        CU(cuStreamSynchronize(S.stream));
    }
    phase_end(&m);
    k++;

    /* 2: virtual memory (expandable segments) and managed memory, in a domain */
    phase_begin(&m, STYLE_DOMAIN, "decode", 512, 2);
    {
        segment sg;
        memset(&sg, 0, sizeof sg);
        sg.va_bytes = 1 * GiB;
        CU(cuMemAddressReserve(&sg.va, sg.va_bytes, 0, 0, 0));
        segment_grow(&sg, 512 * 2 * 64 * KiB);
        segment_grow(&sg, 20 * MiB);
        CUdeviceptr pm = managed_alloc(12 * MiB);
        maybe_crash(k);
        segment_shrink(&sg);
        segment_grow(&sg, 6 * MiB);
        dev_free(pm, 12 * MiB);
        while (sg.n > 0)
            segment_shrink(&sg);
        CU(cuMemAddressFree(sg.va, sg.va_bytes));
    }
    phase_end(&m);
    k++;

    /* 3: several threads at once, every kind of memory */
    phase_begin(&m, STYLE_PUSH, "decode", 1024, 1);
    {
        pthread_t t[MAX_THREADS];
        worker_arg args[MAX_THREADS];
        pthread_barrier_t barrier;
        pthread_barrier_init(&barrier, NULL, (unsigned)S.threads);
        for (int i = 0; i < S.threads; i++) {
            args[i] = (worker_arg){i, &barrier, 16 * MiB};
            if (pthread_create(&t[i], NULL, worker, &args[i]) != 0) {
                fprintf(stderr, "test_server: cannot start a thread\n");
                return 3;
            }
        }
        for (int i = 0; i < S.threads; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&barrier);
        maybe_crash(k);
    }
    phase_end(&m);
    k++;

    /* 4: a long prompt: out of memory on rank 0 only */
    phase_begin(&m, STYLE_PUSH, "prefill", 4096, 1);
    {
        CUdeviceptr p[3];
        for (int i = 0; i < 3; i++)
            p[i] = dev_alloc(2 * GiB);
        maybe_crash(k);
        for (int i = 0; i < 3; i++)
            dev_free(p[i], 2 * GiB);
    }
    phase_end(&m);
    k++;

    /* 5: out of memory everywhere: more than is free; the first failed size is kept */
    phase_begin(&m, STYLE_START, "prefill", 16384, 1);
    {
        uint64_t too_much = device_free() + 3 * MiB;
        CUdeviceptr a = dev_alloc(100 * MiB);
        CUdeviceptr b = dev_alloc(too_much);
        /* the pool's own reservation serves first: ask beyond it too */
        CUdeviceptr c = pool_alloc(too_much + pool_reserved() + 64 * MiB, S.stream);
        maybe_crash(k);
        if (b || c)
            fprintf(stderr, "test_server: an allocation beyond free memory succeeded\n");
        dev_free(a, 100 * MiB);
    }
    phase_end(&m);
    k++;

    /* 6: a library workspace no API event shows: free memory falls, unexplained */
    phase_begin(&m, STYLE_PUSH, "sample", 2048, 1);
    {
        CUdeviceptr a = dev_alloc(32 * MiB);
        CUresult (*hidden)(int, long long) =
            (CUresult(*)(int, long long))dlsym(RTLD_DEFAULT, "fake_cuda_hidden_alloc");
        if (!hidden) {
            fprintf(stderr, "test_server: the driver has no fake_cuda_hidden_alloc\n");
            return 3;
        }
        CU(hidden(0, (long long)(256 * MiB)));
        maybe_crash(k);
        dev_free(a, 32 * MiB);
    }
    phase_end(&m);
    k++;

    /* 7: a caching allocator's hit: nothing allocated at all */
    phase_begin(&m, STYLE_DOMAIN, "decode", 2048, 1);
    maybe_crash(k);
    CU(cuCtxSynchronize());
    phase_end(&m);
    k++;

    /* 8: out of memory recovered, as PyTorch's caching allocator does: the
     * allocation fails, the cache is freed, the same size is asked again
     * and succeeds. Not an out-of-memory phase. */
    phase_begin(&m, STYLE_PUSH, "decode", 4096, 2);
    {
        uint64_t cache_bytes = (device_free() - 64 * MiB) & ~(MiB - 1), want = 128 * MiB;
        CUdeviceptr cache = dev_alloc(cache_bytes);
        CUdeviceptr p = dev_alloc(want);
        if (!cache || p) {
            fprintf(stderr, "test_server: the recovered out-of-memory pass did not run out of memory\n");
            return 3;
        }
        dev_free(cache, cache_bytes); /* torch.cuda's empty_cache, inside the allocator */
        p = dev_alloc(want);
        if (!p) {
            fprintf(stderr, "test_server: the retry after freeing the cache failed\n");
            return 3;
        }
        pthread_mutex_lock(&S.mu);
        S.cur->outcome = "ok"; /* recovered: the pass ran */
        S.cur->failed_alloc_bytes = 0;
        pthread_mutex_unlock(&S.mu);
        maybe_crash(k);
        dev_free(p, want);
    }
    phase_end(&m);
    k++;

    /* shut down outside any phase */
    dev_free(weights, weights_bytes);
    pinned_free(staging, 64 * MiB);
    CU(cuStreamDestroy(S.stream));
    write_truth();
    CU(cuDevicePrimaryCtxRelease(dev));
    return 0;
}
