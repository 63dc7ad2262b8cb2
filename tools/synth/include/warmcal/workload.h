/* warmcal/workload.h — the synthetic tensor-parallel forward pass: per-layer
 * activations, attention scratch, MoE expert buffers and logits allocated and
 * freed on a simulated device the way a real TP forward pass does, with a
 * collective per sub-layer. Formulas and their sources: docs/synthetic-workload.md. */
#ifndef WARMCAL_WORKLOAD_H
#define WARMCAL_WORKLOAD_H

#include <stdint.h>
#include <stddef.h>
#include "warmcal/error.h"
#include "warmcal/model.h"
#include "warmcal/simdev.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One warmup pass of the schedule. */
typedef struct {
    char label[16];   /* "context" or "generation" */
    uint64_t tokens;
    uint32_t batch;
} warmcal_pass;

/* The warmup schedule: context passes at 1, 2, 3, 4, 6, 8, 12, ... (powers of
 * two and three times powers of two) up to and including max_num_tokens,
 * then generation passes at every CUDA-graph batch size that max_num_seqs and
 * max_num_tokens allow. *out is malloc'd,
 * owned by the caller (free()). */
WARMCAL_API int warmcal_schedule_build(const warmcal_deployment *d, warmcal_pass **out, size_t *count,
                                       warmcal_error *err);

/* Called at every collective of the pass (two per layer: after attention and
 * after the MLP/MoE). A non-zero return ends the pass with that code. */
typedef int (*warmcal_collective_fn)(void *user, size_t pass_index, uint32_t collective_index,
                                     warmcal_error *err);

typedef struct {
    const warmcal_model *model;
    const warmcal_deployment *deployment;
    int rank, tp;
    warmcal_simdev *device;            /* borrowed */
    warmcal_collective_fn collective;  /* may be NULL (single process) */
    void *collective_user;
    /* After an OOM: 1 keeps calling the pass's remaining collectives without
     * allocating (ranks stay in lockstep); 0 returns at once, as a server that
     * catches the OOM and moves on does. */
    int lockstep_after_oom;
} warmcal_workload;

/* Number of collectives in one pass. */
WARMCAL_API uint32_t warmcal_workload_collectives(const warmcal_workload *w);

/* Run one forward pass. Every buffer is freed before return. Returns 0,
 * WARMCAL_E_OOM when an allocation did not fit (recorded by the device), or
 * the collective's error. pass_index and the deployment seed fix the noise. */
WARMCAL_API int warmcal_workload_forward(const warmcal_workload *w, const warmcal_pass *pass,
                                         size_t pass_index, warmcal_error *err);

/* What start-up left on the device. */
typedef struct {
    uint64_t weights;            /* bytes of weights on this rank */
    uint64_t kv_cache;           /* bytes of KV cache, the same on every rank */
    uint64_t free_before_warmup; /* device free memory when the warmup begins */
} warmcal_start_up;

/* Bring a rank's device to where a server's warmup begins: the runtime
 * overhead (memory no allocation API reports), the weights (one allocation
 * per layer plus one for embeddings and LM head), the KV cache (the
 * deployment's fraction of what is then free, rounded down to 2 MiB: the same
 * on every rank), then this rank's extra overhead, taken after the KV cache
 * was sized. out is caller-owned. WARMCAL_E_INVAL with err naming
 * runtime_overhead, gpu_memory or rank_overhead when that part does not fit. */
WARMCAL_API int warmcal_workload_start_up(const warmcal_workload *w, warmcal_start_up *out,
                                          warmcal_error *err);

#ifdef __cplusplus
}
#endif
#endif
