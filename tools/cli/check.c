/* `warmcal check TABLE`: read and validate an estimate table through the
 * gate's table library, check that every estimate is usable across its
 * range, and print a short summary of what it holds. A bad table prints
 * "FILE: WHERE: TEXT" on stderr and exits 2. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "warmcal/table.h"
#include "warmcal/units.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: warmcal check TABLE\n\n"
            "Read an estimate table and check every rule of docs/formats.md (\"Estimate\n"
            "table\"), then that every estimate fits in 64 bits at its tokens_min and\n"
            "tokens_max and never falls as tokens grow inside that range. On success print\n"
            "its configuration, sources and one line per estimate, and exit 0; otherwise\n"
            "print FILE: WHERE: TEXT on stderr and exit 2 (also on bad arguments).\n\n"
            "examples:\n"
            "  warmcal check table.json\n"
            "  warmcal check out/demo/table.json    # the table tools/demo wrote\n");
}

static double mib(double bytes)
{
    return bytes / (1024.0 * 1024.0);
}

/* The rank ("any" for -1) and token range of an entry, as printed. */
static void cells(const warmcal_estimate *e, char rank[16], char range[48])
{
    if (e->rank == WARMCAL_TABLE_ANY_RANK)
        snprintf(rank, 16, "any");
    else
        snprintf(rank, 16, "%d", e->rank);
    snprintf(range, 48, "%" PRIu64 "..%" PRIu64, e->tokens_min, e->tokens_max);
}

static void print_summary(const char *path, const warmcal_table *t)
{
    char total[32];
    printf("%s: valid estimate table (version %d)\n", path, t->version);
    printf("configuration: model %s, tp %d, gpu %s (%s)\n",
           t->config.model[0] ? t->config.model : "-", t->config.tp,
           t->config.gpu_name[0] ? t->config.gpu_name : "-",
           warmcal_format_bytes(t->config.gpu_total_bytes, total, sizeof total));
    printf("written by: warmcal %s, %s\n", t->tool_version[0] ? t->tool_version : "-",
           t->created[0] ? t->created : "-");
    printf("policy: above range %s, below range clamp\n", warmcal_above_policy_name(t->above_range));
    printf("sources: %zu\n", t->n_sources);
    for (size_t i = 0; i < t->n_sources; i++)
        printf("  %s  sha256 %s\n", t->sources[i].name, t->sources[i].sha256);
    printf("estimates: %zu\n", t->n_estimates);

    int w_rank = 4, w_label = 5, w_range = 6;
    char rank[16], range[48];
    for (size_t i = 0; i < t->n_estimates; i++) {
        cells(&t->estimates[i], rank, range);
        int w = (int)strlen(rank);
        w_rank = w > w_rank ? w : w_rank;
        w = (int)strlen(t->estimates[i].label);
        w_label = w > w_label ? w : w_label;
        w = (int)strlen(range);
        w_range = w > w_range ? w : w_range;
    }
    printf("  %-*s  %-*s  %*s  %-9s  %10s  %6s\n", w_rank, "rank", w_label, "label", w_range,
           "tokens", "form", "margin MiB", "points");
    for (size_t i = 0; i < t->n_estimates; i++) {
        const warmcal_estimate *e = &t->estimates[i];
        cells(e, rank, range);
        printf("  %-*s  %-*s  %*s  %-9s  %10.1f  %6zu\n", w_rank, rank, w_label, e->label, w_range,
               range, warmcal_form_name(e->form), mib(e->margin.total), e->fit.points);
    }
}

int warmcal_cmd_check(int argc, char **argv)
{
    const char *path = NULL;
    int options_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || strcmp(a, "-") == 0) {
            if (path) {
                fprintf(stderr, "warmcal check: one table at a time ('%s' and '%s' given; see "
                                "'warmcal check --help')\n", path, a);
                return WARMCAL_EXIT_USAGE;
            }
            path = a;
        } else if (strcmp(a, "--") == 0) {
            options_done = 1;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return WARMCAL_EXIT_OK;
        } else {
            fprintf(stderr, "warmcal check: unknown option '%s' (see 'warmcal check --help')\n", a);
            return WARMCAL_EXIT_USAGE;
        }
    }
    if (!path) {
        fprintf(stderr, "warmcal check: no table given (see 'warmcal check --help')\n");
        return WARMCAL_EXIT_USAGE;
    }
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_table *t = NULL;
    if (warmcal_table_read(path, &t, &err) != WARMCAL_OK ||
        warmcal_table_check_estimates(t, path, &err) != WARMCAL_OK) {
        char msg[WARMCAL_ERROR_SOURCE_LEN + WARMCAL_ERROR_WHERE_LEN + WARMCAL_ERROR_TEXT_LEN];
        fprintf(stderr, "%s\n", warmcal_error_format(&err, msg, sizeof msg));
        warmcal_table_free(t);
        return WARMCAL_EXIT_USAGE;
    }
    print_summary(path, t);
    warmcal_table_free(t);
    if (fflush(stdout) == EOF || ferror(stdout)) {
        fprintf(stderr, "warmcal check: cannot write the output\n");
        return WARMCAL_EXIT_USAGE;
    }
    return WARMCAL_EXIT_OK;
}
