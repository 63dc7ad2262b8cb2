/* Trace writer and reader in C: every field survives a round trip (extreme
 * values included), the optional timeline is there only when asked for, and
 * bad input is refused quietly — with the field named and nothing printed.
 *
 * usage: test_trace [CASE]   (no CASE: run them all; ctest runs one each) */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../check.h"
#include "warmcal/trace.h"

static char dir[4096]; /* this run's folder under $TMPDIR or /tmp; "" until made */

/* A path inside this run's temporary folder. */
static const char *tmp_path(const char *name)
{
    static char buf[4200];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static warmcal_trace_info full_info(void)
{
    warmcal_trace_info info = {
        .rank = 3, .world_size = 4, .model = "llama-3-8b", .source = "cupti",
        .gpu_name = "NVIDIA H100 80GB HBM3", .gpu_total_bytes = 85520809984ull,
        .tp = 4, .pp = 1, .host = "node-7", .start_time = "2024-05-01T12:00:00Z",
        .tool_version = "0.1.0", .driver_version = "550.54.15", .cuda_version = "12.4",
    };
    return info;
}

static warmcal_phase make_phase(const char *label, uint64_t tokens, uint8_t outcome)
{
    warmcal_phase p;
    memset(&p, 0, sizeof p);
    snprintf(p.label, sizeof p.label, "%s", label);
    p.tokens = tokens;
    p.batch = 1;
    p.begin_ns = 1000;
    p.end_ns = 2000;
    p.live_begin = 1 << 20;
    p.live_peak = 5 << 20;
    p.live_end = 2 << 20;
    p.device_free_begin = 70ull << 30;
    p.device_free_end = 69ull << 30;
    p.outcome = outcome;
    return p;
}

static void check_same_phase(const warmcal_phase *a, const warmcal_phase *b)
{
    CHECK(strcmp(a->label, b->label) == 0);
    CHECK_EQ_U64(a->tokens, b->tokens);
    CHECK_EQ_U64(a->batch, b->batch);
    CHECK_EQ_U64(a->begin_ns, b->begin_ns);
    CHECK_EQ_U64(a->end_ns, b->end_ns);
    CHECK_EQ_U64(a->live_begin, b->live_begin);
    CHECK_EQ_U64(a->live_peak, b->live_peak);
    CHECK_EQ_U64(a->live_end, b->live_end);
    CHECK_EQ_U64(a->device_free_begin, b->device_free_begin);
    CHECK_EQ_U64(a->device_free_end, b->device_free_end);
    CHECK_EQ_U64(a->outcome, b->outcome);
    CHECK_EQ_U64(a->failed_alloc_bytes, b->failed_alloc_bytes);
    CHECK_EQ_U64(a->pinned_peak, b->pinned_peak);
    CHECK_EQ_U64(a->anomalies, b->anomalies);
}

static const char *attr_value(const warmcal_trace *t, const char *name)
{
    for (size_t i = 0; i < t->n_attrs; i++)
        if (strcmp(t->attrs[i].name, name) == 0)
            return t->attrs[i].value;
    return NULL;
}

static void round_trip_keeps_every_field(void)
{
    const char *path = tmp_path("round-trip.h5");
    warmcal_trace_info info = full_info();
    warmcal_phase in[4];
    in[0] = make_phase("context", 4096, WARMCAL_OUTCOME_OK);
    in[0].pinned_peak = 123456;
    in[0].anomalies = 2;
    in[1] = make_phase("abcdefghijklmnopqrstuvwxyz01234", 8192, WARMCAL_OUTCOME_OOM);
    in[1].failed_alloc_bytes = 3ull << 30;
    in[1].device_free_end = WARMCAL_FREE_UNKNOWN;
    in[2] = make_phase("generation", 1, WARMCAL_OUTCOME_ABORTED);
    in[2].device_free_begin = in[2].device_free_end = WARMCAL_FREE_UNKNOWN;
    in[3] = make_phase("max", WARMCAL_TRACE_TOKENS_MAX, WARMCAL_OUTCOME_OK);
    in[3].batch = UINT32_MAX;
    in[3].begin_ns = 0;
    in[3].end_ns = UINT64_MAX;
    in[3].live_begin = in[3].live_end = UINT64_MAX - 1;
    in[3].live_peak = UINT64_MAX;
    in[3].device_free_begin = in[3].device_free_end = UINT64_MAX - 1;
    in[3].failed_alloc_bytes = in[3].pinned_peak = UINT64_MAX;
    in[3].anomalies = UINT32_MAX;
    const warmcal_event ev[3] = {
        {10, WARMCAL_EV_ALLOC, WARMCAL_MEM_POOL, 4096, 0xdeadbeef000ull, -1},
        {20, WARMCAL_EV_FREE, WARMCAL_MEM_DEVICE, UINT64_MAX, UINT64_MAX, INT64_MAX},
        {30, WARMCAL_EV_DEVICE_FREE, 0, 70ull << 30, 0, 0},
    };

    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_trace_writer *w = NULL;
    CHECK(warmcal_trace_writer_open(&w, path, &info, 1, &err) == WARMCAL_OK);
    CHECK(warmcal_trace_writer_add_event(w, &ev[0], &err) == WARMCAL_OK);
    CHECK(warmcal_trace_writer_add_phase(w, &in[0], &err) == WARMCAL_OK);
    CHECK(warmcal_trace_writer_add_phase(w, &in[1], &err) == WARMCAL_OK);
    CHECK(warmcal_trace_writer_add_event(w, &ev[1], &err) == WARMCAL_OK);
    CHECK(warmcal_trace_writer_add_phase(w, &in[2], &err) == WARMCAL_OK);
    CHECK(warmcal_trace_writer_add_phase(w, &in[3], &err) == WARMCAL_OK);
    CHECK(warmcal_trace_writer_add_event(w, &ev[2], &err) == WARMCAL_OK); /* written at close */
    CHECK(warmcal_trace_writer_close(w, &err) == WARMCAL_OK);
    CHECK_EQ_U64(err.code, 0);

    warmcal_trace *t = NULL;
    CHECK(warmcal_trace_read(path, &t, &err) == WARMCAL_OK);
    if (!t)
        return;
    CHECK(strcmp(t->path, path) == 0);
    CHECK_EQ_U64(t->schema, 1);
    CHECK_EQ_U64(t->rank, 3);
    CHECK_EQ_U64(t->world_size, 4);
    CHECK(strcmp(t->model, "llama-3-8b") == 0);
    CHECK(strcmp(t->source, "cupti") == 0);
    CHECK(strcmp(t->gpu_name, "NVIDIA H100 80GB HBM3") == 0);
    CHECK_EQ_U64(t->gpu_total_bytes, 85520809984ull);
    CHECK_EQ_U64(t->complete, 1);
    CHECK_EQ_U64(t->n_events, 3);
    CHECK_EQ_U64(t->n_phases, 4);
    for (size_t i = 0; i < t->n_phases && i < 4; i++)
        check_same_phase(&t->phases[i], &in[i]);

    static const char *const order[] = {
        "warmcal_schema", "rank", "world_size", "model", "source", "gpu_name",
        "gpu_total_bytes", "complete", "tp", "pp", "host", "start_time", "tool_version",
        "driver_version", "cuda_version",
    };
    CHECK_EQ_U64(t->n_attrs, sizeof order / sizeof order[0]);
    for (size_t i = 0; i < t->n_attrs && i < sizeof order / sizeof order[0]; i++)
        CHECK(strcmp(t->attrs[i].name, order[i]) == 0);
    CHECK_STR_CONTAINS(attr_value(t, "gpu_total_bytes"), "85520809984");
    CHECK_STR_CONTAINS(attr_value(t, "tp"), "4");
    CHECK_STR_CONTAINS(attr_value(t, "cuda_version"), "12.4");
    CHECK_STR_CONTAINS(attr_value(t, "complete"), "1");
    warmcal_trace_free(t);

    /* The reader only counts events: check the timeline rows directly. */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "events", H5P_DEFAULT);
    hid_t dcpl = H5Dget_create_plist(d);
    CHECK(H5Pget_nfilters(dcpl) >= 1); /* compressed */
    hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(warmcal_event));
    H5Tinsert(mt, "time_ns", offsetof(warmcal_event, time_ns), H5T_NATIVE_UINT64);
    H5Tinsert(mt, "kind", offsetof(warmcal_event, kind), H5T_NATIVE_UINT8);
    H5Tinsert(mt, "mem_kind", offsetof(warmcal_event, mem_kind), H5T_NATIVE_UINT8);
    H5Tinsert(mt, "bytes", offsetof(warmcal_event, bytes), H5T_NATIVE_UINT64);
    H5Tinsert(mt, "address", offsetof(warmcal_event, address), H5T_NATIVE_UINT64);
    H5Tinsert(mt, "phase", offsetof(warmcal_event, phase), H5T_NATIVE_INT64);
    warmcal_event out[3];
    memset(out, 0, sizeof out);
    CHECK(H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_U64(out[i].time_ns, ev[i].time_ns);
        CHECK_EQ_U64(out[i].kind, ev[i].kind);
        CHECK_EQ_U64(out[i].mem_kind, ev[i].mem_kind);
        CHECK_EQ_U64(out[i].bytes, ev[i].bytes);
        CHECK_EQ_U64(out[i].address, ev[i].address);
        CHECK(out[i].phase == ev[i].phase);
    }
    H5Tclose(mt);
    H5Pclose(dcpl);
    H5Dclose(d);
    H5Fclose(f);
}

static void without_events_there_is_no_timeline(void)
{
    const char *path = tmp_path("no-events.h5");
    warmcal_trace_info info = full_info();
    info.tp = info.pp = 0;
    info.host = info.start_time = info.tool_version = info.driver_version = info.cuda_version = NULL;
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_trace_writer *w = NULL;
    CHECK(warmcal_trace_writer_open(&w, path, &info, 0, &err) == WARMCAL_OK);
    warmcal_event ev = {1, WARMCAL_EV_ALLOC, 0, 1, 1, -1};
    CHECK(warmcal_trace_writer_add_event(w, &ev, &err) == WARMCAL_OK); /* a no-op */
    warmcal_phase p = make_phase("context", 1, WARMCAL_OUTCOME_OK);
    CHECK(warmcal_trace_writer_add_phase(w, &p, &err) == WARMCAL_OK);
    CHECK(warmcal_trace_writer_close(w, &err) == WARMCAL_OK);

    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(H5Lexists(f, "events", H5P_DEFAULT) == 0);
    H5Fclose(f);
    warmcal_trace *t = NULL;
    CHECK(warmcal_trace_read(path, &t, &err) == WARMCAL_OK);
    if (t) {
        CHECK_EQ_U64(t->n_events, 0);
        CHECK_EQ_U64(t->n_phases, 1);
        CHECK_EQ_U64(t->n_attrs, 8); /* the required attributes only */
    }
    warmcal_trace_free(t);
}

static void empty_trace_reads_with_no_phases(void)
{
    const char *path = tmp_path("empty.h5");
    warmcal_trace_info info = full_info();
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_trace_writer *w = NULL;
    CHECK(warmcal_trace_writer_open(&w, path, &info, 1, &err) == WARMCAL_OK);
    CHECK(warmcal_trace_writer_close(w, &err) == WARMCAL_OK);
    warmcal_trace *t = NULL;
    CHECK(warmcal_trace_read(path, &t, &err) == WARMCAL_OK);
    if (t) {
        CHECK_EQ_U64(t->n_phases, 0);
        CHECK_EQ_U64(t->n_events, 0);
        CHECK_EQ_U64(t->complete, 1);
    }
    warmcal_trace_free(t);
}

static void sinks_feed_the_writer(void)
{
    const char *path = tmp_path("sinks.h5");
    warmcal_trace_info info = full_info();
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_trace_writer *w = NULL;
    CHECK(warmcal_trace_writer_open(&w, path, &info, 1, &err) == WARMCAL_OK);
    warmcal_recorder_options opts = {warmcal_trace_phase_sink, warmcal_trace_event_sink, w};
    warmcal_event ev = {5, WARMCAL_EV_PHASE_BEGIN, 0, 0, 0, 0};
    warmcal_phase p = make_phase("context", 64, WARMCAL_OUTCOME_OK);
    CHECK(opts.on_event(opts.user, &ev, &err) == WARMCAL_OK);
    CHECK(opts.on_phase(opts.user, &p, &err) == WARMCAL_OK);
    CHECK(warmcal_trace_writer_close(w, &err) == WARMCAL_OK);
    warmcal_trace *t = NULL;
    CHECK(warmcal_trace_read(path, &t, &err) == WARMCAL_OK);
    if (t) {
        CHECK_EQ_U64(t->n_phases, 1);
        CHECK_EQ_U64(t->n_events, 1);
    }
    warmcal_trace_free(t);
    CHECK(strcmp(warmcal_outcome_name(WARMCAL_OUTCOME_OK), "ok") == 0);
    CHECK(strcmp(warmcal_outcome_name(WARMCAL_OUTCOME_OOM), "oom") == 0);
    CHECK(strcmp(warmcal_outcome_name(WARMCAL_OUTCOME_ABORTED), "aborted") == 0);
    CHECK(strcmp(warmcal_outcome_name(7), "?") == 0);
}

static void bulk_rows_round_trip_and_a_bad_row_writes_none(void)
{
    const char *path = tmp_path("bulk.h5");
    warmcal_trace_info info = full_info();
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_trace_writer *w = NULL;
    CHECK(warmcal_trace_writer_open(&w, path, &info, 0, &err) == WARMCAL_OK);
    warmcal_phase rows[100], bad[100];
    for (int i = 0; i < 100; i++)
        rows[i] = make_phase(i % 2 ? "generation" : "context", (uint64_t)i + 1, WARMCAL_OUTCOME_OK);
    CHECK(warmcal_trace_writer_add_phases(w, rows, 100, &err) == WARMCAL_OK);
    memcpy(bad, rows, sizeof bad);
    bad[50].live_peak = 0; /* below live_begin: the whole batch is refused */
    CHECK(warmcal_trace_writer_add_phases(w, bad, 100, &err) == WARMCAL_E_INVAL);
    CHECK_STR_CONTAINS(err.where, "phases[150]");
    warmcal_error_clear(&err);
    CHECK(warmcal_trace_writer_add_phases(w, rows, 0, &err) == WARMCAL_OK);
    CHECK(warmcal_trace_writer_close(w, &err) == WARMCAL_OK);
    warmcal_trace *t = NULL;
    CHECK(warmcal_trace_read(path, &t, &err) == WARMCAL_OK);
    if (t) {
        CHECK_EQ_U64(t->n_phases, 100);
        for (int i = 0; i < 100 && t->n_phases == 100; i++)
            check_same_phase(&t->phases[i], &rows[i]);
    }
    warmcal_trace_free(t);
}

static void bad_info_is_rejected_before_creating_a_file(void)
{
    static const struct {
        const char *field;
        int rank, world_size, tp;
        const char *model, *source, *gpu_name;
    } cases[] = {
        {"rank", 4, 4, 0, "m", "torch", "g"},
        {"rank", -1, 4, 0, "m", "torch", "g"},
        {"world_size", 0, 0, 0, "m", "torch", "g"},
        {"model", 0, 1, 0, NULL, "torch", "g"},
        {"gpu_name", 0, 1, 0, "m", "torch", NULL},
        {"source", 0, 1, 0, "m", NULL, "g"},
        {"source", 0, 1, 0, "m", "nvml", "g"},
        {"tp", 0, 1, -2, "m", "import", "g"},
    };
    const char *path = tmp_path("bad-info.h5");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        warmcal_trace_info info = {
            .rank = cases[i].rank, .world_size = cases[i].world_size, .tp = cases[i].tp,
            .model = cases[i].model, .source = cases[i].source, .gpu_name = cases[i].gpu_name,
        };
        warmcal_error err;
        warmcal_error_clear(&err);
        warmcal_trace_writer *w = (warmcal_trace_writer *)&info; /* must be reset to NULL */
        CHECK(warmcal_trace_writer_open(&w, path, &info, 0, &err) == WARMCAL_E_INVAL);
        CHECK(w == NULL);
        CHECK(strcmp(err.where, cases[i].field) == 0);
        CHECK(access(path, F_OK) != 0);
    }
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_trace_writer *w = NULL;
    CHECK(warmcal_trace_writer_open(&w, path, NULL, 0, &err) == WARMCAL_E_INVAL);
    CHECK(warmcal_trace_writer_close(NULL, &err) == WARMCAL_OK);
}

static void writer_refuses_rows_the_reader_would_reject(void)
{
    const char *path = tmp_path("bad-rows.h5");
    warmcal_trace_info info = full_info();
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_trace_writer *w = NULL;
    CHECK(warmcal_trace_writer_open(&w, path, &info, 0, &err) == WARMCAL_OK);
    warmcal_phase good = make_phase("context", 1, WARMCAL_OUTCOME_OK);
    CHECK(warmcal_trace_writer_add_phase(w, &good, &err) == WARMCAL_OK);

    warmcal_phase bad[7] = {good, good, good, good, good, good, good};
    bad[0].outcome = 3;
    bad[1].end_ns = bad[1].begin_ns - 1;
    bad[2].live_peak = bad[2].live_begin - 1;
    bad[3].live_end = bad[3].live_peak + 1;
    bad[4].tokens = 0;
    bad[5].tokens = WARMCAL_TRACE_TOKENS_MAX + 1;
    memcpy(bad[6].label, "caf\xc3", 5); /* cut inside a character */
    static const char *const where[7] = {
        "phases[1].outcome", "phases[1].end_ns", "phases[1].live_peak", "phases[1].live_peak",
        "phases[1].tokens",  "phases[1].tokens", "phases[1].label",
    };
    for (int i = 0; i < 7; i++) {
        warmcal_error_clear(&err);
        CHECK(warmcal_trace_writer_add_phase(w, &bad[i], &err) == WARMCAL_E_INVAL);
        CHECK(strcmp(err.where, where[i]) == 0);
        if (i == 3)
            CHECK_STR_CONTAINS(err.text, "expected >= live_end");
        if (i == 5)
            CHECK_STR_CONTAINS(err.text, "expected 1 to 1099511627776 (2^40), found 1099511627777");
    }
    CHECK_STR_CONTAINS(err.text, "not valid UTF-8");
    warmcal_error_clear(&err);
    CHECK(warmcal_trace_writer_close(w, &err) == WARMCAL_OK);
    warmcal_trace *t = NULL;
    CHECK(warmcal_trace_read(path, &t, &err) == WARMCAL_OK);
    if (t)
        CHECK_EQ_U64(t->n_phases, 1);
    warmcal_trace_free(t);
}

/* Run fn with stderr sent to a file; returns how many bytes it printed. */
static long stderr_bytes_during(void (*fn)(void))
{
    fflush(stderr);
    int saved = dup(2);
    int fd = open(tmp_path("stderr.txt"), O_CREAT | O_TRUNC | O_RDWR, 0600);
    dup2(fd, 2);
    fn();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    struct stat st;
    long n = fstat(fd, &st) == 0 ? (long)st.st_size : -1;
    close(fd);
    return n;
}

static int quiet_rc_open, quiet_rc_read;
static warmcal_error quiet_err_open, quiet_err_read;

static void fail_quietly(void)
{
    warmcal_trace_info info = full_info();
    warmcal_trace_writer *w = NULL;
    warmcal_error_clear(&quiet_err_open);
    warmcal_error_clear(&quiet_err_read);
    quiet_rc_open = warmcal_trace_writer_open(&w, tmp_path("no/such/dir/rank-0.h5"), &info, 0,
                                              &quiet_err_open);
    warmcal_trace *t = NULL;
    quiet_rc_read = warmcal_trace_read(tmp_path("stderr.txt"), &t, &quiet_err_read);
}

static void failures_print_nothing_and_name_the_file(void)
{
    H5E_auto2_t before_func, after_func;
    void *before_data, *after_data;
    H5Eget_auto2(H5E_DEFAULT, &before_func, &before_data);
    CHECK(stderr_bytes_during(fail_quietly) == 0);
    H5Eget_auto2(H5E_DEFAULT, &after_func, &after_data);
    CHECK(before_func == after_func && before_data == after_data); /* caller's handler restored */

    CHECK(quiet_rc_open == WARMCAL_E_IO);
    CHECK_STR_CONTAINS(quiet_err_open.source, "rank-0.h5");
    CHECK_STR_CONTAINS(quiet_err_open.text, "cannot create");
    CHECK(quiet_rc_read == WARMCAL_E_IO); /* an empty text file is no HDF5 file */
    CHECK_STR_CONTAINS(quiet_err_read.source, "stderr.txt");
    CHECK_STR_CONTAINS(quiet_err_read.text, "cannot open as HDF5");

    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_trace *t = (warmcal_trace *)&err; /* must be reset to NULL */
    CHECK(warmcal_trace_read(tmp_path("missing.h5"), &t, &err) == WARMCAL_E_IO);
    CHECK(t == NULL);
    CHECK_STR_CONTAINS(err.source, "missing.h5");
    CHECK_STR_CONTAINS(err.text, strerror(ENOENT));
    warmcal_trace_free(NULL);
}

static const struct {
    const char *name;
    void (*fn)(void);
} cases[] = {
    {"round_trip_keeps_every_field", round_trip_keeps_every_field},
    {"without_events_there_is_no_timeline", without_events_there_is_no_timeline},
    {"empty_trace_reads_with_no_phases", empty_trace_reads_with_no_phases},
    {"sinks_feed_the_writer", sinks_feed_the_writer},
    {"bad_info_is_rejected_before_creating_a_file", bad_info_is_rejected_before_creating_a_file},
    {"writer_refuses_rows_the_reader_would_reject", writer_refuses_rows_the_reader_would_reject},
    {"failures_print_nothing_and_name_the_file", failures_print_nothing_and_name_the_file},
    {"bulk_rows_round_trip_and_a_bad_row_writes_none", bulk_rows_round_trip_and_a_bad_row_writes_none},
};

/* Remove folder and everything in it, whatever the cases wrote (a list of
 * names would miss the next file a case adds). 0 on success. */
static int remove_tree(const char *folder)
{
    DIR *d = opendir(folder);
    if (!d)
        return -1;
    int rc = 0;
    for (struct dirent *de; (de = readdir(d));) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", folder, de->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            rc |= remove_tree(path);
        else if (unlink(path) != 0)
            rc = -1;
    }
    closedir(d);
    return rmdir(folder) != 0 ? -1 : rc;
}

/* A run that exits before the end of main leaves nothing behind either. */
static void remove_tmp_dir(void)
{
    if (dir[0] && remove_tree(dir) != 0)
        fprintf(stderr, "test_trace: could not remove %s\n", dir);
}

int main(int argc, char **argv)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/warmcal-test_trace-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror(dir);
        return 1;
    }
    atexit(remove_tmp_dir);
    int ran = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0)
            continue;
        fprintf(stderr, "-- %s\n", cases[i].name);
        cases[i].fn();
        ran++;
    }
    if (remove_tree(dir) != 0) {
        fprintf(stderr, "test_trace: could not remove %s\n", dir);
        check_failures++;
    }
    dir[0] = '\0';
    if (!ran) {
        fprintf(stderr, "test_trace: no case named '%s'\n", argv[1]);
        return 1;
    }
    CHECK_DONE();
}
