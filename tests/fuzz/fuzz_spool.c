/* Fuzz target for the spool reader and converter (warmcal/spool.h), which
 * read what a killed or broken profiled process left: whatever the bytes,
 * parsing returns a spool or an error with a message; a spool that parses
 * sorts into time order (FREE events first at equal times) with every index
 * entry leading to a timed record inside the data, and its conversion
 * either writes a trace that reads back or fails with a message, leaving no
 * file behind. Built like the readers' targets (fuzz_readers.c): with
 * -fsanitize=fuzzer (cmake -DWARMCAL_FUZZ=ON), and with replay.c as a ctest
 * over the corpus. */
#define _DEFAULT_SOURCE /* mkdtemp */
#include "warmcal/spool.h"
#include "warmcal/trace.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char folder[4096];
static char spool_path[4200], trace_path[4200];

static void remove_folder(void)
{
    unlink(spool_path);
    unlink(trace_path);
    rmdir(folder);
}

static void check_error(int rc, const warmcal_error *err)
{
    if (rc != 0 && (err->code != rc || err->text[0] == '\0'))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly size bytes, so a read past the end is caught */
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        abort();
    if (size)
        memcpy(copy, data, size);
    warmcal_error err = {0};
    warmcal_spool *s = NULL;
    int rc = warmcal_spool_parse(copy, size, "fuzz.spool", &s, &err);
    check_error(rc, &err);
    if ((rc == 0) != (s != NULL))
        abort();
    free(copy);
    if (!s)
        return 0;
    warmcal_spool_sort(s);
    if (s->index_bytes != s->n_entries * sizeof(warmcal_spool_index))
        abort();
    for (size_t i = 0; i < s->n_entries; i++) {
        if (i > 0 && s->index[i].time_ns < s->index[i - 1].time_ns)
            abort();
        /* every index entry leads to a timed record inside the data */
        if (WARMCAL_SPOOL_INDEX_OFFSET(s->index[i]) + 16 > s->size)
            abort();
        warmcal_spool_entry e;
        warmcal_spool_entry_at(s, i, &e);
        if (e.type != WARMCAL_SPOOL_EVENT && e.type != WARMCAL_SPOOL_PHASE_BEGIN &&
            e.type != WARMCAL_SPOOL_PHASE_END && e.type != WARMCAL_SPOOL_POOL)
            abort();
        if (e.time_ns != s->index[i].time_ns)
            abort();
        /* at equal times FREE events come first */
        if (i > 0 && s->index[i].time_ns == s->index[i - 1].time_ns &&
            (s->index[i].key >> 63) < (s->index[i - 1].key >> 63))
            abort();
    }
    warmcal_spool_free(s);

    if (!folder[0]) {
        const char *tmp = getenv("TMPDIR");
        snprintf(folder, sizeof folder, "%s/warmcal-fuzz-spool-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
        if (!mkdtemp(folder))
            abort();
        snprintf(spool_path, sizeof spool_path, "%s/in.spool", folder);
        snprintf(trace_path, sizeof trace_path, "%s/out.h5", folder);
        atexit(remove_folder);
    }
    FILE *f = fopen(spool_path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    unlink(trace_path);
    warmcal_spool_convert_options o = {.with_events = 1};
    warmcal_spool_convert_report rep;
    memset(&err, 0, sizeof err);
    rc = warmcal_spool_convert(spool_path, trace_path, &o, &rep, &err);
    check_error(rc, &err);
    struct stat st;
    int written = stat(trace_path, &st) == 0;
    if (written != (rc == 0 && rep.trace_written))
        abort();
    if (written) {
        warmcal_trace *t = NULL;
        memset(&err, 0, sizeof err);
        if (warmcal_trace_read(trace_path, &t, &err) != 0 || t->n_phases != rep.phases)
            abort();
        warmcal_trace_free(t);
    }
    return 0;
}
