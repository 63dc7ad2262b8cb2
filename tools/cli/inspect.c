/* `warmcal inspect TRACE... [--json]`: each trace's run attributes and phase
 * table, aligned for people or as one JSON document for programs. Every
 * trace is read before anything is printed, so a bad file means exit 2 and
 * no partial output on stdout. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_json.h"
#include "commands.h"
#include "warmcal/estimator.h"
#include "warmcal/spool.h"
#include "warmcal/trace.h"
#include "warmcal/units.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: warmcal inspect TRACE... [--json]\n\n"
            "Print each trace's run attributes and phase table (bytes in MiB, '-' where\n"
            "device free memory was not sampled; a lower_bound column when a phase's peak\n"
            "may be below the truth: dropped records, unexplained device usage, no\n"
            "allocation, or the process ended inside it), then a summary line.\n\n"
            "  --json  print one JSON document instead: an array with one object per trace\n"
            "          (exact byte counts; free memory not sampled is null; a value above\n"
            "          2^63-1 is written as a decimal string)\n\n"
            "Exit 0, or 2 on bad arguments or a trace that cannot be read (then nothing is\n"
            "printed on stdout).\n\n"
            "examples:\n"
            "  warmcal inspect traces/rank-0.h5\n"
            "  warmcal inspect traces/rank-*.h5 --json\n");
}

/* --- text ------------------------------------------------------------------ */

#define CELL_LEN 48

enum { C_INDEX, C_LABEL, C_TOKENS, C_BATCH, C_OUTCOME, C_BEGIN, C_PEAK, C_DELTA, C_END,
       C_FREE_BEGIN, C_FREE_END, C_FAILED, C_LOWER, N_COLS };

static const struct {
    const char *head;
    int left; /* text columns are left-aligned, numbers right-aligned */
} cols[N_COLS] = {
    {"#", 0},          {"label", 1},     {"tokens", 0},     {"batch", 0},
    {"outcome", 1},    {"live_begin", 0}, {"live_peak", 0}, {"peak_delta", 0},
    {"live_end", 0},   {"free_begin", 0}, {"free_end", 0},  {"failed_alloc", 0},
    {"lower_bound", 1},
};

/* Short names of the WARMCAL_LOWER_BOUND_* bits for the table's cells. */
static void lower_bound_cell(char *cell, uint32_t mask)
{
    static const char *const names[] = {"dropped", "unexplained", "no-alloc", "aborted"};
    size_t used = 0;
    cell[0] = '\0';
    for (unsigned i = 0; i < 32 && used < CELL_LEN; i++)
        if (mask & (1u << i)) {
            int n = snprintf(cell + used, CELL_LEN - used, "%s%s", used ? "," : "",
                             i < 4 ? names[i] : "?");
            used += n > 0 ? (size_t)n : 0;
        }
    if (!mask)
        snprintf(cell, CELL_LEN, "-");
}

/* Whether any phase is marked a lower bound: the column is shown only then. */
static int any_lower_bound(const warmcal_trace *t)
{
    for (size_t i = 0; i < t->n_phases; i++)
        if (t->phases[i].lower_bound)
            return 1;
    return 0;
}

typedef char row_cells[N_COLS][CELL_LEN];

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

/* One decimal; a few bytes must not read as nothing. */
static void mib_cell(char *cell, uint64_t bytes)
{
    if (bytes > 0 && mib(bytes) < 0.05)
        snprintf(cell, CELL_LEN, "<0.1");
    else
        snprintf(cell, CELL_LEN, "%.1f", mib(bytes));
}

static void fill_row(row_cells row, size_t i, const warmcal_phase *p)
{
    snprintf(row[C_INDEX], CELL_LEN, "%zu", i);
    snprintf(row[C_LABEL], CELL_LEN, "%s", p->label);
    snprintf(row[C_TOKENS], CELL_LEN, "%" PRIu64, p->tokens);
    snprintf(row[C_BATCH], CELL_LEN, "%" PRIu32, p->batch);
    snprintf(row[C_OUTCOME], CELL_LEN, "%s", warmcal_outcome_name(p->outcome));
    mib_cell(row[C_BEGIN], p->live_begin);
    mib_cell(row[C_PEAK], p->live_peak);
    mib_cell(row[C_DELTA], p->live_peak - p->live_begin);
    mib_cell(row[C_END], p->live_end);
    const uint64_t edges[2] = {p->device_free_begin, p->device_free_end};
    for (int e = 0; e < 2; e++) {
        if (edges[e] == WARMCAL_FREE_UNKNOWN)
            snprintf(row[C_FREE_BEGIN + e], CELL_LEN, "-");
        else
            mib_cell(row[C_FREE_BEGIN + e], edges[e]);
    }
    if (p->failed_alloc_bytes)
        mib_cell(row[C_FAILED], p->failed_alloc_bytes);
    else
        snprintf(row[C_FAILED], CELL_LEN, "-");
    lower_bound_cell(row[C_LOWER], p->lower_bound);
}

static void print_row(row_cells row, const int *width, int n_cols)
{
    fputs("  ", stdout);
    for (int c = 0; c < n_cols; c++) {
        int last = c == n_cols - 1;
        if (cols[c].left && last)
            fputs(row[c], stdout);
        else
            printf(cols[c].left ? "%-*s" : "%*s", width[c], row[c]);
        fputs(last ? "\n" : "  ", stdout);
    }
}

static int print_table(const warmcal_trace *t)
{
    row_cells *rows = malloc((t->n_phases + 1) * sizeof *rows);
    if (!rows)
        return -1;
    int width[N_COLS];
    for (int c = 0; c < N_COLS; c++) {
        snprintf(rows[0][c], CELL_LEN, "%s", cols[c].head);
        width[c] = (int)strlen(cols[c].head);
    }
    for (size_t i = 0; i < t->n_phases; i++) {
        fill_row(rows[i + 1], i, &t->phases[i]);
        for (int c = 0; c < N_COLS; c++) {
            int w = (int)strlen(rows[i + 1][c]);
            width[c] = w > width[c] ? w : width[c];
        }
    }
    int lower = any_lower_bound(t);
    for (size_t i = 0; i <= t->n_phases; i++)
        print_row(rows[i], width, lower ? N_COLS : C_LOWER);
    free(rows);
    if (lower)
        printf("lower_bound: the phase's peak may be below the truth (CUPTI dropped records,\n"
               "device memory fell more than allocations explain, no allocation seen although\n"
               "the process allocates, or the process ended inside the phase)\n");
    return 0;
}

static void print_summary(const warmcal_trace *t)
{
    size_t count[3] = {0, 0, 0};
    uint64_t max_delta = 0, max_pinned = 0, anomalies = 0, lower = 0;
    for (size_t i = 0; i < t->n_phases; i++) {
        const warmcal_phase *p = &t->phases[i];
        count[p->outcome]++;
        if (p->live_peak - p->live_begin > max_delta)
            max_delta = p->live_peak - p->live_begin;
        if (p->pinned_peak > max_pinned)
            max_pinned = p->pinned_peak;
        anomalies += p->anomalies;
        lower += p->lower_bound != 0;
    }
    printf("summary: %zu phases (%zu ok, %zu oom, %zu aborted), max peak delta %.1f MiB",
           t->n_phases, count[WARMCAL_OUTCOME_OK], count[WARMCAL_OUTCOME_OOM],
           count[WARMCAL_OUTCOME_ABORTED], mib(max_delta));
    if (max_pinned)
        printf(", max pinned peak %.1f MiB", mib(max_pinned));
    if (anomalies)
        printf(", %" PRIu64 " anomalies", anomalies);
    if (lower)
        printf(", %" PRIu64 " lower-bound phase%s", lower, lower == 1 ? "" : "s");
    if (t->n_events)
        printf(", %zu events", t->n_events);
    putchar('\n');
}

static int print_trace(const warmcal_trace *t)
{
    printf("%s\n", t->path);
    int name_width = 0;
    for (size_t i = 0; i < t->n_attrs; i++) {
        int w = (int)strlen(t->attrs[i].name);
        name_width = w > name_width ? w : name_width;
    }
    for (size_t i = 0; i < t->n_attrs; i++) {
        printf("  %-*s  %s", name_width, t->attrs[i].name, t->attrs[i].value);
        if (strcmp(t->attrs[i].name, "gpu_total_bytes") == 0) {
            char human[32];
            printf(" (%s)", warmcal_format_bytes(t->gpu_total_bytes, human, sizeof human));
        }
        putchar('\n');
    }
    putchar('\n');
    if (t->n_phases) {
        printf("phases (bytes in MiB; '-': free memory not sampled, or no failed allocation)\n");
        if (print_table(t) < 0)
            return -1;
    }
    print_summary(t);
    return 0;
}

/* --- JSON ------------------------------------------------------------------ */

static json_t *free_json(uint64_t v)
{
    return v == WARMCAL_FREE_UNKNOWN ? json_null() : cli_json_u64(v);
}

/* The names of the lower_bound bits set, as an array. */
static json_t *reasons_json(uint32_t mask)
{
    json_t *a = json_array();
    for (unsigned i = 0; a && i < 32; i++)
        if ((mask & (1u << i)) &&
            json_array_append_new(a, json_string(warmcal_lower_bound_name(1u << i))) < 0) {
            json_decref(a);
            a = NULL;
        }
    return a;
}

static json_t *phase_json(size_t i, const warmcal_phase *p)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    int bad = cli_json_put(o, "index", json_integer((json_int_t)i)) |
              cli_json_put(o, "label", cli_json_text(p->label)) |
              cli_json_put(o, "tokens", cli_json_u64(p->tokens)) |
              cli_json_put(o, "batch", json_integer((json_int_t)p->batch)) |
              cli_json_put(o, "begin_ns", cli_json_u64(p->begin_ns)) |
              cli_json_put(o, "end_ns", cli_json_u64(p->end_ns)) |
              cli_json_put(o, "live_begin", cli_json_u64(p->live_begin)) |
              cli_json_put(o, "live_peak", cli_json_u64(p->live_peak)) |
              cli_json_put(o, "peak_delta", cli_json_u64(p->live_peak - p->live_begin)) |
              cli_json_put(o, "live_end", cli_json_u64(p->live_end)) |
              cli_json_put(o, "device_free_begin", free_json(p->device_free_begin)) |
              cli_json_put(o, "device_free_end", free_json(p->device_free_end)) |
              cli_json_put(o, "outcome", json_string(warmcal_outcome_name(p->outcome))) |
              cli_json_put(o, "failed_alloc_bytes", cli_json_u64(p->failed_alloc_bytes)) |
              cli_json_put(o, "pinned_peak", cli_json_u64(p->pinned_peak)) |
              cli_json_put(o, "anomalies", json_integer((json_int_t)p->anomalies)) |
              cli_json_put(o, "lower_bound", json_integer((json_int_t)p->lower_bound)) |
              cli_json_put(o, "lower_bound_reasons", reasons_json(p->lower_bound)) |
              cli_json_put(o, "reserved_begin", cli_json_u64(p->reserved_begin)) |
              cli_json_put(o, "reserved_end", cli_json_u64(p->reserved_end)) |
              cli_json_put(o, "need", cli_json_u64(warmcal_phase_need(p)));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *trace_json(const warmcal_trace *t)
{
    json_t *o = json_object(), *attrs = json_object(), *phases = json_array();
    int bad = !o || !attrs || !phases;
    for (size_t i = 0; !bad && i < t->n_attrs; i++)
        bad = cli_json_put(attrs, t->attrs[i].name, cli_json_text(t->attrs[i].value)) < 0;
    for (size_t i = 0; !bad && i < t->n_phases; i++)
        bad = json_array_append_new(phases, phase_json(i, &t->phases[i])) < 0;
    if (!bad)
        bad = cli_json_put(o, "path", cli_json_text(t->path)) |
              cli_json_put(o, "complete", json_integer(t->complete)) |
              cli_json_put(o, "rank", json_integer(t->rank)) |
              cli_json_put(o, "world_size", json_integer(t->world_size)) |
              cli_json_put(o, "model", cli_json_text(t->model)) |
              cli_json_put(o, "source", cli_json_text(t->source)) |
              cli_json_put(o, "gpu_name", cli_json_text(t->gpu_name)) |
              cli_json_put(o, "gpu_total_bytes", cli_json_u64(t->gpu_total_bytes)) |
              cli_json_put(o, "events", json_integer((json_int_t)t->n_events)) |
              cli_json_put(o, "attributes", json_incref(attrs)) |
              cli_json_put(o, "phases", json_incref(phases));
    json_decref(attrs);
    json_decref(phases);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int print_json(warmcal_trace **traces, size_t n)
{
    json_t *all = json_array();
    int bad = !all;
    for (size_t i = 0; !bad && i < n; i++)
        bad = json_array_append_new(all, trace_json(traces[i])) < 0;
    if (!bad)
        bad = cli_json_print(all);
    json_decref(all);
    return bad ? -1 : 0;
}

/* --- command --------------------------------------------------------------- */

int warmcal_cmd_inspect(int argc, char **argv)
{
    int json = 0, options_done = 0;
    size_t n_paths = 0;
    char **paths = calloc((size_t)argc, sizeof *paths);
    if (!paths) {
        fprintf(stderr, "warmcal inspect: out of memory\n");
        return WARMCAL_EXIT_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || strcmp(a, "-") == 0) {
            paths[n_paths++] = argv[i];
        } else if (strcmp(a, "--") == 0) {
            options_done = 1;
        } else if (strcmp(a, "--json") == 0) {
            json = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            free(paths);
            return WARMCAL_EXIT_OK;
        } else {
            fprintf(stderr, "warmcal inspect: unknown option '%s' (see 'warmcal inspect --help')\n", a);
            free(paths);
            return WARMCAL_EXIT_USAGE;
        }
    }
    if (n_paths == 0) {
        fprintf(stderr, "warmcal inspect: no trace given (see 'warmcal inspect --help')\n");
        free(paths);
        return WARMCAL_EXIT_USAGE;
    }

    warmcal_trace **traces = calloc(n_paths, sizeof *traces);
    int failed = !traces;
    for (size_t i = 0; traces && i < n_paths; i++) {
        warmcal_error err;
        warmcal_error_clear(&err);
        if (warmcal_trace_read(paths[i], &traces[i], &err) != WARMCAL_OK) {
            char msg[WARMCAL_ERROR_SOURCE_LEN + WARMCAL_ERROR_WHERE_LEN + WARMCAL_ERROR_TEXT_LEN];
            fprintf(stderr, "%s\n", warmcal_error_format(&err, msg, sizeof msg));
            failed = 1;
        }
    }
    int rc = WARMCAL_EXIT_OK;
    if (failed) {
        rc = WARMCAL_EXIT_USAGE;
        if (!traces)
            fprintf(stderr, "warmcal inspect: out of memory\n");
        goto done;
    }
    for (size_t i = 0; i < n_paths; i++)
        if (!traces[i]->complete)
            fprintf(stderr,
                    "warning: %s: writer did not finish (complete = 0); phases up to the last "
                    "flushed one are shown\n",
                    traces[i]->path);
    int bad = 0;
    if (json) {
        bad = print_json(traces, n_paths) < 0;
    } else {
        for (size_t i = 0; !bad && i < n_paths; i++) {
            if (i > 0)
                putchar('\n');
            bad = print_trace(traces[i]) < 0;
        }
    }
    if (fflush(stdout) == EOF || ferror(stdout))
        bad = 1;
    if (bad) {
        fprintf(stderr, "warmcal inspect: cannot write the output (out of memory or stdout closed)\n");
        rc = WARMCAL_EXIT_USAGE;
    }
done:
    for (size_t i = 0; traces && i < n_paths; i++)
        warmcal_trace_free(traces[i]);
    free(traces);
    free(paths);
    return rc;
}
