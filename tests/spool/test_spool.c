/* The spool: what the writer appends the reader gives back; conversion
 * places events by their timestamps (not by the order buffers arrived),
 * keeps a phase the process died in as aborted, tolerates a record cut
 * short at the end, refuses corruption naming the file and the byte offset,
 * marks the phases whose figure may be below the truth, and never leaves a
 * half-written trace behind.
 *
 * usage: test_spool [CASE]   (no CASE: run them all; ctest runs one each) */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <signal.h>
#include <time.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../check.h"
#include "warmcal/spool.h"
#include "warmcal/trace.h"

#define MIB (1024ull * 1024ull)

static char dir[4096]; /* this run's folder under $TMPDIR or /tmp */

static const char *tmp_path(const char *name)
{
    static char buf[2][8192];
    static int which;
    which ^= 1;
    snprintf(buf[which], sizeof buf[which], "%s/%s", dir, name);
    return buf[which];
}

static size_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Files in the run's folder whose name starts with prefix. */
static int count_files(const char *prefix)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    if (d)
        closedir(d);
    return n;
}

/* --- writing spools -------------------------------------------------------- */

static warmcal_spool_writer *open_spool(const char *name)
{
    warmcal_spool_writer *w = NULL;
    warmcal_error err = {0};
    unlink(tmp_path(name));
    if (warmcal_spool_writer_open(&w, tmp_path(name), &err) != 0) {
        fprintf(stderr, "cannot open spool: %s\n", err.text);
        exit(1);
    }
    return w;
}

static void info(warmcal_spool_writer *w, const char *k, const char *v)
{
    warmcal_error err = {0};
    CHECK(warmcal_spool_write_info(w, k, v, &err) == 0);
}

static void run_info(warmcal_spool_writer *w, int rank, const char *session, long pid)
{
    char r[16], p[32];
    snprintf(r, sizeof r, "%d", rank);
    snprintf(p, sizeof p, "%ld", pid);
    info(w, "session", session);
    info(w, "pid", p);
    info(w, "rank", r);
    info(w, "world_size", "4");
    info(w, "model", "tiny-llm");
    info(w, "host", "node-1");
    info(w, "start_time", "2026-12-02T08:00:00Z");
    info(w, "gpu_name", "Fake GPU 80GB");
    info(w, "gpu_total_bytes", "85899345920");
    info(w, "driver_version", "13000");
    info(w, "cuda_version", "13.0");
    info(w, "source", "cupti");
}

static void ev(warmcal_spool_writer *w, uint64_t t, int kind, uint64_t bytes, uint64_t addr,
               int mem_kind)
{
    warmcal_spool_event e;
    memset(&e, 0, sizeof e);
    e.time_ns = t;
    e.kind = (uint8_t)kind;
    e.bytes = bytes;
    e.address = addr;
    e.mem_kind = (uint8_t)mem_kind;
    warmcal_error err = {0};
    CHECK(warmcal_spool_write_event(w, &e, &err) == 0);
}

static void alloc(warmcal_spool_writer *w, uint64_t t, uint64_t bytes, uint64_t addr)
{
    ev(w, t, WARMCAL_EV_ALLOC, bytes, addr, WARMCAL_MEM_DEVICE);
}

static void release(warmcal_spool_writer *w, uint64_t t, uint64_t addr)
{
    ev(w, t, WARMCAL_EV_FREE, 0, addr, WARMCAL_MEM_DEVICE);
}

static void sample(warmcal_spool_writer *w, uint64_t t, uint64_t free_bytes)
{
    ev(w, t, WARMCAL_EV_DEVICE_FREE, free_bytes, 0, 0);
}

static void begin(warmcal_spool_writer *w, uint64_t t, const char *label, uint64_t tokens)
{
    warmcal_error err = {0};
    CHECK(warmcal_spool_write_phase_begin(w, t, label, tokens, 1, &err) == 0);
}

static void end(warmcal_spool_writer *w, uint64_t t)
{
    warmcal_error err = {0};
    CHECK(warmcal_spool_write_phase_end(w, t, &err) == 0);
}

static void close_spool(warmcal_spool_writer *w)
{
    warmcal_error err = {0};
    CHECK(warmcal_spool_writer_close(w, &err) == 0);
}

static warmcal_trace *convert(const char *spool, const char *trace, const char *model,
                              warmcal_spool_convert_report *rep)
{
    warmcal_spool_convert_options o = {.model = model, .with_events = 1};
    warmcal_error err = {0};
    int rc = warmcal_spool_convert(tmp_path(spool), tmp_path(trace), &o, rep, &err);
    if (rc != 0) {
        fprintf(stderr, "convert %s: %s: %s: %s\n", spool, err.source, err.where, err.text);
        CHECK(rc == 0);
        return NULL;
    }
    warmcal_trace *t = NULL;
    CHECK(warmcal_trace_read(tmp_path(trace), &t, &err) == 0);
    return t;
}

static const char *attr(const warmcal_trace *t, const char *name)
{
    for (size_t i = 0; t && i < t->n_attrs; i++)
        if (strcmp(t->attrs[i].name, name) == 0)
            return t->attrs[i].value;
    return NULL;
}

static int convert_fails(const char *spool, warmcal_error *err)
{
    warmcal_spool_convert_options o = {0};
    memset(err, 0, sizeof *err);
    return warmcal_spool_convert(tmp_path(spool), tmp_path("refused.h5"), &o, NULL, err);
}

/* --- cases ----------------------------------------------------------------- */

static void writer_and_reader_round_trip_every_record(void)
{
    warmcal_spool_writer *w = open_spool("all.spool");
    run_info(w, 2, "s-1", 4242);
    warmcal_error err = {0};
    ev(w, 100, WARMCAL_EV_ALLOC, 4096, 0xA000, WARMCAL_MEM_POOL);
    ev(w, 110, WARMCAL_EV_FREE, 0, 0xA000, WARMCAL_MEM_POOL);
    ev(w, 120, WARMCAL_EV_ALLOC_FAILED, UINT64_MAX, 0, WARMCAL_MEM_VIRTUAL);
    ev(w, 130, WARMCAL_EV_DEVICE_FREE, 70 * MIB, 0, 0);
    begin(w, 140, "a label of exactly thirty-one c", 1ull << 40);
    end(w, 150);
    warmcal_spool_dropped d = {.since_ns = 141, .until_ns = 149, .count = 7};
    CHECK(warmcal_spool_write_dropped(w, &d, &err) == 0);
    CHECK(warmcal_spool_write_note(w, 160, "several devices used", &err) == 0);
    warmcal_spool_pool p = {.time_ns = 170, .pool = 0xB000, .reserved_bytes = 32 * MIB,
                            .used_bytes = 1};
    CHECK(warmcal_spool_write_pool(w, &p, &err) == 0);
    CHECK(warmcal_spool_write_exit(w, 180, &err) == 0);
    /* long labels are cut at a character boundary (é is two bytes) */
    begin(w, 190, "0123456789012345678901234567890é", 5);
    close_spool(w);

    size_t size = file_size(tmp_path("all.spool"));
    CHECK(size % 8 == 0);
    warmcal_spool *s = NULL;
    CHECK(warmcal_spool_read(tmp_path("all.spool"), 0, &s, &err) == 0);
    if (!s)
        return;
    CHECK_EQ_U64(s->n_info, 12);
    CHECK(strcmp(warmcal_spool_info_get(s, "session"), "s-1") == 0);
    CHECK(strcmp(warmcal_spool_info_get(s, "gpu_name"), "Fake GPU 80GB") == 0);
    CHECK(warmcal_spool_info_get(s, "absent") == NULL);
    CHECK_EQ_U64(s->n_entries, 8);
    warmcal_spool_entry e[8];
    for (size_t i = 0; i < 8 && i < s->n_entries; i++)
        warmcal_spool_entry_at(s, i, &e[i]);
    CHECK_EQ_U64(e[0].type, WARMCAL_SPOOL_EVENT);
    CHECK_EQ_U64(e[0].kind, WARMCAL_EV_ALLOC);
    CHECK_EQ_U64(e[0].mem_kind, WARMCAL_MEM_POOL);
    CHECK_EQ_U64(e[0].bytes, 4096);
    CHECK_EQ_U64(e[0].address, 0xA000);
    CHECK(e[0].offset > s->info[s->n_info - 1].offset); /* the first record after the INFOs */
    CHECK_EQ_U64(e[1].offset, e[0].offset + 40);
    CHECK_EQ_U64(e[2].bytes, UINT64_MAX);
    CHECK_EQ_U64(e[2].mem_kind, WARMCAL_MEM_VIRTUAL);
    CHECK_EQ_U64(e[3].bytes, 70 * MIB);
    CHECK_EQ_U64(e[4].type, WARMCAL_SPOOL_PHASE_BEGIN);
    CHECK_EQ_U64(e[4].bytes, 1ull << 40);
    CHECK(strcmp(e[4].label, "a label of exactly thirty-one c") == 0);
    CHECK_EQ_U64(e[4].batch, 1);
    CHECK_EQ_U64(e[5].type, WARMCAL_SPOOL_PHASE_END);
    CHECK_EQ_U64(e[5].time_ns, 150);
    CHECK_EQ_U64(e[6].type, WARMCAL_SPOOL_POOL);
    CHECK_EQ_U64(e[6].address, 0xB000);
    CHECK_EQ_U64(e[6].bytes, 32 * MIB);
    CHECK_EQ_U64(s->n_begins, 2);
    CHECK(strcmp(s->begins[0].label, "a label of exactly thirty-one c") == 0);
    CHECK_EQ_U64(s->begins[0].tokens, 1ull << 40);
    CHECK(strcmp(s->begins[1].label, "0123456789012345678901234567890") == 0);
    CHECK_EQ_U64(s->n_dropped, 1);
    CHECK_EQ_U64(s->dropped[0].count, 7);
    CHECK_EQ_U64(s->n_notes, 1);
    CHECK(strcmp(s->notes[0].text, "several devices used") == 0);
    CHECK(s->exited && s->exit_ns == 180);
    CHECK_EQ_U64(s->truncated_bytes, 0);
    CHECK_EQ_U64(s->unknown_records, 0);
    warmcal_spool_free(s);
}

static void writer_refuses_an_existing_file_and_bad_records(void)
{
    warmcal_spool_writer *w = open_spool("once.spool");
    warmcal_error err = {0};
    warmcal_spool_writer *again = NULL;
    CHECK(warmcal_spool_writer_open(&again, tmp_path("once.spool"), &err) == WARMCAL_E_IO);
    CHECK(again == NULL);
    CHECK_STR_CONTAINS(err.source, "once.spool");
    warmcal_spool_event e = {.kind = 9};
    memset(&err, 0, sizeof err);
    CHECK(warmcal_spool_write_event(w, &e, &err) == WARMCAL_E_INVAL);
    memset(&err, 0, sizeof err);
    CHECK(warmcal_spool_write_info(w, "", "x", &err) == WARMCAL_E_INVAL);
    char big[WARMCAL_SPOOL_TEXT_MAX + 1];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    memset(&err, 0, sizeof err);
    CHECK(warmcal_spool_write_info(w, "k", big, &err) == WARMCAL_E_INVAL);
    /* a long note is kept, cut */
    memset(&err, 0, sizeof err);
    CHECK(warmcal_spool_write_note(w, 1, big, &err) == 0);
    close_spool(w);
    warmcal_spool *s = NULL;
    CHECK(warmcal_spool_read(tmp_path("once.spool"), 0, &s, &err) == 0);
    CHECK(s && s->n_notes == 1 && strlen(s->notes[0].text) == WARMCAL_SPOOL_TEXT_MAX - 1);
    CHECK(s && s->n_entries == 0 && s->n_info == 0);
    warmcal_spool_free(s);
}

static void writer_memory_stays_bounded_in_a_long_phase(void)
{
    warmcal_spool_writer *w = open_spool("long.spool");
    begin(w, 1, "long", 1);
    /* 20000 events of 40 bytes: 800 KB, never flushed by the caller */
    for (uint64_t i = 0; i < 20000; i++)
        alloc(w, 2 + i, 1, 0x1000 + i);
    size_t on_disk = file_size(tmp_path("long.spool"));
    CHECK(on_disk > 800000 - WARMCAL_SPOOL_FLUSH_AT - 4096);
    end(w, 30000);
    close_spool(w);
    CHECK_EQ_U64(file_size(tmp_path("long.spool")), 32 + 64 + 20000 * 40 + 16);
}

/* The same run written twice: once in timestamp order, once as CUPTI
 * delivers it — per-thread buffers arriving late, after the phase edges
 * that were stamped on the calling thread. */
static void write_run(const char *name, int as_delivered)
{
    warmcal_spool_writer *w = open_spool(name);
    run_info(w, 1, "s-order", 77);
    /* thread A: 0x1 (10 MiB) at 110, freed at 160; 0x3 (2 MiB) at 210, freed at 260
     * thread B: 0x2 (30 MiB) at 130, freed at 140; 0x4 (5 MiB) at 150 (kept)
     * phase "p1" 100..200, phase "p2" 200..300 */
    if (!as_delivered) {
        sample(w, 99, 1000 * MIB);
        begin(w, 100, "p1", 64);
        alloc(w, 110, 10 * MIB, 0x1);
        alloc(w, 130, 30 * MIB, 0x2);
        release(w, 140, 0x2);
        alloc(w, 150, 5 * MIB, 0x4);
        release(w, 160, 0x1);
        sample(w, 199, 995 * MIB);
        end(w, 200);
        begin(w, 200, "p2", 128);
        alloc(w, 210, 2 * MIB, 0x3);
        release(w, 260, 0x3);
        sample(w, 299, 995 * MIB);
        end(w, 300);
    } else {
        sample(w, 99, 1000 * MIB);
        begin(w, 100, "p1", 64);
        sample(w, 199, 995 * MIB);
        end(w, 200);
        begin(w, 200, "p2", 128);
        /* thread B's buffer comes first, then thread A's */
        alloc(w, 130, 30 * MIB, 0x2);
        release(w, 140, 0x2);
        alloc(w, 150, 5 * MIB, 0x4);
        alloc(w, 110, 10 * MIB, 0x1);
        release(w, 160, 0x1);
        sample(w, 299, 995 * MIB);
        end(w, 300);
        alloc(w, 210, 2 * MIB, 0x3);
        release(w, 260, 0x3);
    }
    close_spool(w);
}

static void events_out_of_order_across_threads_give_the_same_trace(void)
{
    write_run("ordered.spool", 0);
    write_run("delivered.spool", 1);
    warmcal_spool_convert_report ra, rb;
    warmcal_trace *a = convert("ordered.spool", "ordered.h5", NULL, &ra);
    warmcal_trace *b = convert("delivered.spool", "delivered.h5", NULL, &rb);
    CHECK(a && b);
    if (!a || !b)
        goto done;
    CHECK_EQ_U64(a->n_phases, 2);
    CHECK_EQ_U64(b->n_phases, 2);
    CHECK_EQ_U64(a->n_events, b->n_events);
    /* the truth of the script */
    const uint64_t peak[2] = {40 * MIB, 7 * MIB}, live_end[2] = {5 * MIB, 5 * MIB};
    for (size_t i = 0; i < 2 && i < b->n_phases; i++) {
        const warmcal_phase *x = &a->phases[i], *y = &b->phases[i];
        CHECK_EQ_U64(x->live_peak, peak[i]);
        CHECK_EQ_U64(x->live_end, live_end[i]);
        CHECK(strcmp(x->label, y->label) == 0);
        CHECK_EQ_U64(x->tokens, y->tokens);
        CHECK_EQ_U64(x->begin_ns, y->begin_ns);
        CHECK_EQ_U64(x->end_ns, y->end_ns);
        CHECK_EQ_U64(x->live_begin, y->live_begin);
        CHECK_EQ_U64(x->live_peak, y->live_peak);
        CHECK_EQ_U64(x->live_end, y->live_end);
        CHECK_EQ_U64(x->device_free_begin, y->device_free_begin);
        CHECK_EQ_U64(x->device_free_end, y->device_free_end);
        CHECK_EQ_U64(x->outcome, y->outcome);
        CHECK_EQ_U64(x->lower_bound, y->lower_bound);
        CHECK_EQ_U64(x->lower_bound, 0);
    }
    CHECK_EQ_U64(a->phases[0].device_free_begin, 1000 * MIB);
    CHECK_EQ_U64(a->phases[1].device_free_begin, 995 * MIB);
    /* run attributes come from the INFO records */
    CHECK_EQ_U64(a->rank, 1);
    CHECK_EQ_U64(a->world_size, 4);
    CHECK(strcmp(a->model, "tiny-llm") == 0);
    CHECK(strcmp(a->source, "cupti") == 0);
    CHECK(strcmp(a->gpu_name, "Fake GPU 80GB") == 0);
    CHECK_EQ_U64(a->gpu_total_bytes, 85899345920ull);
    CHECK(a->complete == 1);
    const char *want[][2] = {{"host", "node-1"}, {"start_time", "2026-12-02T08:00:00Z"},
                             {"driver_version", "13000"}, {"cuda_version", "13.0"},
                             {"tool_version", WARMCAL_VERSION}, {"session", "s-order"},
                             {"dropped_records", "0"}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const char *v = attr(a, want[i][0]);
        CHECK(v && strcmp(v, want[i][1]) == 0);
        if (!v || strcmp(v, want[i][1]) != 0)
            fprintf(stderr, "  attribute %s: %s\n", want[i][0], v ? v : "(absent)");
    }
    CHECK(ra.trace_written && ra.phases == 2 && ra.rank == 1 && ra.pid == 77);
    CHECK(!ra.exited_normally && !ra.ended_in_phase);
done:
    warmcal_trace_free(a);
    warmcal_trace_free(b);
}

static void model_option_overrides_and_missing_gpu_name_reads_unknown(void)
{
    warmcal_spool_writer *w = open_spool("bare.spool");
    info(w, "rank", "0");
    info(w, "world_size", "1");
    info(w, "model", "from-spool");
    begin(w, 10, "p", 1);
    end(w, 20);
    close_spool(w);
    warmcal_trace *t = convert("bare.spool", "bare.h5", "from-option", NULL);
    CHECK(t && strcmp(t->model, "from-option") == 0);
    CHECK(t && strcmp(t->gpu_name, "unknown") == 0);
    warmcal_trace_free(t);
    t = convert("bare.spool", "bare2.h5", NULL, NULL);
    CHECK(t && strcmp(t->model, "from-spool") == 0);
    warmcal_trace_free(t);
}

static void process_killed_inside_a_phase_keeps_it_as_aborted(void)
{
    warmcal_spool_writer *w = open_spool("killed.spool");
    run_info(w, 0, "s-k", 5);
    begin(w, 100, "warm", 32);
    alloc(w, 110, 8 * MIB, 0x1);
    end(w, 200);
    begin(w, 300, "context", 4096);
    alloc(w, 310, 64 * MIB, 0x2);
    alloc(w, 350, 1 * MIB, 0x3);
    close_spool(w); /* no EXIT record, no end: the process was killed */
    warmcal_spool_convert_report rep;
    warmcal_trace *t = convert("killed.spool", "killed.h5", NULL, &rep);
    CHECK(t && t->n_phases == 2);
    if (t && t->n_phases == 2) {
        const warmcal_phase *p = &t->phases[1];
        CHECK_EQ_U64(p->outcome, WARMCAL_OUTCOME_ABORTED);
        CHECK(p->lower_bound & WARMCAL_LOWER_BOUND_ABORTED);
        CHECK_EQ_U64(p->end_ns, 350);
        CHECK_EQ_U64(p->live_peak, 73 * MIB);
        CHECK_EQ_U64(t->phases[0].outcome, WARMCAL_OUTCOME_OK);
        CHECK_EQ_U64(t->phases[0].lower_bound, 0);
    }
    CHECK(rep.ended_in_phase && !rep.exited_normally);
    CHECK(strcmp(rep.ended_label, "context") == 0 && rep.ended_tokens == 4096);
    CHECK_EQ_U64(rep.lower_bound_phases, 1);
    warmcal_trace_free(t);
}

static void cut_off_last_record_is_left_out_and_counted(void)
{
    for (int cut = 1; cut <= 3; cut++) {
        warmcal_spool_writer *w = open_spool("cut.spool");
        begin(w, 100, "p", 1);
        alloc(w, 110, 4 * MIB, 0x1);
        end(w, 200);
        alloc(w, 210, 16 * MIB, 0x2); /* 40 bytes: the record cut short */
        close_spool(w);
        size_t size = file_size(tmp_path("cut.spool"));
        /* cut 1: inside the body; cut 2: inside the record header;
         * cut 3: the record's bytes never landed (zeros) */
        size_t keep = cut == 1 ? size - 5 : size - 36;
        if (cut == 3) {
            int fd = open(tmp_path("cut.spool"), O_WRONLY);
            static const unsigned char zeros[40];
            CHECK(fd >= 0 && pwrite(fd, zeros, sizeof zeros, (off_t)(size - 40)) == 40);
            close(fd);
            keep = size;
        } else {
            CHECK(truncate(tmp_path("cut.spool"), (off_t)keep) == 0);
        }
        warmcal_spool_convert_report rep;
        warmcal_trace *t = convert("cut.spool", "cut.h5", NULL, &rep);
        CHECK_EQ_U64(rep.truncated_bytes, cut == 1 ? 35 : cut == 2 ? 4 : 40);
        CHECK(t && t->n_phases == 1 && t->phases[0].live_peak == 4 * MIB);
        warmcal_trace_free(t);
    }
}

static void write_bytes(const char *name, const void *data, size_t n)
{
    unlink(tmp_path(name));
    int fd = open(tmp_path(name), O_WRONLY | O_CREAT | O_EXCL, 0644);
    CHECK(fd >= 0 && write(fd, data, n) == (ssize_t)n);
    close(fd);
}

static void patch(const char *name, size_t offset, const void *data, size_t n)
{
    int fd = open(tmp_path(name), O_WRONLY);
    CHECK(fd >= 0 && pwrite(fd, data, n, (off_t)offset) == (ssize_t)n);
    close(fd);
}

static void corrupt_header_is_refused_naming_the_file(void)
{
    warmcal_spool_file_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, WARMCAL_SPOOL_MAGIC, sizeof h.magic);
    h.version = WARMCAL_SPOOL_VERSION;
    h.byte_order = WARMCAL_SPOOL_BYTE_ORDER;
    struct {
        const char *what;
        size_t size;
        void (*change)(warmcal_spool_file_header *);
        const char *text;
    } cases[4] = {{"short", 20, NULL, "too short"},
                  {"magic", 32, NULL, "magic"},
                  {"version", 32, NULL, "version 2"},
                  {"order", 32, NULL, "other byte order"}};
    for (int i = 0; i < 4; i++) {
        warmcal_spool_file_header c = h;
        if (i == 1)
            c.magic[0] = 'X';
        if (i == 2)
            c.version = 2;
        if (i == 3)
            c.byte_order = 0x04030201u;
        write_bytes("bad-header.spool", &c, cases[i].size);
        warmcal_error err;
        CHECK(convert_fails("bad-header.spool", &err) == WARMCAL_E_FORMAT);
        CHECK_STR_CONTAINS(err.source, "bad-header.spool");
        CHECK_STR_CONTAINS(err.where, "header");
        CHECK_STR_CONTAINS(err.text, cases[i].text);
        CHECK(!exists(tmp_path("refused.h5")));
    }
    warmcal_error err;
    write_bytes("empty.spool", "", 0);
    CHECK(convert_fails("empty.spool", &err) == WARMCAL_E_FORMAT);
}

static void corrupt_record_is_refused_naming_its_offset(void)
{
    /* header 32, then three 40-byte events: the third starts at 112 */
    const struct {
        size_t at;
        unsigned char bytes[8];
        size_t n;
        const char *text;
    } cases[] = {
        {112 + 4, {12, 0, 0, 0}, 4, "record size 12"},         /* not a multiple of 8 */
        {112 + 4, {48, 0, 0, 0}, 4, "type 2 with size 48"},    /* wrong for an event */
        {112 + 4, {0, 0, 2, 0}, 4, "record size 131072"},      /* beyond the maximum */
        {112 + 2, {1, 0}, 2, "reserved"},
        {112 + 8 + 24, {9}, 1, "event kind"},
        {112 + 8 + 25, {7}, 1, "memory kind"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        warmcal_spool_writer *w = open_spool("bad-record.spool");
        alloc(w, 1, 1, 0x1);
        alloc(w, 2, 1, 0x2);
        alloc(w, 3, 1, 0x3);
        begin(w, 4, "p", 1);
        end(w, 5);
        close_spool(w);
        patch("bad-record.spool", cases[i].at, cases[i].bytes, cases[i].n);
        warmcal_error err;
        CHECK(convert_fails("bad-record.spool", &err) == WARMCAL_E_FORMAT);
        CHECK_STR_CONTAINS(err.source, "bad-record.spool");
        CHECK_STR_CONTAINS(err.where, "offset 112");
        CHECK_STR_CONTAINS(err.text, cases[i].text);
        CHECK(!exists(tmp_path("refused.h5")));
    }
    /* an unknown record type is skipped */
    warmcal_spool_writer *w = open_spool("future.spool");
    alloc(w, 1, 1, 0x1);
    begin(w, 4, "p", 1);
    end(w, 5);
    close_spool(w);
    patch("future.spool", 32, (const unsigned char[]){42, 0}, 2);
    warmcal_spool *s = NULL;
    warmcal_error err = {0};
    CHECK(warmcal_spool_read(tmp_path("future.spool"), 0, &s, &err) == 0);
    CHECK(s && s->unknown_records == 1 && s->n_entries == 2);
    warmcal_spool_free(s);
}

static void phase_edges_out_of_place_are_refused(void)
{
    warmcal_spool_writer *w = open_spool("nested.spool");
    begin(w, 1, "a", 1);
    begin(w, 2, "b", 1);
    close_spool(w);
    warmcal_error err;
    CHECK(convert_fails("nested.spool", &err) == WARMCAL_E_FORMAT);
    CHECK_STR_CONTAINS(err.where, "offset 96");
    CHECK_STR_CONTAINS(err.text, "another is open");
    w = open_spool("lone-end.spool");
    end(w, 1);
    begin(w, 2, "b", 1);
    close_spool(w);
    CHECK(convert_fails("lone-end.spool", &err) == WARMCAL_E_FORMAT);
    CHECK_STR_CONTAINS(err.where, "offset 32");
    w = open_spool("bad-rank.spool");
    info(w, "rank", "4");
    info(w, "world_size", "4");
    begin(w, 2, "b", 1);
    close_spool(w);
    CHECK(convert_fails("bad-rank.spool", &err) == WARMCAL_E_FIELD);
    CHECK(count_files("refused.h5") == 0);
}

static void dropped_records_mark_the_phases_they_overlap(void)
{
    warmcal_spool_writer *w = open_spool("dropped.spool");
    warmcal_error err = {0};
    begin(w, 100, "a", 1);
    alloc(w, 110, 1, 0x1);
    end(w, 200);
    begin(w, 300, "b", 1);
    alloc(w, 310, 1, 0x2);
    end(w, 400);
    begin(w, 500, "c", 1);
    alloc(w, 510, 1, 0x3);
    end(w, 600);
    warmcal_spool_dropped d1 = {.since_ns = 250, .until_ns = 300, .count = 3};
    warmcal_spool_dropped d2 = {.since_ns = 210, .until_ns = 220, .count = 4};
    CHECK(warmcal_spool_write_dropped(w, &d1, &err) == 0);
    CHECK(warmcal_spool_write_dropped(w, &d2, &err) == 0);
    close_spool(w);
    warmcal_spool_convert_report rep;
    warmcal_trace *t = convert("dropped.spool", "dropped.h5", NULL, &rep);
    CHECK(t && t->n_phases == 3);
    if (t && t->n_phases == 3) {
        CHECK_EQ_U64(t->phases[0].lower_bound, 0);
        CHECK_EQ_U64(t->phases[1].lower_bound, WARMCAL_LOWER_BOUND_DROPPED);
        CHECK_EQ_U64(t->phases[2].lower_bound, 0);
    }
    CHECK_EQ_U64(rep.dropped_records, 7);
    CHECK_EQ_U64(rep.lower_bound_phases, 1);
    CHECK(attr(t, "dropped_records") && strcmp(attr(t, "dropped_records"), "7") == 0);
    warmcal_trace_free(t);
}

static void device_usage_the_events_do_not_explain_is_marked(void)
{
    const uint64_t slack = WARMCAL_LOWER_BOUND_SLACK;
    warmcal_spool_writer *w = open_spool("unexplained.spool");
    warmcal_error err = {0};
    /* a: free fell 10 MiB, events explain 1 MiB: unexplained */
    sample(w, 99, 1000 * MIB);
    begin(w, 100, "a", 1);
    alloc(w, 110, 1 * MIB, 0x1);
    sample(w, 199, 990 * MIB);
    end(w, 200);
    /* b: free fell 4 MiB + the slack, events explain 4 MiB: within the slack */
    sample(w, 299, 990 * MIB);
    begin(w, 300, "b", 1);
    alloc(w, 310, 4 * MIB, 0x2);
    sample(w, 399, 990 * MIB - 4 * MIB - slack);
    end(w, 400);
    /* c: free fell 64 MiB, a pool reserved 64 MiB for a 1 MiB block */
    sample(w, 499, 900 * MIB);
    begin(w, 500, "c", 1);
    warmcal_spool_pool p = {.time_ns = 505, .pool = 0x70, .reserved_bytes = 64 * MIB};
    CHECK(warmcal_spool_write_pool(w, &p, &err) == 0);
    ev(w, 510, WARMCAL_EV_ALLOC, 1 * MIB, 0x3, WARMCAL_MEM_POOL);
    sample(w, 599, 836 * MIB);
    end(w, 600);
    /* d: free fell one byte more than the slack allows */
    sample(w, 699, 800 * MIB);
    begin(w, 700, "d", 1);
    alloc(w, 710, 1 * MIB, 0x4);
    sample(w, 799, 799 * MIB - slack - 1);
    end(w, 800);
    close_spool(w);
    warmcal_trace *t = convert("unexplained.spool", "unexplained.h5", NULL, NULL);
    CHECK(t && t->n_phases == 4);
    if (t && t->n_phases == 4) {
        CHECK_EQ_U64(t->phases[0].lower_bound, WARMCAL_LOWER_BOUND_UNEXPLAINED);
        CHECK_EQ_U64(t->phases[1].lower_bound, 0);
        CHECK_EQ_U64(t->phases[2].lower_bound, 0);
        CHECK_EQ_U64(t->phases[3].lower_bound, WARMCAL_LOWER_BOUND_UNEXPLAINED);
    }
    warmcal_trace_free(t);
}

static void phase_without_allocation_in_an_allocating_process_is_marked(void)
{
    warmcal_spool_writer *w = open_spool("noalloc.spool");
    begin(w, 100, "first", 1); /* nothing allocated yet in the process: not marked */
    end(w, 200);
    begin(w, 300, "a", 1);
    alloc(w, 310, 1 * MIB, 0x1);
    end(w, 400);
    begin(w, 500, "cached", 1); /* a caching allocator served it: no event */
    release(w, 510, 0x1);
    ev(w, 520, WARMCAL_EV_ALLOC, 1 * MIB, 0x9, WARMCAL_MEM_PINNED_HOST);
    end(w, 600);
    begin(w, 700, "oom", 1);
    ev(w, 710, WARMCAL_EV_ALLOC_FAILED, 1ull << 40, 0, WARMCAL_MEM_DEVICE);
    end(w, 800);
    close_spool(w);
    warmcal_trace *t = convert("noalloc.spool", "noalloc.h5", NULL, NULL);
    CHECK(t && t->n_phases == 4);
    if (t && t->n_phases == 4) {
        CHECK_EQ_U64(t->phases[0].lower_bound, 0);
        CHECK_EQ_U64(t->phases[1].lower_bound, 0);
        CHECK_EQ_U64(t->phases[2].lower_bound, WARMCAL_LOWER_BOUND_NO_ALLOCATION);
        CHECK_EQ_U64(t->phases[3].lower_bound, 0);
        CHECK_EQ_U64(t->phases[3].outcome, WARMCAL_OUTCOME_OOM);
    }
    warmcal_trace_free(t);
    char buf[128];
    CHECK(strcmp(warmcal_lower_bound_describe(WARMCAL_LOWER_BOUND_DROPPED |
                                                  WARMCAL_LOWER_BOUND_NO_ALLOCATION,
                                              ", ", buf, sizeof buf),
                 "dropped_records, no_allocation") == 0);
}

static void failed_conversion_leaves_nothing_and_never_replaces_a_folder(void)
{
    warmcal_spool_writer *w = open_spool("good.spool");
    begin(w, 1, "p", 1);
    end(w, 2);
    close_spool(w);
    CHECK(mkdir(tmp_path("taken.h5"), 0755) == 0);
    warmcal_spool_convert_options o = {0};
    warmcal_error err = {0};
    CHECK(warmcal_spool_convert(tmp_path("good.spool"), tmp_path("taken.h5"), &o, NULL, &err) ==
          WARMCAL_E_IO);
    CHECK_STR_CONTAINS(err.text, "not a regular file");
    struct stat st;
    CHECK(stat(tmp_path("taken.h5"), &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(count_files("taken.h5.partial") == 0);
    rmdir(tmp_path("taken.h5"));
    /* an old trace of the same name is replaced whole */
    write_bytes("old.h5", "old", 3);
    CHECK(warmcal_spool_convert(tmp_path("good.spool"), tmp_path("old.h5"), &o, NULL, &err) == 0);
    warmcal_trace *t = NULL;
    CHECK(warmcal_trace_read(tmp_path("old.h5"), &t, &err) == 0 && t && t->n_phases == 1);
    warmcal_trace_free(t);
    CHECK(count_files("old.h5.partial") == 0);
}

static void a_run_without_phases_writes_no_trace(void)
{
    warmcal_spool_writer *w = open_spool("idle.spool");
    run_info(w, 0, "s", 1);
    alloc(w, 1, 1, 0x1);
    close_spool(w);
    warmcal_spool_convert_report rep;
    warmcal_spool_convert_options o = {0};
    warmcal_error err = {0};
    CHECK(warmcal_spool_convert(tmp_path("idle.spool"), tmp_path("idle.h5"), &o, &rep, &err) == 0);
    CHECK(!rep.trace_written && rep.phases == 0);
    CHECK(!exists(tmp_path("idle.h5")));
    CHECK(count_files("idle.h5") == 0);
}

static void listing_picks_the_sessions_spools_and_names_same_ranks_by_pid(void)
{
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/list", dir);
    CHECK(mkdir(sub, 0755) == 0);
    const struct {
        const char *name, *session;
        int rank;
        long pid;
    } spools[] = {{"list/rank-0.10.spool", "A", 0, 10}, {"list/rank-1.11.spool", "A", 1, 11},
                  {"list/rank-1.12.spool", "A", 1, 12}, {"list/rank-0.20.spool", "B", 0, 20}};
    for (size_t i = 0; i < 4; i++) {
        warmcal_spool_writer *w = open_spool(spools[i].name);
        run_info(w, spools[i].rank, spools[i].session, spools[i].pid);
        close_spool(w);
    }
    write_bytes("list/notes.txt", "x", 1);
    CHECK(mkdir(tmp_path("list/folder.spool"), 0755) == 0);
    warmcal_spool_job *jobs = NULL;
    size_t n = 0;
    warmcal_error err = {0};
    CHECK(warmcal_spool_list(sub, "A", &jobs, &n, &err) == 0);
    CHECK_EQ_U64(n, 3);
    if (n == 3) {
        CHECK_STR_CONTAINS(jobs[0].spool_path, "rank-0.10.spool");
        CHECK_STR_CONTAINS(jobs[0].trace_path, "/list/rank-0.h5");
        CHECK(!jobs[0].same_rank);
        CHECK_STR_CONTAINS(jobs[1].trace_path, "/list/rank-1.pid-11.h5");
        CHECK_STR_CONTAINS(jobs[2].trace_path, "/list/rank-1.pid-12.h5");
        CHECK(jobs[1].same_rank && jobs[2].same_rank);
    }
    warmcal_spool_jobs_free(jobs, n);
    CHECK(warmcal_spool_list(sub, NULL, &jobs, &n, &err) == 0);
    CHECK_EQ_U64(n, 4);
    /* without a session, both rank-0 spools are named by pid */
    for (size_t i = 0; i < n; i++)
        if (jobs[i].rank == 0)
            CHECK(jobs[i].same_rank);
    warmcal_spool_jobs_free(jobs, n);
    for (size_t i = 0; i < 4; i++)
        unlink(tmp_path(spools[i].name));
    unlink(tmp_path("list/notes.txt"));
    rmdir(tmp_path("list/folder.spool"));
    rmdir(sub);
}

/* --- review fixes ------------------------------------------------------------ */

/* Two threads at the same instant: one frees a block, the other allocates
 * one of the same size. Their buffers arrive in either order; the trace
 * must not depend on which, and the free counts first (the peak never has
 * both). A sample and a phase end of equal time keep their file order. */
static void write_equal_times(const char *name, int free_first_in_file)
{
    warmcal_spool_writer *w = open_spool(name);
    sample(w, 99, 500 * MIB);
    begin(w, 100, "p", 1);
    alloc(w, 110, 10 * MIB, 0x1);
    if (free_first_in_file) {
        release(w, 150, 0x1);
        alloc(w, 150, 10 * MIB, 0x2);
    } else {
        alloc(w, 150, 10 * MIB, 0x2);
        release(w, 150, 0x1);
    }
    sample(w, 200, 490 * MIB);
    end(w, 200);
    close_spool(w);
}

static void equal_times_put_frees_before_allocations_whatever_the_buffer_order(void)
{
    write_equal_times("tie-a.spool", 1);
    write_equal_times("tie-b.spool", 0);
    warmcal_trace *a = convert("tie-a.spool", "tie-a.h5", NULL, NULL);
    warmcal_trace *b = convert("tie-b.spool", "tie-b.h5", NULL, NULL);
    CHECK(a && b && a->n_phases == 1 && b->n_phases == 1);
    if (a && b && a->n_phases == 1 && b->n_phases == 1) {
        CHECK_EQ_U64(a->phases[0].live_peak, 10 * MIB);
        CHECK_EQ_U64(b->phases[0].live_peak, 10 * MIB);
        CHECK_EQ_U64(a->phases[0].anomalies, 0);
        CHECK_EQ_U64(b->phases[0].anomalies, 0);
        CHECK_EQ_U64(b->phases[0].device_free_end, 490 * MIB);
    }
    warmcal_trace_free(a);
    warmcal_trace_free(b);
    /* the sorted order itself */
    warmcal_spool *s = NULL;
    warmcal_error err = {0};
    CHECK(warmcal_spool_read(tmp_path("tie-b.spool"), 0, &s, &err) == 0);
    if (!s)
        return;
    warmcal_spool_sort(s);
    const struct {
        uint16_t type;
        uint8_t kind;
        uint64_t time;
    } want[] = {{WARMCAL_SPOOL_EVENT, WARMCAL_EV_DEVICE_FREE, 99},
                {WARMCAL_SPOOL_PHASE_BEGIN, 0, 100},
                {WARMCAL_SPOOL_EVENT, WARMCAL_EV_ALLOC, 110},
                {WARMCAL_SPOOL_EVENT, WARMCAL_EV_FREE, 150},
                {WARMCAL_SPOOL_EVENT, WARMCAL_EV_ALLOC, 150},
                {WARMCAL_SPOOL_EVENT, WARMCAL_EV_DEVICE_FREE, 200},
                {WARMCAL_SPOOL_PHASE_END, 0, 200}};
    CHECK_EQ_U64(s->n_entries, 7);
    for (size_t i = 0; i < 7 && i < s->n_entries; i++) {
        warmcal_spool_entry e;
        warmcal_spool_entry_at(s, i, &e);
        CHECK_EQ_U64(e.type, want[i].type);
        CHECK_EQ_U64(e.kind, want[i].kind);
        CHECK_EQ_U64(e.time_ns, want[i].time);
    }
    warmcal_spool_free(s);
}

static void the_index_costs_sixteen_bytes_a_record_and_the_file_is_mapped(void)
{
    enum { EVENTS = 20000 };
    warmcal_spool_writer *w = open_spool("index.spool");
    run_info(w, 0, "s-index", 1);
    begin(w, 1, "p", 1);
    /* times shuffled (7919 is prime to 20000), every tenth one shared by a
     * free written after it: the sort has work to do */
    for (uint64_t i = 0; i < EVENTS; i++) {
        uint64_t t = 2 + (i * 7919) % EVENTS;
        alloc(w, t, 1, 0x1000 + i);
        if (i % 10 == 0)
            release(w, t, 0x1000 + i);
    }
    end(w, EVENTS + 10);
    close_spool(w);
    CHECK_EQ_U64(sizeof(warmcal_spool_index), 16);
    warmcal_spool *s = NULL;
    warmcal_error err = {0};
    CHECK(warmcal_spool_read(tmp_path("index.spool"), 0, &s, &err) == 0);
    if (s) {
        /* allocated once, exactly: no doubling slack, no decoded copy */
        CHECK_EQ_U64(s->n_entries, EVENTS + EVENTS / 10 + 2);
        CHECK_EQ_U64(s->index_bytes, (EVENTS + EVENTS / 10 + 2) * 16);
        CHECK(s->mapped);
        CHECK_EQ_U64(s->size, file_size(tmp_path("index.spool")));
        /* the file's 40-byte event records cost 16 bytes each in memory */
        CHECK(s->index_bytes * 2 < s->size);
        /* sorted in place: time order, frees first at a shared time, every
         * record still there once */
        uint64_t sum_before = 0, sum_after = 0;
        for (size_t i = 0; i < s->n_entries; i++)
            sum_before += WARMCAL_SPOOL_INDEX_OFFSET(s->index[i]);
        warmcal_spool_sort(s);
        int ordered = 1;
        for (size_t i = 0; i < s->n_entries; i++) {
            sum_after += WARMCAL_SPOOL_INDEX_OFFSET(s->index[i]);
            if (i > 0 && (s->index[i].time_ns < s->index[i - 1].time_ns ||
                          (s->index[i].time_ns == s->index[i - 1].time_ns &&
                           s->index[i].key <= s->index[i - 1].key)))
                ordered = 0;
        }
        CHECK(ordered);
        CHECK_EQ_U64(sum_after, sum_before);
        warmcal_spool_entry e;
        warmcal_spool_entry_at(s, 1, &e); /* time 2: i = 0's free, then its allocation */
        CHECK(e.time_ns == 2 && e.kind == WARMCAL_EV_FREE);
        warmcal_spool_entry_at(s, 2, &e);
        CHECK(e.time_ns == 2 && e.kind == WARMCAL_EV_ALLOC);
    }
    warmcal_spool_free(s);
    /* the head only: the index still counts exactly what was read */
    CHECK(warmcal_spool_read(tmp_path("index.spool"), 4096, &s, &err) == 0);
    if (s) {
        CHECK_EQ_U64(s->index_bytes, s->n_entries * 16);
        CHECK(s->n_entries > 0 && s->n_entries < 4096 / 40 + 1);
    }
    warmcal_spool_free(s);
}

static void pool_blocks_are_counted_once_when_free_memory_falls(void)
{
    warmcal_spool_writer *w = open_spool("pool-once.spool");
    warmcal_error err = {0};
    /* a: a pool reserves 64 MiB and hands it out as one 64 MiB block; free
     * memory fell 68 MiB: 4 MiB are unexplained (the block is part of the
     * reservation, not 64 MiB more) */
    sample(w, 99, 1000 * MIB);
    begin(w, 100, "a", 1);
    warmcal_spool_pool p = {.time_ns = 105, .pool = 0x70, .reserved_bytes = 64 * MIB};
    CHECK(warmcal_spool_write_pool(w, &p, &err) == 0);
    ev(w, 110, WARMCAL_EV_ALLOC, 64 * MIB, 0x100, WARMCAL_MEM_POOL);
    sample(w, 199, 932 * MIB);
    end(w, 200);
    /* b: the pool block goes back to the pool (reservation kept), an 8 MiB
     * device block is made: free memory fell 8 MiB, all explained */
    sample(w, 299, 932 * MIB);
    begin(w, 300, "b", 1);
    ev(w, 310, WARMCAL_EV_FREE, 0, 0x100, WARMCAL_MEM_POOL);
    alloc(w, 320, 8 * MIB, 0x200);
    sample(w, 399, 924 * MIB);
    end(w, 400);
    /* c: a pool block at an address still live replaces it (a free never
     * reported): 16 MiB out of a reservation grown by 16 MiB, fell 16 MiB */
    sample(w, 499, 924 * MIB);
    begin(w, 500, "c", 1);
    ev(w, 510, WARMCAL_EV_ALLOC, 16 * MIB, 0x300, WARMCAL_MEM_POOL);
    p.time_ns = 505;
    p.reserved_bytes = 80 * MIB;
    CHECK(warmcal_spool_write_pool(w, &p, &err) == 0);
    ev(w, 520, WARMCAL_EV_ALLOC, 16 * MIB, 0x300, WARMCAL_MEM_POOL);
    sample(w, 599, 908 * MIB);
    end(w, 600);
    close_spool(w);
    warmcal_trace *t = convert("pool-once.spool", "pool-once.h5", NULL, NULL);
    CHECK(t && t->n_phases == 3);
    if (t && t->n_phases == 3) {
        CHECK_EQ_U64(t->phases[0].lower_bound, WARMCAL_LOWER_BOUND_UNEXPLAINED);
        CHECK_EQ_U64(t->phases[1].lower_bound, 0);
        CHECK_EQ_U64(t->phases[2].lower_bound, 0);
    }
    warmcal_trace_free(t);
}

static void a_failed_allocation_retried_with_success_is_recovered_not_an_oom(void)
{
    const uint64_t GIB = 1024 * MIB;
    warmcal_spool_writer *w = open_spool("retry.spool");
    run_info(w, 0, "s-retry", 9);
    /* a caching allocator frees its cache and asks again: recovered */
    begin(w, 100, "retried", 1);
    ev(w, 110, WARMCAL_EV_ALLOC_FAILED, 1 * GIB, 0, WARMCAL_MEM_DEVICE);
    release(w, 115, 0x9); /* an unknown free: the cache going back, not seen allocated */
    alloc(w, 120, 1 * GIB, 0x1);
    release(w, 130, 0x1);
    end(w, 200);
    /* another size, or another kind, is no retry */
    begin(w, 300, "other-size", 2);
    ev(w, 310, WARMCAL_EV_ALLOC_FAILED, 1 * GIB, 0, WARMCAL_MEM_DEVICE);
    alloc(w, 320, 512 * MIB, 0x2);
    end(w, 400);
    begin(w, 500, "other-kind", 3);
    ev(w, 510, WARMCAL_EV_ALLOC_FAILED, 1 * GIB, 0, WARMCAL_MEM_DEVICE);
    ev(w, 520, WARMCAL_EV_ALLOC, 1 * GIB, 0x3, WARMCAL_MEM_POOL);
    end(w, 600);
    /* a retry after the phase ended is too late */
    begin(w, 700, "retried-late", 4);
    ev(w, 710, WARMCAL_EV_ALLOC_FAILED, 2 * GIB, 0, WARMCAL_MEM_DEVICE);
    end(w, 800);
    begin(w, 900, "next", 5);
    alloc(w, 910, 2 * GIB, 0x4);
    end(w, 1000);
    /* two failures, then the size is served: both recovered */
    begin(w, 1100, "twice", 6);
    ev(w, 1110, WARMCAL_EV_ALLOC_FAILED, 64 * MIB, 0, WARMCAL_MEM_DEVICE);
    ev(w, 1120, WARMCAL_EV_ALLOC_FAILED, 64 * MIB, 0, WARMCAL_MEM_DEVICE);
    alloc(w, 1130, 64 * MIB, 0x5);
    end(w, 1200);
    close_spool(w);
    warmcal_spool_convert_report rep;
    warmcal_trace *t = convert("retry.spool", "retry.h5", NULL, &rep);
    CHECK(t && t->n_phases == 6);
    if (t && t->n_phases == 6) {
        const uint8_t outcome[6] = {WARMCAL_OUTCOME_OK,  WARMCAL_OUTCOME_OOM, WARMCAL_OUTCOME_OOM,
                                    WARMCAL_OUTCOME_OOM, WARMCAL_OUTCOME_OK,  WARMCAL_OUTCOME_OK};
        const uint64_t failed[6] = {0, 1 * GIB, 1 * GIB, 2 * GIB, 0, 0};
        for (int i = 0; i < 6; i++) {
            CHECK_EQ_U64(t->phases[i].outcome, outcome[i]);
            CHECK_EQ_U64(t->phases[i].failed_alloc_bytes, failed[i]);
        }
        CHECK_EQ_U64(t->phases[0].live_peak, 1 * GIB);
    }
    CHECK_EQ_U64(rep.recovered_alloc_failures, 3);
    CHECK(attr(t, "recovered_alloc_failures") && strcmp(attr(t, "recovered_alloc_failures"), "3") == 0);
    /* every failure stays in the timeline: 12 phase edges, 13 events */
    CHECK_EQ_U64(t ? t->n_events : 0, 12 + 13);
    warmcal_trace_free(t);
}

/* Convert spool into dir/claim/rank-0.h5 with the given run start. */
static int convert_claim(const char *spool, uint64_t run_start_ns, warmcal_spool_convert_report *rep)
{
    warmcal_spool_convert_options o = {.run_start_ns = run_start_ns};
    warmcal_error err = {0};
    int rc = warmcal_spool_convert(tmp_path(spool), tmp_path("claim/rank-0.h5"), &o, rep, &err);
    if (rc)
        fprintf(stderr, "convert %s: %s: %s\n", spool, err.source, err.text);
    return rc;
}

static const char *session_of(const char *trace, char *buf, size_t len)
{
    warmcal_trace *t = NULL;
    warmcal_error err = {0};
    buf[0] = '\0';
    if (warmcal_trace_read(tmp_path(trace), &t, &err) == 0) {
        snprintf(buf, len, "%s", attr(t, "session") ? attr(t, "session") : "");
        warmcal_trace_free(t);
    }
    return buf;
}

static uint64_t wall_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void a_trace_another_session_wrote_during_the_run_is_kept(void)
{
    CHECK(mkdir(tmp_path("claim"), 0755) == 0);
    const struct {
        const char *name, *session;
        long pid;
    } spools[] = {{"claim-a.spool", "A", 10}, {"claim-b.spool", "B", 20}, {"claim-c.spool", "C", 30}};
    for (size_t i = 0; i < 3; i++) {
        warmcal_spool_writer *w = open_spool(spools[i].name);
        run_info(w, 0, spools[i].session, spools[i].pid);
        begin(w, 1, "p", 1);
        end(w, 2);
        close_spool(w);
    }
    uint64_t before = wall_ns() - 3600ull * 1000000000ull;
    warmcal_spool_convert_report rep;
    char buf[64];
    CHECK(convert_claim("claim-a.spool", before, &rep) == 0);
    CHECK(rep.trace_written && !rep.rank_claimed);
    CHECK_STR_CONTAINS(rep.trace_path, "/claim/rank-0.h5");
    /* B began before A's trace was written: both processes claim rank 0 */
    CHECK(convert_claim("claim-b.spool", before, &rep) == 0);
    CHECK(rep.trace_written && rep.rank_claimed);
    CHECK_STR_CONTAINS(rep.trace_path, "/claim/rank-0.pid-20.h5");
    CHECK(strcmp(rep.claimed_by_session, "A") == 0);
    CHECK(strcmp(session_of("claim/rank-0.h5", buf, sizeof buf), "A") == 0);
    CHECK(strcmp(session_of("claim/rank-0.pid-20.h5", buf, sizeof buf), "B") == 0);
    /* C began after it: an older run's trace, replaced */
    CHECK(convert_claim("claim-c.spool", wall_ns() + 1000000000ull, &rep) == 0);
    CHECK(rep.trace_written && !rep.rank_claimed);
    CHECK_STR_CONTAINS(rep.trace_path, "/claim/rank-0.h5");
    CHECK(strcmp(session_of("claim/rank-0.h5", buf, sizeof buf), "C") == 0);
    /* C's own trace, converted again (--keep-spool, --convert): replaced */
    CHECK(convert_claim("claim-c.spool", before, &rep) == 0);
    CHECK(rep.trace_written && !rep.rank_claimed);
    CHECK_STR_CONTAINS(rep.trace_path, "/claim/rank-0.h5");
    /* the spool's start_time counts when no run start is given: run_info
     * says 2026-12-02T08:00:00Z, so make A's trace older than that */
    struct timespec old[2] = {{1000000000, 0}, {1000000000, 0}};
    CHECK(utimensat(AT_FDCWD, tmp_path("claim/rank-0.h5"), old, 0) == 0);
    CHECK(convert_claim("claim-b.spool", 0, &rep) == 0);
    CHECK(rep.trace_written && !rep.rank_claimed);
    CHECK(strcmp(session_of("claim/rank-0.h5", buf, sizeof buf), "B") == 0);
    const char *left[] = {"claim/rank-0.h5", "claim/rank-0.pid-20.h5"};
    for (size_t i = 0; i < 2; i++)
        unlink(tmp_path(left[i]));
    CHECK(rmdir(tmp_path("claim")) == 0); /* nothing else, no partial file */
}

static void a_set_cancel_flag_stops_the_conversion_and_leaves_nothing(void)
{
    warmcal_spool_writer *w = open_spool("cancel.spool");
    begin(w, 1, "p", 1);
    alloc(w, 2, 1, 0x1);
    end(w, 3);
    close_spool(w);
    volatile sig_atomic_t flag = 1;
    warmcal_spool_convert_options o = {.cancel = &flag};
    warmcal_spool_convert_report rep;
    warmcal_error err = {0};
    CHECK(warmcal_spool_convert(tmp_path("cancel.spool"), tmp_path("cancel.h5"), &o, &rep, &err) ==
          WARMCAL_E_CANCELED);
    CHECK(rep.canceled && !rep.trace_written);
    CHECK_STR_CONTAINS(err.text, "stopped");
    CHECK(count_files("cancel.h5") == 0);
    CHECK(exists(tmp_path("cancel.spool")));
    flag = 0;
    memset(&err, 0, sizeof err);
    CHECK(warmcal_spool_convert(tmp_path("cancel.spool"), tmp_path("cancel.h5"), &o, &rep, &err) == 0);
    CHECK(rep.trace_written && !rep.canceled);
}

static void the_trace_is_created_as_open_creates_files_under_the_umask(void)
{
    warmcal_spool_writer *w = open_spool("mode.spool");
    begin(w, 1, "p", 1);
    end(w, 2);
    close_spool(w);
    const mode_t masks[] = {022, 077, 0, 027};
    for (size_t i = 0; i < sizeof masks / sizeof masks[0]; i++) {
        mode_t before = umask(masks[i]);
        warmcal_spool_convert_options o = {0};
        warmcal_error err = {0};
        unlink(tmp_path("mode.h5"));
        CHECK(warmcal_spool_convert(tmp_path("mode.spool"), tmp_path("mode.h5"), &o, NULL, &err) == 0);
        umask(before);
        struct stat st;
        CHECK(stat(tmp_path("mode.h5"), &st) == 0);
        CHECK_EQ_U64(st.st_mode & 0777, 0666 & ~masks[i]);
    }
}

static void rank_from_none_beside_traces_of_a_larger_world_is_reported(void)
{
    CHECK(mkdir(tmp_path("world"), 0755) == 0);
    warmcal_spool_writer *w = open_spool("world/rank-1.5.spool");
    run_info(w, 1, "S4", 5); /* world_size 4 */
    begin(w, 1, "p", 1);
    end(w, 2);
    close_spool(w);
    warmcal_spool_convert_options o = {0};
    warmcal_spool_convert_report rep;
    warmcal_error err = {0};
    CHECK(warmcal_spool_convert(tmp_path("world/rank-1.5.spool"), tmp_path("world/rank-1.h5"), &o,
                                &rep, &err) == 0);
    CHECK_EQ_U64(rep.other_world_size, 0);
    const char *from[] = {"none", "OMPI_COMM_WORLD_RANK"};
    for (int i = 0; i < 2; i++) {
        w = open_spool("world/rank-0.6.spool");
        info(w, "session", "S1");
        info(w, "rank", "0");
        info(w, "world_size", "1");
        info(w, "rank_from", from[i]);
        begin(w, 1, "p", 1);
        end(w, 2);
        close_spool(w);
        CHECK(warmcal_spool_convert(tmp_path("world/rank-0.6.spool"), tmp_path("world/rank-0.h5"),
                                    &o, &rep, &err) == 0);
        CHECK_EQ_U64(rep.other_world_size, i == 0 ? 4 : 0);
        unlink(tmp_path("world/rank-0.6.spool"));
    }
    unlink(tmp_path("world/rank-1.5.spool"));
    unlink(tmp_path("world/rank-1.h5"));
    unlink(tmp_path("world/rank-0.h5"));
    CHECK(rmdir(tmp_path("world")) == 0);
}

static void a_damaged_spool_is_listed_only_when_it_may_be_the_sessions(void)
{
    CHECK(mkdir(tmp_path("damaged"), 0755) == 0);
    const char *names[] = {"damaged/rank-0.1.spool", "damaged/rank-0.2.spool",
                           "damaged/rank-0.3.spool"};
    const char *sessions[] = {"ours", "theirs", NULL};
    for (int i = 0; i < 3; i++) {
        warmcal_spool_writer *w = open_spool(names[i]);
        if (sessions[i])
            info(w, "session", sessions[i]);
        alloc(w, 1, 1, 0x1);
        close_spool(w);
        /* the event after the INFO record gets a bad size */
        size_t at = file_size(tmp_path(names[i])) - 40 + 4;
        patch(names[i], at, (const unsigned char[]){12, 0, 0, 0}, 4);
    }
    warmcal_spool_job *jobs = NULL;
    size_t n = 0;
    warmcal_error err = {0};
    CHECK(warmcal_spool_list(tmp_path("damaged"), "ours", &jobs, &n, &err) == 0);
    CHECK_EQ_U64(n, 2);
    for (size_t i = 0; i < n; i++) {
        CHECK(jobs[i].rc == WARMCAL_E_FORMAT);
        CHECK_STR_CONTAINS(jobs[i].err.text, "record size 12");
        CHECK(jobs[i].mtime_ns > 0);
        CHECK(strstr(jobs[i].spool_path, "rank-0.2.spool") == NULL); /* theirs: not listed */
    }
    if (n == 2) {
        CHECK(jobs[0].session && strcmp(jobs[0].session, "ours") == 0);
        CHECK(jobs[1].session == NULL);
    }
    warmcal_spool_jobs_free(jobs, n);
    for (int i = 0; i < 3; i++)
        unlink(tmp_path(names[i]));
    CHECK(rmdir(tmp_path("damaged")) == 0);
}

/* --- deferred writes ------------------------------------------------------- */

/* The descriptor this process has the file at path open on, or -1. */
static int fd_of(const char *path)
{
    struct stat want, st;
    if (stat(path, &want) != 0)
        return -1;
    for (int fd = 3; fd < 1024; fd++)
        if (fstat(fd, &st) == 0 && st.st_dev == want.st_dev && st.st_ino == want.st_ino)
            return fd;
    return -1;
}

typedef struct {
    warmcal_spool_writer *w;
    int rc;
    atomic_int done;
} pending_job;

static void *write_pending_thread(void *arg)
{
    pending_job *j = arg;
    warmcal_error err = {0};
    j->rc = warmcal_spool_write_pending(j->w, &err);
    atomic_store(&j->done, 1);
    return NULL;
}

typedef struct {
    int fd;
    unsigned char *data;
    size_t len;
    int failed;
} drain_job;

static void *drain_thread(void *arg)
{
    drain_job *d = arg;
    size_t cap = 0;
    for (;;) {
        if (d->len + 65536 > cap) {
            cap = cap ? cap * 2 : 1u << 20;
            unsigned char *p = realloc(d->data, cap);
            if (!p) {
                d->failed = 1;
                return NULL;
            }
            d->data = p;
        }
        ssize_t k = read(d->fd, d->data + d->len, 65536);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            d->failed = k < 0;
            return NULL;
        }
        d->len += (size_t)k;
    }
}

/* A disk that stalls must not stall the threads that append (the injected
 * library's allocation callbacks): with writes deferred, one thread's
 * write_pending blocks on a pipe nobody reads while this thread appends
 * and takes another buffer; once the pipe is read, the file holds every
 * record in the order it was appended. */
static void deferred_writes_let_appends_go_on_while_a_write_is_blocked(void)
{
    /* a hang (an append that waits for the write) fails the test rather
     * than the suite's patience: far beyond what the test needs */
    alarm(300);
    warmcal_spool_writer *w = open_spool("deferred.spool");
    warmcal_spool_writer_defer_writes(w);
    /* the header is in the file; from now on the writer writes into a pipe */
    int fd = fd_of(tmp_path("deferred.spool")), pipefd[2];
    CHECK(fd >= 0);
    CHECK(pipe(pipefd) == 0);
    if (fd < 0 || dup2(pipefd[1], fd) != fd) {
        CHECK(!"the spool's descriptor replaced by the pipe");
        return;
    }
    close(pipefd[1]);
    /* 4 MB: more than any pipe holds unread (64 KiB by default, 1 MiB at
     * most unprivileged), so the write stays blocked until it is read */
    const uint64_t first = 100000, second = 1000;
    for (uint64_t i = 0; i < first; i++)
        alloc(w, 1 + i, 1, 0x1000 + i);
    CHECK(warmcal_spool_has_pending(w)); /* buffers taken on the way, never written */
    warmcal_spool_take_pending(w);
    pending_job job = {.w = w};
    atomic_init(&job.done, 0);
    pthread_t writer, reader;
    CHECK(pthread_create(&writer, NULL, write_pending_thread, &job) == 0);
    /* the write has begun once the pipe has data */
    struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
    CHECK(poll(&pfd, 1, 60000) == 1);
    /* appends and a take while the write is blocked: memory only */
    for (uint64_t i = 0; i < second; i++)
        alloc(w, 1 + first + i, 2, 0x1000 + first + i);
    warmcal_spool_take_pending(w);
    CHECK(!atomic_load(&job.done));      /* the pipe was never read: still blocked */
    CHECK(warmcal_spool_has_pending(w)); /* the second batch waits for the next write */
    drain_job d = {.fd = pipefd[0]};
    CHECK(pthread_create(&reader, NULL, drain_thread, &d) == 0);
    pthread_join(writer, NULL);
    CHECK_EQ_U64(job.rc, 0);
    warmcal_error err = {0};
    CHECK(warmcal_spool_write_pending(w, &err) == 0);
    CHECK(!warmcal_spool_has_pending(w));
    close_spool(w); /* closes the pipe's last writing end: the reader sees its end */
    pthread_join(reader, NULL);
    close(pipefd[0]);
    alarm(0);
    CHECK(!d.failed);

    /* the header from the file, the records from the pipe */
    size_t size = sizeof(warmcal_spool_file_header) + d.len;
    unsigned char *all = malloc(size);
    int hfd = open(tmp_path("deferred.spool"), O_RDONLY);
    CHECK(all && hfd >= 0 &&
          read(hfd, all, sizeof(warmcal_spool_file_header)) == (ssize_t)sizeof(warmcal_spool_file_header));
    if (hfd >= 0)
        close(hfd);
    if (!all || !d.data) {
        free(all);
        free(d.data);
        return;
    }
    memcpy(all + sizeof(warmcal_spool_file_header), d.data, d.len);
    free(d.data);
    warmcal_spool *sp = NULL;
    CHECK(warmcal_spool_parse(all, size, "deferred", &sp, &err) == 0);
    free(all);
    if (!sp)
        return;
    CHECK_EQ_U64(sp->n_entries, first + second);
    CHECK_EQ_U64(sp->truncated_bytes, 0);
    uint64_t out_of_order = 0;
    for (size_t i = 0; i < sp->n_entries; i++) {
        warmcal_spool_entry e;
        warmcal_spool_entry_at(sp, i, &e);
        out_of_order += e.time_ns != 1 + i || e.bytes != (i < first ? 1u : 2u);
    }
    CHECK_EQ_U64(out_of_order, 0);
    warmcal_spool_free(sp);
}

/* --- driver ---------------------------------------------------------------- */

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            unlink(tmp_path(e->d_name));
    if (d)
        closedir(d);
    rmdir(dir);
}

/* The injected library creates its spool under a name no lister takes and
 * publishes it once its head is on disk, so that a `warmcal profile`
 * converting the folder while another rank's process starts never meets a
 * spool without its session (it failed with exit 2 when it did). */
static void a_spool_is_listed_only_once_published_and_never_over_another(void)
{
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/publish", dir);
    CHECK(mkdir(sub, 0755) == 0);
    warmcal_spool_writer *w = open_spool("publish/rank-3.77.spool.partial");
    warmcal_spool_job *jobs = NULL;
    size_t n = 0;
    warmcal_error err = {0};
    /* created, head not yet written: not listed (it used to be, as damaged) */
    CHECK(warmcal_spool_list(sub, "S", &jobs, &n, &err) == 0);
    CHECK_EQ_U64(n, 0);
    warmcal_spool_jobs_free(jobs, n);
    run_info(w, 3, "S", 77);
    CHECK(warmcal_spool_flush(w, &err) == 0);
    CHECK(warmcal_spool_writer_publish(w, tmp_path("publish/rank-3.77.spool"), &err) == 0);
    CHECK(access(tmp_path("publish/rank-3.77.spool.partial"), F_OK) != 0);
    CHECK(warmcal_spool_list(sub, "S", &jobs, &n, &err) == 0);
    CHECK_EQ_U64(n, 1);
    if (n == 1)
        CHECK(jobs[0].rank == 3 && jobs[0].pid == 77 && jobs[0].rc == 0);
    warmcal_spool_jobs_free(jobs, n);
    /* the writer goes on under its new name */
    info(w, "late", "yes");
    close_spool(w);
    warmcal_spool *s = NULL;
    CHECK(warmcal_spool_read(tmp_path("publish/rank-3.77.spool"), 0, &s, &err) == 0);
    CHECK(s && warmcal_spool_info_get(s, "late") && strcmp(warmcal_spool_info_get(s, "late"), "yes") == 0);
    warmcal_spool_free(s);
    /* a name already taken is never replaced: both files stay */
    warmcal_spool_writer *other = open_spool("publish/other.partial");
    memset(&err, 0, sizeof err);
    CHECK(warmcal_spool_writer_publish(other, tmp_path("publish/rank-3.77.spool"), &err) ==
          WARMCAL_E_IO);
    CHECK_STR_CONTAINS(err.source, "rank-3.77.spool");
    CHECK(access(tmp_path("publish/other.partial"), F_OK) == 0);
    close_spool(other);
    s = NULL;
    CHECK(warmcal_spool_read(tmp_path("publish/rank-3.77.spool"), 0, &s, &err) == 0);
    CHECK(s && warmcal_spool_info_get(s, "late") != NULL);
    warmcal_spool_free(s);
    unlink(tmp_path("publish/other.partial"));
    unlink(tmp_path("publish/rank-3.77.spool"));
    CHECK(rmdir(sub) == 0);
}

static const struct {
    const char *name;
    void (*run)(void);
} cases[] = {
#define CASE(f) {#f, f}
    CASE(writer_and_reader_round_trip_every_record),
    CASE(writer_refuses_an_existing_file_and_bad_records),
    CASE(writer_memory_stays_bounded_in_a_long_phase),
    CASE(events_out_of_order_across_threads_give_the_same_trace),
    CASE(model_option_overrides_and_missing_gpu_name_reads_unknown),
    CASE(process_killed_inside_a_phase_keeps_it_as_aborted),
    CASE(cut_off_last_record_is_left_out_and_counted),
    CASE(corrupt_header_is_refused_naming_the_file),
    CASE(corrupt_record_is_refused_naming_its_offset),
    CASE(phase_edges_out_of_place_are_refused),
    CASE(dropped_records_mark_the_phases_they_overlap),
    CASE(device_usage_the_events_do_not_explain_is_marked),
    CASE(phase_without_allocation_in_an_allocating_process_is_marked),
    CASE(failed_conversion_leaves_nothing_and_never_replaces_a_folder),
    CASE(a_run_without_phases_writes_no_trace),
    CASE(listing_picks_the_sessions_spools_and_names_same_ranks_by_pid),
    CASE(equal_times_put_frees_before_allocations_whatever_the_buffer_order),
    CASE(the_index_costs_sixteen_bytes_a_record_and_the_file_is_mapped),
    CASE(pool_blocks_are_counted_once_when_free_memory_falls),
    CASE(a_failed_allocation_retried_with_success_is_recovered_not_an_oom),
    CASE(a_trace_another_session_wrote_during_the_run_is_kept),
    CASE(a_set_cancel_flag_stops_the_conversion_and_leaves_nothing),
    CASE(the_trace_is_created_as_open_creates_files_under_the_umask),
    CASE(rank_from_none_beside_traces_of_a_larger_world_is_reported),
    CASE(a_damaged_spool_is_listed_only_when_it_may_be_the_sessions),
    CASE(deferred_writes_let_appends_go_on_while_a_write_is_blocked),
    CASE(a_spool_is_listed_only_once_published_and_never_over_another),
};

int main(int argc, char **argv)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/warmcal-spool-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    int ran = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        if (argc < 2 || strcmp(argv[1], cases[i].name) == 0) {
            fprintf(stderr, "-- %s\n", cases[i].name);
            cases[i].run();
            ran++;
        }
    remove_dir();
    if (!ran) {
        fprintf(stderr, "unknown case '%s'\n", argv[1]);
        return 1;
    }
    CHECK_DONE();
}
