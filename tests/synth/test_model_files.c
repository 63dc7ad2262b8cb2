/* Every bad field of a model config.json or a deployment file gets an error
 * naming the file and the field; good files from the shipped set all load. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include "../check.h"
#include "warmcal/model.h"

#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static const char *write_json(const char *name, json_t *doc)
{
    static char path[1024];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(n > 0 && (size_t)n < sizeof path);
    CHECK(json_dump_file(doc, path, 0) == 0);
    return path;
}

static const char *write_text(const char *name, const char *text)
{
    static char path[1024];
    int n = snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK(n > 0 && (size_t)n < sizeof path);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    return path;
}

static json_t *base_config(const char *model)
{
    char path[512];
    snprintf(path, sizeof path, "%s/models/%s/config.json", WARMCAL_DATA_DIR, model);
    json_t *doc = json_load_file(path, 0, NULL);
    CHECK(doc != NULL);
    return doc;
}

/* Load a config mutated by set(field, value) (value NULL: field removed)
 * and expect an error naming that field with text containing `expect`. */
static void expect_model_error(const char *model, const char *field, json_t *value,
                               const char *where, const char *expect)
{
    json_t *doc = base_config(model);
    if (value)
        json_object_set_new(doc, field, value);
    else
        json_object_del(doc, field);
    const char *path = write_json("config.json", doc);
    json_decref(doc);
    warmcal_model m;
    warmcal_error err = {0};
    int rc = warmcal_model_load(path, &m, &err);
    if (rc != WARMCAL_E_FIELD || strcmp(err.where, where) != 0 || !strstr(err.text, expect)) {
        fprintf(stderr, "  %s %s: rc %d, where '%s', text '%s'\n", model, field, rc, err.where,
                err.text);
        check_failures++;
    }
    CHECK_STR_CONTAINS(err.source, "config.json");
}

static void every_required_field_missing_or_malformed_is_named(void)
{
    static const char *required[] = {"hidden_size", "intermediate_size", "num_hidden_layers",
                                     "num_attention_heads", "vocab_size"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        const char *f = required[i];
        expect_model_error("llama-3.1-8b", f, NULL, f, "missing (expected a positive integer)");
        expect_model_error("llama-3.1-8b", f, json_string("4096"), f, "found a string");
        expect_model_error("llama-3.1-8b", f, json_real(4096.5), f, "found a real number");
        expect_model_error("llama-3.1-8b", f, json_integer(0), f, "found 0");
        expect_model_error("llama-3.1-8b", f, json_integer(-8), f, "found -8");
        expect_model_error("llama-3.1-8b", f, json_true(), f, "found a boolean");
        expect_model_error("llama-3.1-8b", f, json_array(), f, "found an array");
    }
}

static void optional_fields_are_checked_when_present(void)
{
    expect_model_error("llama-3.1-8b", "hidden_size", json_integer(1000000000000000ll), "hidden_size",
                       "expected at most 1048576");
    expect_model_error("llama-3.1-8b", "vocab_size", json_integer(1ll << 40), "vocab_size",
                       "expected at most 16777216");
    expect_model_error("deepseek-v3", "num_experts_per_tok", json_integer(257), "num_experts_per_tok",
                       "expected at most 256");
    expect_model_error("llama-3.1-8b", "num_key_value_heads", json_integer(0), "num_key_value_heads",
                       "positive integer");
    expect_model_error("llama-3.1-8b", "num_key_value_heads", json_integer(64),
                       "num_key_value_heads", "at most num_attention_heads");
    expect_model_error("llama-3.1-8b", "num_key_value_heads", json_integer(5), "num_key_value_heads",
                       "divisor");
    expect_model_error("llama-3.1-8b", "head_dim", json_string("128"), "head_dim", "found a string");
    expect_model_error("llama-3.1-8b", "torch_dtype", json_string("int8"), "torch_dtype",
                       "expected bfloat16, float16 or float32");
    expect_model_error("llama-3.1-8b", "torch_dtype", json_integer(2), "torch_dtype",
                       "expected a string");
    expect_model_error("llama-3.1-8b", "tie_word_embeddings", json_string("yes"),
                       "tie_word_embeddings", "expected a boolean");
    expect_model_error("deepseek-v3", "num_experts_per_tok", NULL, "num_experts_per_tok", "missing");
    expect_model_error("deepseek-v3", "num_experts_per_tok", json_integer(0), "num_experts_per_tok",
                       "expected a positive integer");
    expect_model_error("deepseek-v3", "first_k_dense_replace", json_integer(99),
                       "first_k_dense_replace", "at most num_hidden_layers");
    expect_model_error("deepseek-v3", "moe_intermediate_size", json_integer(-1),
                       "moe_intermediate_size", "positive integer");
    expect_model_error("deepseek-v3", "qk_rope_head_dim", NULL, "qk_rope_head_dim", "missing");
    expect_model_error("deepseek-v3", "v_head_dim", json_string("128"), "v_head_dim", "found a string");
    expect_model_error("mixtral-8x7b", "num_local_experts", json_integer(1), "num_experts_per_tok",
                       "at most num_local_experts");
}

static void derived_fields_follow_transformers_defaults(void)
{
    json_t *doc = base_config("llama-3.1-8b");
    json_object_del(doc, "head_dim");
    json_object_del(doc, "num_key_value_heads");
    json_object_del(doc, "_name_or_path");
    json_object_set_new(doc, "some_future_field", json_string("ignored"));
    const char *path = write_json("config.json", doc);
    json_decref(doc);
    warmcal_model m;
    warmcal_error err = {0};
    CHECK(warmcal_model_load(path, &m, &err) == WARMCAL_OK);
    CHECK_EQ_U64(m.head_dim, 128);
    CHECK_EQ_U64(m.num_key_value_heads, 32);
    CHECK(strcmp(m.name, dir + 5) == 0); /* named after its folder */
}

static void files_that_are_not_config_objects_are_rejected(void)
{
    warmcal_model m;
    warmcal_error err = {0};
    CHECK(warmcal_model_load(write_text("config.json", "{\"hidden_size\": 4096,"), &m, &err) ==
          WARMCAL_E_FORMAT);
    CHECK_STR_CONTAINS(err.where, "line 1");
    warmcal_error_clear(&err);
    CHECK(warmcal_model_load(write_text("config.json", "[1, 2]"), &m, &err) == WARMCAL_E_FORMAT);
    CHECK_STR_CONTAINS(err.text, "expected a JSON object");
    warmcal_error_clear(&err);
    CHECK(warmcal_model_load(write_text("config.json", "{\"a\": 1, \"a\": 2}"), &m, &err) ==
          WARMCAL_E_FORMAT);
    warmcal_error_clear(&err);
    CHECK(warmcal_model_load("/nonexistent/config.json", &m, &err) == WARMCAL_E_IO);
    CHECK_STR_CONTAINS(err.source, "/nonexistent/config.json");
}

static void shipped_models_load_with_their_architecture(void)
{
    warmcal_model m;
    warmcal_error err = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/models/deepseek-v3/config.json", WARMCAL_DATA_DIR);
    CHECK(warmcal_model_load(path, &m, &err) == WARMCAL_OK);
    CHECK_EQ_U64(m.n_routed_experts, 256);
    CHECK_EQ_U64(m.kv_lora_rank, 512);
    CHECK_EQ_U64(m.weight_bytes, 1); /* fp8 quantization_config */
    CHECK(!warmcal_model_layer_is_moe(&m, 2) && warmcal_model_layer_is_moe(&m, 3));
    /* 671B parameters in fp8 over 4 ranks: about 157 GiB each */
    uint64_t per_rank = warmcal_model_weight_bytes_per_rank(&m, 4);
    CHECK(per_rank > 150ull << 30 && per_rank < 170ull << 30);
    snprintf(path, sizeof path, "%s/models/mixtral-8x7b/config.json", WARMCAL_DATA_DIR);
    CHECK(warmcal_model_load(path, &m, &err) == WARMCAL_OK);
    CHECK_EQ_U64(m.n_routed_experts, 8);
    CHECK_EQ_U64(m.moe_intermediate_size, 14336);
    snprintf(path, sizeof path, "%s/models/llama-3.1-8b/config.json", WARMCAL_DATA_DIR);
    CHECK(warmcal_model_load(path, &m, &err) == WARMCAL_OK);
    /* 8.0B parameters in bf16 */
    per_rank = warmcal_model_weight_bytes_per_rank(&m, 1);
    CHECK(per_rank > 14ull << 30 && per_rank < 16ull << 30);
    CHECK(strcmp(m.name, "meta-llama/Llama-3.1-8B-Instruct") == 0);
}

/* A model name is kept whole or refused, never cut to fit: a cut name
 * would not match the traces' (issue #8). */
static void long_model_names_are_kept_whole_or_refused(void)
{
    char name[200];
    memset(name, 'm', sizeof name);
    name[127] = '\0';
    json_t *doc = base_config("llama-3.1-8b");
    json_object_set_new(doc, "_name_or_path", json_string(name));
    const char *path = write_json("config.json", doc);
    json_decref(doc);
    warmcal_model m;
    warmcal_error err = {0};
    CHECK(warmcal_model_load(path, &m, &err) == WARMCAL_OK);
    CHECK(strcmp(m.name, name) == 0);
    name[127] = 'm';
    name[128] = '\0';
    expect_model_error("llama-3.1-8b", "_name_or_path", json_string(name), "_name_or_path",
                       "128 bytes, longer than the 127");
    name[128] = 'm';

    /* without _name_or_path the folder names the model: the same rule */
    for (size_t len = 127; len <= 130; len += 3) {
        char folder[512], file[512];
        name[len] = '\0';
        snprintf(folder, sizeof folder, "%s/%s", dir, name);
        CHECK(mkdir(folder, 0700) == 0);
        doc = base_config("llama-3.1-8b");
        json_object_del(doc, "_name_or_path");
        snprintf(file, sizeof file, "%s/config.json", name);
        path = write_json(file, doc);
        json_decref(doc);
        warmcal_error_clear(&err);
        int rc = warmcal_model_load(path, &m, &err);
        if (len == 127) {
            CHECK(rc == WARMCAL_OK && strcmp(m.name, name) == 0);
        } else {
            CHECK(rc == WARMCAL_E_FIELD && strcmp(err.where, "_name_or_path") == 0);
            CHECK_STR_CONTAINS(err.text, "130 bytes, longer than the 127 a model name may have");
            CHECK_STR_CONTAINS(err.source, "config.json");
        }
        name[len] = 'm';
    }
}

static void expect_deployment_error(const char *text, const char *where, const char *expect)
{
    warmcal_deployment d;
    warmcal_deployment_defaults(&d);
    warmcal_error err = {0};
    int rc = warmcal_deployment_load(write_text("deploy.json", text), &d, &err);
    if (rc == WARMCAL_OK || strcmp(err.where, where) != 0 || !strstr(err.text, expect)) {
        fprintf(stderr, "  %s: rc %d, where '%s', text '%s'\n", text, rc, err.where, err.text);
        check_failures++;
    }
    CHECK_STR_CONTAINS(err.source, "deploy.json");
}

static void bad_deployment_fields_are_named(void)
{
    expect_deployment_error("{\"tpp\": 4}", "tpp", "unknown deployment field");
    expect_deployment_error("{\"tp\": \"4\"}", "tp", "expected an integer");
    expect_deployment_error("{\"tp\": 0}", "tp", "expected an integer in [1,");
    expect_deployment_error("{\"gpu_memory\": \"lots\"}", "gpu_memory", "not a byte count");
    expect_deployment_error("{\"gpu_memory\": 0}", "gpu_memory", "more than 0");
    expect_deployment_error("{\"kv_cache_fraction\": 1.5}", "kv_cache_fraction", "[0, 1]");
    expect_deployment_error("{\"rank_overhead\": {\"x\": 1}}", "rank_overhead.x", "rank number");
    expect_deployment_error("{\"rank_overhead\": {\"0\": \"3 parsecs\"}}", "rank_overhead.0",
                            "not a byte count");
    expect_deployment_error("{\"cuda_graph_batch_sizes\": []}", "cuda_graph_batch_sizes",
                            "expected an array");
    expect_deployment_error("{\"cuda_graph_batch_sizes\": [1, 0]}", "cuda_graph_batch_sizes[1]",
                            "expected an integer");
    expect_deployment_error("{\"max_num_tokens\": -1}", "max_num_tokens", "expected an integer");
    /* a GPU name is kept whole or refused, never cut to fit */
    char long_name[200];
    snprintf(long_name, sizeof long_name, "{\"gpu_name\": \"%0*d\"}", 100, 7);
    expect_deployment_error(long_name, "gpu_name", "longer than the 63 a GPU name may have");
}

static void flags_and_files_agree_on_rank_overheads(void)
{
    warmcal_deployment d;
    warmcal_deployment_defaults(&d);
    warmcal_error err = {0};
    CHECK(warmcal_deployment_load(write_text("deploy.json",
                                             "{\"tp\": 4, \"rank_overhead\": {\"0\": \"3GiB\", \"2\": 1024}}"),
                                  &d, &err) == WARMCAL_OK);
    CHECK_EQ_U64(warmcal_deployment_rank_overhead(&d, 0), 3ull << 30);
    CHECK_EQ_U64(warmcal_deployment_rank_overhead(&d, 2), 1024);
    CHECK_EQ_U64(warmcal_deployment_rank_overhead(&d, 1), 0);
    CHECK(warmcal_deployment_set_rank_overhead(&d, 0, 5, &err) == WARMCAL_OK); /* a flag wins */
    CHECK_EQ_U64(warmcal_deployment_rank_overhead(&d, 0), 5);
    warmcal_model m;
    char path[512];
    snprintf(path, sizeof path, "%s/models/llama-3.1-8b/config.json", WARMCAL_DATA_DIR);
    CHECK(warmcal_model_load(path, &m, &err) == WARMCAL_OK);
    CHECK(warmcal_deployment_check(&d, &m, 4, &err) == WARMCAL_OK);
    CHECK(warmcal_deployment_check(&d, &m, 2, &err) == WARMCAL_E_INVAL);
    CHECK_STR_CONTAINS(err.text, "differs from the number of MPI ranks");
    warmcal_error_clear(&err);
    d.tp = 3;
    CHECK(warmcal_deployment_check(&d, &m, 3, &err) == WARMCAL_E_INVAL);
    CHECK_STR_CONTAINS(err.text, "does not divide num_attention_heads");
}

static void unset_gpu_is_the_smallest_known_one_that_fits(void)
{
    warmcal_model m;
    warmcal_deployment d;
    warmcal_error err = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/models/deepseek-v3/config.json", WARMCAL_DATA_DIR);
    CHECK(warmcal_model_load(path, &m, &err) == WARMCAL_OK);
    warmcal_deployment_defaults(&d);
    CHECK(warmcal_deployment_resolve(&d, &m, 4, &err) == WARMCAL_OK);
    CHECK_EQ_U64(d.tp, 4);
    CHECK(strcmp(d.gpu_name, "NVIDIA B200") == 0); /* 157 GiB of fp8 weights per rank */
    warmcal_deployment_defaults(&d);
    CHECK(warmcal_deployment_resolve(&d, &m, 1, &err) == WARMCAL_E_INVAL);
    CHECK_STR_CONTAINS(err.text, "more than any known GPU holds");
    warmcal_error_clear(&err);
    snprintf(path, sizeof path, "%s/models/llama-3.1-8b/config.json", WARMCAL_DATA_DIR);
    CHECK(warmcal_model_load(path, &m, &err) == WARMCAL_OK);
    warmcal_deployment_defaults(&d);
    CHECK(warmcal_deployment_resolve(&d, &m, 1, &err) == WARMCAL_OK);
    CHECK(strcmp(d.gpu_name, "NVIDIA H100 80GB HBM3") == 0);
    warmcal_deployment_defaults(&d);
    d.gpu_memory = 24ull << 30; /* a size without a name */
    CHECK(warmcal_deployment_resolve(&d, &m, 1, &err) == WARMCAL_OK);
    CHECK(strcmp(d.gpu_name, "simulated GPU") == 0);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/warmcal-model-XXXXXX");
    if (!mkdtemp(dir))
        return 1;
    RUN(every_required_field_missing_or_malformed_is_named);
    RUN(optional_fields_are_checked_when_present);
    RUN(derived_fields_follow_transformers_defaults);
    RUN(files_that_are_not_config_objects_are_rejected);
    RUN(shipped_models_load_with_their_architecture);
    RUN(long_model_names_are_kept_whole_or_refused);
    RUN(bad_deployment_fields_are_named);
    RUN(flags_and_files_agree_on_rank_overheads);
    RUN(unset_gpu_is_the_smallest_known_one_that_fits);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        check_failures++;
    CHECK_DONE();
}
