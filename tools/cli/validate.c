/* `warmcal validate TABLE TRACE...`: hold a table against measured phases
 * (held-out runs): per phase the estimate, the measured need and the
 * over-provision; a summary with the median and maximum over-provision and
 * the constant bytes-per-token guess that would have been needed to be safe
 * on the same phases. Exit 1 when any phase needed more than its estimate.
 * --json prints the same as one JSON object (docs/formats.md, "Command
 * output (--json)"), only once every trace was read. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_json.h"
#include "commands.h"
#include "progress.h"
#include "warmcal/estimator.h"
#include "warmcal/table.h"
#include "warmcal/trace.h"

#define MiB (1024.0 * 1024.0)

static void usage(FILE *out)
{
    fprintf(out, "usage: warmcal validate TABLE TRACE... [--quiet] [--json]\n\n"
                 "Compare the table's estimates with the phases measured in the traces\n"
                 "(held-out runs): per phase the estimate, the measured need and the\n"
                 "over-provision, then a summary with the median and maximum over-provision\n"
                 "and the constant bytes-per-token guess that would have been safe.\n\n"
                 "  --quiet  print the summary only\n"
                 "  --json   print one JSON object instead: every phase and the summary\n"
                 "           (docs/formats.md, \"Command output\")\n\n"
                 "Exit 0 when every phase fits its estimate, 1 when one needed more, 2 on\n"
                 "bad arguments or bad input. A progress line goes to stderr when it is a\n"
                 "terminal.\n\n"
                 "examples:\n"
                 "  warmcal validate table.json holdout/rank-*.h5\n"
                 "  warmcal validate table.json holdout/rank-*.h5 --quiet\n"
                 "  warmcal validate table.json holdout/rank-*.h5 --json\n");
}

/* A bad argument: one line naming it, exit 2 (no usage text: --help has it). */
static int bad_usage(const char *fmt, ...) WARMCAL_PRINTF(1, 2);
static int bad_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("warmcal validate: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see 'warmcal validate --help')\n", stderr);
    va_end(ap);
    return WARMCAL_EXIT_USAGE;
}

/* --- JSON ------------------------------------------------------------------- */

/* One phase's row: estimate and need_bytes may be absent (not_compared says
 * why: the outcome, or outside the calibrated range). */
static json_t *phase_json(const warmcal_trace *tr, const warmcal_phase *p, const uint64_t *estimate,
                          const uint64_t *need, double over, const char *not_compared)
{
    json_t *o = json_object();
    int compared = !not_compared;
    int bad = !o;
    bad = bad || cli_json_put(o, "trace", cli_json_text(tr->path)) |
                 cli_json_put(o, "rank", json_integer(tr->rank)) |
                     cli_json_put(o, "label", cli_json_text(p->label)) |
                     cli_json_put(o, "tokens", cli_json_u64(p->tokens)) |
                     cli_json_put(o, "batch", json_integer((json_int_t)p->batch)) |
                     cli_json_put(o, "outcome", json_string(warmcal_outcome_name(p->outcome))) |
                     cli_json_put(o, "compared", json_boolean(compared)) |
                     cli_json_put(o, "estimate", estimate ? cli_json_u64(*estimate) : json_null()) |
                     cli_json_put(o, "need", need ? cli_json_u64(*need) : json_null()) |
                     cli_json_put(o, "over_provision_percent",
                                  compared ? json_real(over) : json_null()) |
                     cli_json_put(o, "under_estimate",
                         json_boolean(compared && estimate && need && *estimate < *need)) |
                     cli_json_put(o, "not_compared",
                         compared ? json_null() : json_string(not_compared));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}


static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    size_t compared, under, outside, failed;
    json_t *rows;          /* --json: every phase's row; NULL: text */
    warmcal_progress *progress;
    double *over;          /* over-provision of each compared phase, % */
    double *need, *tokens; /* compared phases, for the constant's over-provision */
    double *table_over;    /* the table's over-provision, in the same order */
} tally;

static int note(tally *s, double over, double need, double tokens)
{
    double *o = realloc(s->over, (s->compared + 1) * sizeof *o);
    if (!o)
        return -1;
    s->over = o;
    double *nd = realloc(s->need, (s->compared + 1) * sizeof *nd);
    if (!nd)
        return -1;
    s->need = nd;
    double *tk = realloc(s->tokens, (s->compared + 1) * sizeof *tk);
    if (!tk)
        return -1;
    s->tokens = tk;
    double *to = realloc(s->table_over, (s->compared + 1) * sizeof *to);
    if (!to)
        return -1;
    s->table_over = to;
    s->table_over[s->compared] = over;
    s->over[s->compared] = over;
    s->need[s->compared] = need;
    s->tokens[s->compared] = tokens;
    s->compared++;
    return 0;
}

static int out_of_memory(void)
{
    fprintf(stderr, "warmcal validate: out of memory\n");
    return -1;
}

static int validate_trace(const char *table_path, const warmcal_table *t, const warmcal_trace *tr,
                          int quiet, tally *s)
{
    for (size_t i = 0; i < tr->n_phases; i++) {
        const warmcal_phase *p = &tr->phases[i];
        char rank[16];
        snprintf(rank, sizeof rank, "%d", tr->rank);
        if (p->outcome != WARMCAL_OUTCOME_OK) {
            s->failed++;
            if (s->rows) {
                if (json_array_append_new(s->rows, phase_json(tr, p, NULL, NULL, 0,
                                                              warmcal_outcome_name(p->outcome))))
                    return out_of_memory();
            } else if (!quiet)
                printf("%-5s %-11s %8llu %12s %12s %10s  %s (not compared)\n", rank, p->label,
                       (unsigned long long)p->tokens, "-", "-", "-", warmcal_outcome_name(p->outcome));
            continue;
        }
        uint64_t need_bytes = warmcal_phase_need(p);
        double need = (double)need_bytes;
        uint64_t est = 0;
        warmcal_error err = {0};
        int rc = warmcal_table_estimate(t, tr->rank, p->label, p->tokens, p->batch, &est, &err);
        if (rc == WARMCAL_E_RANGE) {
            s->outside++;
            if (s->rows) {
                if (json_array_append_new(s->rows, phase_json(tr, p, NULL, &need_bytes, 0,
                                                              "outside the calibrated range")))
                    return out_of_memory();
            } else if (!quiet)
                printf("%-5s %-11s %8llu %12s %12.1f %10s  outside the calibrated range\n", rank,
                       p->label, (unsigned long long)p->tokens, "-", need / MiB, "-");
            continue;
        }
        if (rc != WARMCAL_OK) {
            /* an estimate beyond 64 bits is the table's fault (`warmcal check`
             * refuses it); a label or rank the table lacks is the trace's */
            char msg[600];
            warmcal_progress_clear(s->progress);
            fprintf(stderr, "%s: %s\n", rc == WARMCAL_E_OVERFLOW ? table_path : tr->path,
                    warmcal_error_format(&err, msg, sizeof msg));
            return -1;
        }
        double over = need > 0 ? 100.0 * ((double)est - need) / need : 0;
        int under = (double)est < need;
        s->under += under;
        if (note(s, over, need, (double)p->tokens))
            return out_of_memory();
        if (s->rows) {
            if (json_array_append_new(s->rows, phase_json(tr, p, &est, &need_bytes, over, NULL)))
                return out_of_memory();
        } else if (!quiet)
            printf("%-5s %-11s %8llu %12.1f %12.1f %9.1f%%%s\n", rank, p->label,
                   (unsigned long long)p->tokens, (double)est / MiB, need / MiB, over,
                   under ? "  UNDER-ESTIMATE" : "");
    }
    return 0;
}

static double median_of(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The smallest constant bytes-per-token guess that covers every compared
 * phase above `above` tokens, and how it and the table over-provision there:
 * printed, or as an object added to `json` (an array) when it is not NULL. */
static void constant_guess(const tally *s, double above, const char *which, json_t *json)
{
    size_t n_alloc = s->compared ? s->compared : 1; /* malloc(0) may be NULL */
    double *c = malloc(n_alloc * sizeof *c), *tab = malloc(n_alloc * sizeof *tab);
    double safe = 0;
    size_t m = 0;
    for (size_t i = 0; c && tab && i < s->compared; i++)
        if (s->tokens[i] > above)
            safe = fmax(safe, s->need[i] / s->tokens[i]);
    for (size_t i = 0; c && tab && i < s->compared; i++) {
        if (s->tokens[i] <= above || s->need[i] <= 0)
            continue;
        c[m] = 100.0 * (safe * s->tokens[i] - s->need[i]) / s->need[i];
        tab[m] = s->table_over[i];
        m++;
    }
    if (!c || !tab)
        fprintf(stderr, "warmcal validate: out of memory: the constant guess on %s is left out\n",
                which);
    if (m) {
        double cmax = 0, tmax = 0;
        for (size_t i = 0; i < m; i++) {
            cmax = fmax(cmax, c[i]);
            tmax = fmax(tmax, tab[i]);
        }
        double cmed = median_of(c, m), tmed = median_of(tab, m);
        if (json) {
            json_t *o = json_object();
            int bad = !o || cli_json_put(o, "above_tokens", json_integer((json_int_t)above)) |
                                cli_json_put(o, "phases", cli_json_u64(m)) |
                                cli_json_put(o, "safe_bytes_per_token", json_real(safe)) |
                                cli_json_put(o, "over_provision_median_percent", json_real(cmed)) |
                                cli_json_put(o, "over_provision_max_percent", json_real(cmax)) |
                                cli_json_put(o, "table_over_provision_median_percent",
                                             json_real(tmed)) |
                                cli_json_put(o, "table_over_provision_max_percent",
                                             json_real(tmax));
            if (bad)
                json_decref(o);
            if (bad || json_array_append_new(json, o))
                fprintf(stderr, "warmcal validate: out of memory: the constant guess on %s is "
                                "left out\n", which);
        } else {
            printf("on %s (%zu): safe constant %.0f bytes/token (%.1f KiB/token) over-provisions "
                   "median %.1f%%, max %.1f%%; the table median %.1f%%, max %.1f%%\n",
                   which, m, safe, safe / 1024.0, cmed, cmax, tmed, tmax);
        }
    }
    free(c);
    free(tab);
}

/* The whole result as one object on stdout; -1 when it could not be built
 * or written. */
static int print_json(const char *table_path, const char *const *paths, size_t n, tally *s,
                      json_t *warning_list)
{
    json_t *o = json_object(), *summary = json_object(), *traces = json_array(),
           *constants = json_array();
    int bad = !o || !summary || !traces || !constants;
    for (size_t i = 0; !bad && i < n; i++)
        bad = json_array_append_new(traces, cli_json_text(paths[i])) != 0;
    double median = 0, max = 0;
    if (!bad && s->compared) {
        median = median_of(s->over, s->compared);
        max = s->over[s->compared - 1];
        constant_guess(s, 0, "every phase", constants);
        constant_guess(s, 256, "phases above 256 tokens", constants);
    }
    if (!bad)
        bad = cli_json_put(summary, "compared", cli_json_u64(s->compared)) |
              cli_json_put(summary, "under_estimated", cli_json_u64(s->under)) |
              cli_json_put(summary, "outside_range", cli_json_u64(s->outside)) |
              cli_json_put(summary, "not_compared_failed", cli_json_u64(s->failed)) |
              cli_json_put(summary, "over_provision_median_percent",
                  s->compared ? json_real(median) : json_null()) |
              cli_json_put(summary, "over_provision_max_percent",
                           s->compared ? json_real(max) : json_null()) |
              cli_json_put(summary, "constant_guess", json_incref(constants));
    if (!bad)
        bad = cli_json_put(o, "table", cli_json_text(table_path)) |
              cli_json_put(o, "traces", json_incref(traces)) |
              cli_json_put(o, "phases", json_incref(s->rows)) |
              cli_json_put(o, "summary", json_incref(summary)) |
              cli_json_put(o, "warnings", json_incref(warning_list));
    json_decref(summary);
    json_decref(traces);
    json_decref(constants);
    if (!bad)
        bad = cli_json_print(o);
    json_decref(o);
    return bad ? -1 : 0;
}

/* A warning on stderr, and for --json in the output too. */
static void warn(json_t *list, warmcal_progress *progress, const char *fmt, ...)
    WARMCAL_PRINTF(3, 4);
static void warn(json_t *list, warmcal_progress *progress, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    warmcal_progress_clear(progress);
    fprintf(stderr, "warning: %s\n", text);
    if (list)
        json_array_append_new(list, cli_json_text(text));
}

int warmcal_cmd_validate(int argc, char **argv)
{
    int quiet = 0, json = 0, options_done = 0;
    const char *table_path = NULL;
    const char **paths = calloc((size_t)argc, sizeof *paths);
    size_t n = 0;
    if (!paths) {
        out_of_memory();
        return WARMCAL_EXIT_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!options_done && strcmp(a, "--") == 0) {
            options_done = 1;
            continue;
        }
        if (!options_done && a[0] == '-' && a[1]) {
            if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
                usage(stdout);
                free(paths);
                return WARMCAL_EXIT_OK;
            }
            if (strcmp(a, "--quiet") == 0) {
                quiet = 1;
            } else if (strcmp(a, "--json") == 0) {
                json = 1;
            } else {
                free(paths);
                return bad_usage("unknown option '%s'", a);
            }
        } else if (!table_path) {
            table_path = a;
        } else {
            paths[n++] = a;
        }
    }
    if (!table_path || n == 0) {
        free(paths);
        return bad_usage("%s", !table_path ? "no table given" : "no traces given");
    }
    warmcal_error err = {0};
    char msg[600];
    warmcal_table *t = NULL;
    if (warmcal_table_read(table_path, &t, &err) != WARMCAL_OK) {
        fprintf(stderr, "%s\n", warmcal_error_format(&err, msg, sizeof msg));
        free(paths);
        return WARMCAL_EXIT_USAGE;
    }
    warmcal_progress progress;
    cli_progress_start(&progress, 1);
    tally s = {.progress = &progress};
    json_t *warning_list = NULL;
    int status = WARMCAL_EXIT_OK;
    if (json && (!(s.rows = json_array()) || !(warning_list = json_array()))) {
        out_of_memory();
        status = WARMCAL_EXIT_USAGE;
    }
    if (!quiet && !json)
        printf("%-5s %-11s %8s %12s %12s %10s\n", "rank", "label", "tokens", "estimate MiB",
               "measured MiB", "over");
    for (size_t i = 0; i < n && status == WARMCAL_EXIT_OK; i++) {
        warmcal_trace *tr = NULL;
        warmcal_error_clear(&err);
        warmcal_progress_step(&progress, "warmcal validate: traces", i + 1, n, paths[i]);
        if (warmcal_trace_read(paths[i], &tr, &err) != WARMCAL_OK) {
            warmcal_progress_clear(&progress);
            fprintf(stderr, "%s\n", warmcal_error_format(&err, msg, sizeof msg));
            status = WARMCAL_EXIT_USAGE;
            break;
        }
        if (!tr->complete)
            warn(warning_list, &progress, "%s: writer did not finish (complete = 0)", paths[i]);
        /* whole names on both sides: fit refuses a name the table cannot hold */
        if (strcmp(tr->model, t->config.model) != 0)
            warn(warning_list, &progress, "%s: model '%s' differs from the table's '%s'", paths[i],
                 tr->model, t->config.model);
        if (strcmp(tr->gpu_name, t->config.gpu_name) != 0)
            warn(warning_list, &progress, "%s: gpu_name '%s' differs from the table's '%s'",
                 paths[i], tr->gpu_name, t->config.gpu_name);
        /* text rows go to stdout, which may share the terminal */
        if (!quiet && !json)
            warmcal_progress_clear(&progress);
        if (validate_trace(table_path, t, tr, quiet, &s) != 0)
            status = WARMCAL_EXIT_USAGE;
        warmcal_trace_free(tr);
    }
    warmcal_progress_clear(&progress);
    if (status == WARMCAL_EXIT_OK && json) {
        if (print_json(table_path, paths, n, &s, warning_list) != 0) {
            fprintf(stderr, "warmcal validate: cannot write the output (out of memory or stdout "
                            "closed)\n");
            status = WARMCAL_EXIT_USAGE;
        }
    } else if (status == WARMCAL_EXIT_OK) {
        printf("\nsummary: %zu phases compared, %zu under-estimated, %zu outside the calibrated "
               "range, %zu oom/aborted not compared\n",
               s.compared, s.under, s.outside, s.failed);
        if (s.compared) {
            double median = median_of(s.over, s.compared);
            printf("table over-provision: median %.1f%%, max %.1f%%\n", median, s.over[s.compared - 1]);
            constant_guess(&s, 0, "every phase", NULL);
            constant_guess(&s, 256, "phases above 256 tokens, as the original fix checks", NULL);
        }
    }
    if (status == WARMCAL_EXIT_OK && (fflush(stdout) == EOF || ferror(stdout))) {
        fprintf(stderr, "warmcal validate: cannot write the output\n");
        status = WARMCAL_EXIT_USAGE;
    }
    if (status == WARMCAL_EXIT_OK && s.under)
        status = WARMCAL_EXIT_NEGATIVE;
    json_decref(s.rows);
    json_decref(warning_list);
    free(s.over);
    free(s.table_over);
    free(s.need);
    free(s.tokens);
    warmcal_table_free(t);
    free(paths);
    return status;
}
