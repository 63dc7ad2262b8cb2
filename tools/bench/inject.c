/* The injected profiler's cost, measured in one run: CUPTI memory records
 * per second through the record parser and the recorder (and through the
 * parser and the spool writer, the path inside the server), against a plain
 * memcpy of the same records; then, when the build has the fake driver, the
 * time a warmup-like server takes profiled against unprofiled.
 * Usage: bench-inject [RECORDS] [PHASES ALLOCS_PER_PHASE] */
#define _POSIX_C_SOURCE 200809L
#include "cupti_records.h"
#include "warmcal/recorder.h"
#include "warmcal/spool.h"
#include "warmcal/units.h"

#include <dirent.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* A warmup-like record stream, as CUPTI lays it out: allocations and
 * releases over a working set of live blocks, one in eight from a pool. */
static CUpti_ActivityMemory4 *make_records(size_t n)
{
    CUpti_ActivityMemory4 *rec = calloc(n, sizeof *rec);
    if (!rec)
        return NULL;
    uint64_t live[64];
    size_t n_live = 0, next = 1;
    for (size_t i = 0; i < n; i++) {
        CUpti_ActivityMemory4 *m = &rec[i];
        m->kind = CUPTI_ACTIVITY_KIND_MEMORY2;
        m->memoryKind = CUPTI_ACTIVITY_MEMORY_KIND_DEVICE;
        m->timestamp = 1000 + i;
        m->deviceId = 0;
        if (n_live == 64 || (n_live > 0 && (i * 2654435761u) % 3 == 0)) {
            m->memoryOperationType = CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_RELEASE;
            m->address = live[--n_live];
        } else {
            m->memoryOperationType = CUPTI_ACTIVITY_MEMORY_OPERATION_TYPE_ALLOCATION;
            m->address = 0x7f0000000000ull + (next++ << 21);
            m->bytes = (1 + (i % 97)) << 20;
            live[n_live++] = m->address;
        }
        if (i % 8 == 0)
            m->memoryPoolConfig.memoryPoolType = CUPTI_ACTIVITY_MEMORY_POOL_TYPE_LOCAL;
    }
    return rec;
}

/* Parse every record and feed the recorder, a phase per 1000 records. */
static int parse_and_record(const CUpti_ActivityMemory4 *rec, size_t n, warmcal_recorder *r, warmcal_error *err)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (i % 1000 == 0 && (rc = warmcal_recorder_phase_begin(r, 1000 + i, "context", 1 + i % 32768, 1, err)))
            break;
        warmcal__parsed p;
        if (warmcal__cupti_parse_activity((const CUpti_Activity *)(const void *)&rec[i], &p) ==
            WARMCAL__PARSED_EVENT) {
            if (p.event.kind == WARMCAL_EV_ALLOC)
                rc = warmcal_recorder_alloc(r, p.event.time_ns, p.event.address, p.event.bytes,
                                            (warmcal_mem_kind)p.event.mem_kind, err);
            else if (p.event.kind == WARMCAL_EV_FREE)
                rc = warmcal_recorder_free(r, p.event.time_ns, p.event.address, err);
        }
        if (rc == 0 && i % 1000 == 999)
            rc = warmcal_recorder_phase_end(r, 1000 + i, err);
    }
    return rc;
}

/* Parse every record and append it to a spool: what the injected library
 * does with each record inside the server. */
static int parse_and_spool(const CUpti_ActivityMemory4 *rec, size_t n, warmcal_spool_writer *w, warmcal_error *err)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        warmcal__parsed p;
        if (warmcal__cupti_parse_activity((const CUpti_Activity *)(const void *)&rec[i], &p) ==
            WARMCAL__PARSED_EVENT)
            rc = warmcal_spool_write_event(w, &p.event, err);
    }
    return rc == 0 ? warmcal_spool_flush(w, err) : rc;
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char path[4096];
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static uint64_t dir_bytes(const char *dir)
{
    uint64_t total = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    char path[4096];
    struct stat st;
    while ((e = readdir(d))) {
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (e->d_name[0] != '.' && stat(path, &st) == 0)
            total += (uint64_t)st.st_size;
    }
    closedir(d);
    return total;
}

static int records_part(size_t n)
{
    CUpti_ActivityMemory4 *rec = make_records(n);
    CUpti_ActivityMemory4 *copy = malloc(n * sizeof *copy);
    char dir[] = "/tmp/warmcal-bench-inject-XXXXXX";
    if (!rec || !copy || !mkdtemp(dir))
        return 1;
    const int rounds = 5;
    double best_rec = 1e30, best_spool = 1e30, best_copy = 1e30;
    uint64_t checksum = 0;
    for (int round = 0; round < rounds; round++) {
        warmcal_error err = {0};
        warmcal_recorder *r = NULL;
        if (warmcal_recorder_open(&r, NULL, &err))
            return 1;
        uint64_t t0 = warmcal_now_ns();
        if (parse_and_record(rec, n, r, &err)) {
            fprintf(stderr, "bench-inject: %s\n", err.text);
            return 1;
        }
        uint64_t t1 = warmcal_now_ns();
        size_t phases = 0;
        const warmcal_phase *ph = warmcal_recorder_phases(r, &phases);
        checksum += phases ? ph[phases - 1].live_peak : 0;
        warmcal_recorder_close(r);

        char path[4096];
        snprintf(path, sizeof path, "%s/round-%d.spool", dir, round);
        warmcal_spool_writer *w = NULL;
        if (warmcal_spool_writer_open(&w, path, &err)) {
            fprintf(stderr, "bench-inject: %s: %s\n", path, err.text);
            return 1;
        }
        uint64_t t2 = warmcal_now_ns();
        if (parse_and_spool(rec, n, w, &err)) {
            fprintf(stderr, "bench-inject: %s\n", err.text);
            return 1;
        }
        uint64_t t3 = warmcal_now_ns();
        warmcal_spool_writer_close(w, &err);
        unlink(path);

        uint64_t t4 = warmcal_now_ns();
        memcpy(copy, rec, n * sizeof *rec);
        uint64_t t5 = warmcal_now_ns();
        checksum += copy[n / 2].address;
        if ((double)(t1 - t0) < best_rec)
            best_rec = (double)(t1 - t0);
        if ((double)(t3 - t2) < best_spool)
            best_spool = (double)(t3 - t2);
        if ((double)(t5 - t4) < best_copy)
            best_copy = (double)(t5 - t4);
    }
    remove_dir(dir);
    printf("records                     %zu CUpti_ActivityMemory4 (%zu bytes each, best of %d rounds)\n", n,
           sizeof(CUpti_ActivityMemory4), rounds);
    printf("parse + recorder            %.1f ns/record, %.2f M records/s\n", best_rec / (double)n,
           (double)n / best_rec * 1e3);
    printf("parse + spool (in-process)  %.1f ns/record, %.2f M records/s\n", best_spool / (double)n,
           (double)n / best_spool * 1e3);
    printf("memcpy of the same records  %.2f ns/record, %.2f M records/s\n", best_copy / (double)n,
           (double)n / best_copy * 1e3);
    printf("ratio parse+recorder/memcpy %.1fx the time of copying the records\n", best_rec / best_copy);
    printf("ratio parse+spool/memcpy    %.1fx\n", best_spool / best_copy);
    printf("(checksum %llu)\n", (unsigned long long)checksum);
    free(rec);
    free(copy);
    return 0;
}

#if defined(WARMCAL_BENCH_SERVER) && defined(WARMCAL_BENCH_INJECT) && defined(WARMCAL_BENCH_CUPTI)
/* Run the server once; its wall time in ns, or 0 on failure. out_dir NULL:
 * unprofiled (the injection variables removed from the environment). */
static uint64_t run_server(const char *phases, const char *allocs, const char *out_dir)
{
    static const char *ours[] = {"CUDA_INJECTION64_PATH=", "NVTX_INJECTION64_PATH=", "WARMCAL_OUT=",
                                 "WARMCAL_CUPTI_LIB=", "WARMCAL_SESSION="};
    size_t n_env = 0;
    while (environ[n_env])
        n_env++;
    char **env = calloc(n_env + 8, sizeof *env);
    if (!env)
        return 0;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        int skip = 0;
        for (size_t j = 0; j < sizeof ours / sizeof ours[0]; j++)
            skip |= strncmp(environ[i], ours[j], strlen(ours[j])) == 0;
        if (!skip)
            env[k++] = environ[i];
    }
    char vars[4][4200];
    if (out_dir) {
        snprintf(vars[0], sizeof vars[0], "CUDA_INJECTION64_PATH=%s", WARMCAL_BENCH_INJECT);
        snprintf(vars[1], sizeof vars[1], "NVTX_INJECTION64_PATH=%s", WARMCAL_BENCH_INJECT);
        snprintf(vars[2], sizeof vars[2], "WARMCAL_OUT=%s", out_dir);
        snprintf(vars[3], sizeof vars[3], "WARMCAL_CUPTI_LIB=%s", WARMCAL_BENCH_CUPTI);
        for (int i = 0; i < 4; i++)
            env[k++] = vars[i];
    }
    env[k] = NULL;
    char *argv[] = {(char *)WARMCAL_BENCH_SERVER, (char *)phases, (char *)allocs, NULL};
    pid_t pid;
    uint64_t t0 = warmcal_now_ns();
    int rc = posix_spawn(&pid, WARMCAL_BENCH_SERVER, NULL, NULL, argv, env);
    free(env);
    if (rc != 0)
        return 0;
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return 0;
    return warmcal_now_ns() - t0;
}

static int server_part(const char *phases, const char *allocs)
{
    char dir[] = "/tmp/warmcal-bench-server-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    const int rounds = 5;
    uint64_t best_plain = UINT64_MAX, best_profiled = UINT64_MAX, spool = 0;
    for (int round = 0; round < rounds; round++) {
        uint64_t plain = run_server(phases, allocs, NULL);
        uint64_t profiled = run_server(phases, allocs, dir);
        spool = dir_bytes(dir);
        remove_dir(dir);
        if (!plain || !profiled || mkdir(dir, 0700) != 0) {
            fprintf(stderr, "bench-inject: the server %s failed\n", WARMCAL_BENCH_SERVER);
            remove_dir(dir);
            return 1;
        }
        if (plain < best_plain)
            best_plain = plain;
        if (profiled < best_profiled)
            best_profiled = profiled;
    }
    remove_dir(dir);
    long n_allocs = strtol(phases, NULL, 10) * strtol(allocs, NULL, 10);
    printf("server                      %s phases x %s allocations (fake driver and CUPTI, best of %d)\n", phases,
           allocs, rounds);
    printf("unprofiled                  %.1f ms\n", (double)best_plain / 1e6);
    printf("profiled                    %.1f ms (spool %llu bytes)\n", (double)best_profiled / 1e6,
           (unsigned long long)spool);
    printf("ratio profiled/unprofiled   %.2fx (%.0f ns more per allocation+free)\n",
           (double)best_profiled / (double)best_plain,
           ((double)best_profiled - (double)best_plain) / (double)(n_allocs > 0 ? n_allocs : 1));
    return 0;
}
#endif

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    if (n < 1000)
        n = 1000;
    if (records_part(n))
        return 1;
#if defined(WARMCAL_BENCH_SERVER) && defined(WARMCAL_BENCH_INJECT) && defined(WARMCAL_BENCH_CUPTI)
    return server_part(argc > 2 ? argv[2] : "50", argc > 3 ? argv[3] : "2000");
#else
    printf("server                      not measured: this build has no fake driver\n");
    return 0;
#endif
}
