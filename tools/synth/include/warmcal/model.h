/* warmcal/model.h — model architectures from Hugging Face `config.json`
 * files and deployments (TP size, token budget, GPU) from flags or a small
 * JSON deployment file: the inputs of the synthetic warmup workload. */
#ifndef WARMCAL_MODEL_H
#define WARMCAL_MODEL_H

#include <stdint.h>
#include <stddef.h>
#include "warmcal/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the workload needs of a model. Zero means "absent" for the optional
 * MoE and MLA fields. */
typedef struct {
    char name[128];             /* "_name_or_path", else the folder holding config.json */
    uint64_t hidden_size, intermediate_size, num_hidden_layers;
    uint64_t num_attention_heads, num_key_value_heads, head_dim, vocab_size;
    char dtype[16];             /* torch_dtype as written ("bfloat16" when absent) */
    unsigned act_bytes;         /* bytes per activation element: 2 (float32 serves as bf16, as vLLM's dtype=auto does) */
    unsigned weight_bytes;      /* bytes per weight: 1 under an fp8 quantization_config, else act_bytes */
    int tie_word_embeddings;
    /* mixture of experts (DeepSeek: n_routed_experts; Mixtral: num_local_experts; Qwen-MoE: num_experts) */
    uint64_t n_routed_experts, num_experts_per_tok, moe_intermediate_size, n_shared_experts;
    uint64_t first_k_dense_replace, moe_layer_freq;
    /* multi-head latent attention (DeepSeek-V2/V3) */
    uint64_t q_lora_rank, kv_lora_rank, qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
} warmcal_model;

/* Read a config.json. Unknown fields are ignored; a missing or malformed
 * required field is WARMCAL_E_FIELD with err naming the file and the field
 * (`num_hidden_layers: missing (expected a positive integer)`); a file that is
 * not JSON is WARMCAL_E_FORMAT with line and column. out is caller-owned. */
WARMCAL_API int warmcal_model_load(const char *path, warmcal_model *out, warmcal_error *err);

/* Whether layer `layer` (0-based) is a mixture-of-experts layer. */
WARMCAL_API int warmcal_model_layer_is_moe(const warmcal_model *m, uint64_t layer);

/* Weight bytes held by one rank under tensor parallelism tp (experts are
 * spread over ranks, expert parallelism = tp). */
WARMCAL_API uint64_t warmcal_model_weight_bytes_per_rank(const warmcal_model *m, int tp);

#define WARMCAL_MAX_RANK_OVERHEADS 64
#define WARMCAL_MAX_TOKENS (1ll << 24) /* keeps every derived byte count within 64 bits */
#define WARMCAL_MAX_GRAPH_SIZES 64

/* How the model is served. */
typedef struct {
    int tp;                          /* tensor-parallel size; 0: the MPI world size */
    uint64_t max_num_tokens;         /* largest context pass */
    char gpu_name[64];
    uint64_t gpu_memory;             /* device total bytes; 0: the smallest known GPU that fits */
    uint64_t runtime_overhead;       /* per rank, invisible to allocation APIs: context, NCCL, workspaces */
    double kv_cache_fraction;        /* share of memory left after weights and runtime given to the KV cache */
    uint32_t graph_batch_sizes[WARMCAL_MAX_GRAPH_SIZES]; /* generation passes (CUDA-graph sizes) */
    size_t n_graph_batch_sizes;
    uint32_t max_num_seqs;           /* sequences in a context pass, bounded by its tokens */
    struct {
        int rank;
        uint64_t bytes;
    } rank_overhead[WARMCAL_MAX_RANK_OVERHEADS]; /* extra memory taken on chosen ranks after start-up */
    size_t n_rank_overheads;
    int moe_hot_rank;                /* rank holding a hot expert, -1 for balanced routing */
    double moe_hot_share;            /* share of routed tokens the hot rank receives */
    double noise;                    /* relative seeded noise on transient buffers */
    uint64_t seed;
    double collective_timeout_s;     /* how long a rank waits in one collective */
} warmcal_deployment;

/* Defaults: tp 0 (the world size), max_num_tokens 8192, GPU memory 0 (chosen
 * by warmcal_deployment_resolve), 1 GiB runtime overhead, KV fraction 0.75,
 * graph sizes 1,2,4,8,16,32,64,128,256, 256 sequences, balanced routing,
 * noise 0.02, seed 1, 60 s timeout. */
WARMCAL_API void warmcal_deployment_defaults(warmcal_deployment *d);

/* Overlay a deployment JSON file on d. Every field is optional; unknown
 * fields are errors (they are usually typos). Byte fields take integers or
 * strings with units ("3GiB"). Errors name the file and field. */
WARMCAL_API int warmcal_deployment_load(const char *path, warmcal_deployment *d, warmcal_error *err);

/* Add or replace the extra overhead of one rank. */
WARMCAL_API int warmcal_deployment_set_rank_overhead(warmcal_deployment *d, int rank, uint64_t bytes,
                                                     warmcal_error *err);

/* Extra overhead of rank (0 when none). */
WARMCAL_API uint64_t warmcal_deployment_rank_overhead(const warmcal_deployment *d, int rank);

/* Check the deployment against the model and world size (tp divides heads
 * and experts, ranks named exist, tp == world_size when set). */
WARMCAL_API int warmcal_deployment_check(const warmcal_deployment *d, const warmcal_model *m,
                                         int world_size, warmcal_error *err);

/* Fill what was left to be chosen, then check: tp 0 becomes world_size; GPU
 * memory 0 becomes the smallest of H100 80GB, H200 and B200 on which the
 * weights and runtime overhead take at most 90% (its name too, unless one was
 * given); a size given without a name is called "simulated GPU".
 * WARMCAL_E_INVAL when no known GPU is large enough, or as the check fails. */
WARMCAL_API int warmcal_deployment_resolve(warmcal_deployment *d, const warmcal_model *m,
                                           int world_size, warmcal_error *err);

#ifdef __cplusplus
}
#endif
#endif
