/* `warmcal validate TABLE TRACE...`: hold a table against measured phases
 * (held-out runs): per phase the estimate, the measured need and the
 * over-provision; a summary with the median and maximum over-provision and
 * the constant bytes-per-token guess that would have been needed to be safe
 * on the same phases. Exit 1 when any phase needed more than its estimate. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "warmcal/estimator.h"
#include "warmcal/table.h"
#include "warmcal/trace.h"

#define MiB (1024.0 * 1024.0)

static void usage(FILE *out)
{
    fprintf(out, "usage: warmcal validate TABLE TRACE... [--quiet]\n\n"
                 "Compare the table's estimates with the phases measured in the traces.\n"
                 "Prints one line per phase (--quiet: the summary only), then a summary.\n"
                 "Exit 0 when every phase fits its estimate, 1 when one needed more, 2 on\n"
                 "bad input.\n");
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    size_t compared, under, outside, failed;
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
            if (!quiet)
                printf("%-5s %-11s %8llu %12s %12s %10s  %s (not compared)\n", rank, p->label,
                       (unsigned long long)p->tokens, "-", "-", "-", warmcal_outcome_name(p->outcome));
            continue;
        }
        double need = (double)warmcal_phase_need(p);
        uint64_t est = 0;
        warmcal_error err = {0};
        int rc = warmcal_table_estimate(t, tr->rank, p->label, p->tokens, p->batch, &est, &err);
        if (rc == WARMCAL_E_RANGE) {
            s->outside++;
            if (!quiet)
                printf("%-5s %-11s %8llu %12s %12.1f %10s  outside the calibrated range\n", rank,
                       p->label, (unsigned long long)p->tokens, "-", need / MiB, "-");
            continue;
        }
        if (rc != WARMCAL_OK) {
            /* an estimate beyond 64 bits is the table's fault (`warmcal check`
             * refuses it); a label or rank the table lacks is the trace's */
            char msg[600];
            fprintf(stderr, "%s: %s\n", rc == WARMCAL_E_OVERFLOW ? table_path : tr->path,
                    warmcal_error_format(&err, msg, sizeof msg));
            return -1;
        }
        double over = need > 0 ? 100.0 * ((double)est - need) / need : 0;
        int under = (double)est < need;
        s->under += under;
        if (note(s, over, need, (double)p->tokens))
            return out_of_memory();
        if (!quiet)
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
 * phase above `above` tokens, and how it and the table over-provision there. */
static void constant_guess(const tally *s, double above, const char *which)
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
        printf("on %s (%zu): safe constant %.0f bytes/token (%.1f KiB/token) over-provisions "
               "median %.1f%%, max %.1f%%; the table median %.1f%%, max %.1f%%\n",
               which, m, safe, safe / 1024.0, median_of(c, m), cmax, median_of(tab, m), tmax);
    }
    free(c);
    free(tab);
}

int warmcal_cmd_validate(int argc, char **argv)
{
    int quiet = 0;
    const char *table_path = NULL;
    const char **paths = calloc((size_t)argc, sizeof *paths);
    size_t n = 0;
    if (!paths) {
        out_of_memory();
        return WARMCAL_EXIT_USAGE;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            free(paths);
            return WARMCAL_EXIT_OK;
        }
        if (strcmp(argv[i], "--quiet") == 0)
            quiet = 1;
        else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "warmcal validate: unknown option '%s'\n", argv[i]);
            free(paths);
            return WARMCAL_EXIT_USAGE;
        } else if (!table_path)
            table_path = argv[i];
        else
            paths[n++] = argv[i];
    }
    if (!table_path || n == 0) {
        usage(stderr);
        free(paths);
        return WARMCAL_EXIT_USAGE;
    }
    warmcal_error err = {0};
    char msg[600];
    warmcal_table *t = NULL;
    if (warmcal_table_read(table_path, &t, &err) != WARMCAL_OK) {
        fprintf(stderr, "%s\n", warmcal_error_format(&err, msg, sizeof msg));
        free(paths);
        return WARMCAL_EXIT_USAGE;
    }
    tally s = {0};
    int status = WARMCAL_EXIT_OK;
    if (!quiet)
        printf("%-5s %-11s %8s %12s %12s %10s\n", "rank", "label", "tokens", "estimate MiB",
               "measured MiB", "over");
    for (size_t i = 0; i < n && status == WARMCAL_EXIT_OK; i++) {
        warmcal_trace *tr = NULL;
        warmcal_error_clear(&err);
        if (warmcal_trace_read(paths[i], &tr, &err) != WARMCAL_OK) {
            fprintf(stderr, "%s\n", warmcal_error_format(&err, msg, sizeof msg));
            status = WARMCAL_EXIT_USAGE;
            break;
        }
        if (!tr->complete)
            fprintf(stderr, "warning: %s: writer did not finish (complete = 0)\n", paths[i]);
        /* whole names on both sides: fit refuses a name the table cannot hold */
        if (strcmp(tr->model, t->config.model) != 0)
            fprintf(stderr, "warning: %s: model '%s' differs from the table's '%s'\n", paths[i],
                    tr->model, t->config.model);
        if (strcmp(tr->gpu_name, t->config.gpu_name) != 0)
            fprintf(stderr, "warning: %s: gpu_name '%s' differs from the table's '%s'\n",
                    paths[i], tr->gpu_name, t->config.gpu_name);
        if (validate_trace(table_path, t, tr, quiet, &s) != 0)
            status = WARMCAL_EXIT_USAGE;
        warmcal_trace_free(tr);
    }
    if (status == WARMCAL_EXIT_OK) {
        printf("\nsummary: %zu phases compared, %zu under-estimated, %zu outside the calibrated "
               "range, %zu oom/aborted not compared\n",
               s.compared, s.under, s.outside, s.failed);
        if (s.compared) {
            double median = median_of(s.over, s.compared);
            printf("table over-provision: median %.1f%%, max %.1f%%\n", median, s.over[s.compared - 1]);
            constant_guess(&s, 0, "every phase");
            constant_guess(&s, 256, "phases above 256 tokens, as the original fix checks");
        }
        if (s.under)
            status = WARMCAL_EXIT_NEGATIVE;
    }
    free(s.over);
    free(s.table_over);
    free(s.need);
    free(s.tokens);
    warmcal_table_free(t);
    free(paths);
    return status;
}
