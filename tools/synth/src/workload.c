/* The synthetic tensor-parallel forward pass (see warmcal/workload.h and
 * docs/synthetic-workload.md for every buffer and its source). Buffers are
 * allocated and freed in the order a PyTorch forward pass creates and drops
 * its tensors, so the peak comes out of the same running maximum the
 * recorder keeps for a real GPU, not out of a closed formula. */
#define _DEFAULT_SOURCE /* erand48 */
#include "warmcal/workload.h"

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
    int rc = warmcal_simdev_alloc(s->w->device, bytes, WARMCAL_MEM_DEVICE, &addr, s->err);
    if (rc == WARMCAL_E_OOM) {
        s->failed = 1;
        return WARMCAL_OK;
    }
    if (rc)
        return rc;
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

static double routed_share(const warmcal_workload *w, pass_state *s)
{
    const warmcal_deployment *d = w->deployment;
    double share = 1.0 / w->tp;
    if (d->moe_hot_rank >= 0 && w->tp > 1)
        share = w->rank == d->moe_hot_rank ? d->moe_hot_share
                                           : (1.0 - d->moe_hot_share) / (w->tp - 1);
    /* routing differs from batch to batch */
    if (d->noise > 0)
        share *= 1.0 + 2.0 * d->noise * (2.0 * erand48(s->rng) - 1.0);
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
    p.routed_share = routed_share(w, &st);

    int ids = -1, residual = -1, hidden = -1;
    TRY(take(&st, p.t * 16, 0, &ids)); /* input ids and positions, int64 */
    TRY(take(&st, p.t * p.h * p.s, 0, &hidden));
    TRY(take(&st, p.t * p.h * p.s, 0, &residual));
    uint32_t coll = 0;
    int rc = WARMCAL_OK;
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

uint64_t warmcal_workload_kv_cache_bytes(const warmcal_workload *w)
{
    uint64_t weights = warmcal_model_weight_bytes_per_rank(w->model, w->tp);
    uint64_t taken = weights + w->deployment->runtime_overhead;
    if (taken >= w->deployment->gpu_memory)
        return 0;
    return (uint64_t)((double)(w->deployment->gpu_memory - taken) * w->deployment->kv_cache_fraction);
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
        snprintf(p[n].label, sizeof p[n].label, "generation");
        p[n].tokens = d->graph_batch_sizes[i];
        p[n].batch = d->graph_batch_sizes[i];
        n++;
    }
    *out = p;
    *count = n;
    return WARMCAL_OK;
}
