/* `warmcal fit TRACE... -o TABLE`: fit per-rank estimates from traces and
 * write the table atomically; print what was chosen per rank and label, and
 * with --compare-constant, where a constant bytes-per-token guess would
 * under- or over-provision on the same phases. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "commands.h"
#include "warmcal/estimator.h"
#include "warmcal/trace.h"
#include "warmcal/units.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: warmcal fit TRACE... -o TABLE [--compare-constant BYTES_PER_TOKEN]\n"
            "                   [--above-range refuse|extrapolate] [--parsimony F]\n\n"
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
            "                            by this fraction (default 0.10)\n");
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
        printf("%-5s %-11s %-9s %10.1f %10.2f %10.1f %10.1f %6zu  %-15s %9s  %s\n", rank, e->label,
               warmcal_form_name(e->form), fixed / MiB, per_token / 1024.0,
               e->fit.max_residual / MiB, e->margin.total / MiB, e->fit.points, range, free_text,
               fail);
    }
}

/* How a constant bytes-per-token guess fares on every measured phase. */
static void compare_constant(const warmcal_trace *const *traces, size_t n, const warmcal_table *t,
                             double per_token)
{
    printf("\nconstant guess: %.0f bytes/token (%.1f KiB/token)\n", per_token, per_token / 1024.0);
    printf("%-5s %-11s %7s %7s %16s %12s %12s\n", "rank", "label", "phases", "short", "worst short MiB",
           "over median", "table median");
    for (size_t i = 0; i < t->n_estimates; i++) {
        const warmcal_estimate *e = &t->estimates[i];
        if (e->rank == WARMCAL_TABLE_ANY_RANK)
            continue;
        size_t phases = 0, shorts = 0;
        double worst = 0;
        double *over = NULL, *table_over = NULL;
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
                double *o1 = realloc(over, (phases + 1) * sizeof *over);
                double *o2 = realloc(table_over, (phases + 1) * sizeof *table_over);
                if (!o1 || !o2) {
                    free(o1 ? o1 : over);
                    free(o2 ? o2 : table_over);
                    return;
                }
                over = o1;
                table_over = o2;
                over[phases] = need > 0 ? 100.0 * (guess - need) / need : 0;
                table_over[phases] = need > 0 ? 100.0 * ((double)est - need) / need : 0;
                phases++;
                if (guess < need) {
                    shorts++;
                    worst = fmax(worst, need - guess);
                }
            }
        }
        if (phases) {
            qsort(over, phases, sizeof *over, cmp_double);
            qsort(table_over, phases, sizeof *table_over, cmp_double);
            printf("%-5d %-11s %7zu %7zu %16.1f %11.1f%% %11.1f%%\n", e->rank, e->label, phases,
                   shorts, worst / MiB, over[phases / 2], table_over[phases / 2]);
        }
        free(over);
        free(table_over);
    }
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

int warmcal_cmd_fit(int argc, char **argv)
{
    const char *output = NULL, *output_flag = "-o";
    double constant = -1;
    warmcal_fit_options opts = {0};
    const char **paths = calloc((size_t)argc, sizeof *paths);
    size_t n_paths = 0;
    if (!paths)
        return WARMCAL_EXIT_USAGE;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            free(paths);
            return WARMCAL_EXIT_OK;
        }
        int takes_value = strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0 ||
                          strcmp(a, "--compare-constant") == 0 || strcmp(a, "--above-range") == 0 ||
                          strcmp(a, "--parsimony") == 0;
        if (takes_value && i + 1 >= argc) {
            fprintf(stderr, "warmcal fit: %s needs a value\n", a);
            free(paths);
            return WARMCAL_EXIT_USAGE;
        }
        const char *v = takes_value ? argv[++i] : NULL;
        char *end = NULL;
        if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            if (!*v) {
                fprintf(stderr, "warmcal fit: %s: expected a file path, found an empty string\n", a);
                free(paths);
                return WARMCAL_EXIT_USAGE;
            }
            output = v;
            output_flag = a;
        } else if (strcmp(a, "--compare-constant") == 0) {
            errno = 0;
            constant = strtod(v, &end);
            if (!*v || *end || errno || !(constant > 0) || !isfinite(constant)) {
                fprintf(stderr, "warmcal fit: --compare-constant: expected bytes per token > 0, found '%s'\n", v);
                free(paths);
                return WARMCAL_EXIT_USAGE;
            }
        } else if (strcmp(a, "--above-range") == 0) {
            if (strcmp(v, "refuse") == 0)
                opts.above_range = WARMCAL_ABOVE_REFUSE;
            else if (strcmp(v, "extrapolate") == 0)
                opts.above_range = WARMCAL_ABOVE_EXTRAPOLATE;
            else {
                fprintf(stderr, "warmcal fit: --above-range: expected refuse or extrapolate, found '%s'\n", v);
                free(paths);
                return WARMCAL_EXIT_USAGE;
            }
        } else if (strcmp(a, "--parsimony") == 0) {
            opts.parsimony = strtod(v, &end);
            if (!*v || *end || !(opts.parsimony > 0 && opts.parsimony < 1)) {
                fprintf(stderr, "warmcal fit: --parsimony: expected a number in (0, 1), found '%s'\n", v);
                free(paths);
                return WARMCAL_EXIT_USAGE;
            }
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "warmcal fit: unknown option '%s'\n", a);
            usage(stderr);
            free(paths);
            return WARMCAL_EXIT_USAGE;
        } else {
            paths[n_paths++] = a;
        }
    }
    if (!output || n_paths == 0) {
        fprintf(stderr, "warmcal fit: %s\n", !output ? "-o TABLE is required" : "no traces given");
        usage(stderr);
        free(paths);
        return WARMCAL_EXIT_USAGE;
    }
    if (output_is_an_input(output_flag, output, paths, n_paths)) {
        free(paths);
        return WARMCAL_EXIT_USAGE;
    }
    int status = WARMCAL_EXIT_OK;
    warmcal_trace **traces = calloc(n_paths, sizeof *traces);
    warmcal_table *table = NULL;
    warmcal_error err = {0};
    char msg[600];
    for (size_t i = 0; traces && i < n_paths && status == WARMCAL_EXIT_OK; i++) {
        if (warmcal_trace_read(paths[i], &traces[i], &err) != WARMCAL_OK) {
            fprintf(stderr, "%s\n", warmcal_error_format(&err, msg, sizeof msg));
            status = WARMCAL_EXIT_USAGE;
        } else if (!traces[i]->complete) {
            fprintf(stderr, "warning: %s: writer did not finish (complete = 0); fitting the phases "
                            "it holds\n", paths[i]);
        }
    }
    if (!traces)
        status = WARMCAL_EXIT_USAGE;
    warmcal_fit_note *notes = NULL;
    size_t n_notes = 0;
    if (status == WARMCAL_EXIT_OK &&
        warmcal_fit_traces((const warmcal_trace *const *)traces, n_paths, &opts, &table, &notes,
                           &n_notes, &err) != WARMCAL_OK) {
        fprintf(stderr, "%s\n", warmcal_error_format(&err, msg, sizeof msg));
        status = WARMCAL_EXIT_USAGE;
    }
    for (size_t i = 0; i < n_notes; i++) {
        if (notes[i].rank == WARMCAL_TABLE_ANY_RANK)
            fprintf(stderr, "warning: any rank, label %s: not estimated: %s\n", notes[i].label,
                    notes[i].reason);
        else if (notes[i].any_rank_entry)
            fprintf(stderr, "warning: rank %d, label %s: not estimated (the any-rank entry serves "
                            "it): %s\n",
                    notes[i].rank, notes[i].label, notes[i].reason);
        else
            fprintf(stderr, "warning: rank %d, label %s: not estimated, and no any-rank entry "
                            "either (the table has no estimate for it): %s\n",
                    notes[i].rank, notes[i].label, notes[i].reason);
    }
    free(notes);
    if (status == WARMCAL_EXIT_OK && warmcal_table_write(table, output, &err) != WARMCAL_OK) {
        fprintf(stderr, "%s\n", warmcal_error_format(&err, msg, sizeof msg));
        status = WARMCAL_EXIT_USAGE;
    }
    if (status == WARMCAL_EXIT_OK) {
        printf("table %s: %s, tp %d, %s; %zu traces\n", output, table->config.model, table->config.tp,
               table->config.gpu_name, n_paths);
        print_estimates(table);
        if (constant > 0)
            compare_constant((const warmcal_trace *const *)traces, n_paths, table, constant);
    }
    for (size_t i = 0; traces && i < n_paths; i++)
        warmcal_trace_free(traces[i]);
    free(traces);
    warmcal_table_free(table);
    free(paths);
    return status;
}
