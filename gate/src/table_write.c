/* Writing an estimate table: the JSON document in the field order of
 * docs/formats.md, read back before it is written, then written atomically
 * (temporary file, fsync, rename, fsync of the folder) so that a reader
 * never sees half a table; a device, a FIFO or an open descriptor
 * (/dev/stdout) is written through, never renamed over, and a link is left a link. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "warmcal/table.h"
#include "table_private.h"
#include "warmcal/file_io.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
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

/* Every field the file holds, compared once it is read back: the check
 * that decides whether the text may replace the old table. */
static int same_estimate(const warmcal_estimate *a, const warmcal_estimate *b)
{
    if (a->rank != b->rank || strcmp(a->label, b->label) != 0 || a->tokens_min != b->tokens_min ||
        a->tokens_max != b->tokens_max || a->form != b->form)
        return 0;
    if (a->form == WARMCAL_FORM_ENVELOPE) {
        if (a->n_knots != b->n_knots)
            return 0;
        for (size_t k = 0; k < a->n_knots; k++)
            if (a->knot_tokens[k] != b->knot_tokens[k] || a->knot_bytes[k] != b->knot_bytes[k])
                return 0;
    } else {
        for (int k = 0; k < (a->form == WARMCAL_FORM_LINEAR ? 2 : 3); k++)
            if (a->coef[k] != b->coef[k])
                return 0;
    }
    return a->margin.relative == b->margin.relative && a->margin.total == b->margin.total &&
           a->margin.residual == b->margin.residual && a->margin.loo == b->margin.loo &&
           a->margin.granularity == b->margin.granularity && a->fit.points == b->fit.points &&
           a->fit.rmse == b->fit.rmse && a->fit.max_residual == b->fit.max_residual &&
           a->fit.loo_rmse == b->fit.loo_rmse && a->failures.oom == b->failures.oom &&
           a->failures.oom_tokens_min == b->failures.oom_tokens_min &&
           a->failures.aborted == b->failures.aborted &&
           a->calibration.device_free_min == b->calibration.device_free_min;
}

static int same_table(const warmcal_table *a, const warmcal_table *b)
{
    if (strcmp(a->config.model, b->config.model) != 0 || a->config.tp != b->config.tp ||
        strcmp(a->config.gpu_name, b->config.gpu_name) != 0 ||
        a->config.gpu_total_bytes != b->config.gpu_total_bytes ||
        strcmp(a->tool_version, b->tool_version) != 0 || strcmp(a->created, b->created) != 0 ||
        a->above_range != b->above_range || a->n_sources != b->n_sources ||
        a->n_estimates != b->n_estimates)
        return 0;
    for (size_t i = 0; i < a->n_sources; i++)
        if (strcmp(a->sources[i].name, b->sources[i].name) != 0 ||
            strcmp(a->sources[i].sha256, b->sources[i].sha256) != 0)
            return 0;
    for (size_t i = 0; i < a->n_estimates; i++)
        if (!same_estimate(&a->estimates[i], &b->estimates[i]))
            return 0;
    return 1;
}

/* The table's text (*text, malloc'd, without the final newline), read back
 * through the table reader and compared with t before anything is written:
 * jansson 2.14's dumper can lose a member when an allocation fails and still
 * return text, and such a text must never replace a good table. */
static int render(const warmcal_table *t, const char *path, char **text, warmcal_error *err)
{
    json_t *root = table_json(t);
    char *dumped = root ? json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(root);
    if (!dumped)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL,
                                 "out of memory (the old file is unchanged)");
    warmcal_table *back = NULL;
    warmcal_error why;
    warmcal_error_clear(&why);
    int rc = warmcal__table_parse(dumped, strlen(dumped), path, &back, &why);
    int same = rc == WARMCAL_OK && same_table(t, back);
    warmcal_table_free(back);
    if (!same) {
        free(dumped);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL,
                                 "out of memory: the text made for the table did not read back "
                                 "as the table (%s); the old file is unchanged",
                                 rc ? why.text : "a field differs");
    }
    *text = dumped;
    return WARMCAL_OK;
}

static const char *kind_of(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a folder";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISSOCK(mode))
        return "a socket";
    return "not a regular file";
}

/* The number p starts with (decimal digits only), *end just after it; -1
 * when p does not start with a digit or the number passes INT_MAX. */
static long long leading_number(const char *p, const char **end)
{
    long long v = 0;
    for (*end = p; **end >= '0' && **end <= '9' && v <= INT_MAX; (*end)++)
        v = v * 10 + (**end - '0');
    return *end == p || v > INT_MAX ? -1 : v;
}

/* The descriptor number when name is an entry of a process's descriptor
 * folder (/dev/fd/N, /proc/self/fd/N, /proc/PID/task/TID/fd/N: the folder's
 * real path is /proc/PID/fd or /proc/PID/task/TID/fd), else -1; *ours says
 * whether PID is this process. */
static int descriptor_named(const char *name, int *ours)
{
    const char *slash = strrchr(name, '/'), *end;
    long long fd = leading_number(slash ? slash + 1 : name, &end);
    if (fd < 0 || *end)
        return -1;
    char *folder = slash ? strndup(name, slash == name ? 1 : (size_t)(slash - name)) : strdup(".");
    char *real = folder ? realpath(folder, NULL) : NULL;
    free(folder);
    long long pid = -1;
    if (real && strncmp(real, "/proc/", 6) == 0) {
        pid = leading_number(real + 6, &end);
        if (pid >= 0 && strncmp(end, "/task/", 6) == 0 && leading_number(end + 6, &end) < 0)
            pid = -1;
        if (strcmp(end, "/fd") != 0)
            pid = -1;
    }
    free(real);
    if (pid < 0)
        return -1;
    *ours = pid == (long long)getpid();
    return (int)fd;
}

/* The name a write to path lands on, in *out (malloc'd): path with the
 * symbolic links of its last component followed, so that a link is left a
 * link and its target is replaced (the system resolves the folders above).
 * The following stops at a process's open descriptor (`/dev/stdout` is a
 * link to /proc/self/fd/1): *descriptor is its number (else -1) and *ours
 * whether it is this process's, for the file behind it is not to be replaced. */
static int follow_links(const char *path, char **out, int *descriptor, int *ours, warmcal_error *err)
{
    char *name = strdup(path);
    *descriptor = -1;
    for (int hops = 0; name; hops++) {
        struct stat st;
        if ((*descriptor = descriptor_named(name, ours)) >= 0 || lstat(name, &st) != 0 ||
            !S_ISLNK(st.st_mode)) {
            *out = name;
            return WARMCAL_OK;
        }
        char *link = hops < 40 ? malloc(PATH_MAX) : NULL;
        ssize_t n = link ? readlink(name, link, PATH_MAX) : -1;
        if (n < 0 || n >= PATH_MAX) {
            int e = hops >= 40 ? ELOOP : !link ? ENOMEM : n < 0 ? errno : ENAMETOOLONG;
            free(link);
            free(name);
            return warmcal_error_set(err, e == ENOMEM ? WARMCAL_E_NOMEM : WARMCAL_E_IO, path, NULL,
                                     "cannot follow the link to the file to replace: %s (the old "
                                     "file is unchanged)",
                                     strerror(e));
        }
        link[n] = '\0';
        const char *slash = strrchr(name, '/');
        char *next = link;
        if (link[0] != '/' && slash) { /* relative to the link's own folder */
            size_t folder_len = (size_t)(slash - name) + 1;
            next = malloc(folder_len + (size_t)n + 1);
            if (next) {
                memcpy(next, name, folder_len);
                memcpy(next + folder_len, link, (size_t)n + 1);
            }
            free(link);
        }
        free(name);
        name = next;
    }
    return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "out of memory (the old file is unchanged)");
}

/* Into a character device or a FIFO: written in place, never renamed over.
 * Opened without blocking, so that a FIFO nobody reads is an error now
 * rather than a wait for ever; then written with blocking writes. Another
 * process's descriptor (/proc/PID/fd/N) may be a regular file too: it is
 * appended to (its writer's offset is not ours to know), never truncated. */
static int write_through(const char *path, const char *text, int descriptor, warmcal_error *err)
{
    int fd = open(path, O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC | (descriptor ? O_APPEND : 0));
    if (fd < 0 && errno == ENXIO && !descriptor)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                 "not written: it is a FIFO and nothing reads it (start the reader "
                                 "first)");
    if (fd < 0)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                 "cannot open it for writing: %s (nothing was written)", strerror(errno));
    struct stat st;
    int flags = fcntl(fd, F_GETFL);
    if (fstat(fd, &st) != 0 ||
        !(S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode) || (descriptor && S_ISREG(st.st_mode)))) {
        close(fd);
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                 "not written: it changed while it was opened (nothing was written)");
    }
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0 ||
        warmcal_write_all(fd, text, strlen(text)) != 0 || warmcal_write_all(fd, "\n", 1) != 0) {
        int e = errno;
        close(fd);
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot write to it: %s", strerror(e));
    }
    if (close(fd) != 0)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot write to it: %s", strerror(errno));
    return WARMCAL_OK;
}

/* Into descriptor fd of this process (path was /dev/stdout, /dev/fd/N,
 * ...): written at its offset, as any program writes to its stdout, so that
 * `>> log` appends and a pipe or a terminal gets the text. Reopening the
 * name would start at offset 0 of the file, and renaming over it would
 * replace the file the shell opened. The descriptor is left open. */
static int write_to_descriptor(int fd, const char *path, const char *text, warmcal_error *err)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                 "not written: descriptor %d is not open", fd);
    if ((flags & O_ACCMODE) == O_RDONLY)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                 "not written: descriptor %d is open for reading only", fd);
    if (warmcal_write_all(fd, text, strlen(text)) != 0 || warmcal_write_all(fd, "\n", 1) != 0)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot write to descriptor %d: %s",
                                 fd, strerror(errno));
    return WARMCAL_OK;
}

/* Replace the regular file target (or create it) with the text atomically:
 * a temporary file beside it, flushed, renamed over it, and the folder
 * flushed. Errors name path, the name the caller gave. */
static int replace_file(const char *target, const char *path, const char *text, warmcal_error *err)
{
    size_t target_len = strlen(target);
    char *tmp = malloc(target_len + sizeof ".tmp-XXXXXX");
    if (!tmp)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "out of memory (the old file is unchanged)");
    memcpy(tmp, target, target_len);
    memcpy(tmp + target_len, ".tmp-XXXXXX", sizeof ".tmp-XXXXXX");

    const char *step = "cannot create a temporary file beside it";
    int fd = mkstemp(tmp), e = 0, rc;
    if (fd < 0) {
        e = errno;
        goto fail;
    }
    /* mkstemp makes the file private; a table is meant to be read by the
     * servers, so it gets the old table's permissions, or rw-r--r--. */
    struct stat st;
    mode_t mode = stat(target, &st) == 0 && S_ISREG(st.st_mode) ? st.st_mode & 07777 : 0644;
    step = "cannot write the temporary file";
    if (fchmod(fd, mode) != 0 || warmcal_write_all(fd, text, strlen(text)) != 0 ||
        warmcal_write_all(fd, "\n", 1) != 0)
        goto fail_errno;
    step = "cannot flush the temporary file to disk";
    if (fsync(fd) != 0)
        goto fail_errno;
    rc = close(fd);
    fd = -1;
    if (rc != 0)
        goto fail_errno;
    /* what was checked before may have been swapped for a device or a
     * folder since: only a regular file, or nothing, is renamed over */
    if (lstat(target, &st) == 0 && !S_ISREG(st.st_mode)) {
        unlink(tmp);
        free(tmp);
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                 "not written: it became %s while the table was written (it is "
                                 "left as it is)",
                                 S_ISLNK(st.st_mode) ? "a link" : kind_of(st.st_mode));
    }
    step = "cannot rename the temporary file over it";
    if (rename(tmp, target) != 0)
        goto fail_errno;
    free(tmp);
    if ((e = warmcal_sync_folder(target)) != 0)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                 "written, but flushing its folder to disk failed: %s", strerror(e));
    return WARMCAL_OK;

fail_errno:
    e = errno;
    if (fd >= 0)
        close(fd);
    unlink(tmp);
fail:
    free(tmp);
    return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "%s: %s (the old file is unchanged)",
                             step, strerror(e));
}

int warmcal_table_write(const warmcal_table *t, const char *path, warmcal_error *err)
{
    if (!t || !path || !path[0])
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "table_write: bad argument");
    int rc = warmcal_table_validate(t, path, err);
    if (rc)
        return rc;
    char *target = NULL, *text = NULL;
    int descriptor = -1, ours = 0;
    if ((rc = follow_links(path, &target, &descriptor, &ours, err)))
        return rc;
    /* an open descriptor is written through whatever it is; what else is at
     * path decides how it is written, and nothing is touched when it is
     * neither a file, a character device nor a FIFO */
    struct stat st;
    int exists = descriptor < 0 && stat(path, &st) == 0;
    if (exists && !S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode))
        rc = warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                               "not written: it is %s; a table replaces a regular file, or is "
                               "written through a character device or a FIFO (the old file is "
                               "unchanged)",
                               kind_of(st.st_mode));
    if (!rc)
        rc = render(t, path, &text, err);
    struct stat found;
    if (!rc) {
        if (descriptor >= 0 && ours)
            rc = write_to_descriptor(descriptor, path, text, err);
        else if (descriptor >= 0 || (exists && !S_ISREG(st.st_mode)))
            rc = write_through(path, text, descriptor >= 0, err);
        else if (exists && (stat(target, &found) != 0 || found.st_dev != st.st_dev ||
                            found.st_ino != st.st_ino))
            rc = warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                   "not written: it is a link whose target cannot be named (the "
                                   "old file is unchanged)");
        else
            rc = replace_file(target, path, text, err);
    }
    free(target);
    free(text);
    return rc;
}
