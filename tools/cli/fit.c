/* `warmcal fit TRACE... -o TABLE`: fit per-rank estimates from traces and
 * write the table atomically; print what was chosen per rank and label, and
 * with --compare-constant, where a constant bytes-per-token guess would
 * under- or over-provision on the same phases. --json prints the same as one
 * JSON object (docs/formats.md, "Command output (--json)"). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli_json.h"
#include "commands.h"
#include "progress.h"
#include "warmcal/estimator.h"
#include "warmcal/trace.h"
#include "warmcal/units.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: warmcal fit TRACE... -o TABLE [--compare-constant BYTES_PER_TOKEN]\n"
            "                   [--above-range refuse|extrapolate] [--parsimony F] [--json]\n\n"
            "Fit, per rank and label (and for any rank), the memory a warmup pass needs as a\n"
            "function of its tokens, with a margin that covers every measured phase and every\n"
            "leave-one-out prediction, and write the estimate table TABLE (atomically).\n\n"
            "  -o, --output TABLE        the table to write: a file is replaced atomically (a\n"
            "                            link's target, not the link); an open descriptor\n"
            "                            (/dev/stdout, /dev/fd/N), a character device or a FIFO\n"
            "                            is written through, never renamed over\n"
            "  --compare-constant B      also show how a constant B bytes/token guess fares\n"
            "  --above-range POLICY      beyond the calibrated range: refuse (default) or extrapolate\n"
            "  --parsimony F             a more complex model must cut the leave-one-out error\n"
            "                            by this fraction (default 0.10)\n"
            "  --json                    print the summary as one JSON object (docs/formats.md,\n"
            "                            \"Command output\"); warnings stay on stderr too\n\n"
            "Exit 0 when the table was written, 2 on bad arguments or bad traces (nothing\n"
            "is written then). A progress line goes to stderr when it is a terminal.\n\n"
            "examples:\n"
            "  warmcal fit traces/rank-*.h5 -o table.json\n"
            "  warmcal fit traces/rank-*.h5 -o table.json --compare-constant 65536\n"
            "  warmcal fit traces/rank-*.h5 -o table.json --above-range extrapolate --json\n");
}

/* A bad argument: one line naming it, exit 2 (no usage text: --help has it). */
static int bad_usage(const char *fmt, ...) WARMCAL_PRINTF(1, 2);
static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("warmcal fit: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see 'warmcal fit --help')\n", stderr);
    va_end(ap);
    return WARMCAL_EXIT_USAGE;
}

/* --- warnings ----------------------------------------------------------------- */

/* Warnings go to stderr as they come and, for --json, into the output. */
typedef struct {
    json_t *list; /* array of strings; NULL: not kept */
    warmcal_progress *progress;
} warnings;

static void warn(warnings *w, const char *fmt, ...) WARMCAL_PRINTF(2, 3);
static void warn(warnings *w, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    warmcal_progress_clear(w->progress);
    fprintf(stderr, "warning: %s\n", text);
    if (w->list) {
        json_t *j = json_string(text);
        if (!j) { /* bytes of a foreign name that are not UTF-8 */
            for (char *c = text; *c; c++)
                if ((unsigned char)*c >= 0x80)
                    *c = '?';
            j = json_string(text);
        }
        json_array_append_new(w->list, j);
    }
}

#define MiB (1024.0 * 1024.0)

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Fixed part and per-token part of an estimate, for a one-line summary: the
 * polynomial's c0 and c1, or for an envelope its value at the first knot and
 * its mean slope. */
static void summary_parts(const warmcal_estimate *e, double *fixed, double *per_token)
{
    if (e->form != WARMCAL_FORM_ENVELOPE) {
        *fixed = e->coef[0];
        *per_token = e->coef[1];
        return;
    }
    size_t last = e->n_knots - 1;
    *fixed = e->knot_bytes[0];
    double span = (double)(e->knot_tokens[last] - e->knot_tokens[0]);
    *per_token = span > 0 ? (e->knot_bytes[last] - e->knot_bytes[0]) / span : 0;
}

static void print_estimates(const warmcal_table *t)
{
    printf("%-5s %-11s %-9s %10s %10s %10s %10s %6s  %-15s %9s  %s\n", "rank", "label", "model",
           "fixed MiB", "KiB/token", "resid MiB", "margin MiB", "points", "tokens", "free GiB",
           "failures");
    for (size_t i = 0; i < t->n_estimates; i++) {
        const warmcal_estimate *e = &t->estimates[i];
        char rank[16], range[48], fail[64] = "-";
        if (e->rank == WARMCAL_TABLE_ANY_RANK)
            snprintf(rank, sizeof rank, "any");
        else
            snprintf(rank, sizeof rank, "%d", e->rank);
        snprintf(range, sizeof range, "%llu..%llu", (unsigned long long)e->tokens_min,
                 (unsigned long long)e->tokens_max);
        if (e->failures.oom)
            snprintf(fail, sizeof fail, "%zu oom from %llu tokens", e->failures.oom,
                     (unsigned long long)e->failures.oom_tokens_min);
        else if (e->failures.aborted)
            snprintf(fail, sizeof fail, "%zu aborted", e->failures.aborted);
        double fixed, per_token;
        summary_parts(e, &fixed, &per_token);
        char free_text[32] = "-";
        if (e->calibration.device_free_min)
            snprintf(free_text, sizeof free_text, "%.2f",
                     (double)e->calibration.device_free_min / (1024.0 * MiB));
        /* a fit's intercept can be a tiny negative number: it reads as 0.0, not -0.0 */
        double fixed_mib = fabs(fixed / MiB) < 0.05 ? 0.0 : fixed / MiB;
        printf("%-5s %-11s %-9s %10.1f %10.2f %10.1f %10.1f %6zu  %-15s %9s  %s\n", rank, e->label,
               warmcal_form_name(e->form), fixed_mib, per_token / 1024.0,
               e->fit.max_residual / MiB, e->margin.total / MiB, e->fit.points, range, free_text,
               fail);
    }
}

/* How a constant bytes-per-token guess fares on one (rank, label): the
 * phases compared, how many it under-provisions and by how much at worst,
 * and the median over-provision of the guess and of the table (%). */
typedef struct {
    size_t phases, shorts;
    double worst_short, over_median, table_over_median;
} constant_row;

static int constant_row_of(const warmcal_trace *const *traces, size_t n, const warmcal_table *t,
                           const warmcal_estimate *e, double per_token, constant_row *row)
{
    double *over = NULL, *table_over = NULL;
    memset(row, 0, sizeof *row);
    for (size_t k = 0; k < n; k++) {
        if (traces[k]->rank != e->rank)
            continue;
        for (size_t j = 0; j < traces[k]->n_phases; j++) {
            const warmcal_phase *p = &traces[k]->phases[j];
            if (p->outcome != WARMCAL_OUTCOME_OK || strcmp(p->label, e->label) != 0)
                continue;
            double need = (double)warmcal_phase_need(p), guess = per_token * (double)p->tokens;
            uint64_t est = 0;
            warmcal_estimate_eval(e, t->above_range, p->tokens, &est, NULL);
            double *o1 = realloc(over, (row->phases + 1) * sizeof *over);
            if (o1)
                over = o1;
            double *o2 = realloc(table_over, (row->phases + 1) * sizeof *table_over);
            if (o2)
                table_over = o2;
            if (!o1 || !o2) {
                free(over);
                free(table_over);
                return -1;
            }
            over[row->phases] = need > 0 ? 100.0 * (guess - need) / need : 0;
            table_over[row->phases] = need > 0 ? 100.0 * ((double)est - need) / need : 0;
            row->phases++;
            if (guess < need) {
                row->shorts++;
                row->worst_short = fmax(row->worst_short, need - guess);
            }
        }
    }
    if (row->phases) {
        qsort(over, row->phases, sizeof *over, cmp_double);
        qsort(table_over, row->phases, sizeof *table_over, cmp_double);
        row->over_median = over[row->phases / 2];
        row->table_over_median = table_over[row->phases / 2];
    }
    free(over);
    free(table_over);
    return 0;
}

/* How a constant bytes-per-token guess fares on every measured phase. */
static int compare_constant(const warmcal_trace *const *traces, size_t n, const warmcal_table *t,
                            double per_token)
{
    printf("\nconstant guess: %.0f bytes/token (%.1f KiB/token)\n", per_token, per_token / 1024.0);
    printf("%-5s %-11s %7s %7s %16s %12s %12s\n", "rank", "label", "phases", "short", "worst short MiB",
           "over median", "table median");
    for (size_t i = 0; i < t->n_estimates; i++) {
        const warmcal_estimate *e = &t->estimates[i];
        constant_row row;
        if (e->rank == WARMCAL_TABLE_ANY_RANK)
            continue;
        if (constant_row_of(traces, n, t, e, per_token, &row) != 0)
            return -1;
        if (row.phases)
            printf("%-5d %-11s %7zu %7zu %16.1f %11.1f%% %11.1f%%\n", e->rank, e->label, row.phases,
                   row.shorts, row.worst_short / MiB, row.over_median, row.table_over_median);
    }
    return 0;
}

/* --- JSON ------------------------------------------------------------------- */

static json_t *estimate_json(const warmcal_estimate *e)
{
    json_t *o = json_object(), *failures = json_object();
    if (!o || !failures) {
        json_decref(o);
        json_decref(failures);
        return NULL;
    }
    double fixed, per_token;
    summary_parts(e, &fixed, &per_token);
    int bad = cli_json_put(failures, "oom", cli_json_u64(e->failures.oom)) |
              cli_json_put(failures, "oom_tokens_min",
                  e->failures.oom ? cli_json_u64(e->failures.oom_tokens_min) : json_null()) |
              cli_json_put(failures, "aborted", cli_json_u64(e->failures.aborted));
    bad |= cli_json_put(o, "rank", json_integer(e->rank)) |
           cli_json_put(o, "label", cli_json_text(e->label)) |
           cli_json_put(o, "model", json_string(warmcal_form_name(e->form))) |
           cli_json_put(o, "tokens_min", cli_json_u64(e->tokens_min)) |
           cli_json_put(o, "tokens_max", cli_json_u64(e->tokens_max)) |
           cli_json_put(o, "points", cli_json_u64(e->fit.points)) |
           cli_json_put(o, "fixed_bytes", json_real(fixed)) |
           cli_json_put(o, "bytes_per_token", json_real(per_token)) |
           cli_json_put(o, "max_residual_bytes", json_real(e->fit.max_residual)) |
           cli_json_put(o, "margin_bytes", json_real(e->margin.total)) |
           cli_json_put(o, "margin_relative", json_real(e->margin.relative)) |
           cli_json_put(o, "device_free_min", e->calibration.device_free_min
                                         ? cli_json_u64(e->calibration.device_free_min)
                                         : json_null()) |
           cli_json_put(o, "failures", failures);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *constant_json(const warmcal_trace *const *traces, size_t n, const warmcal_table *t,
                             double per_token)
{
    json_t *o = json_object(), *rows = json_array();
    int bad = !o || !rows;
    for (size_t i = 0; !bad && i < t->n_estimates; i++) {
        const warmcal_estimate *e = &t->estimates[i];
        constant_row row;
        if (e->rank == WARMCAL_TABLE_ANY_RANK)
            continue;
        if (constant_row_of(traces, n, t, e, per_token, &row) != 0) {
            bad = 1;
            break;
        }
        if (!row.phases)
            continue;
        json_t *r = json_object();
        bad = !r || cli_json_put(r, "rank", json_integer(e->rank)) |
              cli_json_put(r, "label", cli_json_text(e->label)) |
                        cli_json_put(r, "phases", cli_json_u64(row.phases)) |
                        cli_json_put(r, "short", cli_json_u64(row.shorts)) |
                        cli_json_put(r, "worst_short_bytes", json_real(row.worst_short)) |
                        cli_json_put(r, "over_median_percent", json_real(row.over_median)) |
                        cli_json_put(r, "table_over_median_percent",
                                     json_real(row.table_over_median));
        bad = json_array_append_new(rows, r) != 0 || bad;
    }
    if (!bad)
        bad = cli_json_put(o, "bytes_per_token", json_real(per_token)) |
              cli_json_put(o, "rows", json_incref(rows));
    json_decref(rows);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The summary as one object on stdout; -1 when it could not be built or written. */
static int print_json(const char *output, const warmcal_table *t, const char *const *paths,
                      const warmcal_trace *const *traces, size_t n, json_t *warning_list,
                      double constant)
{
    json_t *o = json_object(), *config = json_object(), *sources = json_array(),
           *estimates = json_array();
    int bad = !o || !config || !sources || !estimates;
    for (size_t i = 0; !bad && i < n; i++)
        bad = json_array_append_new(sources, cli_json_text(paths[i])) != 0;
    for (size_t i = 0; !bad && i < t->n_estimates; i++)
        bad = json_array_append_new(estimates, estimate_json(&t->estimates[i])) != 0;
    if (!bad)
        bad = cli_json_put(config, "model", cli_json_text(t->config.model)) |
              cli_json_put(config, "tp", json_integer(t->config.tp)) |
              cli_json_put(config, "gpu_name", cli_json_text(t->config.gpu_name)) |
              cli_json_put(config, "gpu_total_bytes", cli_json_u64(t->config.gpu_total_bytes));
    if (!bad)
        bad = cli_json_put(o, "table", cli_json_text(output)) |
              cli_json_put(o, "configuration", json_incref(config)) |
              cli_json_put(o, "above_range",
                           json_string(warmcal_above_policy_name(t->above_range))) |
              cli_json_put(o, "traces", json_incref(sources)) |
              cli_json_put(o, "estimates", json_incref(estimates)) |
              cli_json_put(o, "warnings", json_incref(warning_list)) |
              cli_json_put(o, "constant_guess",
                  constant > 0 ? constant_json(traces, n, t, constant) : json_null());
    json_decref(config);
    json_decref(sources);
    json_decref(estimates);
    if (!bad)
        bad = cli_json_print(o);
    json_decref(o);
    return bad ? -1 : 0;
}

/* An output that is also an input, whatever the names (the same file by
 * device and inode: a link, a hard link, another spelling): writing the
 * table would replace a trace being fitted, so nothing is written. */
static int output_is_an_input(const char *flag, const char *output, const char *const *paths,
                              size_t n_paths)
{
    struct stat out, in;
    if (stat(output, &out) != 0)
        return 0; /* a new file: no input can be it */
    for (size_t i = 0; i < n_paths; i++)
        if (stat(paths[i], &in) == 0 && in.st_dev == out.st_dev && in.st_ino == out.st_ino) {
            fprintf(stderr, "warmcal fit: %s %s: it is also an input (%s); nothing was written\n",
                    flag, output, paths[i]);
            return 1;
        }
    return 0;
}

/* Whether the table would go where --json writes (-o /dev/stdout, or the
 * file stdout was sent to): the two would mix into one stream. */
static int output_is_stdout(const char *output)
{
    struct stat out, so;
    return stat(output, &out) == 0 && fstat(STDOUT_FILENO, &so) == 0 &&
           out.st_dev == so.st_dev && out.st_ino == so.st_ino;
}

int warmcal_cmd_fit(int argc, char **argv)
{
    const char *output = NULL, *output_flag = "-o";
    double constant = -1;
    int json = 0, options_done = 0;
    warmcal_fit_options opts = {0};
    const char **paths = calloc((size_t)argc, sizeof *paths);
    size_t n_paths = 0;
    if (!paths) {
        fprintf(stderr, "warmcal fit: out of memory\n");
        return WARMCAL_EXIT_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || !a[1]) {
            paths[n_paths++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_done = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            free(paths);
            return WARMCAL_EXIT_OK;
        }
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        int takes_value = strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0 ||
                          strcmp(a, "--compare-constant") == 0 || strcmp(a, "--above-range") == 0 ||
                          strcmp(a, "--parsimony") == 0;
        if (!takes_value) {
            free(paths);
            return bad_usage("unknown option '%s'", a);
        }
        if (i + 1 >= argc) {
            free(paths);
            return bad_usage("%s needs a value", a);
        }
        const char *v = argv[++i];
        char *end = NULL;
        int bad = 0;
        if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (!*v)
                bad = bad_usage("%s: expected a file path, found an empty string", a);
            output = v;
            output_flag = a;
        } else if (strcmp(a, "--compare-constant") == 0) {
            errno = 0;
            constant = strtod(v, &end);
            if (!*v || *end || errno || !(constant > 0) || !isfinite(constant))
                bad = bad_usage("--compare-constant: expected bytes per token > 0, found '%s'", v);
        } else if (strcmp(a, "--above-range") == 0) {
            if (strcmp(v, "refuse") == 0)
                opts.above_range = WARMCAL_ABOVE_REFUSE;
            else if (strcmp(v, "extrapolate") == 0)
                opts.above_range = WARMCAL_ABOVE_EXTRAPOLATE;
            else
                bad = bad_usage("--above-range: expected refuse or extrapolate, found '%s'", v);
        } else {
            opts.parsimony = strtod(v, &end);
            if (!*v || *end || !(opts.parsimony > 0 && opts.parsimony < 1))
                bad = bad_usage("--parsimony: expected a number in (0, 1), found '%s'", v);
        }
        if (bad) {
            free(paths);
            return bad;
        }
    }
    if (!output || n_paths == 0) {
        free(paths);
        return bad_usage("%s", !output ? "-o TABLE is required" : "no traces given");
    }
    if (output_is_an_input(output_flag, output, paths, n_paths)) {
        free(paths);
        return WARMCAL_EXIT_USAGE;
    }
    if (json && output_is_stdout(output)) {
        free(paths);
        return bad_usage("--json and %s %s: both would write to stdout; send the table to a "
                         "file", output_flag, output);
    }
    warmcal_progress progress;
    cli_progress_start(&progress, 1);
    warnings warned = {.list = json ? json_array() : NULL, .progress = &progress};
    int status = WARMCAL_EXIT_OK;
    warmcal_trace **traces = calloc(n_paths, sizeof *traces);
    warmcal_table *table = NULL;
    warmcal_error err = {0};
    char msg[600];
    if (!traces || (json && !warned.list)) {
        fprintf(stderr, "warmcal fit: out of memory\n");
        status = WARMCAL_EXIT_USAGE;
    }
    for (size_t i = 0; status == WARMCAL_EXIT_OK && i < n_paths; i++) {
        warmcal_progress_step(&progress, "warmcal fit: reading traces", i + 1, n_paths, paths[i]);
        if (warmcal_trace_read(paths[i], &traces[i], &err) != WARMCAL_OK) {
            warmcal_progress_clear(&progress);
            fprintf(stderr, "%s\n", warmcal_error_format(&err, msg, sizeof msg));
            status = WARMCAL_EXIT_USAGE;
        } else if (!traces[i]->complete) {
            warn(&warned, "%s: writer did not finish (complete = 0); fitting the phases it holds",
                 paths[i]);
        }
    }
    warmcal_fit_note *notes = NULL;
    size_t n_notes = 0;
    if (status == WARMCAL_EXIT_OK) {
        warmcal_progress_show(&progress, "warmcal fit: fitting %zu trace%s", n_paths,
                              n_paths == 1 ? "" : "s");
        if (warmcal_fit_traces((const warmcal_trace *const *)traces, n_paths, &opts, &table,
                               &notes, &n_notes, &err) != WARMCAL_OK) {
            warmcal_progress_clear(&progress);
            fprintf(stderr, "%s\n", warmcal_error_format(&err, msg, sizeof msg));
            status = WARMCAL_EXIT_USAGE;
        }
    }
    for (size_t i = 0; i < n_notes; i++) {
        if (notes[i].rank == WARMCAL_TABLE_ANY_RANK)
            warn(&warned, "any rank, label %s: not estimated: %s", notes[i].label, notes[i].reason);
        else if (notes[i].any_rank_entry)
            warn(&warned, "rank %d, label %s: not estimated (the any-rank entry serves it): %s",
                 notes[i].rank, notes[i].label, notes[i].reason);
        else
            warn(&warned, "rank %d, label %s: not estimated, and no any-rank entry either (the "
                          "table has no estimate for it): %s",
                 notes[i].rank, notes[i].label, notes[i].reason);
    }
    free(notes);
    if (status == WARMCAL_EXIT_OK) {
        warmcal_progress_show(&progress, "warmcal fit: writing %s", output);
        if (warmcal_table_write(table, output, &err) != WARMCAL_OK) {
            warmcal_progress_clear(&progress);
            fprintf(stderr, "%s\n", warmcal_error_format(&err, msg, sizeof msg));
            status = WARMCAL_EXIT_USAGE;
        }
    }
    warmcal_progress_clear(&progress);
    if (status == WARMCAL_EXIT_OK) {
        int bad = 0;
        if (json) {
            bad = print_json(output, table, paths, (const warmcal_trace *const *)traces, n_paths,
                             warned.list, constant) != 0;
        } else {
            printf("table %s: %s, tp %d, %s; %zu traces\n", output, table->config.model,
                   table->config.tp, table->config.gpu_name, n_paths);
            print_estimates(table);
            if (constant > 0)
                bad = compare_constant((const warmcal_trace *const *)traces, n_paths, table,
                                       constant) != 0;
        }
        if (fflush(stdout) == EOF || ferror(stdout) || bad) {
            /* the table is written; only the summary is lost */
            fprintf(stderr, "warmcal fit: %s was written, but the summary could not be printed "
                            "(out of memory or stdout closed)\n", output);
            status = WARMCAL_EXIT_USAGE;
        }
    }
    json_decref(warned.list);
    for (size_t i = 0; traces && i < n_paths; i++)
        warmcal_trace_free(traces[i]);
    free(traces);
    warmcal_table_free(table);
    free(paths);
    return status;
}
