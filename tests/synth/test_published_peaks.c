/* The synthetic forward pass against activation peaks that inference servers
 * published in their start-up logs. Each figure, its source and settings are
 * listed in docs/synthetic-workload.md; the synthetic peak must fall within
 * TOLERANCE of every one: the synthetic pass leaves out library workspaces
 * and compiler temporaries, and models MoE layers with expert parallelism,
 * where vLLM shards Mixtral's experts by tensor parallelism. */
#include "../check.h"
#include "warmcal/model.h"
#include "warmcal/recorder.h"
#include "warmcal/simdev.h"
#include "warmcal/workload.h"

#include <math.h>

#define TOLERANCE 0.30
#define GiB (1024.0 * 1024.0 * 1024.0)

typedef struct {
    const char *config;   /* under data/models */
    int tp;
    uint64_t tokens;      /* max_num_batched_tokens */
    uint32_t seqs;        /* sequences in the dummy batch: logits rows */
    double logged_gib;
    const char *what;
} published;

/* vLLM v0.19.0 (V1 engine), H100-80GB, llm-d planner accuracy campaign:
 * "torch peak memory increase", max_num_batched_tokens 8192, max_num_seqs 1024. */
static const published figures[] = {
    {"llama-3.1-8b", 1, 8192, 1024, 1.89, "Llama-3.1-8B-Instruct TP1"},
    {"llama-3.1-8b", 2, 8192, 1024, 1.89, "Llama-3.1-8B-Instruct TP2"},
    {"llama-3.1-8b", 4, 8192, 1024, 1.89, "Llama-3.1-8B-Instruct TP4"},
    {"llama-3.1-70b", 2, 8192, 1024, 1.96, "Llama-3.3-70B-Instruct (fp8 weights) TP2"},
    {"llama-3.1-70b", 4, 8192, 1024, 1.97, "Llama-3.3-70B-Instruct (fp8 weights) TP4"},
    {"deepseek-v2-lite", 1, 8192, 1024, 1.93, "DeepSeek-V2-Lite-Chat TP1"},
    {"mixtral-8x7b", 2, 8192, 1024, 1.21, "Mixtral-8x7B-Instruct TP2"},
    /* same campaign, pipeline parallel first stage: no logits, no sampler;
     * a one-sequence pass leaves the sampler negligible */
    {"llama-3.1-8b", 1, 8192, 1, 1.10, "Llama-3.1-8B-Instruct forward only (PP2 stage 0)"},
};

static double synthetic_peak_gib(const published *f)
{
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s/config.json", WARMCAL_DATA_DIR, f->config);
    warmcal_model m;
    warmcal_error err = {0};
    if (warmcal_model_load(path, &m, &err) != WARMCAL_OK) {
        fprintf(stderr, "%s: %s\n", path, err.text);
        check_failures++;
        return NAN;
    }
    warmcal_deployment d;
    warmcal_deployment_defaults(&d);
    d.tp = f->tp;
    d.noise = 0; /* the published figure is one measurement: compare the noiseless pass */
    warmcal_recorder *rec = NULL;
    warmcal_simdev *dev = NULL;
    /* PyTorch's allocated-bytes counter rounds to 512 bytes, not to segments */
    warmcal_simdev_options o = {.total_bytes = 1ull << 40, .granularity = 512};
    CHECK(warmcal_recorder_open(&rec, NULL, &err) == 0);
    CHECK(warmcal_simdev_open(&dev, &o, rec, &err) == 0);
    warmcal_workload w = {.model = &m, .deployment = &d, .rank = 0, .tp = f->tp, .device = dev};
    warmcal_pass pass = {.label = "context", .tokens = f->tokens, .batch = f->seqs};
    warmcal_recorder_phase_begin(rec, 0, "context", f->tokens, f->seqs, &err);
    CHECK(warmcal_workload_forward(&w, &pass, 0, &err) == WARMCAL_OK);
    warmcal_recorder_phase_end(rec, 1, &err);
    size_t n = 0;
    const warmcal_phase *ph = warmcal_recorder_phases(rec, &n);
    double gib = n == 1 ? (double)(ph[0].live_peak - ph[0].live_begin) / GiB : NAN;
    CHECK(n == 1 && ph[0].live_end == ph[0].live_begin); /* every buffer freed */
    warmcal_simdev_close(dev);
    warmcal_recorder_close(rec);
    return gib;
}

static void synthetic_peaks_match_published_server_logs(void)
{
    printf("%-52s %9s %9s %7s\n", "published figure", "logged", "synth", "error");
    for (size_t i = 0; i < sizeof figures / sizeof figures[0]; i++) {
        double synth = synthetic_peak_gib(&figures[i]);
        double rel = (synth - figures[i].logged_gib) / figures[i].logged_gib;
        printf("%-52s %7.2fGi %7.2fGi %+6.1f%%\n", figures[i].what, figures[i].logged_gib, synth,
               100.0 * rel);
        CHECK(fabs(rel) <= TOLERANCE);
    }
}

static void peak_grows_with_tokens_and_shrinks_with_tp(void)
{
    published small = {"llama-3.1-70b", 1, 1024, 1, 0, "small"};
    published big = {"llama-3.1-70b", 1, 8192, 1, 0, "big"};
    published big_tp4 = {"llama-3.1-70b", 4, 8192, 1, 0, "big tp4"};
    double a = synthetic_peak_gib(&small), b = synthetic_peak_gib(&big), c = synthetic_peak_gib(&big_tp4);
    CHECK(b > 6.0 * a);
    CHECK(c < 0.5 * b);
}

int main(void)
{
    RUN(synthetic_peaks_match_published_server_logs);
    RUN(peak_grows_with_tokens_and_shrinks_with_tp);
    CHECK_DONE();
}
