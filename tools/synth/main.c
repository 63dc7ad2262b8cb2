/* warmcal-synth: the synthetic multi-rank warmup. Each MPI rank runs a
 * server-like warmup schedule on a simulated device, with a real collective
 * per sub-layer, and records every pass through the recorder into
 * DIR/rank-<R>.h5. --unsynchronized reproduces the original hang: a rank that
 * hits OOM moves on while the others wait in the next collective, bounded by
 * a timeout that names the rank that went missing. */
#define _POSIX_C_SOURCE 200809L
#include "progress.h"
#include "shipped_models.h"
#include "warmcal/gate.h"
#include "warmcal/model.h"
#include "warmcal/mpi_wait.h"
#include "warmcal/recorder.h"
#include "warmcal/simdev.h"
#include "warmcal/trace.h"
#include "warmcal/units.h"
#include "warmcal/workload.h"

#include <errno.h>
#include <mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define EXIT_HUNG 1
#define EXIT_USAGE 2

static const char usage[] =
    "usage: mpirun -np N warmcal-synth --model CONFIG.json|NAME --out DIR [options]\n"
    "       warmcal-synth --help | --version\n"
    "  --model FILE|NAME        Hugging Face config.json of the model, or the name of a\n"
    "                           model shipped with warmcal (share/warmcal/models/NAME)\n"
    "  --out DIR                folder for rank-<R>.h5 traces (created)\n"
    "  --deployment FILE|NAME   deployment JSON (flags below win over it), or the name of\n"
    "                           one shipped beside the model (NAME.json in its folder)\n"
    "  --tp N                   tensor-parallel size (default: number of ranks)\n"
    "  --max-num-tokens N       largest context pass\n"
    "  --max-num-seqs N         sequences per context pass (logits rows)\n"
    "  --gpu-memory BYTES       device memory (e.g. 80GiB; default: the smallest of\n"
    "                           H100 80GB, H200, B200 that holds the weights)\n"
    "  --gpu-name NAME          device name written to the traces\n"
    "  --runtime-overhead BYTES memory per rank no allocation API reports\n"
    "  --kv-cache-fraction F    share of the memory left after weights given to the KV cache\n"
    "                           (default 0.75)\n"
    "  --rank-overhead R:BYTES  extra memory taken on rank R (repeatable)\n"
    "  --graph-batch-sizes L    comma-separated CUDA-graph batch sizes\n"
    "  --moe-hot-rank R         rank that holds a hot expert (MoE models)\n"
    "  --moe-hot-share F        share of routed tokens the hot rank receives\n"
    "  --noise F                relative seeded noise on transient buffers\n"
    "  --seed N                 noise seed\n"
    "  --timeout SECONDS        how long a rank waits in one collective\n"
    "  --unsynchronized         on OOM a rank moves on alone (reproduces the hang)\n"
    "  --events                 also write the /events timeline\n"
    "  --gate TABLE             ask the warmcal gate before every pass: a pass that does\n"
    "                           not fit on some rank is skipped on every rank\n"
    "fault injection (tests and demonstrations):\n"
    "  --stall-rank R:P         rank R stops responding when pass P begins\n"
    "  --kill-rank R:P          rank R kills itself (SIGKILL) when pass P begins\n"
    "\n"
    "Exit 0 when every rank finished its warmup, 1 when a rank hung, stalled or failed\n"
    "while running, 2 on bad arguments or bad input files. Rank 0 shows a progress\n"
    "line (pass i/n) on stderr when it is a terminal; mpirun gives ranks a pipe, so\n"
    "set WARMCAL_PROGRESS=1 to see it there.\n"
    "\n"
    "examples:\n"
    "  mpirun -np 4 warmcal-synth --model data/models/deepseek-v3/config.json \\\n"
    "      --deployment data/models/deepseek-v3/deploy-tp4-rank0-overhead.json \\\n"
    "      --seed 1 --out traces\n"
    "  mpirun -np 4 warmcal-synth --model data/models/deepseek-v3/config.json \\\n"
    "      --deployment data/models/deepseek-v3/deploy-tp4-rank0-overhead.json \\\n"
    "      --seed 2 --out holdout\n"
    "  mpirun -np 4 warmcal-synth --model data/models/deepseek-v3/config.json \\\n"
    "      --deployment data/models/deepseek-v3/deploy-tp4-rank0-overhead.json \\\n"
    "      --seed 3 --unsynchronized --timeout 5 --gate table.json --out gated\n"
    "  warmcal-synth --model data/models/llama-3.1-8b/config.json --max-num-tokens 8192 \\\n"
    "      --gpu-memory 80GiB --rank-overhead 0:2GiB --out llama\n"
    "  mpirun -np 4 warmcal-synth --model deepseek-v3 --deployment deploy-tp4 --out traces\n";

typedef struct {
    const char *out_dir, *gate_table;
    char *model_path, *deployment_path; /* resolved (shipped_models.h), malloc'd */
    int unsynchronized, events;
    long long stall_rank, stall_pass, kill_rank, kill_pass; /* -1: none */
} options;

static int rank_id;

/* A bad argument: one line naming it, from rank 0 only, exit 2 (no usage
 * text: --help has it). */
static int fail_usage(const char *fmt, const char *arg)
{
    if (rank_id == 0) {
        fprintf(stderr, "warmcal-synth: ");
        fprintf(stderr, fmt, arg);
        fprintf(stderr, " (see 'warmcal-synth --help')\n");
    }
    return EXIT_USAGE;
}

static int report(const warmcal_error *err, int status)
{
    char buf[600];
    fprintf(stderr, "warmcal-synth: rank %d: %s\n", rank_id, warmcal_error_format(err, buf, sizeof buf));
    return status;
}

static int parse_int(const char *flag, const char *v, long long lo, long long hi, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (!*v || *end || errno || x < lo || x > hi) {
        if (rank_id == 0)
            fprintf(stderr, "warmcal-synth: %s: expected an integer in [%lld, %lld], found '%s'\n",
                    flag, lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_double(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end = NULL;
    double x = strtod(v, &end);
    if (!*v || *end || !(x >= lo && x <= hi)) {
        if (rank_id == 0)
            fprintf(stderr, "warmcal-synth: %s: expected a number in [%g, %g], found '%s'\n", flag,
                    lo, hi, v);
        return -1;
    }
    *out = x;
    return 0;
}

static int parse_bytes_flag(const char *flag, const char *v, uint64_t *out)
{
    warmcal_error err = {0};
    if (warmcal_parse_bytes(v, out, flag, &err) != WARMCAL_OK) {
        if (rank_id == 0)
            report(&err, 0);
        return -1;
    }
    return 0;
}

/* The options that take a value (every other one is a switch). */
static int takes_value(const char *a)
{
    static const char *const names[] = {
        "--model", "--out", "--deployment", "--tp", "--max-num-tokens", "--max-num-seqs",
        "--gpu-memory", "--gpu-name", "--runtime-overhead", "--kv-cache-fraction",
        "--rank-overhead", "--graph-batch-sizes", "--moe-hot-rank", "--moe-hot-share", "--noise",
        "--seed", "--timeout", "--gate", "--stall-rank", "--kill-rank"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(a, names[i]) == 0)
            return 1;
    return 0;
}

/* Deployment file first, then flags over it. Returns 0 or an exit status. */
static int parse_args(int argc, char **argv, options *o, warmcal_deployment *d)
{
    const char *model = NULL, *deployment = NULL;
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--model") == 0)
            model = argv[i + 1];
        else if (strcmp(argv[i], "--deployment") == 0)
            deployment = argv[i + 1];
    }
    char why[1400] = "out of memory";
    if (deployment && !(o->deployment_path =
                            warmcal_synth_deployment_file(deployment, model, why, sizeof why)))
        return fail_usage("--deployment: %s", why);
    warmcal_deployment_defaults(d);
    if (o->deployment_path) {
        warmcal_error err = {0};
        if (warmcal_deployment_load(o->deployment_path, d, &err) != WARMCAL_OK)
            return rank_id == 0 ? report(&err, EXIT_USAGE) : EXIT_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--unsynchronized") == 0) {
            o->unsynchronized = 1;
            continue;
        }
        if (strcmp(a, "--events") == 0) {
            o->events = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            if (rank_id == 0) {
                fputs(usage, stdout);
                fflush(stdout); /* before MPI's finalization, whatever it does at exit */
            }
            return -1;
        }
        if (strcmp(a, "--version") == 0) {
            if (rank_id == 0) {
                printf("warmcal-synth %s\n", WARMCAL_VERSION);
                fflush(stdout);
            }
            return -1;
        }
        if (strncmp(a, "--", 2) != 0)
            return fail_usage("unexpected argument '%s'", a);
        if (!takes_value(a))
            return fail_usage("unknown option '%s'", a);
        if (i + 1 >= argc)
            return fail_usage("%s needs a value", a);
        const char *v = argv[++i];
        long long n = 0;
        int bad = 0;
        if (strcmp(a, "--model") == 0)
            ;
        else if (strcmp(a, "--out") == 0 && !*v)
            return fail_usage("%s", "--out: expected a folder path, found an empty string");
        else if (strcmp(a, "--out") == 0)
            o->out_dir = v;
        else if (strcmp(a, "--gate") == 0)
            o->gate_table = v;
        else if (strcmp(a, "--deployment") == 0)
            ;
        else if (strcmp(a, "--tp") == 0)
            bad = parse_int(a, v, 1, 4096, &n), d->tp = (int)n;
        else if (strcmp(a, "--max-num-tokens") == 0)
            bad = parse_int(a, v, 1, WARMCAL_MAX_TOKENS, &n), d->max_num_tokens = (uint64_t)n;
        else if (strcmp(a, "--max-num-seqs") == 0)
            bad = parse_int(a, v, 1, 1 << 20, &n), d->max_num_seqs = (uint32_t)n;
        else if (strcmp(a, "--seed") == 0)
            bad = parse_int(a, v, 0, INT64_MAX, &n), d->seed = (uint64_t)n;
        else if (strcmp(a, "--moe-hot-rank") == 0)
            bad = parse_int(a, v, -1, 4095, &n), d->moe_hot_rank = (int)n;
        else if (strcmp(a, "--gpu-memory") == 0)
            bad = parse_bytes_flag(a, v, &d->gpu_memory);
        else if (strcmp(a, "--runtime-overhead") == 0)
            bad = parse_bytes_flag(a, v, &d->runtime_overhead);
        else if (strcmp(a, "--gpu-name") == 0 && strlen(v) >= sizeof d->gpu_name) {
            /* kept whole or refused: a cut name would not match the traces' */
            if (rank_id == 0)
                fprintf(stderr, "warmcal-synth: --gpu-name: %zu bytes, longer than the %zu a GPU "
                                "name may have\n", strlen(v), sizeof d->gpu_name - 1);
            return EXIT_USAGE;
        } else if (strcmp(a, "--gpu-name") == 0)
            memcpy(d->gpu_name, v, strlen(v) + 1);
        else if (strcmp(a, "--kv-cache-fraction") == 0)
            bad = parse_double(a, v, 0.0, 1.0, &d->kv_cache_fraction);
        else if (strcmp(a, "--moe-hot-share") == 0)
            bad = parse_double(a, v, 0.0, 1.0, &d->moe_hot_share);
        else if (strcmp(a, "--noise") == 0)
            bad = parse_double(a, v, 0.0, 0.5, &d->noise);
        else if (strcmp(a, "--timeout") == 0)
            bad = parse_double(a, v, 0.001, 86400.0, &d->collective_timeout_s);
        else if (strcmp(a, "--rank-overhead") == 0) {
            char *colon = NULL;
            errno = 0;
            long long rank = strtoll(v, &colon, 10);
            uint64_t bytes = 0;
            warmcal_error err = {0};
            if (colon == v || *colon != ':' || errno || rank < 0 || rank > 4095)
                return fail_usage("--rank-overhead: expected RANK:BYTES with a rank in [0, 4095], "
                                  "found '%s'", v);
            bad = parse_bytes_flag(a, colon + 1, &bytes);
            if (!bad && warmcal_deployment_set_rank_overhead(d, (int)rank, bytes, &err) != WARMCAL_OK)
                return rank_id == 0 ? report(&err, EXIT_USAGE) : EXIT_USAGE;
        } else if (strcmp(a, "--stall-rank") == 0 || strcmp(a, "--kill-rank") == 0) {
            long long r = 0, p = 0;
            char tail = 0;
            if (sscanf(v, "%lld:%lld%c", &r, &p, &tail) != 2 || r < 0 || p < 0)
                return fail_usage(a[2] == 's' ? "--stall-rank: expected RANK:PASS, found '%s'"
                                              : "--kill-rank: expected RANK:PASS, found '%s'", v);
            if (a[2] == 's')
                o->stall_rank = r, o->stall_pass = p;
            else
                o->kill_rank = r, o->kill_pass = p;
        } else if (strcmp(a, "--graph-batch-sizes") == 0) {
            d->n_graph_batch_sizes = 0;
            for (const char *p = v;; p++) {
                char *end = NULL;
                errno = 0;
                long long size = strtoll(p, &end, 10);
                if (end == p || errno || size < 1 || size > 1 << 20 || (*end && *end != ','))
                    return fail_usage("--graph-batch-sizes: expected a comma-separated list of "
                                      "batch sizes in [1, 1048576], found '%s'", v);
                if (d->n_graph_batch_sizes == WARMCAL_MAX_GRAPH_SIZES)
                    return fail_usage("--graph-batch-sizes: at most 64 sizes, found '%s'", v);
                d->graph_batch_sizes[d->n_graph_batch_sizes++] = (uint32_t)size;
                if (!*end)
                    break;
                p = end;
            }
        } else
            return fail_usage("unknown option '%s'", a);
        if (bad)
            return EXIT_USAGE;
    }
    if (!model)
        return fail_usage("%s", "--model is required");
    if (!o->out_dir)
        return fail_usage("%s", "--out is required");
    /* after the options' own checks: a name is looked up only in a valid command */
    strcpy(why, "out of memory");
    if (!(o->model_path = warmcal_synth_model_file(model, why, sizeof why)))
        return fail_usage("--model: %s", why);
    return 0;
}

/* Every collective of the run — the start-up agreement, two per layer and
 * one per logits gather, the end-of-warmup agreement — is one
 * MPI_Iallreduce of the same shape: each rank's position in the run and its
 * status, reduced with MINLOC so that everyone learns the lowest and highest
 * position (and who holds them) and the worst status. When positions differ,
 * ranks are in different collectives: on a GPU those would never match and
 * NCCL would hang; the synth waits out the timeout, as a hung rank would, and
 * names who went missing. A collective that never completes at all (a rank
 * stopped or died) also ends at the timeout. */
typedef struct {
    int rank, size;
    double timeout_s;
    const warmcal_pass *passes;
    size_t n_passes;
    uint32_t per_pass;
    int *buffers; /* 12 ints, in then out: on the heap, since a collective that timed
                   * out is still pending and MPI may write them later; then kept */
    int hung;     /* a collective is still pending: MPI cannot be finalized */
    int diverged; /* ranks were found in different collectives: no more collectives */
} collective_ctx;

#define SEQ_START 0 /* positions: 0 start-up, then 1 + pass * per_pass + index, then the end */

static int seq_end(const collective_ctx *c)
{
    return (int)(c->n_passes * c->per_pass) + 1;
}

static void describe(const collective_ctx *c, int seq, char *buf, size_t len)
{
    if (seq == SEQ_START) {
        snprintf(buf, len, "the start-up agreement");
    } else if (seq == seq_end(c)) {
        snprintf(buf, len, "the end-of-warmup agreement");
    } else {
        size_t p = (size_t)(seq - 1) / c->per_pass;
        snprintf(buf, len, "collective %u of pass %zu (%s, %llu tokens)",
                 (unsigned)((size_t)(seq - 1) % c->per_pass), p, c->passes[p].label,
                 (unsigned long long)c->passes[p].tokens);
    }
}

/* One collective at position seq carrying this rank's status. On success
 * *worst (may be NULL) is the highest status of any rank. */
static int exchange(collective_ctx *c, int seq, int status, int *worst, warmcal_error *err)
{
    if (!c->buffers && !(c->buffers = malloc(12 * sizeof *c->buffers)))
        return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "out of memory");
    int *in = c->buffers, *out = c->buffers + 6;
    memcpy(in, (int[6]){seq, c->rank, -seq, c->rank, -status, c->rank}, 6 * sizeof *in);
    uint64_t deadline = warmcal_deadline_after(c->timeout_s);
    char here[128], there[128];
    describe(c, seq, here, sizeof here);
    MPI_Request req;
    MPI_Iallreduce(in, out, 3, MPI_2INT, MPI_MINLOC, MPI_COMM_WORLD, &req);
    if (!warmcal_mpi_wait(&req, deadline, NULL)) {
        c->hung = 1;
        return warmcal_error_set(err, WARMCAL_E_TIMEOUT, NULL, NULL,
                                 "%s timed out after %.1f s: a rank never arrived", here,
                                 c->timeout_s);
    }
    int min_seq = out[0], min_rank = out[1], max_seq = -out[2], max_rank = out[3];
    int max_status = -out[4], failed_rank = out[5];
    if (worst)
        *worst = max_status;
    if (min_seq == max_seq)
        return WARMCAL_OK;
    c->diverged = 1;
    if (max_status != 0 && seq != max_seq) {
        describe(c, max_seq, there, sizeof there);
        return warmcal_error_set(err, WARMCAL_E_MISMATCH, NULL, NULL,
                                 "rank %d stopped with an error and went on to %s", failed_rank,
                                 there);
    }
    if (max_status != 0)
        return WARMCAL_E_MISMATCH; /* this rank failed: it reported why */
    /* Nobody failed: a rank moved on alone. Hang as a real rank would. */
    struct timespec rest = {0, 1000000};
    while (warmcal_now_ns() < deadline)
        nanosleep(&rest, NULL);
    if (seq == min_seq) {
        describe(c, max_seq, there, sizeof there);
        return warmcal_error_set(err, WARMCAL_E_TIMEOUT, NULL, NULL,
                                 "%s timed out after %.1f s: rank %d never joined; it left and "
                                 "went on to %s",
                                 here, c->timeout_s, max_rank, there);
    }
    describe(c, min_seq, there, sizeof there);
    return warmcal_error_set(err, WARMCAL_E_TIMEOUT, NULL, NULL,
                             "%s timed out after %.1f s: rank %d and others are still waiting "
                             "in %s, which this rank left",
                             here, c->timeout_s, min_rank, there);
}

static int layer_collective(void *user, size_t pass_index, uint32_t index, warmcal_error *err)
{
    collective_ctx *c = user;
    return exchange(c, (int)(1 + pass_index * c->per_pass + index), 0, NULL, err);
}

static int make_dir(const char *dir, warmcal_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot create folder: %s",
                                     strerror(errno));
        *p = '/';
    }
    if (mkdir(path, 0777) != 0 && errno != EEXIST)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot create folder: %s",
                                 strerror(errno));
    return WARMCAL_OK;
}

/* Whether this rank's trace can be created at path, checked before any rank
 * writes to --out: a folder, a FIFO or a device in its place, or a folder
 * that cannot take it, would otherwise be found only once the other ranks
 * had replaced their traces. */
static int check_trace_path(const char *dir, const char *path, warmcal_error *err)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        if (!S_ISREG(st.st_mode))
            return warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                     "cannot create the trace file: %s is there",
                                     S_ISDIR(st.st_mode) ? "a folder" : "something not a regular file");
        if (access(path, W_OK) != 0)
            return warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                     "cannot create the trace file: %s", strerror(errno));
        return WARMCAL_OK;
    }
    if (errno != ENOENT)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot create the trace file: %s",
                                 strerror(errno));
    /* the nearest folder that exists must let the missing ones be made */
    char folder[4096];
    snprintf(folder, sizeof folder, "%s", dir);
    for (;;) {
        size_t len = strlen(folder);
        while (len > 1 && folder[len - 1] == '/')
            folder[--len] = '\0';
        if (stat(folder, &st) == 0)
            break;
        char *slash = strrchr(folder, '/');
        if (errno != ENOENT || (!slash && strcmp(folder, ".") == 0))
            return warmcal_error_set(err, WARMCAL_E_IO, folder, NULL, "cannot create folder: %s",
                                     strerror(errno));
        if (!slash)
            snprintf(folder, sizeof folder, ".");
        else
            slash[slash == folder ? 1 : 0] = '\0';
    }
    if (!S_ISDIR(st.st_mode))
        return warmcal_error_set(err, WARMCAL_E_IO, folder, NULL,
                                 "cannot create folder: it is not a folder (--out %s)", dir);
    if (access(folder, W_OK | X_OK) != 0)
        return warmcal_error_set(err, WARMCAL_E_IO, folder, NULL,
                                 "cannot create the trace file in it: %s", strerror(errno));
    return WARMCAL_OK;
}

/* This rank's trace, opened only once every rank has started: until then
 * the recorder's events (the weights and the KV cache loading) wait here,
 * and are written first when it opens. */
typedef struct {
    warmcal_trace_writer *writer;
    warmcal_event *pending;
    size_t n_pending, cap_pending;
} trace_slot;

static int slot_event(void *user, const warmcal_event *event, warmcal_error *err)
{
    trace_slot *t = user;
    if (t->writer)
        return warmcal_trace_event_sink(t->writer, event, err);
    if (t->n_pending == t->cap_pending) {
        size_t cap = t->cap_pending ? 2 * t->cap_pending : 256;
        warmcal_event *grown = realloc(t->pending, cap * sizeof *grown);
        if (!grown)
            return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "out of memory");
        t->pending = grown;
        t->cap_pending = cap;
    }
    t->pending[t->n_pending++] = *event;
    return WARMCAL_OK;
}

static int slot_phase(void *user, const warmcal_phase *phase, warmcal_error *err)
{
    return warmcal_trace_phase_sink(((trace_slot *)user)->writer, phase, err);
}

/* The trace is created under a temporary name beside its final one, so
 * that a rank that cannot create it, or a run that stops before its first
 * pass, leaves every trace in --out as it was. A stale one left by a killed
 * start is replaced; a folder in its place stays, and the open fails. */
static int open_trace(trace_slot *t, const char *dir, const char *partial,
                      const warmcal_trace_info *info, int events, warmcal_error *err)
{
    int rc = make_dir(dir, err);
    if (rc == WARMCAL_OK)
        unlink(partial);
    rc = rc ? rc : warmcal_trace_writer_open(&t->writer, partial, info, events, err);
    for (size_t i = 0; rc == WARMCAL_OK && i < t->n_pending; i++)
        rc = warmcal_trace_writer_add_event(t->writer, &t->pending[i], err);
    free(t->pending);
    t->pending = NULL;
    t->n_pending = t->cap_pending = 0;
    return rc;
}

/* A run that will not go ahead drops the trace it created under its
 * temporary name. */
static void discard_trace(trace_slot *t, const char *partial)
{
    warmcal_error ignored = {0};
    warmcal_trace_writer_close(t->writer, &ignored);
    t->writer = NULL;
    unlink(partial);
}

/* The gate's probe: the simulated device's free memory. */
static int device_free(void *user, uint64_t *free_bytes)
{
    *free_bytes = warmcal_simdev_free_bytes(user);
    return 0;
}

static const char *skipped_text(size_t skipped)
{
    static char buf[64];
    snprintf(buf, sizeof buf, ", %zu skipped by the gate", skipped);
    return buf;
}

/* Run the whole schedule on this rank, from the start-up agreement to the
 * end-of-warmup agreement. Returns the exit status: the worst over ranks
 * when the ranks stayed together, else this rank's. */
static int run_rank(const options *o, const warmcal_model *m, const warmcal_deployment *d,
                    collective_ctx *coll)
{
    warmcal_error err = {0};
    char path[4096], partial[4096], host[256] = "", started[32];
    snprintf(path, sizeof path, "%s/rank-%d.h5", o->out_dir, coll->rank);
    snprintf(partial, sizeof partial, "%s/.rank-%d.h5.partial", o->out_dir, coll->rank);
    gethostname(host, sizeof host - 1);
    warmcal_utc_now(started, sizeof started);
    warmcal_trace_info info = {
        .rank = coll->rank, .world_size = coll->size, .model = m->name, .source = "simulated",
        .gpu_name = d->gpu_name, .gpu_total_bytes = d->gpu_memory, .tp = coll->size, .pp = 1,
        .host = host, .start_time = started, .tool_version = WARMCAL_VERSION,
    };
    trace_slot trace = {0};
    warmcal_recorder *rec = NULL;
    warmcal_simdev *dev = NULL;
    warmcal_pass *passes = NULL;
    size_t n_passes = 0, ooms = 0, done = 0;
    warmcal_start_up up = {0};
    int status = 0;
    /* every step up to the start-up agreement runs on every rank, so that a
     * rank that cannot start still tells the others; none writes to --out */
    int rc = check_trace_path(o->out_dir, path, &err);
    warmcal_recorder_options ro = {.on_phase = slot_phase, .on_event = o->events ? slot_event : NULL,
                                   .user = &trace};
    warmcal_simdev_options so = {.total_bytes = d->gpu_memory};
    rc = rc ? rc : warmcal_recorder_open(&rec, &ro, &err);
    rc = rc ? rc : warmcal_simdev_open(&dev, &so, rec, &err);
    rc = rc ? rc : warmcal_schedule_build(d, &passes, &n_passes, &err);
    warmcal_workload w = {.model = m, .deployment = d, .rank = coll->rank, .tp = coll->size,
                          .device = dev, .collective = layer_collective, .collective_user = coll,
                          .lockstep_after_oom = !o->unsynchronized};
    coll->passes = passes;
    coll->n_passes = n_passes;
    coll->per_pass = warmcal_workload_collectives(&w);
    rc = rc ? rc : warmcal_workload_start_up(&w, &up, &err);
    if (rc)
        status = report(&err, rc == WARMCAL_E_NOMEM || rc == WARMCAL_E_STATE ? EXIT_HUNG : EXIT_USAGE);
    warmcal_error_clear(&err);
    int worst = 0;
    rc = exchange(coll, SEQ_START, status, &worst, &err);
    if (rc == WARMCAL_OK && worst && !status)
        fprintf(stderr, "warmcal-synth: rank %d: another rank could not start; stopping\n",
                coll->rank);
    if (rc == WARMCAL_OK && !worst) {
        char wb[32], kb[32], fb[32];
        fprintf(stderr, "warmcal-synth: rank %d: weights %s, KV cache %s, %s free before warmup\n",
                coll->rank, warmcal_format_bytes(up.weights, wb, sizeof wb),
                warmcal_format_bytes(up.kv_cache, kb, sizeof kb),
                warmcal_format_bytes(up.free_before_warmup, fb, sizeof fb));
    }
    warmcal_gate *gate = NULL;
    size_t skipped = 0;
    /* rank 0 speaks for the run, as it does for the gate's skips */
    warmcal_progress progress;
    cli_progress_start(&progress, coll->rank == 0);
    if (rc == WARMCAL_OK && !worst && o->gate_table) {
        warmcal_gate_options go;
        warmcal_gate_options_init(&go);
        go.probe = WARMCAL_PROBE_CALLBACK;
        go.free_fn = device_free;
        go.free_user = dev;
        go.deadline_s = coll->timeout_s;
        if (warmcal_gate_open(&gate, o->gate_table, MPI_COMM_WORLD, &go) != WARMCAL_OK) {
            fprintf(stderr, "warmcal-synth: rank %d: gate: %s\n", coll->rank,
                    warmcal_gate_last_error(gate));
            status = EXIT_USAGE;
        }
        /* every rank uses the gate, or none */
        warmcal_error_clear(&err);
        rc = exchange(coll, SEQ_START, status, &worst, &err);
    }
    /* Only now that every rank has started does each create its trace,
     * under a temporary name; a rank that cannot stops every rank, and each
     * drops its own. Once all have one, each moves it over the old trace:
     * from then on a crash leaves a readable trace with complete = 0. */
    if (rc == WARMCAL_OK && !worst) {
        if (open_trace(&trace, o->out_dir, partial, &info, o->events, &err) != WARMCAL_OK)
            status = report(&err, err.code == WARMCAL_E_NOMEM ? EXIT_HUNG : EXIT_USAGE);
        warmcal_error_clear(&err);
        rc = exchange(coll, SEQ_START, status, &worst, &err);
        if (rc == WARMCAL_OK && !worst) {
            if (warmcal_trace_writer_rename(trace.writer, path, &err) != WARMCAL_OK) {
                status = report(&err, EXIT_USAGE);
                discard_trace(&trace, partial);
            }
            warmcal_error_clear(&err);
            rc = exchange(coll, SEQ_START, status, &worst, &err);
        } else {
            discard_trace(&trace, partial);
        }
    }
    for (size_t i = 0; rc == WARMCAL_OK && !worst && i < n_passes; i++) {
        char pass_name[64];
        snprintf(pass_name, sizeof pass_name, "%s, %llu tokens", passes[i].label,
                 (unsigned long long)passes[i].tokens);
        warmcal_progress_step(&progress, "warmcal-synth: pass", i + 1, n_passes, pass_name);
        if (o->kill_rank == coll->rank && o->kill_pass == (long long)i)
            raise(SIGKILL);
        if (o->stall_rank == coll->rank && o->stall_pass == (long long)i)
            for (;;)
                pause(); /* until the job is aborted */
        if (gate) {
            warmcal_shape shape = {.tokens = passes[i].tokens, .batch = passes[i].batch,
                                   .label = passes[i].label, .batch_valid = 1};
            warmcal_decision d;
            if (warmcal_gate_decide(gate, &shape, 1, &d) != WARMCAL_OK) {
                rc = warmcal_error_set(&err, warmcal_gate_last_code(gate), NULL, "gate", "%s",
                                       warmcal_gate_last_error(gate));
                coll->hung = warmcal_gate_last_code(gate) == WARMCAL_E_TIMEOUT;
                break;
            }
            if (!d.run) {
                warmcal_progress_clear(&progress);
                if (coll->rank == 0)
                    fprintf(stderr, "warmcal-synth: gate: pass %zu (%s, %llu tokens) skipped on "
                                    "every rank: %s\n",
                            i, passes[i].label, (unsigned long long)passes[i].tokens, d.text);
                skipped++;
                continue;
            }
        }
        rc = warmcal_simdev_sample(dev, &err);
        rc = rc ? rc : warmcal_recorder_phase_begin(rec, warmcal_now_ns(), passes[i].label,
                                                    passes[i].tokens, passes[i].batch, &err);
        rc = rc ? rc : warmcal_workload_forward(&w, &passes[i], i, &err);
        if (rc == WARMCAL_E_OOM) { /* recorded in the phase; the run goes on */
            ooms++;
            warmcal_error_clear(&err);
            rc = WARMCAL_OK;
        }
        rc = rc ? rc : warmcal_simdev_sample(dev, &err);
        rc = rc ? rc : warmcal_recorder_phase_end(rec, warmcal_now_ns(), &err);
        done += rc == WARMCAL_OK;
    }
    warmcal_progress_clear(&progress);
    if (rc != WARMCAL_OK && !status)
        status = report(&err, EXIT_HUNG);
    warmcal_error closing = {0};
    if (rec)
        warmcal_recorder_abort_phase(rec, warmcal_now_ns(), &closing);
    free(trace.pending);
    if (warmcal_trace_writer_close(trace.writer, &closing) != WARMCAL_OK && !status)
        status = report(&closing, EXIT_HUNG);
    /* the end-of-warmup agreement, unless the ranks already parted ways */
    if (!worst && !coll->hung && !coll->diverged) {
        warmcal_error_clear(&err);
        if (exchange(coll, seq_end(coll), status, &worst, &err) != WARMCAL_OK) {
            if (err.code)
                report(&err, 0);
            worst = EXIT_HUNG;
        }
    }
    if (worst < status)
        worst = status;
    warmcal_gate_close(gate);
    if (worst == 0)
        fprintf(stderr, "warmcal-synth: rank %d: %zu passes, %zu out of memory%s -> %s\n",
                coll->rank, done, ooms, gate ? skipped_text(skipped) : "", path);
    free(passes);
    warmcal_simdev_close(dev);
    warmcal_recorder_close(rec);
    return worst;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int size = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_id);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    options o = {.stall_rank = -1, .stall_pass = -1, .kill_rank = -1, .kill_pass = -1};
    warmcal_deployment d;
    warmcal_model m;
    warmcal_error err = {0};
    int status = parse_args(argc, argv, &o, &d);
    if (status == 0 && warmcal_model_load(o.model_path, &m, &err) != WARMCAL_OK)
        status = rank_id == 0 ? report(&err, EXIT_USAGE) : EXIT_USAGE;
    if (status == 0 && warmcal_deployment_resolve(&d, &m, size, &err) != WARMCAL_OK)
        status = rank_id == 0 ? report(&err, EXIT_USAGE) : EXIT_USAGE;
    if (status == 0 && (o.stall_rank >= size || o.kill_rank >= size || (o.stall_rank >= 0 && size < 2)))
        status = fail_usage("%s", "--stall-rank/--kill-rank: the rank must exist, and a stalled "
                                  "rank needs another rank to notice");
    /* every rank parsed the same arguments: they agree without a deadline */
    MPI_Allreduce(MPI_IN_PLACE, &status, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (status != 0) {
        free(o.model_path);
        free(o.deployment_path);
        MPI_Finalize();
        return status < 0 ? 0 : status; /* -1: --help */
    }
    collective_ctx coll = {.rank = rank_id, .size = size, .timeout_s = d.collective_timeout_s};
    status = run_rank(&o, &m, &d, &coll);
    if (coll.hung) /* a collective is still pending here: finalizing would hang */
        MPI_Abort(MPI_COMM_WORLD, EXIT_HUNG); /* coll.buffers stay for it until the end */
    free(coll.buffers);
    free(o.model_path);
    free(o.deployment_path);
    MPI_Finalize();
    return status;
}
