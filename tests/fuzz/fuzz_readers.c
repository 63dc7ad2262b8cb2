/* Fuzz targets for warmcal's readers: model configs, deployment files,
 * estimate tables and HDF5 traces. Whatever the bytes, a reader returns 0 or an error with a
 * message; it never crashes, leaks or prints. Built three ways: with
 * -DWARMCAL_FUZZ_TARGET_<MODEL|DEPLOYMENT|TABLE|TRACE> and clang's -fsanitize=fuzzer
 * for fuzzing (cmake -DWARMCAL_FUZZ=ON), and with replay.c as a ctest that
 * runs every file of the corpus. */
#define _DEFAULT_SOURCE /* mkstemp */
#include "warmcal/model.h"
#include "warmcal/table.h"
#include "warmcal/trace.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The readers take paths: the input goes through one temporary file, in
 * $TMPDIR (else /tmp), removed when the process exits normally. */
static char input_path[4096];

static void remove_input_file(void)
{
    unlink(input_path);
}

static const char *input_file(const uint8_t *data, size_t size)
{
    char *path = input_path;
    if (!path[0]) {
        const char *tmp = getenv("TMPDIR");
        int n = snprintf(path, sizeof input_path, "%s/warmcal-fuzz-XXXXXX",
                         tmp && tmp[0] ? tmp : "/tmp");
        if (n < 0 || (size_t)n >= sizeof input_path)
            abort();
        int fd = mkstemp(path);
        if (fd < 0)
            abort();
        close(fd);
        atexit(remove_input_file);
    }
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    return path;
}

static void check_error(int rc, const warmcal_error *err)
{
    /* an error must say what went wrong */
    if (rc != 0 && (err->code != rc || err->text[0] == '\0'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = input_file(data, size);
    warmcal_error err = {0};
#if WARMCAL_FUZZ_TARGET_MODEL
    warmcal_model m;
    int rc = warmcal_model_load(path, &m, &err);
    check_error(rc, &err);
    if (rc == 0)
        (void)warmcal_model_weight_bytes_per_rank(&m, 4);
#elif WARMCAL_FUZZ_TARGET_DEPLOYMENT
    warmcal_deployment d;
    warmcal_deployment_defaults(&d);
    check_error(warmcal_deployment_load(path, &d, &err), &err);
#elif WARMCAL_FUZZ_TARGET_TABLE
    warmcal_table *t = NULL;
    int rc = warmcal_table_read(path, &t, &err);
    check_error(rc, &err);
    if ((rc == 0) != (t != NULL))
        abort();
    if (t) { /* a table that reads evaluates without crashing */
        uint64_t bytes = 0;
        for (size_t i = 0; i < t->n_estimates; i++)
            warmcal_table_estimate(t, t->estimates[i].rank, t->estimates[i].label,
                                   t->estimates[i].tokens_max, 1, &bytes, NULL);
    }
    warmcal_table_free(t);
#elif WARMCAL_FUZZ_TARGET_TRACE
    warmcal_trace *t = NULL;
    int rc = warmcal_trace_read(path, &t, &err);
    check_error(rc, &err);
    if ((rc == 0) != (t != NULL))
        abort();
    warmcal_trace_free(t);
#else
#error "define WARMCAL_FUZZ_TARGET_MODEL, _DEPLOYMENT, _TABLE or _TRACE"
#endif
    return 0;
}
