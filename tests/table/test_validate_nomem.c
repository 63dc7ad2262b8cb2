/* `warmcal validate` when memory runs out: the command is linked here with
 * every allocation it makes (and jansson's, through json_set_alloc_funcs)
 * made to fail in turn, one run per allocation, its output captured. Every
 * run either finishes with its verdict or exits 2 saying "out of memory" on
 * stderr: never a silent exit 2, never a damaged table, never a false
 * verdict. Under ASan the runs' leaks, on every failure path, are checked
 * at exit.
 *
 * usage: test_validate_nomem */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <jansson.h>
#include <unistd.h>

#include "../alloc_fail.h"
#include "../check.h"
#include "commands.h"
#include "warmcal/table.h"
#include "warmcal/trace.h"


static char dir[64];

/* Rank 0, label context: a trace of 8 phases needing 1 GiB + 1 MiB per
 * token, and a table that covers them (no under-estimate: exit 0). */
static void write_inputs(const char *table, const char *trace)
{
    warmcal_error err = {0};
    warmcal_trace_info info = {.rank = 0, .world_size = 1, .model = "m", .source = "import",
                               .gpu_name = "g", .gpu_total_bytes = 80ull << 30};
    warmcal_trace_writer *w = NULL;
    CHECK(warmcal_trace_writer_open(&w, trace, &info, 0, &err) == 0);
    warmcal_phase p[8];
    memset(p, 0, sizeof p);
    for (int i = 0; i < 8; i++) {
        snprintf(p[i].label, sizeof p[i].label, "context");
        p[i].tokens = 256 * (uint64_t)(i + 1);
        p[i].batch = 1;
        p[i].end_ns = 1;
        p[i].live_peak = (1ull << 30) + p[i].tokens * (1ull << 20);
        p[i].device_free_begin = p[i].device_free_end = UINT64_MAX;
    }
    CHECK(w && warmcal_trace_writer_add_phases(w, p, 8, &err) == 0);
    CHECK(warmcal_trace_writer_close(w, &err) == 0);

    warmcal_table *t = NULL;
    CHECK(warmcal_table_new(&t, &err) == 0);
    snprintf(t->config.model, sizeof t->config.model, "m");
    snprintf(t->config.gpu_name, sizeof t->config.gpu_name, "g");
    t->config.tp = 1;
    warmcal_estimate e = {.rank = 0, .label = "context", .tokens_min = 256, .tokens_max = 2048,
                          .form = WARMCAL_FORM_LINEAR,
                          .coef = {(double)(1ull << 30) + 4096, (double)(1ull << 20)}};
    e.fit.points = 8;
    CHECK(t && warmcal_table_add_estimate(t, &e, &err) == 0);
    CHECK(t && warmcal_table_write(t, table, &err) == 0);
    warmcal_table_free(t);
}

/* validate with the n-th allocation failing, stdout to /dev/null and
 * stderr to a file: its exit status, its stderr in *said (caller frees),
 * and whether an allocation failed. */
static int validate_failing_at(long n, char *argv[], char **said, int *injected)
{
    char err_path[128];
    snprintf(err_path, sizeof err_path, "%s/stderr", dir);
    fflush(NULL);
    int saved_out = dup(1), saved_err = dup(2);
    int out = open("/dev/null", O_WRONLY), err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    CHECK(saved_out >= 0 && saved_err >= 0 && out >= 0 && err >= 0);
    dup2(out, 1);
    dup2(err, 2);
    close(out);
    close(err);
    long failed_before = alloc_fail_count;
    alloc_fail_countdown = n;
    int status = warmcal_cmd_validate(4, argv);
    alloc_fail_countdown = -1;
    *injected = alloc_fail_count > failed_before;
    fflush(NULL);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    FILE *f = fopen(err_path, "r");
    *said = calloc(1, 4096);
    if (f && *said) {
        size_t got = fread(*said, 1, 4095, f);
        (*said)[got] = '\0';
    }
    if (f)
        fclose(f);
    unlink(err_path);
    return status;
}

static void validate_says_out_of_memory_whenever_it_exits_2_for_it(void)
{
    char table[128], trace[128];
    snprintf(table, sizeof table, "%s/table.json", dir);
    snprintf(trace, sizeof trace, "%s/rank-0.h5", dir);
    write_inputs(table, trace);
    json_set_alloc_funcs(__wrap_malloc, free);
    char *argv[] = {"validate", table, trace, "--quiet", NULL};
    int exits[3] = {0, 0, 0}, silent = 0, other = 0;
    long n = 0;
    for (;; n++) {
        char *said = NULL;
        int injected = 0;
        int status = validate_failing_at(n, argv, &said, &injected);
        if (status == 2 && said && strstr(said, "out of memory"))
            exits[2]++;
        else if (status == 0)
            exits[0]++;
        else {
            if (status == 2)
                silent++;
            else
                other++;
            if (silent + other <= 5)
                fprintf(stderr, "allocation %ld failed: exit %d, stderr: %s\n", n, status,
                        said && said[0] ? said : "(nothing)\n");
        }
        free(said);
        if (!injected)
            break; /* validate needed fewer than n + 1 allocations: all were failed */
    }
    json_set_alloc_funcs(malloc, free);
    fprintf(stderr, "%ld allocations failed in turn: %d exit 0, %d exit 2 saying out of memory, "
                    "%d exit 2 silent or misleading, %d other\n",
            n, exits[0], exits[2], silent, other);
    CHECK(silent == 0 && other == 0);
    CHECK(n > 50 && exits[2] > 0);
    unlink(table);
    unlink(trace);
}

int main(void)
{
    snprintf(dir, sizeof dir, "/tmp/test_validate_nomem-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    RUN(validate_says_out_of_memory_whenever_it_exits_2_for_it);
    if (rmdir(dir) != 0) {
        fprintf(stderr, "test_validate_nomem: %s not empty after the test\n", dir);
        check_failures++;
    }
    CHECK_DONE();
}
