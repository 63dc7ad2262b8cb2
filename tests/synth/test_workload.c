/* The synthetic forward pass and schedule without MPI: seeded noise is
 * reproducible, OOM keeps or breaks lockstep as asked, every buffer is freed,
 * and the schedule spans 1..max_num_tokens plus the CUDA-graph sizes. */
#include "../check.h"
#include "warmcal/model.h"
#include "warmcal/recorder.h"
#include "warmcal/simdev.h"
#include "warmcal/workload.h"

static warmcal_model model;
static warmcal_deployment deploy;

static void load(const char *name)
{
    char path[512];
    warmcal_error err = {0};
    snprintf(path, sizeof path, "%s/models/%s/config.json", WARMCAL_DATA_DIR, name);
    CHECK(warmcal_model_load(path, &model, &err) == WARMCAL_OK);
    warmcal_deployment_defaults(&deploy);
    deploy.tp = 4;
}

static int calls;
static int count_collectives(void *user, size_t pass, uint32_t index, warmcal_error *err)
{
    (void)user, (void)pass, (void)index, (void)err;
    calls++;
    return 0;
}

/* Run one pass on a fresh device of `total` bytes; returns the phase. */
static warmcal_phase run_pass(uint64_t total, int rank, uint64_t tokens, int lockstep, int *rc)
{
    warmcal_recorder *rec = NULL;
    warmcal_simdev *dev = NULL;
    warmcal_error err = {0};
    warmcal_simdev_options o = {.total_bytes = total};
    warmcal_recorder_open(&rec, NULL, &err);
    warmcal_simdev_open(&dev, &o, rec, &err);
    warmcal_workload w = {.model = &model, .deployment = &deploy, .rank = rank, .tp = 4,
                          .device = dev, .collective = count_collectives,
                          .lockstep_after_oom = lockstep};
    warmcal_pass pass = {.label = "context", .tokens = tokens, .batch = 1};
    calls = 0;
    warmcal_recorder_phase_begin(rec, 0, "context", tokens, 1, &err);
    *rc = warmcal_workload_forward(&w, &pass, 3, &err);
    warmcal_recorder_phase_end(rec, 1, &err);
    size_t n = 0;
    warmcal_phase ph = warmcal_recorder_phases(rec, &n)[0];
    CHECK(warmcal_simdev_free_bytes(dev) == total); /* everything freed, OOM or not */
    warmcal_simdev_close(dev);
    warmcal_recorder_close(rec);
    return ph;
}

static void same_seed_same_peak_other_seed_other_peak(void)
{
    load("deepseek-v3");
    int rc;
    uint64_t big = 1ull << 40;
    deploy.seed = 11;
    uint64_t a = run_pass(big, 1, 8192, 1, &rc).live_peak;
    uint64_t b = run_pass(big, 1, 8192, 1, &rc).live_peak;
    CHECK_EQ_U64(a, b);
    /* peaks are rounded to 2 MiB, so two seeds may still agree: over six,
     * some must differ, each by a few percent, not a different workload */
    int differ = 0;
    for (uint64_t seed = 12; seed < 18; seed++) {
        deploy.seed = seed;
        uint64_t c = run_pass(big, 1, 8192, 1, &rc).live_peak;
        differ += c != a;
        CHECK(c > a * 0.95 && c < a * 1.05);
    }
    CHECK(differ > 0);
}

static void oom_keeps_lockstep_or_leaves_the_pass(void)
{
    load("llama-3.1-8b");
    int rc;
    uint64_t collectives = 2 * model.num_hidden_layers + 1;
    warmcal_phase ok = run_pass(1ull << 40, 0, 4096, 1, &rc);
    CHECK(rc == WARMCAL_OK);
    CHECK_EQ_U64(calls, collectives);
    CHECK_EQ_U64(ok.outcome, WARMCAL_OUTCOME_OK);
    uint64_t small = ok.live_peak / 2;
    warmcal_phase oom = run_pass(small, 0, 4096, 1, &rc);
    CHECK(rc == WARMCAL_E_OOM);
    CHECK_EQ_U64(oom.outcome, WARMCAL_OUTCOME_OOM);
    CHECK(oom.failed_alloc_bytes > 0);
    CHECK_EQ_U64(calls, collectives); /* still joined every collective */
    run_pass(small, 0, 4096, 0, &rc);
    CHECK(rc == WARMCAL_E_OOM);
    CHECK(calls < (int)collectives); /* left the pass: the others would wait */
}

static void hot_expert_rank_needs_more(void)
{
    load("deepseek-v3");
    deploy.noise = 0;
    int rc;
    uint64_t balanced = run_pass(1ull << 40, 2, 16384, 1, &rc).live_peak;
    deploy.moe_hot_rank = 2;
    deploy.moe_hot_share = 0.5;
    uint64_t hot = run_pass(1ull << 40, 2, 16384, 1, &rc).live_peak;
    uint64_t cold = run_pass(1ull << 40, 1, 16384, 1, &rc).live_peak;
    CHECK(hot > balanced);
    CHECK(cold < balanced);
}

static void schedule_spans_one_to_max_then_graph_sizes(void)
{
    warmcal_deployment d;
    warmcal_deployment_defaults(&d);
    d.max_num_tokens = 32784;
    warmcal_pass *p = NULL;
    size_t n = 0;
    warmcal_error err = {0};
    CHECK(warmcal_schedule_build(&d, &p, &n, &err) == WARMCAL_OK);
    CHECK(n > 30);
    CHECK_EQ_U64(p[0].tokens, 1);
    size_t ctx = 0;
    while (ctx < n && strcmp(p[ctx].label, "context") == 0) {
        if (ctx)
            CHECK(p[ctx].tokens > p[ctx - 1].tokens);
        CHECK(p[ctx].batch >= 1 && p[ctx].batch <= d.max_num_seqs && p[ctx].batch <= p[ctx].tokens);
        ctx++;
    }
    CHECK_EQ_U64(p[ctx - 1].tokens, 32784);
    CHECK_EQ_U64(n - ctx, d.n_graph_batch_sizes);
    for (size_t i = ctx; i < n; i++) {
        CHECK(strcmp(p[i].label, "generation") == 0);
        CHECK_EQ_U64(p[i].tokens, d.graph_batch_sizes[i - ctx]);
    }
    free(p);
}

/* Start up one rank on its own device; returns what start-up reported. */
static int start_rank(int rank, warmcal_start_up *up, warmcal_error *err)
{
    warmcal_simdev *dev = NULL;
    warmcal_simdev_options o = {.total_bytes = deploy.gpu_memory};
    if (warmcal_simdev_open(&dev, &o, NULL, err) != WARMCAL_OK)
        return -1;
    warmcal_workload w = {.model = &model, .deployment = &deploy, .rank = rank, .tp = 4, .device = dev};
    int rc = warmcal_workload_start_up(&w, up, err);
    warmcal_simdev_close(dev);
    return rc;
}

static void start_up_gives_every_rank_the_same_kv_cache_and_rank0_its_overhead(void)
{
    load("llama-3.1-70b");
    deploy.gpu_memory = 80ull << 30;
    warmcal_deployment_set_rank_overhead(&deploy, 0, 3ull << 30, NULL);
    warmcal_start_up r0, r3;
    warmcal_error err = {0};
    CHECK(start_rank(0, &r0, &err) == WARMCAL_OK);
    CHECK(start_rank(3, &r3, &err) == WARMCAL_OK);
    CHECK(r0.kv_cache > 0);
    CHECK_EQ_U64(r0.kv_cache, r3.kv_cache);
    CHECK_EQ_U64(r0.kv_cache % (2u << 20), 0);
    CHECK_EQ_U64(r3.free_before_warmup - r0.free_before_warmup, 3ull << 30);
    deploy.kv_cache_fraction = 1.0; /* everything left goes to the KV cache: still starts */
    warmcal_deployment_set_rank_overhead(&deploy, 0, 0, NULL);
    CHECK(start_rank(0, &r0, &err) == WARMCAL_OK);
    CHECK(r0.free_before_warmup < (2u << 20));
    warmcal_deployment_set_rank_overhead(&deploy, 0, 1ull << 30, NULL);
    CHECK(start_rank(0, &r0, &err) == WARMCAL_E_INVAL);
    CHECK(strcmp(err.where, "rank_overhead") == 0);
    CHECK_STR_CONTAINS(err.text, "does not fit");
    warmcal_error_clear(&err);
    deploy.gpu_memory = 8ull << 30; /* 70B weights do not fit in 8 GiB at tp 4 */
    CHECK(start_rank(1, &r0, &err) == WARMCAL_E_INVAL);
    CHECK(strcmp(err.where, "gpu_memory") == 0);
    warmcal_error_clear(&err);
    deploy.runtime_overhead = 9ull << 30;
    CHECK(start_rank(1, &r0, &err) == WARMCAL_E_INVAL);
    CHECK(strcmp(err.where, "runtime_overhead") == 0);
}

int main(void)
{
    RUN(same_seed_same_peak_other_seed_other_peak);
    RUN(oom_keeps_lockstep_or_leaves_the_pass);
    RUN(hot_expert_rank_needs_more);
    RUN(schedule_spans_one_to_max_then_graph_sizes);
    RUN(start_up_gives_every_rank_the_same_kv_cache_and_rank0_its_overhead);
    CHECK_DONE();
}
