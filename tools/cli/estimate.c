/* `warmcal estimate TABLE --tokens N [--rank R] [--label L] [--batch B]`:
 * the estimated bytes for one pass, as one integer on stdout. The rule is
 * warmcal_table_estimate's (gate/src/table_eval.c), the one the gate applies. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_args.h"
#include "commands.h"
#include "warmcal/table.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: warmcal estimate TABLE --tokens N [--rank R] [--label L] [--batch B]\n\n"
            "Print the bytes TABLE estimates for a pass of N tokens, as one integer.\n\n"
            "  --tokens N  tokens in the pass (a positive integer; required)\n"
            "  --rank R    the rank's own entry; the any-rank entry when the rank has\n"
            "              none, or above the rank's own range when the any-rank entry\n"
            "              reaches further (the rule the gate applies); default -1 (also\n"
            "              'any'): the any-rank entry only\n"
            "  --label L   the entry's label (default 'context')\n"
            "  --batch B   sequences in the pass (default 1; version 1 tables ignore it)\n\n"
            "Below the calibrated token range the estimate at its start is used; above it\n"
            "the table's policy decides (refuse: exit 2 naming the range). Exit 2 on a bad\n"
            "table, an estimate that does not fit in 64 bits, or bad arguments.\n\n"
            "examples:\n"
            "  warmcal estimate table.json --tokens 16384 --rank 0\n"
            "  warmcal estimate table.json --tokens 8192 --label context\n"
            "  warmcal estimate table.json --tokens=256 --rank=any --label=generation --batch=64\n");
}

static int bad_value(const char *option, const char *value, const char *expect)
{
    fprintf(stderr, "warmcal estimate: %s '%s': expected %s\n", option, value, expect);
    return WARMCAL_EXIT_USAGE;
}

static void print_error(const char *table, const warmcal_error *err)
{
    char msg[WARMCAL_ERROR_SOURCE_LEN + WARMCAL_ERROR_WHERE_LEN + WARMCAL_ERROR_TEXT_LEN];
    warmcal_error_format(err, msg, sizeof msg);
    if (err->source[0])
        fprintf(stderr, "%s\n", msg);
    else
        fprintf(stderr, "%s: %s\n", table, msg);
}

int warmcal_cmd_estimate(int argc, char **argv)
{
    const char *table = NULL, *label = "context";
    const char *tokens_text = NULL, *rank_text = NULL, *label_text = NULL, *batch_text = NULL;
    int options_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || strcmp(a, "-") == 0) {
            if (table) {
                fprintf(stderr, "warmcal estimate: one table at a time ('%s' and '%s' given; see "
                                "'warmcal estimate --help')\n", table, a);
                return WARMCAL_EXIT_USAGE;
            }
            table = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_done = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return WARMCAL_EXIT_OK;
        }
        const cli_option opts[] = {{"--tokens", NULL, &tokens_text},
                                   {"--rank", NULL, &rank_text},
                                   {"--label", NULL, &label_text},
                                   {"--batch", NULL, &batch_text}};
        int taken = cli_take_option("estimate", argc, argv, &i, opts, sizeof opts / sizeof opts[0]);
        if (taken < 0)
            return WARMCAL_EXIT_USAGE;
        if (taken == 0) {
            fprintf(stderr, "warmcal estimate: unknown option '%s' (see 'warmcal estimate --help')\n",
                    a);
            return WARMCAL_EXIT_USAGE;
        }
    }
    if (!table || !tokens_text) {
        fprintf(stderr, "warmcal estimate: %s (see 'warmcal estimate --help')\n",
                !table ? "no table given" : "--tokens is required");
        return WARMCAL_EXIT_USAGE;
    }
    uint64_t tokens, batch = 1, r = 0;
    int rank = WARMCAL_TABLE_ANY_RANK;
    if (cli_parse_uint(tokens_text, UINT64_MAX, &tokens) != 0 || tokens == 0)
        return bad_value("--tokens", tokens_text, "a positive integer");
    if (batch_text && (cli_parse_uint(batch_text, UINT32_MAX, &batch) != 0 || batch == 0))
        return bad_value("--batch", batch_text, "a positive integer below 2^32");
    if (rank_text && strcmp(rank_text, "-1") != 0 && strcmp(rank_text, "any") != 0) {
        if (cli_parse_uint(rank_text, INT_MAX, &r) != 0)
            return bad_value("--rank", rank_text, "a rank >= 0, or -1 / 'any'");
        rank = (int)r;
    }
    if (label_text) {
        if (!label_text[0] || strlen(label_text) >= WARMCAL_TABLE_LABEL_LEN)
            return bad_value("--label", label_text, "1 to 31 bytes of text");
        label = label_text;
    }

    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_table *t = NULL;
    if (warmcal_table_read(table, &t, &err) != WARMCAL_OK) {
        print_error(table, &err);
        return WARMCAL_EXIT_USAGE;
    }
    uint64_t bytes;
    int rc = warmcal_table_estimate(t, rank, label, tokens, (uint32_t)batch, &bytes, &err);
    warmcal_table_free(t);
    if (rc != WARMCAL_OK) {
        print_error(table, &err);
        if (rc == WARMCAL_E_FIELD && rank == WARMCAL_TABLE_ANY_RANK)
            fprintf(stderr, "warmcal estimate: without --rank only the any-rank (-1) entry is "
                            "used; pass --rank R for a rank's own entry\n");
        return WARMCAL_EXIT_USAGE;
    }
    printf("%" PRIu64 "\n", bytes);
    if (fflush(stdout) == EOF || ferror(stdout)) {
        fprintf(stderr, "warmcal estimate: cannot write the output\n");
        return WARMCAL_EXIT_USAGE;
    }
    return WARMCAL_EXIT_OK;
}
