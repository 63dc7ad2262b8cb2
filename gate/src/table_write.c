/* Writing an estimate table: the JSON document in the field order of
 * docs/formats.md, written atomically (temporary file, fsync, rename, fsync
 * of the folder) so that a reader never sees half a table. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/table.h"
#include "table_private.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Append/set while remembering whether anything failed (values are stolen). */
typedef struct {
    int failed;
} builder;

static void put(builder *b, json_t *obj, const char *key, json_t *value)
{
    if (!value || json_object_set_new(obj, key, value) != 0)
        b->failed = 1;
}

static void push(builder *b, json_t *arr, json_t *value)
{
    if (!value || json_array_append_new(arr, value) != 0)
        b->failed = 1;
}

static json_t *int_json(uint64_t v) /* validated: v <= INT64_MAX */
{
    return json_integer((json_int_t)v);
}

static json_t *estimate_json(builder *b, const warmcal_estimate *e)
{
    json_t *o = json_object(), *model = json_object(), *margin = json_object(),
           *fit = json_object(), *failures = json_object();
    put(b, o, "rank", json_integer(e->rank));
    put(b, o, "label", json_string(e->label));
    put(b, o, "tokens_min", int_json(e->tokens_min));
    put(b, o, "tokens_max", int_json(e->tokens_max));
    put(b, model, "form", json_string(warmcal_form_name(e->form)));
    if (e->form == WARMCAL_FORM_ENVELOPE) {
        json_t *knots = json_array();
        for (size_t k = 0; knots && k < e->n_knots; k++) {
            json_t *pair = json_array();
            push(b, pair, int_json(e->knot_tokens[k]));
            push(b, pair, json_real(e->knot_bytes[k]));
            push(b, knots, pair);
        }
        put(b, model, "knots", knots);
    } else {
        json_t *coef = json_array();
        for (int k = 0; k < (e->form == WARMCAL_FORM_LINEAR ? 2 : 3); k++)
            push(b, coef, json_real(e->coef[k]));
        put(b, model, "coefficients", coef);
    }
    put(b, o, "model", model);
    put(b, margin, "bytes", json_real(e->margin.total));
    put(b, margin, "residual", json_real(e->margin.residual));
    put(b, margin, "loo", json_real(e->margin.loo));
    put(b, margin, "granularity", json_real(e->margin.granularity));
    put(b, margin, "relative", json_real(e->margin.relative));
    put(b, o, "margin", margin);
    put(b, fit, "points", int_json(e->fit.points));
    put(b, fit, "rmse", json_real(e->fit.rmse));
    put(b, fit, "max_residual", json_real(e->fit.max_residual));
    put(b, fit, "loo_rmse", json_real(e->fit.loo_rmse));
    put(b, o, "fit", fit);
    put(b, failures, "oom", int_json(e->failures.oom));
    put(b, failures, "oom_tokens_min", int_json(e->failures.oom_tokens_min));
    put(b, failures, "aborted", int_json(e->failures.aborted));
    put(b, o, "failures", failures);
    json_t *calibration = json_object();
    put(b, calibration, "device_free_min", int_json(e->calibration.device_free_min));
    put(b, o, "calibration", calibration);
    return o;
}

/* The document, in the field order docs/formats.md shows; NULL when out of memory. */
static json_t *table_json(const warmcal_table *t)
{
    builder b = {0};
    json_t *root = json_object(), *config = json_object(), *policy = json_object(),
           *sources = json_array(), *estimates = json_array();
    put(&b, root, "format", json_string(WARMCAL_TABLE_FORMAT));
    put(&b, root, "version", json_integer(WARMCAL_TABLE_VERSION));
    put(&b, config, "model", json_string(t->config.model));
    put(&b, config, "tp", json_integer(t->config.tp));
    put(&b, config, "gpu_name", json_string(t->config.gpu_name));
    put(&b, config, "gpu_total_bytes", int_json(t->config.gpu_total_bytes));
    put(&b, root, "configuration", config);
    put(&b, root, "tool_version", json_string(t->tool_version));
    put(&b, root, "created", json_string(t->created));
    put(&b, policy, "above_range", json_string(warmcal_above_policy_name(t->above_range)));
    put(&b, policy, "below_range", json_string("clamp"));
    put(&b, root, "policy", policy);
    for (size_t i = 0; sources && i < t->n_sources; i++) {
        json_t *s = json_object();
        put(&b, s, "name", json_string(t->sources[i].name));
        put(&b, s, "sha256", json_string(t->sources[i].sha256));
        push(&b, sources, s);
    }
    put(&b, root, "sources", sources);
    for (size_t i = 0; estimates && i < t->n_estimates; i++)
        push(&b, estimates, estimate_json(&b, &t->estimates[i]));
    put(&b, root, "estimates", estimates);
    if (b.failed || !root) {
        json_decref(root);
        return NULL;
    }
    return root;
}

int warmcal_table_write(const warmcal_table *t, const char *path, warmcal_error *err)
{
    if (!t || !path || !path[0])
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "table_write: bad argument");
    int rc = warmcal_table_validate(t, path, err);
    if (rc)
        return rc;
    json_t *root = table_json(t);
    char *text = root ? json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(root);
    size_t path_len = strlen(path);
    char *tmp = text ? malloc(path_len + sizeof ".tmp-XXXXXX") : NULL;
    if (!tmp) {
        free(text);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "out of memory");
    }
    memcpy(tmp, path, path_len);
    memcpy(tmp + path_len, ".tmp-XXXXXX", sizeof ".tmp-XXXXXX");

    const char *step = "cannot create a temporary file beside it";
    int fd = mkstemp(tmp), e = 0;
    if (fd < 0) {
        e = errno;
        goto fail;
    }
    /* mkstemp makes the file private; a table is meant to be read by the
     * servers, so it gets the old table's permissions, or rw-r--r--. */
    struct stat st;
    mode_t mode = stat(path, &st) == 0 && S_ISREG(st.st_mode) ? st.st_mode & 07777 : 0644;
    step = "cannot write the temporary file";
    if (fchmod(fd, mode) != 0 || warmcal__write_all(fd, text, strlen(text)) != 0 || warmcal__write_all(fd, "\n", 1) != 0)
        goto fail_errno;
    step = "cannot flush the temporary file to disk";
    if (fsync(fd) != 0)
        goto fail_errno;
    rc = close(fd);
    fd = -1;
    if (rc != 0)
        goto fail_errno;
    step = "cannot rename the temporary file over it";
    if (rename(tmp, path) != 0)
        goto fail_errno;
    free(text);
    free(tmp);
    if ((e = warmcal__sync_folder(path)) != 0)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                 "written, but flushing its folder to disk failed: %s", strerror(e));
    return WARMCAL_OK;

fail_errno:
    e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
fail:
    free(text);
    free(tmp);
    return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "%s: %s (the old file is unchanged)",
                             step, strerror(e));
}
