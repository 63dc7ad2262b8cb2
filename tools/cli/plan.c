/* `warmcal plan TABLE --free BYTES[,BYTES...] [--rank R] [--reserve BYTES]
 * [--label L] [--shapes FILE] [--json]`: what a release engineer asks
 * before setting max_num_tokens — for given free memory per rank, the
 * largest pass per label every rank can run and the rank that limits it,
 * and which warmup shapes run or are skipped, and why.
 *
 * The answers are the gate's own, not a second implementation: one local
 * gate per rank (warmcal_gate_open_local, free memory by the value probe)
 * encodes its values exactly as in production, this command plays the
 * collective (an element-wise MIN over the ranks' values, which is what
 * MPI_Allreduce with MPI_MIN or a torch.distributed MIN does), and the gate
 * decodes. So a plan and a server's decide / max_tokens at the same free
 * memory agree to the byte. Why a budget stops (memory, the calibrated
 * range, ...) comes from warmcal_table_max_tokens, the function the gate
 * computes each rank's budget with. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_json.h"
#include "cli_args.h"
#include "commands.h"
#include "warmcal/gate.h"
#include "warmcal/table.h"
#include "warmcal/text.h"
#include "warmcal/units.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: warmcal plan TABLE --free BYTES[,BYTES...] [--rank R] [--reserve BYTES]\n"
            "                    [--label L] [--shapes FILE] [--json]\n\n"
            "For the given free device memory, print per label the largest token count\n"
            "that fits on every rank of the table's world (its tp), the rank that limits\n"
            "it and why (low memory, outside the calibrated range, no estimate, estimate\n"
            "too large); with a list of warmup shapes, which run and which are skipped and\n"
            "why. The answers are the gate's: a server whose ranks have this much free\n"
            "memory gets the same from warmcal_gate_max_tokens and warmcal_gate_decide.\n\n"
            "  --free BYTES[,BYTES...]  free memory: one value for every rank, or one per\n"
            "                           rank, in rank order (e.g. 2GiB or 2GiB,5GiB,5GiB,5GiB;\n"
            "                           plain bytes or KiB/MiB/GiB/TiB, KB/MB/GB/TB); required\n"
            "  --rank R                 only rank R's view: its own budget and decisions\n"
            "  --reserve BYTES          added to every need, as the gate's reserve_bytes\n"
            "  --label L                only this label's budget (default: every label)\n"
            "  --shapes FILE            warmup shapes, one per line: TOKENS [BATCH [LABEL]]\n"
            "                           (batch 1 and label 'context' by default; '#' starts a\n"
            "                           comment; blank lines are skipped)\n"
            "  --json                   print one JSON object instead (docs/formats.md,\n"
            "                           \"warmcal plan --json\")\n\n"
            "Budgets are for batch 1 (version 1 tables do not depend on the batch). Above\n"
            "the calibrated range the table's policy applies, as in the gate. Exit 0, or 2\n"
            "on bad arguments, a bad table or a bad shapes file (then nothing is printed on\n"
            "stdout).\n\n"
            "examples:\n"
            "  warmcal plan table.json --free 2.2GiB,5.2GiB,5.2GiB,5.2GiB\n"
            "  warmcal plan table.json --free 40GiB --reserve 1GiB --label context\n"
            "  warmcal plan table.json --free 2.2GiB,5.2GiB,5.2GiB,5.2GiB --shapes warmup.txt \\\n"
            "      --json\n");
}

/* --- arguments ------------------------------------------------------------- */

static void print_error(const warmcal_error *err)
{
    char msg[WARMCAL_ERROR_SOURCE_LEN + WARMCAL_ERROR_WHERE_LEN + WARMCAL_ERROR_TEXT_LEN];
    fprintf(stderr, "warmcal plan: %s\n", warmcal_error_format(err, msg, sizeof msg));
}

/* A label as tables hold them: 1 to 31 bytes of UTF-8. */
static int label_ok(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && n < WARMCAL_TABLE_LABEL_LEN && warmcal_utf8_valid(s);
}

/* --free's comma-separated values into *free_bytes (n of them). */
static int parse_free(const char *text, uint64_t **free_bytes, size_t *n)
{
    size_t count = 1;
    for (const char *p = text; *p; p++)
        count += *p == ',';
    uint64_t *v = calloc(count, sizeof *v);
    char *copy = strdup(text);
    if (!v || !copy) {
        free(v);
        free(copy);
        fprintf(stderr, "warmcal plan: out of memory\n");
        return -1;
    }
    char *item = copy;
    for (size_t i = 0; i < count; i++) {
        char *comma = strchr(item, ',');
        if (comma)
            *comma = '\0';
        warmcal_error err;
        warmcal_error_clear(&err);
        if (warmcal_parse_bytes(item, &v[i], "--free", &err) != WARMCAL_OK) {
            if (count > 1)
                fprintf(stderr, "warmcal plan: --free: value %zu of %zu '%s': expected a byte "
                                "count (plain bytes or KiB/MiB/GiB/TiB, KB/MB/GB/TB)\n",
                        i + 1, count, item);
            else
                print_error(&err);
            free(v);
            free(copy);
            return -1;
        }
        item = comma ? comma + 1 : item;
    }
    free(copy);
    *free_bytes = v;
    *n = count;
    return 0;
}

/* --- the shapes file ------------------------------------------------------- */

typedef struct {
    warmcal_shape *shapes;
    char (*labels)[WARMCAL_TABLE_LABEL_LEN];
    size_t *lines; /* line of each shape in the file */
    size_t n, cap;
} shape_list;

static void shape_list_free(shape_list *s)
{
    free(s->shapes);
    free(s->labels);
    free(s->lines);
    memset(s, 0, sizeof *s);
}

static int shape_list_add(shape_list *s, uint64_t tokens, uint32_t batch, const char *label,
                          size_t line)
{
    if (s->n == s->cap) {
        size_t cap = s->cap ? 2 * s->cap : 64;
        warmcal_shape *shapes = realloc(s->shapes, cap * sizeof *shapes);
        if (shapes)
            s->shapes = shapes;
        char(*labels)[WARMCAL_TABLE_LABEL_LEN] = realloc(s->labels, cap * sizeof *labels);
        if (labels)
            s->labels = labels;
        size_t *lines = realloc(s->lines, cap * sizeof *lines);
        if (lines)
            s->lines = lines;
        if (!shapes || !labels || !lines)
            return -1;
        s->cap = cap;
    }
    snprintf(s->labels[s->n], sizeof s->labels[s->n], "%s", label);
    s->shapes[s->n] = (warmcal_shape){.tokens = tokens, .batch = batch, .label = NULL,
                                      .batch_valid = 1};
    s->lines[s->n] = line;
    s->n++;
    return 0;
}

/* One line of the shapes file, its comment already cut: TOKENS [BATCH
 * [LABEL]], or nothing. Prints the error (file, line, field) and returns -1
 * when the line is bad. */
static int parse_shape_line(const char *path, size_t line, char *text, shape_list *out)
{
    static const char *const fields[] = {"tokens", "batch", "label"};
    char *word[3] = {NULL, NULL, NULL}, *save = NULL;
    size_t n = 0;
    for (char *w = strtok_r(text, " \t\r\v\f", &save); w; w = strtok_r(NULL, " \t\r\v\f", &save)) {
        if (n == 3) {
            fprintf(stderr, "warmcal plan: --shapes %s: line %zu: unexpected fourth field '%.40s' "
                            "(expected TOKENS [BATCH [LABEL]])\n",
                    path, line, w);
            return -1;
        }
        word[n++] = w;
    }
    if (n == 0)
        return 0;
    uint64_t tokens, batch = 1;
    if (cli_parse_uint(word[0], UINT64_MAX, &tokens) != 0 || tokens == 0) {
        fprintf(stderr, "warmcal plan: --shapes %s: line %zu: %s: expected a positive integer, "
                        "found '%.40s'\n",
                path, line, fields[0], word[0]);
        return -1;
    }
    if (word[1] && (cli_parse_uint(word[1], UINT32_MAX, &batch) != 0 || batch == 0)) {
        fprintf(stderr, "warmcal plan: --shapes %s: line %zu: %s: expected a positive integer "
                        "below 2^32, found '%.40s'\n",
                path, line, fields[1], word[1]);
        return -1;
    }
    if (word[2] && !label_ok(word[2])) {
        fprintf(stderr, "warmcal plan: --shapes %s: line %zu: %s: expected 1 to %d bytes of "
                        "UTF-8 text, found %zu bytes\n",
                path, line, fields[2], WARMCAL_TABLE_LABEL_LEN - 1, strlen(word[2]));
        return -1;
    }
    if (shape_list_add(out, tokens, (uint32_t)batch, word[2] ? word[2] : "context", line) != 0) {
        fprintf(stderr, "warmcal plan: out of memory\n");
        return -1;
    }
    return 0;
}

static int read_shapes(const char *path, shape_list *out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "warmcal plan: --shapes %s: cannot open: %s\n", path, strerror(errno));
        return -1;
    }
    char *buf = NULL;
    size_t cap = 0, line = 0;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&buf, &cap, f)) >= 0) {
        line++;
        if (memchr(buf, '\0', (size_t)len)) {
            fprintf(stderr, "warmcal plan: --shapes %s: line %zu: a NUL byte (expected text: "
                            "TOKENS [BATCH [LABEL]])\n",
                    path, line);
            rc = -1;
            break;
        }
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = '\0';
        buf[strcspn(buf, "\n")] = '\0';
        rc = parse_shape_line(path, line, buf, out);
    }
    if (rc == 0 && ferror(f)) {
        fprintf(stderr, "warmcal plan: --shapes %s: cannot read: %s\n", path, strerror(errno));
        rc = -1;
    }
    free(buf);
    fclose(f);
    if (rc == 0 && out->n == 0) {
        fprintf(stderr, "warmcal plan: --shapes %s: no shapes (expected one per line: TOKENS "
                        "[BATCH [LABEL]])\n",
                path);
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < out->n; i++)
        out->shapes[i].label = out->labels[i]; /* fixed now that the arrays stopped growing */
    return rc;
}

/* --- the gate, played locally ------------------------------------------------ */

typedef struct {
    const char *table_path;
    const warmcal_table *table;
    int world;             /* the table's tp */
    int first, last;       /* the ranks in view: all, or --rank's */
    int one_rank;          /* --rank given */
    const uint64_t *free_bytes; /* per rank, world of them */
    uint64_t reserve;
    warmcal_gate **gates;  /* [world]; only those in view are opened */
} planner;

static int open_gates(planner *p)
{
    p->gates = calloc((size_t)p->world, sizeof *p->gates);
    if (!p->gates) {
        fprintf(stderr, "warmcal plan: out of memory\n");
        return -1;
    }
    for (int r = p->first; r <= p->last; r++) {
        warmcal_gate_options o;
        warmcal_gate_options_init(&o);
        o.probe = WARMCAL_PROBE_VALUE;
        o.free_bytes = p->free_bytes[r];
        o.reserve_bytes = p->reserve;
        /* the table's own policy above the range, as a gate opened by default */
        if (warmcal_gate_open_local(&p->gates[r], p->table_path, r, p->world, &o) != WARMCAL_OK) {
            fprintf(stderr, "warmcal plan: rank %d: %s\n", r, warmcal_gate_last_error(p->gates[r]));
            return -1;
        }
    }
    return 0;
}

static void close_gates(planner *p)
{
    for (int r = 0; p->gates && r < p->world; r++)
        warmcal_gate_close(p->gates[r]);
    free(p->gates);
}

/* The collective every rank of a server takes: MIN, element by element. */
static void reduce_min(int64_t *into, const int64_t *vals, size_t n, int first)
{
    for (size_t i = 0; i < n; i++)
        if (first || vals[i] < into[i])
            into[i] = vals[i];
}

typedef struct {
    int rank;
    uint64_t tokens;
    int limit; /* a warmcal_budget_limit */
} rank_budget;

typedef struct {
    char label[WARMCAL_TABLE_LABEL_LEN];
    uint64_t tokens;
    int limiting_rank;
    int limit;
    rank_budget *ranks; /* those in view */
} label_budget;

/* One label's budget over the ranks in view, as warmcal_gate_max_tokens
 * gives it, and each rank's own. */
static int plan_label(planner *p, const char *label, label_budget *out)
{
    size_t count = warmcal_gate_max_tokens_encoded_count();
    int64_t *vals = calloc(2 * count, sizeof *vals), *reduced = vals + count;
    out->ranks = calloc((size_t)(p->last - p->first + 1), sizeof *out->ranks);
    if (!vals || !out->ranks) {
        free(vals);
        fprintf(stderr, "warmcal plan: out of memory\n");
        return -1;
    }
    snprintf(out->label, sizeof out->label, "%s", label);
    for (int r = p->first; r <= p->last; r++) {
        if (warmcal_gate_max_tokens_encode(p->gates[r], label, 0, vals) != WARMCAL_OK) {
            fprintf(stderr, "warmcal plan: rank %d: %s\n", r, warmcal_gate_last_error(p->gates[r]));
            free(vals);
            return -1;
        }
        reduce_min(reduced, vals, count, r == p->first);
        rank_budget *rb = &out->ranks[r - p->first];
        rb->rank = r;
        rb->limit = WARMCAL_BUDGET_NO_ESTIMATE;
        /* the gate's reserve is in its options; this call adds none */
        warmcal_table_max_tokens(p->table, r, label, 1, -1, p->free_bytes[r], p->reserve,
                                 &rb->tokens, &rb->limit, NULL);
    }
    warmcal_gate *g = p->gates[p->first];
    int rc = warmcal_gate_max_tokens_decode(g, reduced, &out->tokens, &out->limiting_rank);
    free(vals);
    if (rc != WARMCAL_OK && rc != WARMCAL_E_FIELD) {
        fprintf(stderr, "warmcal plan: %s\n", warmcal_gate_last_error(g));
        return -1;
    }
    out->limit = rc == WARMCAL_E_FIELD ? WARMCAL_BUDGET_NO_ESTIMATE
                                       : out->ranks[out->limiting_rank - p->first].limit;
    return 0;
}

/* The shapes decided over the ranks in view, as warmcal_gate_decide
 * decides them. */
static int plan_shapes(planner *p, const shape_list *s, warmcal_decision *out)
{
    size_t count = warmcal_gate_encoded_count(s->n);
    int64_t *vals = calloc(2 * count, sizeof *vals), *reduced = vals + count;
    if (!vals) {
        fprintf(stderr, "warmcal plan: out of memory\n");
        return -1;
    }
    for (int r = p->first; r <= p->last; r++) {
        if (warmcal_gate_encode(p->gates[r], s->shapes, s->n, vals) != WARMCAL_OK) {
            fprintf(stderr, "warmcal plan: rank %d: %s\n", r, warmcal_gate_last_error(p->gates[r]));
            free(vals);
            return -1;
        }
        reduce_min(reduced, vals, count, r == p->first);
    }
    warmcal_gate *g = p->gates[p->first];
    int rc = warmcal_gate_decode(g, reduced, s->n, out);
    free(vals);
    if (rc != WARMCAL_OK) {
        fprintf(stderr, "warmcal plan: %s\n", warmcal_gate_last_error(g));
        return -1;
    }
    return 0;
}

/* --- output ------------------------------------------------------------------ */

/* Names in the JSON output (docs/formats.md, "warmcal plan --json"). */
static const char *limit_key(int limit)
{
    switch (limit) {
    case WARMCAL_BUDGET_MEMORY: return "memory";
    case WARMCAL_BUDGET_RANGE: return "range";
    case WARMCAL_BUDGET_NO_ESTIMATE: return "no_estimate";
    case WARMCAL_BUDGET_TOO_LARGE: return "estimate_too_large";
    default: return "bound";
    }
}

static const char *reason_key(int reason)
{
    switch (reason) {
    case WARMCAL_REASON_RUN: return "run";
    case WARMCAL_REASON_LOW_MEMORY: return "low_memory";
    case WARMCAL_REASON_INVALID_BATCH: return "invalid_batch";
    case WARMCAL_REASON_OUT_OF_RANGE: return "out_of_range";
    case WARMCAL_REASON_NO_ESTIMATE: return "no_estimate";
    default: return "estimate_too_large";
    }
}

static void print_text(const planner *p, const label_budget *labels, size_t n_labels,
                       const char *shapes_path, const shape_list *s, const warmcal_decision *d)
{
    char b[32];
    printf("table %s: %s, tp %d, above the calibrated range: %s\n", p->table_path,
           p->table->config.model, p->world, warmcal_above_policy_name(p->table->above_range));
    printf("free memory:");
    for (int r = p->first; r <= p->last; r++)
        printf("%s rank %d %s", r > p->first ? "," : "", r,
               warmcal_format_bytes(p->free_bytes[r], b, sizeof b));
    printf("; reserve %s%s\n\n", warmcal_format_bytes(p->reserve, b, sizeof b),
           p->one_rank ? " (this rank's view only)" : "");
    int width = 5; /* the longest label, at least "label" */
    for (size_t i = 0; i < n_labels; i++)
        if ((int)strlen(labels[i].label) > width)
            width = (int)strlen(labels[i].label);
    for (size_t i = 0; i < s->n; i++)
        if ((int)strlen(s->labels[i]) > width)
            width = (int)strlen(s->labels[i]);
    printf("%-*s  %12s  %-11s  %s\n", width, "label", "max tokens", "limited by", "why");
    for (size_t i = 0; i < n_labels; i++) {
        char who[24];
        snprintf(who, sizeof who, "rank %d", labels[i].limiting_rank);
        printf("%-*s  %12" PRIu64 "  %-11s  %s\n", width, labels[i].label, labels[i].tokens, who,
               warmcal_budget_limit_name(labels[i].limit));
    }
    if (!s->n)
        return;
    size_t skipped = 0;
    for (size_t i = 0; i < s->n; i++)
        skipped += !d[i].run;
    printf("\nshapes %s: %zu, %zu run, %zu skipped\n", shapes_path, s->n, s->n - skipped, skipped);
    printf("%6s  %12s  %6s  %-*s  %s\n", "line", "tokens", "batch", width, "label", "decision");
    for (size_t i = 0; i < s->n; i++)
        printf("%6zu  %12" PRIu64 "  %6" PRIu32 "  %-*s  %s\n", s->lines[i], s->shapes[i].tokens,
               s->shapes[i].batch, width, s->labels[i], d[i].text);
}

static int append(json_t *array, json_t *value)
{
    return value ? json_array_append_new(array, value) != 0 : 1;
}

static json_t *label_json(const planner *p, const label_budget *l)
{
    json_t *o = json_object(), *ranks = json_array();
    int bad = !o || !ranks;
    for (int r = p->first; !bad && r <= p->last; r++) {
        const rank_budget *rb = &l->ranks[r - p->first];
        json_t *e = json_object();
        bad = !e || cli_json_put(e, "rank", json_integer(rb->rank)) |
                        cli_json_put(e, "free_bytes", cli_json_u64(p->free_bytes[r])) |
                        cli_json_put(e, "max_tokens", cli_json_u64(rb->tokens)) |
                        cli_json_put(e, "limit", json_string(limit_key(rb->limit)));
        bad = append(ranks, e) || bad;
    }
    bad = bad || cli_json_put(o, "label", cli_json_text(l->label)) |
                 cli_json_put(o, "max_tokens", cli_json_u64(l->tokens)) |
                     cli_json_put(o, "limiting_rank", json_integer(l->limiting_rank)) |
                     cli_json_put(o, "limit", json_string(limit_key(l->limit))) |
                     cli_json_put(o, "ranks", json_incref(ranks));
    json_decref(ranks);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *shape_json(const shape_list *s, size_t i, const warmcal_decision *d)
{
    json_t *o = json_object();
    int bad = !o || cli_json_put(o, "line", cli_json_u64(s->lines[i])) |
                        cli_json_put(o, "tokens", cli_json_u64(s->shapes[i].tokens)) |
                        cli_json_put(o, "batch", json_integer(s->shapes[i].batch)) |
                        cli_json_put(o, "label", cli_json_text(s->labels[i])) |
                        cli_json_put(o, "run", json_boolean(d->run)) |
                        cli_json_put(o, "reason", json_string(reason_key(d->reason))) |
                        cli_json_put(o, "blocking_rank",
                            d->run ? json_null() : json_integer(d->blocking_rank)) |
                        cli_json_put(o, "short_bytes", cli_json_u64(d->short_bytes)) |
                        cli_json_put(o, "text", cli_json_text(d->text));
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int print_json(const planner *p, const label_budget *labels, size_t n_labels,
                      const char *shapes_path, const shape_list *s, const warmcal_decision *d)
{
    json_t *o = json_object(), *free_list = json_array(), *ls = json_array(), *ss = json_array();
    int bad = !o || !free_list || !ls || !ss;
    for (int r = 0; !bad && r < p->world; r++)
        bad = append(free_list, cli_json_u64(p->free_bytes[r]));
    for (size_t i = 0; !bad && i < n_labels; i++)
        bad = append(ls, label_json(p, &labels[i]));
    for (size_t i = 0; !bad && i < s->n; i++)
        bad = append(ss, shape_json(s, i, &d[i]));
    bad = bad || cli_json_put(o, "table", cli_json_text(p->table_path)) |
                     cli_json_put(o, "world_size", json_integer(p->world)) |
                     cli_json_put(o, "rank", p->one_rank ? json_integer(p->first) : json_null()) |
                     cli_json_put(o, "free_bytes", json_incref(free_list)) |
                     cli_json_put(o, "reserve_bytes", cli_json_u64(p->reserve)) |
                     cli_json_put(o, "above_range",
                         json_string(warmcal_above_policy_name(p->table->above_range))) |
                     cli_json_put(o, "labels", json_incref(ls)) |
                     cli_json_put(o, "shapes_file",
                                  shapes_path ? cli_json_text(shapes_path) : json_null()) |
                     cli_json_put(o, "shapes", json_incref(ss));
    json_decref(free_list);
    json_decref(ls);
    json_decref(ss);
    bad = bad || cli_json_print(o);
    json_decref(o);
    return bad ? -1 : 0;
}

/* --- command ----------------------------------------------------------------- */

/* The table's labels, each once, in the order of their first entry. */
static size_t table_labels(const warmcal_table *t, const char **out)
{
    size_t n = 0;
    for (size_t i = 0; i < t->n_estimates; i++) {
        size_t k = 0;
        while (k < n && strcmp(out[k], t->estimates[i].label) != 0)
            k++;
        if (k == n)
            out[n++] = t->estimates[i].label;
    }
    return n;
}

int warmcal_cmd_plan(int argc, char **argv)
{
    const char *table_path = NULL, *free_text = NULL, *rank_text = NULL, *reserve_text = NULL,
               *label_text = NULL, *shapes_path = NULL;
    int json = 0, options_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || strcmp(a, "-") == 0) {
            if (table_path) {
                fprintf(stderr, "warmcal plan: one table at a time ('%s' and '%s' given; see "
                                "'warmcal plan --help')\n",
                        table_path, a);
                return WARMCAL_EXIT_USAGE;
            }
            table_path = a;
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
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        const cli_option opts[] = {{"--free", NULL, &free_text},
                                   {"--rank", NULL, &rank_text},
                                   {"--reserve", NULL, &reserve_text},
                                   {"--label", NULL, &label_text},
                                   {"--shapes", NULL, &shapes_path}};
        int taken = cli_take_option("plan", argc, argv, &i, opts, sizeof opts / sizeof opts[0]);
        if (taken < 0)
            return WARMCAL_EXIT_USAGE;
        if (taken == 0) {
            fprintf(stderr, "warmcal plan: unknown option '%s' (see 'warmcal plan --help')\n", a);
            return WARMCAL_EXIT_USAGE;
        }
    }
    if (!table_path || !free_text) {
        fprintf(stderr, "warmcal plan: %s (see 'warmcal plan --help')\n",
                !table_path ? "no table given" : "--free is required");
        return WARMCAL_EXIT_USAGE;
    }
    uint64_t reserve = 0, rank = 0;
    warmcal_error err;
    warmcal_error_clear(&err);
    if (reserve_text && warmcal_parse_bytes(reserve_text, &reserve, "--reserve", &err) != WARMCAL_OK) {
        print_error(&err);
        return WARMCAL_EXIT_USAGE;
    }
    if (rank_text && cli_parse_uint(rank_text, INT_MAX, &rank) != 0) {
        fprintf(stderr, "warmcal plan: --rank '%s': expected a rank >= 0\n", rank_text);
        return WARMCAL_EXIT_USAGE;
    }
    if (label_text && !label_ok(label_text)) {
        fprintf(stderr, "warmcal plan: --label '%s': expected 1 to %d bytes of UTF-8 text\n",
                label_text, WARMCAL_TABLE_LABEL_LEN - 1);
        return WARMCAL_EXIT_USAGE;
    }
    uint64_t *free_given = NULL;
    size_t n_free = 0;
    if (parse_free(free_text, &free_given, &n_free) != 0)
        return WARMCAL_EXIT_USAGE;

    int status = WARMCAL_EXIT_USAGE;
    warmcal_table *t = NULL;
    uint64_t *free_bytes = NULL;
    const char **labels = NULL;
    label_budget *budgets = NULL;
    size_t n_labels = 0, n_budgets = 0;
    shape_list shapes = {0};
    warmcal_decision *decisions = NULL;
    planner p = {.table_path = table_path, .reserve = reserve};
    if (warmcal_table_read(table_path, &t, &err) != WARMCAL_OK) {
        char msg[WARMCAL_ERROR_SOURCE_LEN + WARMCAL_ERROR_WHERE_LEN + WARMCAL_ERROR_TEXT_LEN];
        warmcal_error_format(&err, msg, sizeof msg);
        if (err.source[0])
            fprintf(stderr, "warmcal plan: %s\n", msg);
        else
            fprintf(stderr, "warmcal plan: %s: %s\n", table_path, msg);
        goto done;
    }
    p.table = t;
    p.world = t->config.tp;
    if (n_free != 1 && n_free != (size_t)p.world) {
        fprintf(stderr, "warmcal plan: --free: %zu values for a table of %d ranks (tp %d): give "
                        "one value for every rank or one per rank\n",
                n_free, p.world, p.world);
        goto done;
    }
    if (rank_text && rank >= (uint64_t)p.world) {
        fprintf(stderr, "warmcal plan: --rank %" PRIu64 ": the table's world has ranks 0 to %d "
                        "(tp %d)\n",
                rank, p.world - 1, p.world);
        goto done;
    }
    free_bytes = calloc((size_t)p.world, sizeof *free_bytes);
    labels = calloc(t->n_estimates ? t->n_estimates : 1, sizeof *labels);
    if (!free_bytes || !labels) {
        fprintf(stderr, "warmcal plan: out of memory\n");
        goto done;
    }
    for (int r = 0; r < p.world; r++)
        free_bytes[r] = free_given[n_free == 1 ? 0 : r];
    p.free_bytes = free_bytes;
    p.first = rank_text ? (int)rank : 0;
    p.last = rank_text ? (int)rank : p.world - 1;
    p.one_rank = rank_text != NULL;
    n_labels = table_labels(t, labels);
    if (label_text) {
        size_t k = 0;
        while (k < n_labels && strcmp(labels[k], label_text) != 0)
            k++;
        if (k == n_labels) {
            fprintf(stderr, "warmcal plan: --label '%s': the table has no such label (it has:",
                    label_text);
            for (size_t i = 0; i < n_labels; i++)
                fprintf(stderr, "%s %s", i ? "," : "", labels[i]);
            fprintf(stderr, "%s)\n", n_labels ? "" : " none");
            goto done;
        }
        labels[0] = labels[k];
        n_labels = 1;
    }
    if (shapes_path && read_shapes(shapes_path, &shapes) != 0)
        goto done;
    if (open_gates(&p) != 0)
        goto done;
    budgets = calloc(n_labels ? n_labels : 1, sizeof *budgets);
    decisions = calloc(shapes.n ? shapes.n : 1, sizeof *decisions);
    if (!budgets || !decisions) {
        fprintf(stderr, "warmcal plan: out of memory\n");
        goto done;
    }
    for (n_budgets = 0; n_budgets < n_labels; n_budgets++)
        if (plan_label(&p, labels[n_budgets], &budgets[n_budgets]) != 0) {
            n_budgets++; /* its ranks array is freed below */
            goto done;
        }
    if (shapes.n && plan_shapes(&p, &shapes, decisions) != 0)
        goto done;

    int bad = 0;
    if (json)
        bad = print_json(&p, budgets, n_labels, shapes_path, &shapes, decisions) != 0;
    else
        print_text(&p, budgets, n_labels, shapes_path, &shapes, decisions);
    if (fflush(stdout) == EOF || ferror(stdout))
        bad = 1;
    if (bad)
        fprintf(stderr, "warmcal plan: cannot write the output (out of memory or stdout closed)\n");
    else
        status = WARMCAL_EXIT_OK;
done:
    for (size_t i = 0; budgets && i < n_budgets; i++)
        free(budgets[i].ranks);
    free(budgets);
    free(decisions);
    close_gates(&p);
    shape_list_free(&shapes);
    free(labels);
    free(free_bytes);
    free(free_given);
    warmcal_table_free(t);
    return status;
}
