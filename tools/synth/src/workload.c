/* The synthetic tensor-parallel forward pass (see warmcal/workload.h and
 * docs/synthetic-workload.md for every buffer and its source). Buffers are
 * allocated and freed in the order a PyTorch forward pass creates and drops
 * its tensors, so the peak comes out of the same running maximum the
 * recorder keeps for a real GPU, not out of a closed formula. */
#define _DEFAULT_SOURCE /* erand48 */
#include "warmcal/workload.h"

#include "warmcal/units.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LIVE 32

/* One pass in flight: the buffers it holds, so an OOM can drop them all. */
typedef struct {
    const warmcal_workload *w;
    uint64_t live[MAX_LIVE];
    int n_live;
    unsigned short rng[3];
    int failed;
    warmcal_error *err;
} pass_state;

static int take(pass_state *s, uint64_t bytes, int noisy, int *slot)
{
    *slot = -1;
    if (s->failed)
        return WARMCAL_OK;
    double noise = s->w->deployment->noise;
    if (noisy && noise > 0) {
        double f = 1.0 + noise * (2.0 * erand48(s->rng) - 1.0);
        bytes = (uint64_t)((double)bytes * f);
    }
    int i = 0;
    while (i < MAX_LIVE && s->live[i])
        i++;
    if (i == MAX_LIVE)
        return warmcal_error_set(s->err, WARMCAL_E_STATE, NULL, NULL, "workload: too many live buffers");
    uint64_t addr = 0;
    /* an OOM is an outcome of the pass, not an error: keep it out of s->err,
     * where it would hide the cause of a later failure */
    warmcal_error local = {0};
    int rc = warmcal_simdev_alloc(s->w->device, bytes, WARMCAL_MEM_DEVICE, &addr, &local);
    if (rc == WARMCAL_E_OOM) {
        s->failed = 1;
        return WARMCAL_OK;
    }
    if (rc)
        return warmcal_error_set(s->err, rc, local.source, local.where, "%s", local.text);
    s->live[i] = addr;
    *slot = i;
    return WARMCAL_OK;
}

static int drop(pass_state *s, int *slot)
{
    if (*slot < 0)
        return WARMCAL_OK;
    uint64_t addr = s->live[*slot];
    s->live[*slot] = 0;
    *slot = -1;
    return warmcal_simdev_free(s->w->device, addr, s->err);
}

static int drop_all(pass_state *s)
{
    for (int i = 0; i < MAX_LIVE; i++) {
        int slot = s->live[i] ? i : -1;
        int rc = drop(s, &slot);
        if (rc)
            return rc;
    }
    return WARMCAL_OK;
}

/* Everything a layer needs to know about the pass and this rank's shard. */
typedef struct {
    uint64_t t, b, h, s;      /* tokens, sequences, hidden size, bytes per element */
    uint64_t heads, kv_heads; /* per rank */
    uint64_t inter;           /* dense MLP intermediate per rank */
    double routed_share;      /* this rank's share of routed token copies (MoE) */
} shape;

static uint64_t div_up(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

#define TRY(x)                    \
    do {                          \
        int rc_ = (x);            \
        if (rc_)                  \
            return rc_;           \
    } while (0)

/* Attention sub-layer; the output replaces the hidden states. */
static int attention(pass_state *s, const shape *p, int *hidden)
{
    const warmcal_model *m = s->w->model;
    int q = -1, kv = -1, k = -1, lse = -1, o = -1, y = -1, qa = -1;
    if (m->kv_lora_rank) {
        /* MLA in the context (prefill) form: latents are expanded per head */
        uint64_t qk = m->qk_nope_head_dim + m->qk_rope_head_dim;
        if (m->q_lora_rank) {
            TRY(take(s, p->t * m->q_lora_rank * p->s, 1, &qa));
            TRY(take(s, p->t * p->heads * qk * p->s, 1, &q));
            TRY(drop(s, &qa));
        } else {
            TRY(take(s, p->t * p->heads * qk * p->s, 1, &q));
        }
        TRY(take(s, p->t * (m->kv_lora_rank + m->qk_rope_head_dim) * p->s, 1, &qa));
        TRY(take(s, p->t * p->heads * (m->qk_nope_head_dim + m->v_head_dim) * p->s, 1, &kv));
        TRY(take(s, p->t * p->heads * qk * p->s, 1, &k));
        TRY(drop(s, &qa));
        TRY(take(s, p->t * p->heads * 4, 1, &lse));
        TRY(take(s, p->t * p->heads * m->v_head_dim * p->s, 1, &o));
        TRY(drop(s, &lse));
        TRY(drop(s, &k));
        TRY(drop(s, &kv));
        TRY(drop(s, &q));
    } else {
        TRY(take(s, p->t * (p->heads + 2 * p->kv_heads) * m->head_dim * p->s, 1, &q));
        TRY(take(s, p->t * p->heads * 4, 1, &lse));
        TRY(take(s, p->t * p->heads * m->head_dim * p->s, 1, &o));
        TRY(drop(s, &lse));
        TRY(drop(s, &q));
    }
    TRY(take(s, p->t * p->h * p->s, 1, &y));
    TRY(drop(s, &o));
    TRY(drop(s, hidden));
    *hidden = y;
    return WARMCAL_OK;
}

/* Dense MLP (gate_up, SiLU-and-mul, down) over `rows` token rows. In eager
 * PyTorch the gate_up output is a local of forward(), so it lives until the
 * down projection has returned (fused MoE kernels keep all three caches too). */
static int mlp(pass_state *s, uint64_t rows, uint64_t inter, const shape *p, int *out)
{
    int gu = -1, act = -1;
    TRY(take(s, rows * 2 * inter * p->s, 1, &gu));
    TRY(take(s, rows * inter * p->s, 1, &act));
    TRY(take(s, rows * p->h * p->s, 0, out));
    TRY(drop(s, &act));
    TRY(drop(s, &gu));
    return WARMCAL_OK;
}

static int moe(pass_state *s, const shape *p, int *hidden)
{
    const warmcal_model *m = s->w->model;
    int router = -1, topk = -1, perm = -1, eout = -1, shared = -1, comb = -1;
    TRY(take(s, p->t * m->n_routed_experts * 4, 1, &router));
    TRY(take(s, p->t * m->num_experts_per_tok * 8, 1, &topk));
    TRY(drop(s, &router));
    if (m->n_shared_experts)
        TRY(mlp(s, p->t, div_up(m->n_shared_experts * m->moe_intermediate_size, (uint64_t)s->w->tp),
                p, &shared));
    /* token copies routed to this rank's experts (expert parallelism = tp) */
    uint64_t rows = (uint64_t)((double)(p->t * m->num_experts_per_tok) * p->routed_share + 0.5);
    TRY(take(s, rows * p->h * p->s, 1, &perm));
    TRY(mlp(s, rows, m->moe_intermediate_size, p, &eout));
    TRY(drop(s, &perm));
    TRY(take(s, p->t * p->h * p->s, 1, &comb));
    TRY(drop(s, &eout));
    TRY(drop(s, &topk));
    TRY(drop(s, &shared));
    TRY(drop(s, hidden));
    *hidden = comb;
    return WARMCAL_OK;
}

/* Logits for the last token of each sequence, gathered over ranks, then the
 * sampler: float32 copy and a sort (values and int64 indices) for top-k/top-p. */
static int sample(pass_state *s, const shape *p)
{
    const warmcal_model *m = s->w->model;
    int local = -1, full = -1, f32 = -1, vals = -1, idx = -1;
    uint64_t v = m->vocab_size;
    TRY(take(s, p->b * div_up(v, (uint64_t)s->w->tp) * p->s, 1, &local));
    TRY(take(s, p->b * v * p->s, 1, &full));
    TRY(drop(s, &local));
    TRY(take(s, p->b * v * 4, 1, &f32));
    TRY(drop(s, &full));
    TRY(take(s, p->b * v * 4, 1, &vals));
    TRY(take(s, p->b * v * 8, 1, &idx));
    TRY(drop(s, &idx));
    TRY(drop(s, &vals));
    TRY(drop(s, &f32));
    return WARMCAL_OK;
}

uint32_t warmcal_workload_collectives(const warmcal_workload *w)
{
    return (uint32_t)(2 * w->model->num_hidden_layers + 1);
}

static double routed_share(const warmcal_workload *w, uint64_t tokens, pass_state *s)
{
    const warmcal_deployment *d = w->deployment;
    double share = 1.0 / w->tp;
    if (d->moe_hot_rank >= 0 && w->tp > 1)
        share = w->rank == d->moe_hot_rank ? d->moe_hot_share
                                           : (1.0 - d->moe_hot_share) / (w->tp - 1);
    /* Routing differs from batch to batch, less so in large batches: the
     * share of T*k routed copies a rank receives has a relative spread of
     * about sqrt((1 - share) / (T * k * share)), as a binomial count does. */
    if (d->noise > 0 && w->tp > 1 && share > 0 && share < 1) {
        double copies = (double)tokens * (double)w->model->num_experts_per_tok;
        double spread = sqrt((1.0 - share) / (copies * share));
        share *= 1.0 + fmin(1.0, 2.0 * spread) * (2.0 * erand48(s->rng) - 1.0);
    }
    return share;
}

int warmcal_workload_forward(const warmcal_workload *w, const warmcal_pass *pass, size_t pass_index,
                             warmcal_error *err)
{
    if (!w || !pass || !w->model || !w->deployment || !w->device || w->tp < 1 || pass->tokens == 0)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "workload_forward: bad argument");
    const warmcal_model *m = w->model;
    pass_state st = {.w = w, .err = err};
    uint64_t mix = w->deployment->seed * 0x9E3779B97F4A7C15ull ^ ((uint64_t)w->rank << 32) ^ pass_index;
    st.rng[0] = (unsigned short)mix;
    st.rng[1] = (unsigned short)(mix >> 16);
    st.rng[2] = (unsigned short)(mix >> 32 ^ mix >> 48);
    uint64_t tp = (uint64_t)w->tp;
    shape p = {
        .t = pass->tokens,
        .b = pass->batch ? pass->batch : 1,
        .h = m->hidden_size,
        .s = m->act_bytes,
        .heads = div_up(m->num_attention_heads, tp),
        .kv_heads = div_up(m->num_key_value_heads, tp),
        .inter = div_up(m->intermediate_size, tp),
    };
    p.routed_share = routed_share(w, pass->tokens, &st);

    int ids = -1, residual = -1, hidden = -1;
    int rc = take(&st, p.t * 16, 0, &ids); /* input ids and positions, int64 */
    rc = rc ? rc : take(&st, p.t * p.h * p.s, 0, &hidden);
    rc = rc ? rc : take(&st, p.t * p.h * p.s, 0, &residual);
    uint32_t coll = 0;
    for (uint64_t layer = 0; layer < m->num_hidden_layers && rc == WARMCAL_OK; layer++) {
        rc = attention(&st, &p, &hidden);
        if (!rc && st.failed && !w->lockstep_after_oom)
            break;
        if (!rc && w->collective)
            rc = w->collective(w->collective_user, pass_index, coll, err);
        coll++;
        if (!rc) {
            if (warmcal_model_layer_is_moe(m, layer)) {
                rc = moe(&st, &p, &hidden);
            } else {
                int out = -1;
                rc = mlp(&st, p.t, p.inter, &p, &out);
                if (!rc && out >= 0) {
                    rc = drop(&st, &hidden);
                    hidden = out;
                }
            }
        }
        if (!rc && st.failed && !w->lockstep_after_oom)
            break;
        if (!rc && w->collective)
            rc = w->collective(w->collective_user, pass_index, coll, err);
        coll++;
    }
    if (!rc && !(st.failed && !w->lockstep_after_oom)) {
        rc = sample(&st, &p);
        if (!rc && w->collective) /* logits gather */
            rc = w->collective(w->collective_user, pass_index, coll, err);
    }
    int rc2 = drop_all(&st);
    if (rc)
        return rc;
    if (rc2)
        return rc2;
    if (st.failed)
        return warmcal_error_set(err, WARMCAL_E_OOM, NULL, NULL,
                                 "out of device memory in %s pass at %llu tokens", pass->label,
                                 (unsigned long long)pass->tokens);
    return WARMCAL_OK;
}

int warmcal_workload_start_up(const warmcal_workload *w, warmcal_start_up *out, warmcal_error *err)
{
    if (!w || !out || !w->model || !w->deployment || !w->device || w->tp < 1)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "workload_start_up: bad argument");
    const warmcal_deployment *d = w->deployment;
    memset(out, 0, sizeof *out);
    char need[32], have[32];
    uint64_t total = warmcal_simdev_total_bytes(w->device);
    warmcal_error local = {0};
    if (warmcal_simdev_reserve_hidden(w->device, d->runtime_overhead, &local) != WARMCAL_OK)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, "runtime_overhead",
                                 "a runtime overhead of %s does not fit in %s",
                                 warmcal_format_bytes(d->runtime_overhead, need, sizeof need),
                                 warmcal_format_bytes(total, have, sizeof have));
    /* one block per layer and one for embeddings and LM head, as checkpoints load */
    out->weights = warmcal_model_weight_bytes_per_rank(w->model, w->tp);
    uint64_t chunks = w->model->num_hidden_layers + 1, addr = 0;
    for (uint64_t i = 0; i < chunks; i++) {
        uint64_t bytes = out->weights / chunks + (i == 0 ? out->weights % chunks : 0);
        int rc = warmcal_simdev_alloc(w->device, bytes, WARMCAL_MEM_DEVICE, &addr, &local);
        if (rc == WARMCAL_E_OOM)
            return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, "gpu_memory",
                                     "the model's weights (%s per rank at tp %d) do not fit in %s",
                                     warmcal_format_bytes(out->weights, need, sizeof need), w->tp,
                                     warmcal_format_bytes(total, have, sizeof have));
        if (rc)
            return warmcal_error_set(err, rc, NULL, NULL, "%s", local.text);
    }
    /* Free memory is the same on every rank here, so every rank gets the
     * same KV cache, as servers agree on one block count. */
    uint64_t granularity = WARMCAL_SIMDEV_DEFAULT_GRANULARITY;
    out->kv_cache = (uint64_t)((double)warmcal_simdev_free_bytes(w->device) * d->kv_cache_fraction);
    out->kv_cache -= out->kv_cache % granularity;
    if (out->kv_cache) {
        int rc = warmcal_simdev_alloc(w->device, out->kv_cache, WARMCAL_MEM_DEVICE, &addr, &local);
        if (rc)
            return warmcal_error_set(err, rc, NULL, NULL, "%s", local.text);
    }
    /* e.g. rank 0 of a disaggregated context server: buffers taken after
     * the KV cache was sized the same on every rank */
    uint64_t extra = warmcal_deployment_rank_overhead(d, w->rank);
    if (warmcal_simdev_reserve_hidden(w->device, extra, &local) != WARMCAL_OK)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, "rank_overhead",
                                 "rank %d's extra %s does not fit in the %s left after the KV "
                                 "cache",
                                 w->rank, warmcal_format_bytes(extra, need, sizeof need),
                                 warmcal_format_bytes(warmcal_simdev_free_bytes(w->device), have,
                                                      sizeof have));
    out->free_before_warmup = warmcal_simdev_free_bytes(w->device);
    return WARMCAL_OK;
}

int warmcal_schedule_build(const warmcal_deployment *d, warmcal_pass **out, size_t *count,
                           warmcal_error *err)
{
    if (!d || !out || !count || d->max_num_tokens == 0)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "schedule_build: bad argument");
    size_t cap = 2 * 64 + d->n_graph_batch_sizes + 1, n = 0;
    warmcal_pass *p = calloc(cap, sizeof *p);
    if (!p)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "schedule: out of memory");
    /* two points per octave: 1, 2, 3, 4, 6, 8, 12, ... */
    for (uint64_t pow = 1; pow <= d->max_num_tokens && n + 2 < cap; pow *= 2) {
        uint64_t cand[2] = {pow, pow + pow / 2};
        for (int i = 0; i < 2; i++) {
            if (cand[i] > d->max_num_tokens || (i == 1 && cand[1] == pow))
                continue;
            snprintf(p[n].label, sizeof p[n].label, "context");
            p[n].tokens = cand[i];
            p[n].batch = (uint32_t)(cand[i] < d->max_num_seqs ? cand[i] : d->max_num_seqs);
            n++;
        }
        if (pow > UINT64_MAX / 2)
            break;
    }
    if (n == 0 || p[n - 1].tokens != d->max_num_tokens) {
        snprintf(p[n].label, sizeof p[n].label, "context");
        p[n].tokens = d->max_num_tokens;
        p[n].batch = (uint32_t)(d->max_num_tokens < d->max_num_seqs ? d->max_num_tokens : d->max_num_seqs);
        n++;
    }
    for (size_t i = 0; i < d->n_graph_batch_sizes; i++) {
        /* servers capture no graph for a batch they can never schedule */
        if (d->graph_batch_sizes[i] > d->max_num_seqs || d->graph_batch_sizes[i] > d->max_num_tokens)
            continue;
        snprintf(p[n].label, sizeof p[n].label, "generation");
        p[n].tokens = d->graph_batch_sizes[i];
        p[n].batch = d->graph_batch_sizes[i];
        n++;
    }
    *out = p;
    *count = n;
    return WARMCAL_OK;
}
