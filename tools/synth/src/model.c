/* Model configs (Hugging Face config.json) and deployment files, read with
 * jansson. Every error names the file and the field; a field that is JSON
 * null counts as absent, as transformers treats it. */
#include "warmcal/model.h"
#include "warmcal/json_kind.h"
#include "warmcal/units.h"

#include <jansson.h>
#include <math.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>

/* Parse a JSON object file; on failure returns NULL with *code set. */
static json_t *load_object(const char *path, int *code, warmcal_error *err)
{
    struct stat st;
    /* a FIFO or device would block the read, a folder gives a confusing parse error */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        *code = warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "not a regular file");
        return NULL;
    }
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        char where[48];
        snprintf(where, sizeof where, "line %d, column %d", jerr.line, jerr.column);
        *code = jerr.line < 0 ? WARMCAL_E_IO : WARMCAL_E_FORMAT;
        warmcal_error_set(err, *code, path, jerr.line < 0 ? NULL : where, "%s", jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        *code = warmcal_error_set(err, WARMCAL_E_FORMAT, path, NULL,
                                  "expected a JSON object, found %s", warmcal_json_kind(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Upper bounds far above any published model, low enough that no byte count
 * the workload derives from them can overflow 64 bits. */
static uint64_t field_limit(const char *field)
{
    static const struct {
        const char *name;
        uint64_t max;
    } limits[] = {
        {"num_hidden_layers", 1u << 12},   {"num_attention_heads", 1u << 12},
        {"num_key_value_heads", 1u << 12}, {"head_dim", 1u << 14},
        {"q_lora_rank", 1u << 14},         {"kv_lora_rank", 1u << 14},
        {"qk_nope_head_dim", 1u << 14},    {"qk_rope_head_dim", 1u << 14},
        {"v_head_dim", 1u << 14},          {"vocab_size", 1u << 24},
        {"n_routed_experts", 1u << 14},    {"num_local_experts", 1u << 14},
        {"num_experts", 1u << 14},         {"num_experts_per_tok", 1u << 8},
        {"n_shared_experts", 1u << 8},     {"first_k_dense_replace", 1u << 12},
        {"moe_layer_freq", 1u << 12},
    };
    for (size_t i = 0; i < sizeof limits / sizeof limits[0]; i++)
        if (strcmp(limits[i].name, field) == 0)
            return limits[i].max;
    return 1u << 20; /* hidden and intermediate sizes */
}

/* A non-negative integer field. Absent (or null): *out untouched and
 * WARMCAL_OK unless required. */
static int get_count(const char *path, json_t *obj, const char *field, int required, int positive,
                     uint64_t *out, warmcal_error *err)
{
    const char *expect = positive ? "a positive integer" : "a non-negative integer";
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v)) {
        if (required)
            return warmcal_error_set(err, WARMCAL_E_FIELD, path, field, "missing (expected %s)",
                                     expect);
        return WARMCAL_OK;
    }
    if (!json_is_integer(v))
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, field, "expected %s, found %s", expect,
                                 warmcal_json_kind(v));
    json_int_t i = json_integer_value(v);
    if (i < 0 || (positive && i == 0))
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, field, "expected %s, found %lld",
                                 expect, (long long)i);
    if ((uint64_t)i > field_limit(field))
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, field,
                                 "expected at most %llu, found %lld",
                                 (unsigned long long)field_limit(field), (long long)i);
    *out = (uint64_t)i;
    return WARMCAL_OK;
}

static int get_string(const char *path, json_t *obj, const char *field, char *out, size_t cap,
                      warmcal_error *err)
{
    json_t *v = json_object_get(obj, field);
    if (!v || json_is_null(v))
        return WARMCAL_OK;
    if (!json_is_string(v))
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, field, "expected a string, found %s",
                                 warmcal_json_kind(v));
    /* kept whole or refused: a cut model name would not match the traces' */
    if (json_string_length(v) >= cap)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, field,
                                 "%zu bytes, longer than the %zu this field may have",
                                 json_string_length(v), cap - 1);
    memcpy(out, json_string_value(v), json_string_length(v) + 1);
    return WARMCAL_OK;
}

/* The folder holding the file names the model when the config does not;
 * a folder name too long to keep whole is refused. */
static int name_from_path(const char *path, char *out, size_t cap, warmcal_error *err)
{
    const char *start = path, *end = strrchr(path, '/');
    if (end) {
        start = end;
        while (start > path && start[-1] != '/')
            start--;
    }
    if (!end || start == end)
        start = path, end = path + strlen(path);
    size_t len = (size_t)(end - start);
    if (len >= cap)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "_name_or_path",
                                 "missing, and the folder that would name the model has %zu "
                                 "bytes, longer than the %zu a model name may have",
                                 len, cap - 1);
    memcpy(out, start, len);
    out[len] = '\0';
    return WARMCAL_OK;
}

static int read_dtype(const char *path, json_t *root, warmcal_model *m, warmcal_error *err)
{
    snprintf(m->dtype, sizeof m->dtype, "bfloat16");
    int rc = get_string(path, root, "torch_dtype", m->dtype, sizeof m->dtype, err);
    if (rc)
        return rc;
    static const char *known[] = {"bfloat16", "float16", "float32", "half", "float"};
    int ok = 0;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        ok |= strcmp(m->dtype, known[i]) == 0;
    if (!ok)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "torch_dtype",
                                 "expected bfloat16, float16 or float32, found '%s'", m->dtype);
    /* Servers run float32 checkpoints in 16 bits (vLLM's dtype=auto). */
    m->act_bytes = 2;
    m->weight_bytes = 2;
    json_t *q = json_object_get(root, "quantization_config");
    if (q && json_is_object(q)) {
        json_t *method = json_object_get(q, "quant_method");
        if (json_is_string(method) && strcmp(json_string_value(method), "fp8") == 0)
            m->weight_bytes = 1;
    }
    return WARMCAL_OK;
}

static int read_moe(const char *path, json_t *root, warmcal_model *m, warmcal_error *err)
{
    /* the three spellings of "number of routed experts" in the wild */
    static const char *expert_fields[] = {"n_routed_experts", "num_local_experts", "num_experts"};
    const char *used = NULL;
    for (size_t i = 0; i < 3 && !used; i++) {
        int rc = get_count(path, root, expert_fields[i], 0, 0, &m->n_routed_experts, err);
        if (rc)
            return rc;
        if (m->n_routed_experts)
            used = expert_fields[i];
    }
    if (!m->n_routed_experts)
        return WARMCAL_OK;
    int rc = get_count(path, root, "num_experts_per_tok", 1, 1, &m->num_experts_per_tok, err);
    rc = rc ? rc : get_count(path, root, "moe_intermediate_size", 0, 1, &m->moe_intermediate_size, err);
    rc = rc ? rc : get_count(path, root, "n_shared_experts", 0, 0, &m->n_shared_experts, err);
    rc = rc ? rc : get_count(path, root, "first_k_dense_replace", 0, 0, &m->first_k_dense_replace, err);
    m->moe_layer_freq = 1;
    rc = rc ? rc : get_count(path, root, "moe_layer_freq", 0, 1, &m->moe_layer_freq, err);
    if (rc)
        return rc;
    if (!m->moe_intermediate_size)
        m->moe_intermediate_size = m->intermediate_size; /* Mixtral: experts are full MLPs */
    if (m->num_experts_per_tok > m->n_routed_experts)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "num_experts_per_tok",
                                 "expected at most %s = %llu, found %llu", used,
                                 (unsigned long long)m->n_routed_experts,
                                 (unsigned long long)m->num_experts_per_tok);
    if (m->first_k_dense_replace > m->num_hidden_layers)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "first_k_dense_replace",
                                 "expected at most num_hidden_layers = %llu",
                                 (unsigned long long)m->num_hidden_layers);
    return WARMCAL_OK;
}

static int read_mla(const char *path, json_t *root, warmcal_model *m, warmcal_error *err)
{
    int rc = get_count(path, root, "kv_lora_rank", 0, 1, &m->kv_lora_rank, err);
    if (rc || !m->kv_lora_rank)
        return rc;
    rc = get_count(path, root, "q_lora_rank", 0, 1, &m->q_lora_rank, err);
    rc = rc ? rc : get_count(path, root, "qk_nope_head_dim", 1, 1, &m->qk_nope_head_dim, err);
    rc = rc ? rc : get_count(path, root, "qk_rope_head_dim", 1, 1, &m->qk_rope_head_dim, err);
    rc = rc ? rc : get_count(path, root, "v_head_dim", 1, 1, &m->v_head_dim, err);
    return rc;
}

int warmcal_model_load(const char *path, warmcal_model *out, warmcal_error *err)
{
    if (!path || !out)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "model_load: bad argument");
    memset(out, 0, sizeof *out);
    int code = WARMCAL_OK;
    json_t *root = load_object(path, &code, err);
    if (!root)
        return code;
    warmcal_model *m = out;
    int rc = get_count(path, root, "hidden_size", 1, 1, &m->hidden_size, err);
    rc = rc ? rc : get_count(path, root, "intermediate_size", 1, 1, &m->intermediate_size, err);
    rc = rc ? rc : get_count(path, root, "num_hidden_layers", 1, 1, &m->num_hidden_layers, err);
    rc = rc ? rc : get_count(path, root, "num_attention_heads", 1, 1, &m->num_attention_heads, err);
    rc = rc ? rc : get_count(path, root, "vocab_size", 1, 1, &m->vocab_size, err);
    m->num_key_value_heads = m->num_attention_heads; /* transformers' default: no GQA */
    rc = rc ? rc : get_count(path, root, "num_key_value_heads", 0, 1, &m->num_key_value_heads, err);
    rc = rc ? rc : get_count(path, root, "head_dim", 0, 1, &m->head_dim, err);
    rc = rc ? rc : read_dtype(path, root, m, err);
    rc = rc ? rc : read_moe(path, root, m, err);
    rc = rc ? rc : read_mla(path, root, m, err);
    if (!rc) {
        json_t *tie = json_object_get(root, "tie_word_embeddings");
        if (tie && !json_is_null(tie) && !json_is_boolean(tie))
            rc = warmcal_error_set(err, WARMCAL_E_FIELD, path, "tie_word_embeddings",
                                   "expected a boolean, found %s", warmcal_json_kind(tie));
        m->tie_word_embeddings = json_is_true(tie);
    }
    if (!rc && m->num_key_value_heads > m->num_attention_heads)
        rc = warmcal_error_set(err, WARMCAL_E_FIELD, path, "num_key_value_heads",
                               "expected at most num_attention_heads = %llu, found %llu",
                               (unsigned long long)m->num_attention_heads,
                               (unsigned long long)m->num_key_value_heads);
    if (!rc && m->num_attention_heads % m->num_key_value_heads != 0)
        rc = warmcal_error_set(err, WARMCAL_E_FIELD, path, "num_key_value_heads",
                               "expected a divisor of num_attention_heads = %llu, found %llu",
                               (unsigned long long)m->num_attention_heads,
                               (unsigned long long)m->num_key_value_heads);
    if (!rc && !m->head_dim) {
        if (m->hidden_size % m->num_attention_heads != 0)
            rc = warmcal_error_set(err, WARMCAL_E_FIELD, path, "head_dim",
                                   "missing, and hidden_size %llu is not a multiple of "
                                   "num_attention_heads %llu",
                                   (unsigned long long)m->hidden_size,
                                   (unsigned long long)m->num_attention_heads);
        m->head_dim = m->hidden_size / m->num_attention_heads;
    }
    if (!rc) {
        m->name[0] = '\0';
        rc = get_string(path, root, "_name_or_path", m->name, sizeof m->name, err);
        if (!rc && !m->name[0])
            rc = name_from_path(path, m->name, sizeof m->name, err);
    }
    json_decref(root);
    return rc;
}

int warmcal_model_layer_is_moe(const warmcal_model *m, uint64_t layer)
{
    return m->n_routed_experts && layer >= m->first_k_dense_replace &&
           layer % (m->moe_layer_freq ? m->moe_layer_freq : 1) == 0;
}

static uint64_t div_up(uint64_t a, uint64_t b)
{
    return (a + b - 1) / b;
}

uint64_t warmcal_model_weight_bytes_per_rank(const warmcal_model *m, int tp)
{
    uint64_t t = tp > 0 ? (uint64_t)tp : 1, h = m->hidden_size;
    uint64_t heads = div_up(m->num_attention_heads, t);
    uint64_t kv_heads = div_up(m->num_key_value_heads, t); /* replicated when fewer than tp */
    uint64_t attn;
    if (m->kv_lora_rank) {
        uint64_t qk = m->qk_nope_head_dim + m->qk_rope_head_dim;
        uint64_t q = m->q_lora_rank ? h * m->q_lora_rank + m->q_lora_rank * heads * qk : h * heads * qk;
        attn = q + h * (m->kv_lora_rank + m->qk_rope_head_dim) +
               m->kv_lora_rank * heads * (m->qk_nope_head_dim + m->v_head_dim) +
               heads * m->v_head_dim * h;
    } else {
        attn = h * (heads + 2 * kv_heads) * m->head_dim + heads * m->head_dim * h;
    }
    /* Per-layer terms fit 64 bits under the field limits; their sum over
     * layers may not, so it is summed in floating point and saturated. */
    uint64_t dense = 3 * h * div_up(m->intermediate_size, t);
    uint64_t moe = div_up(m->n_routed_experts, t) * 3 * h * m->moe_intermediate_size +
                   div_up(m->n_shared_experts * m->moe_intermediate_size, t) * 3 * h +
                   h * m->n_routed_experts;
    long double params = 0;
    for (uint64_t l = 0; l < m->num_hidden_layers; l++)
        params += (long double)attn + (long double)(warmcal_model_layer_is_moe(m, l) ? moe : dense);
    long double vocab = (long double)(div_up(m->vocab_size, t) * h);
    params += m->tie_word_embeddings ? vocab : 2 * vocab;
    long double bytes = params * m->weight_bytes;
    return bytes >= 18446744073709551615.0L ? UINT64_MAX : (uint64_t)bytes;
}

void warmcal_deployment_defaults(warmcal_deployment *d)
{
    memset(d, 0, sizeof *d);
    d->max_num_tokens = 8192;
    d->gpu_memory = 0; /* chosen to fit the model: warmcal_deployment_resolve */
    d->runtime_overhead = 1ull << 30;
    d->kv_cache_fraction = 0.75;
    static const uint32_t sizes[] = {1, 2, 4, 8, 16, 32, 64, 128, 256};
    memcpy(d->graph_batch_sizes, sizes, sizeof sizes);
    d->n_graph_batch_sizes = sizeof sizes / sizeof sizes[0];
    d->max_num_seqs = 256;
    d->moe_hot_rank = -1;
    d->noise = 0.02;
    d->seed = 1;
    d->collective_timeout_s = 60.0;
}

int warmcal_deployment_set_rank_overhead(warmcal_deployment *d, int rank, uint64_t bytes,
                                         warmcal_error *err)
{
    if (rank < 0)
        return warmcal_error_set(err, WARMCAL_E_FIELD, NULL, "rank_overhead",
                                 "expected a rank >= 0, found %d", rank);
    for (size_t i = 0; i < d->n_rank_overheads; i++)
        if (d->rank_overhead[i].rank == rank) {
            d->rank_overhead[i].bytes = bytes;
            return WARMCAL_OK;
        }
    if (d->n_rank_overheads == WARMCAL_MAX_RANK_OVERHEADS)
        return warmcal_error_set(err, WARMCAL_E_FIELD, NULL, "rank_overhead",
                                 "at most %d ranks may have an extra overhead",
                                 WARMCAL_MAX_RANK_OVERHEADS);
    d->rank_overhead[d->n_rank_overheads].rank = rank;
    d->rank_overhead[d->n_rank_overheads].bytes = bytes;
    d->n_rank_overheads++;
    return WARMCAL_OK;
}

uint64_t warmcal_deployment_rank_overhead(const warmcal_deployment *d, int rank)
{
    for (size_t i = 0; i < d->n_rank_overheads; i++)
        if (d->rank_overhead[i].rank == rank)
            return d->rank_overhead[i].bytes;
    return 0;
}

/* A byte field: an integer, or a string with a unit. */
static int get_bytes(const char *path, json_t *v, const char *field, uint64_t *out, warmcal_error *err)
{
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        *out = (uint64_t)json_integer_value(v);
        return WARMCAL_OK;
    }
    if (json_is_string(v)) {
        warmcal_error sub = {0};
        if (warmcal_parse_bytes(json_string_value(v), out, field, &sub) == WARMCAL_OK)
            return WARMCAL_OK;
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, field, "%s", sub.text);
    }
    return warmcal_error_set(err, WARMCAL_E_FIELD, path, field,
                             "expected a byte count (integer >= 0 or a string like \"3GiB\"), found %s",
                             warmcal_json_kind(v));
}

static int get_fraction(const char *path, json_t *v, const char *field, double lo, double hi,
                        double *out, warmcal_error *err)
{
    if (!json_is_number(v) || !isfinite(json_number_value(v)) || json_number_value(v) < lo ||
        json_number_value(v) > hi)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, field,
                                 "expected a number in [%g, %g]", lo, hi);
    *out = json_number_value(v);
    return WARMCAL_OK;
}

static int get_int_in(const char *path, json_t *v, const char *field, long long lo, long long hi,
                      long long *out, warmcal_error *err)
{
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, field,
                                 "expected an integer in [%lld, %lld], found %s", lo, hi,
                                 json_is_integer(v) ? "one outside" : warmcal_json_kind(v));
    *out = json_integer_value(v);
    return WARMCAL_OK;
}

static int load_graph_sizes(const char *path, json_t *v, warmcal_deployment *d, warmcal_error *err)
{
    if (!json_is_array(v) || json_array_size(v) == 0 || json_array_size(v) > WARMCAL_MAX_GRAPH_SIZES)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "cuda_graph_batch_sizes",
                                 "expected an array of 1 to %d batch sizes", WARMCAL_MAX_GRAPH_SIZES);
    size_t i;
    json_t *e;
    json_array_foreach(v, i, e)
    {
        char where[48];
        snprintf(where, sizeof where, "cuda_graph_batch_sizes[%zu]", i);
        long long b = 0;
        int rc = get_int_in(path, e, where, 1, 1 << 20, &b, err);
        if (rc)
            return rc;
        d->graph_batch_sizes[i] = (uint32_t)b;
    }
    d->n_graph_batch_sizes = json_array_size(v);
    return WARMCAL_OK;
}

static int load_rank_overheads(const char *path, json_t *v, warmcal_deployment *d, warmcal_error *err)
{
    if (!json_is_object(v))
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "rank_overhead",
                                 "expected an object of rank -> bytes, like {\"0\": \"3GiB\"}");
    const char *key;
    json_t *e;
    json_object_foreach(v, key, e)
    {
        char where[64];
        snprintf(where, sizeof where, "rank_overhead.%s", key);
        char *end = NULL;
        long rank = strtol(key, &end, 10);
        if (!*key || *end || rank < 0 || rank > 1 << 20)
            return warmcal_error_set(err, WARMCAL_E_FIELD, path, where,
                                     "expected a rank number as key");
        uint64_t bytes = 0;
        int rc = get_bytes(path, e, where, &bytes, err);
        rc = rc ? rc : warmcal_deployment_set_rank_overhead(d, (int)rank, bytes, err);
        if (rc)
            return rc;
    }
    return WARMCAL_OK;
}

int warmcal_deployment_load(const char *path, warmcal_deployment *d, warmcal_error *err)
{
    int code = WARMCAL_OK;
    json_t *root = load_object(path, &code, err);
    if (!root)
        return code;
    int rc = WARMCAL_OK;
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v)
    {
        long long i = 0;
        if (strcmp(key, "tp") == 0) {
            rc = get_int_in(path, v, key, 1, 4096, &i, err);
            d->tp = (int)i;
        } else if (strcmp(key, "max_num_tokens") == 0) {
            rc = get_int_in(path, v, key, 1, WARMCAL_MAX_TOKENS, &i, err);
            d->max_num_tokens = (uint64_t)i;
        } else if (strcmp(key, "max_num_seqs") == 0) {
            rc = get_int_in(path, v, key, 1, 1 << 20, &i, err);
            d->max_num_seqs = (uint32_t)i;
        } else if (strcmp(key, "gpu_name") == 0) {
            if (!json_is_string(v))
                rc = warmcal_error_set(err, WARMCAL_E_FIELD, path, key, "expected a string");
            else if (json_string_length(v) >= sizeof d->gpu_name)
                /* kept whole or refused: a cut name would not match the traces' */
                rc = warmcal_error_set(err, WARMCAL_E_FIELD, path, key,
                                       "%zu bytes, longer than the %zu a GPU name may have",
                                       json_string_length(v), sizeof d->gpu_name - 1);
            else
                snprintf(d->gpu_name, sizeof d->gpu_name, "%s", json_string_value(v));
        } else if (strcmp(key, "gpu_memory") == 0) {
            rc = get_bytes(path, v, key, &d->gpu_memory, err);
            if (!rc && d->gpu_memory == 0)
                rc = warmcal_error_set(err, WARMCAL_E_FIELD, path, key, "expected more than 0 bytes");
        } else if (strcmp(key, "runtime_overhead") == 0) {
            rc = get_bytes(path, v, key, &d->runtime_overhead, err);
        } else if (strcmp(key, "kv_cache_fraction") == 0) {
            rc = get_fraction(path, v, key, 0.0, 1.0, &d->kv_cache_fraction, err);
        } else if (strcmp(key, "cuda_graph_batch_sizes") == 0) {
            rc = load_graph_sizes(path, v, d, err);
        } else if (strcmp(key, "rank_overhead") == 0) {
            rc = load_rank_overheads(path, v, d, err);
        } else if (strcmp(key, "moe_hot_rank") == 0) {
            rc = get_int_in(path, v, key, -1, 4095, &i, err);
            d->moe_hot_rank = (int)i;
        } else if (strcmp(key, "moe_hot_share") == 0) {
            rc = get_fraction(path, v, key, 0.0, 1.0, &d->moe_hot_share, err);
        } else if (strcmp(key, "noise") == 0) {
            rc = get_fraction(path, v, key, 0.0, 0.5, &d->noise, err);
        } else if (strcmp(key, "seed") == 0) {
            rc = get_int_in(path, v, key, 0, INT64_MAX, &i, err);
            d->seed = (uint64_t)i;
        } else if (strcmp(key, "collective_timeout_s") == 0) {
            rc = get_fraction(path, v, key, 0.001, 86400.0, &d->collective_timeout_s, err);
        } else if (key[0] == '_') {
            /* "_comment" and the like: notes for people */
        } else {
            rc = warmcal_error_set(err, WARMCAL_E_FIELD, path, key,
                                   "unknown deployment field (expected tp, max_num_tokens, "
                                   "max_num_seqs, gpu_name, gpu_memory, runtime_overhead, "
                                   "kv_cache_fraction, cuda_graph_batch_sizes, rank_overhead, "
                                   "moe_hot_rank, moe_hot_share, noise, seed, collective_timeout_s)");
        }
        if (rc)
            break;
    }
    json_decref(root);
    return rc;
}

/* Data-centre GPUs as the CUDA driver reports them (total memory in MiB). */
static const struct {
    const char *name;
    uint64_t mib;
} known_gpus[] = {
    {"NVIDIA H100 80GB HBM3", 81559},
    {"NVIDIA H200", 143771},
    {"NVIDIA B200", 183359},
};

int warmcal_deployment_resolve(warmcal_deployment *d, const warmcal_model *m, int world_size,
                               warmcal_error *err)
{
    if (d->tp == 0)
        d->tp = world_size;
    int rc = warmcal_deployment_check(d, m, world_size, err);
    if (rc)
        return rc;
    if (d->gpu_memory) {
        if (!d->gpu_name[0])
            snprintf(d->gpu_name, sizeof d->gpu_name, "simulated GPU");
        return WARMCAL_OK;
    }
    /* weights and runtime within 90% of the device: room left for KV cache and activations */
    uint64_t weights = warmcal_model_weight_bytes_per_rank(m, d->tp);
    uint64_t need = weights > UINT64_MAX - d->runtime_overhead ? UINT64_MAX
                                                                : weights + d->runtime_overhead;
    for (size_t i = 0; i < sizeof known_gpus / sizeof known_gpus[0]; i++) {
        uint64_t total = known_gpus[i].mib << 20;
        if ((double)need <= 0.9 * (double)total) {
            d->gpu_memory = total;
            if (!d->gpu_name[0])
                snprintf(d->gpu_name, sizeof d->gpu_name, "%s", known_gpus[i].name);
            return WARMCAL_OK;
        }
    }
    char need_text[32];
    return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, "gpu_memory",
                             "the model needs %s per rank at tp %d, more than any known GPU holds "
                             "(largest: %s): give a GPU memory size or a larger tp",
                             warmcal_format_bytes(need, need_text, sizeof need_text), d->tp,
                             known_gpus[sizeof known_gpus / sizeof known_gpus[0] - 1].name);
}

int warmcal_deployment_check(const warmcal_deployment *d, const warmcal_model *m, int world_size,
                             warmcal_error *err)
{
    int tp = d->tp ? d->tp : world_size;
    if (world_size > 0 && tp != world_size)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, "tp",
                                 "tp %d differs from the number of MPI ranks %d (run with "
                                 "mpirun -np %d)",
                                 tp, world_size, tp);
    if (tp <= 0)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, "tp", "expected tp >= 1");
    if (m->num_attention_heads % (uint64_t)tp != 0)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, "tp",
                                 "tp %d does not divide num_attention_heads %llu", tp,
                                 (unsigned long long)m->num_attention_heads);
    if (m->n_routed_experts && m->n_routed_experts % (uint64_t)tp != 0)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, "tp",
                                 "tp %d does not divide the %llu routed experts", tp,
                                 (unsigned long long)m->n_routed_experts);
    if (d->moe_hot_rank >= tp)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, "moe_hot_rank",
                                 "rank %d does not exist with tp %d", d->moe_hot_rank, tp);
    for (size_t i = 0; i < d->n_rank_overheads; i++)
        if (d->rank_overhead[i].rank >= tp)
            return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, "rank_overhead",
                                     "rank %d does not exist with tp %d", d->rank_overhead[i].rank,
                                     tp);
    if (d->max_num_tokens == 0)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, "max_num_tokens", "expected >= 1");
    return WARMCAL_OK;
}
