/* Fit time for 10^5 measured phases over 8 ranks, against the time to read
 * the same traces, in one run. Traces are written first into a temporary
 * folder (not timed). Usage: bench-fit [PHASES_PER_RANK] [RANKS] */
#define _DEFAULT_SOURCE /* mkdtemp, erand48 */
#include "warmcal/estimator.h"
#include "warmcal/trace.h"
#include "warmcal/units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int write_trace(const char *path, int rank, int ranks, size_t phases, unsigned short rng[3])
{
    warmcal_trace_info info = {.rank = rank, .world_size = ranks, .model = "bench",
                               .source = "simulated", .gpu_name = "bench GPU",
                               .gpu_total_bytes = 80ull << 30};
    warmcal_trace_writer *w = NULL;
    warmcal_error err = {0};
    if (warmcal_trace_writer_open(&w, path, &info, 0, &err) != WARMCAL_OK) {
        fprintf(stderr, "bench-fit: %s\n", err.text);
        return -1;
    }
    warmcal_phase *rows = calloc(phases, sizeof *rows);
    if (!rows) {
        warmcal_trace_writer_close(w, &err);
        return -1;
    }
    for (size_t i = 0; i < phases; i++) {
        uint64_t tokens = 1 + (uint64_t)(erand48(rng) * 32767);
        /* a fixed part, a per-token part, rank 0 a little heavier, 2% noise */
        double need = (64.0 + (rank == 0 ? 16.0 : 0.0)) * (1 << 20) + 120.0 * 1024 * (double)tokens;
        need *= 1.0 + 0.02 * (2 * erand48(rng) - 1);
        warmcal_phase p = {.tokens = tokens, .batch = 1, .begin_ns = i, .end_ns = i + 1,
                           .live_begin = 1ull << 30, .live_peak = (1ull << 30) + (uint64_t)need,
                           .live_end = 1ull << 30, .device_free_begin = WARMCAL_FREE_UNKNOWN,
                           .device_free_end = WARMCAL_FREE_UNKNOWN};
        snprintf(p.label, sizeof p.label, "context");
        rows[i] = p;
    }
    int rc = warmcal_trace_writer_add_phases(w, rows, phases, &err);
    free(rows);
    if (rc != WARMCAL_OK)
        fprintf(stderr, "bench-fit: %s\n", err.text);
    return warmcal_trace_writer_close(w, &err) || rc ? -1 : 0;
}

int main(int argc, char **argv)
{
    size_t per_rank = argc > 1 ? strtoull(argv[1], NULL, 10) : 12500;
    int ranks = argc > 2 ? atoi(argv[2]) : 8;
    if (per_rank < 3 || ranks < 1 || ranks > 1024)
        return 2;
    char dir[] = "/tmp/warmcal-bench-fit-XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char (*paths)[512] = calloc((size_t)ranks, sizeof *paths);
    warmcal_trace **traces = calloc((size_t)ranks, sizeof *traces);
    unsigned short rng[3] = {1, 2, 3};
    int status = paths && traces ? 0 : 1;
    for (int r = 0; status == 0 && r < ranks; r++) {
        snprintf(paths[r], sizeof paths[r], "%s/rank-%d.h5", dir, r);
        status = write_trace(paths[r], r, ranks, per_rank, rng) ? 1 : 0;
    }
    warmcal_error err = {0};
    uint64_t t0 = warmcal_now_ns();
    for (int r = 0; status == 0 && r < ranks; r++)
        if (warmcal_trace_read(paths[r], &traces[r], &err) != WARMCAL_OK) {
            fprintf(stderr, "bench-fit: %s\n", err.text);
            status = 1;
        }
    uint64_t t1 = warmcal_now_ns();
    warmcal_table *table = NULL;
    if (status == 0 && warmcal_fit_traces((const warmcal_trace *const *)traces, (size_t)ranks, NULL,
                                          &table, NULL, NULL, &err) != WARMCAL_OK) {
        fprintf(stderr, "bench-fit: %s\n", err.text);
        status = 1;
    }
    uint64_t t2 = warmcal_now_ns();
    if (status == 0) {
        double read_s = (double)(t1 - t0) / 1e9, fit_s = (double)(t2 - t1) / 1e9;
        printf("phases                %zu (%d ranks x %zu)\n", per_rank * (size_t)ranks, ranks, per_rank);
        printf("estimates             %zu (per rank and one for any rank)\n", table->n_estimates);
        printf("read traces           %.3f s\n", read_s);
        printf("fit (incl. hashing)   %.3f s\n", fit_s);
        printf("ratio fit/read        %.2fx\n", fit_s / read_s);
    }
    warmcal_table_free(table);
    for (int r = 0; r < ranks; r++) {
        if (traces)
            warmcal_trace_free(traces[r]);
        if (paths)
            unlink(paths[r]);
    }
    rmdir(dir);
    free(traces);
    free(paths);
    return status;
}
