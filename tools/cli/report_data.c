/* What `warmcal report` shows, taken from the traces and the table: ranks
 * and labels, the per-(rank, label) phase summary, and the data files the
 * gnuplot templates plot (one file per series, plain columns, so that a
 * person who edits a template can read them). Needs come from
 * warmcal_phase_need and estimates from the table's own evaluation, so the
 * pictures show what fit, validate and the gate compute. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "warmcal/estimator.h"

#define MiB (1024.0 * 1024.0)
#define GiB (1024.0 * MiB)
#define BAND_SAMPLES 160 /* points along an estimate's range: smooth at any width */
/* Failures closer than this factor in tokens share one label, so that
 * 32768 and 32784 tokens do not print their sizes over each other. */
#define LABEL_CLUSTER_RATIO 1.3

/* --- text buffer ------------------------------------------------------------ */

void report_buf_append(report_buf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *text = realloc(b->text, cap);
        if (!text) {
            b->failed = 1;
            return;
        }
        b->text = text;
        b->cap = cap;
    }
    memcpy(b->text + b->len, s, n);
    b->len += n;
    b->text[b->len] = '\0';
}

void report_buf_puts(report_buf *b, const char *s)
{
    report_buf_append(b, s, strlen(s));
}

void report_buf_printf(report_buf *b, const char *fmt, ...)
{
    char small[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = 1;
        return;
    }
    if ((size_t)n < sizeof small) {
        report_buf_append(b, small, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        b->failed = 1;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    report_buf_append(b, big, (size_t)n);
    free(big);
}

void report_buf_free(report_buf *b)
{
    free(b->text);
    memset(b, 0, sizeof *b);
}

double report_unit(double max_bytes, const char **name)
{
    if (max_bytes >= 2 * GiB) {
        *name = "GiB";
        return GiB;
    }
    *name = "MiB";
    return MiB;
}

/* --- loading ---------------------------------------------------------------- */

static int out_of_memory(void)
{
    fprintf(stderr, "warmcal report: out of memory\n");
    return -1;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static int add_rank(report_data *d, int rank)
{
    for (size_t i = 0; i < d->n_ranks; i++)
        if (d->ranks[i] == rank)
            return 0;
    int *r = realloc(d->ranks, (d->n_ranks + 1) * sizeof *r);
    if (!r)
        return out_of_memory();
    d->ranks = r;
    d->ranks[d->n_ranks++] = rank;
    return 0;
}

static int add_label(report_data *d, const char *label)
{
    for (size_t i = 0; i < d->n_labels; i++)
        if (strcmp(d->labels[i], label) == 0)
            return 0;
    char(*l)[REPORT_LABEL_LEN] = realloc(d->labels, (d->n_labels + 1) * sizeof *l);
    if (!l)
        return out_of_memory();
    d->labels = l;
    snprintf(d->labels[d->n_labels++], REPORT_LABEL_LEN, "%s", label);
    return 0;
}

size_t report_rank_index(const report_data *d, int rank)
{
    for (size_t i = 0; i < d->n_ranks; i++)
        if (d->ranks[i] == rank)
            return i;
    return 0;
}

static report_summary *summary_row(report_data *d, int rank, const char *label)
{
    for (size_t i = 0; i < d->n_summary; i++)
        if (d->summary[i].rank == rank && strcmp(d->summary[i].label, label) == 0)
            return &d->summary[i];
    report_summary *s = realloc(d->summary, (d->n_summary + 1) * sizeof *s);
    if (!s)
        return NULL;
    d->summary = s;
    report_summary *row = &d->summary[d->n_summary++];
    memset(row, 0, sizeof *row);
    row->rank = rank;
    snprintf(row->label, sizeof row->label, "%s", label);
    row->min_free = WARMCAL_FREE_UNKNOWN;
    return row;
}

static int cmp_summary(const void *a, const void *b)
{
    const report_summary *x = a, *y = b;
    if (x->rank != y->rank)
        return (x->rank > y->rank) - (x->rank < y->rank);
    return 0; /* qsort is not stable: labels are put in order below */
}

static size_t label_index(const report_data *d, const char *label)
{
    for (size_t i = 0; i < d->n_labels; i++)
        if (strcmp(d->labels[i], label) == 0)
            return i;
    return d->n_labels;
}

static int summarise(report_data *d)
{
    for (size_t t = 0; t < d->n_traces; t++) {
        const warmcal_trace *tr = d->traces[t];
        for (size_t i = 0; i < tr->n_phases; i++) {
            const warmcal_phase *p = &tr->phases[i];
            report_summary *row = summary_row(d, tr->rank, p->label);
            if (!row)
                return out_of_memory();
            row->phases++;
            if (p->outcome == WARMCAL_OUTCOME_OK) {
                row->ok++;
                uint64_t need = warmcal_phase_need(p);
                row->max_need = need > row->max_need ? need : row->max_need;
            } else if (p->outcome == WARMCAL_OUTCOME_OOM) {
                row->oom++;
            } else {
                row->aborted++;
            }
            if (p->device_free_begin != WARMCAL_FREE_UNKNOWN && p->device_free_begin < row->min_free)
                row->min_free = p->device_free_begin;
        }
    }
    /* by rank, then by label in order of first appearance */
    qsort(d->summary, d->n_summary, sizeof *d->summary, cmp_summary);
    for (size_t i = 1; i < d->n_summary; i++)
        for (size_t j = i; j > 0 && d->summary[j - 1].rank == d->summary[j].rank &&
                           label_index(d, d->summary[j - 1].label) > label_index(d, d->summary[j].label);
             j--) {
            report_summary swap = d->summary[j];
            d->summary[j] = d->summary[j - 1];
            d->summary[j - 1] = swap;
        }
    return 0;
}

int report_data_load(report_data *d, const char *const *paths, size_t n_paths,
                     const char *table_path, warmcal_progress *progress)
{
    warmcal_error err = {0};
    char msg[600];
    d->paths = paths;
    d->traces = calloc(n_paths, sizeof *d->traces);
    if (!d->traces)
        return out_of_memory();
    for (size_t i = 0; i < n_paths; i++) {
        warmcal_progress_step(progress, "warmcal report: reading traces", i + 1, n_paths, paths[i]);
        warmcal_error_clear(&err);
        int rc = warmcal_trace_read(paths[i], &d->traces[i], &err);
        if (rc != WARMCAL_OK || !d->traces[i]->complete ||
            (i > 0 && strcmp(d->traces[i]->model, d->traces[0]->model) != 0))
            warmcal_progress_clear(progress); /* a message follows */
        if (rc != WARMCAL_OK) {
            fprintf(stderr, "warmcal report: %s\n", warmcal_error_format(&err, msg, sizeof msg));
            return -1;
        }
        d->n_traces = i + 1;
        if (!d->traces[i]->complete)
            fprintf(stderr, "warning: %s: writer did not finish (complete = 0); showing the "
                            "phases it holds\n", paths[i]);
        if (i > 0 && strcmp(d->traces[i]->model, d->traces[0]->model) != 0)
            fprintf(stderr, "warning: %s: model '%s' differs from %s's '%s'\n", paths[i],
                    d->traces[i]->model, paths[0], d->traces[0]->model);
    }
    warmcal_progress_clear(progress);
    if (table_path) {
        d->table_path = table_path;
        warmcal_error_clear(&err);
        if (warmcal_table_read(table_path, &d->table, &err) != WARMCAL_OK) {
            fprintf(stderr, "warmcal report: %s\n", warmcal_error_format(&err, msg, sizeof msg));
            return -1;
        }
        if (n_paths && strcmp(d->traces[0]->model, d->table->config.model) != 0)
            fprintf(stderr, "warning: %s: model '%s' differs from the traces' '%s'\n", table_path,
                    d->table->config.model, d->traces[0]->model);
    }
    for (size_t t = 0; t < d->n_traces; t++) {
        if (add_rank(d, d->traces[t]->rank))
            return -1;
        for (size_t i = 0; i < d->traces[t]->n_phases; i++)
            if (add_label(d, d->traces[t]->phases[i].label))
                return -1;
    }
    for (size_t i = 0; d->table && i < d->table->n_estimates; i++) {
        const warmcal_estimate *e = &d->table->estimates[i];
        if ((e->rank != WARMCAL_TABLE_ANY_RANK && add_rank(d, e->rank)) || add_label(d, e->label))
            return -1;
    }
    if (d->n_labels == 0) {
        fprintf(stderr, "warmcal report: %s: no phases to show (and no table estimates)\n",
                paths[0]);
        return -1;
    }
    qsort(d->ranks, d->n_ranks, sizeof *d->ranks, cmp_int);
    return summarise(d);
}

void report_data_free(report_data *d)
{
    for (size_t i = 0; i < d->n_traces; i++)
        warmcal_trace_free(d->traces[i]);
    free(d->traces);
    warmcal_table_free(d->table);
    free(d->ranks);
    free(d->labels);
    free(d->summary);
    memset(d, 0, sizeof *d);
}

/* --- data files --------------------------------------------------------------- */

static FILE *open_data(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    if (!path) {
        out_of_memory();
        return NULL;
    }
    snprintf(path, n, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f)
        fprintf(stderr, "warmcal report: %s: %s\n", path, strerror(errno));
    free(path);
    return f;
}

static int close_data(FILE *f, const char *name)
{
    int bad = ferror(f);
    if (fclose(f) != 0 || bad) {
        fprintf(stderr, "warmcal report: cannot write the working file %s\n", name);
        return -1;
    }
    return 0;
}

typedef struct {
    const warmcal_phase *p;
    uint64_t need;
} phase_ref;

static int cmp_phase_ref(const void *a, const void *b)
{
    const phase_ref *x = a, *y = b;
    if (x->p->tokens != y->p->tokens)
        return (x->p->tokens > y->p->tokens) - (x->p->tokens < y->p->tokens);
    return (x->need > y->need) - (x->need < y->need);
}

/* The phases of rank with label (NULL: any label) whose outcome matches
 * (ok, or failed: oom and aborted), sorted by tokens. */
static phase_ref *collect(const report_data *d, int rank, const char *label, int failed,
                          size_t *n)
{
    size_t total = 0;
    for (size_t t = 0; t < d->n_traces; t++)
        total += d->traces[t]->n_phases;
    phase_ref *refs = malloc((total ? total : 1) * sizeof *refs);
    *n = 0;
    if (!refs)
        return NULL;
    for (size_t t = 0; t < d->n_traces; t++) {
        if (d->traces[t]->rank != rank)
            continue;
        for (size_t i = 0; i < d->traces[t]->n_phases; i++) {
            const warmcal_phase *p = &d->traces[t]->phases[i];
            if (label && strcmp(p->label, label) != 0)
                continue;
            if (failed >= 0 && (p->outcome != WARMCAL_OUTCOME_OK) != failed)
                continue;
            refs[*n].p = p;
            refs[*n].need = warmcal_phase_need(p);
            (*n)++;
        }
    }
    qsort(refs, *n, sizeof *refs, cmp_phase_ref);
    return refs;
}

static void add_word(report_buf *b, size_t index)
{
    report_buf_printf(b, "%s%zu", b->len ? " " : "", index);
}

static void widen(uint64_t *lo, uint64_t *hi, uint64_t tokens)
{
    if (*lo == 0 || tokens < *lo)
        *lo = tokens;
    if (tokens > *hi)
        *hi = tokens;
}

/* "677.0 MiB" for a failure, "251.3, 255.2 MiB" for a cluster of them
 * (each with its unit when the units differ); "" when no size is known
 * (an aborted pass). Short: the text stands beside the markers. */
static void failure_text(char *text, size_t len, const phase_ref *refs, size_t first, size_t end)
{
    size_t used = 0;
    int gib = -1, same_unit = 1;
    for (size_t j = first; j < end; j++) {
        double asked = (double)refs[j].p->failed_alloc_bytes;
        if (asked <= 0)
            continue;
        if (gib >= 0 && gib != (asked >= GiB))
            same_unit = 0;
        gib = asked >= GiB;
    }
    text[0] = '\0';
    for (size_t j = first; j < end && used < len; j++) {
        double asked = (double)refs[j].p->failed_alloc_bytes;
        if (asked <= 0)
            continue;
        int n = snprintf(text + used, len - used, "%s%.1f%s%s", used ? ", " : "",
                         asked / (asked >= GiB ? GiB : MiB), same_unit ? "" : " ",
                         same_unit ? "" : asked >= GiB ? "GiB" : "MiB");
        used += n > 0 ? (size_t)n : 0;
    }
    if (used && same_unit && used < len)
        snprintf(text + used, len - used, " %s", gib ? "GiB" : "MiB");
}

static int write_failures(const report_data *d, size_t k, size_t i, int outcome,
                          const char *dir, report_need_panel *p, report_buf *series)
{
    size_t n = 0;
    phase_ref *all = collect(d, d->ranks[i], d->labels[k], 1, &n);
    if (!all)
        return out_of_memory();
    phase_ref *refs = all;
    size_t kept = 0;
    for (size_t j = 0; j < n; j++)
        if (all[j].p->outcome == outcome)
            refs[kept++] = all[j];
    n = kept;
    if (n == 0) {
        free(all);
        return 0;
    }
    char name[64];
    snprintf(name, sizeof name, "%s-L%zu-R%zu.dat", warmcal_outcome_name(outcome), k + 1, i + 1);
    FILE *f = open_data(dir, name);
    if (!f) {
        free(all);
        return -1;
    }
    fprintf(f, "# rank %d, label %s: phases that %s\n"
               "# tokens  need_bytes(reached before it ended)  \"size asked, one text per cluster\"\n",
            d->ranks[i], d->labels[k],
            outcome == WARMCAL_OUTCOME_OOM ? "ran out of memory" : "never ended (aborted)");
    for (size_t j = 0; j < n;) {
        size_t end = j + 1;
        while (end < n && (double)refs[end].p->tokens < LABEL_CLUSTER_RATIO * (double)refs[j].p->tokens)
            end++;
        char text[160];
        failure_text(text, sizeof text, refs, j, end);
        for (size_t m = j; m < end; m++) {
            /* the cluster's text goes with its highest point, where the
             * label is placed */
            fprintf(f, "%llu %llu \"%s\"\n", (unsigned long long)refs[m].p->tokens,
                    (unsigned long long)refs[m].need, m + 1 == end ? text : "");
            p->y_max = fmax(p->y_max, (double)refs[m].need);
            widen(&p->tokens_min, &p->tokens_max, refs[m].p->tokens);
        }
        j = end;
    }
    free(all);
    add_word(series, i + 1);
    return close_data(f, name);
}

static int write_need(const report_data *d, size_t k, size_t i, const char *dir,
                      report_need_panel *p, report_buf *series)
{
    size_t n = 0;
    phase_ref *refs = collect(d, d->ranks[i], d->labels[k], 0, &n);
    if (!refs)
        return out_of_memory();
    if (n == 0) {
        free(refs);
        return 0;
    }
    char name[64];
    snprintf(name, sizeof name, "need-L%zu-R%zu.dat", k + 1, i + 1);
    FILE *f = open_data(dir, name);
    if (!f) {
        free(refs);
        return -1;
    }
    fprintf(f, "# rank %d, label %s: completed phases\n# tokens  need_bytes\n", d->ranks[i],
            d->labels[k]);
    for (size_t j = 0; j < n; j++) {
        fprintf(f, "%llu %llu\n", (unsigned long long)refs[j].p->tokens,
                (unsigned long long)refs[j].need);
        p->y_max = fmax(p->y_max, (double)refs[j].need);
        widen(&p->tokens_min, &p->tokens_max, refs[j].p->tokens);
    }
    free(refs);
    add_word(series, i + 1);
    return close_data(f, name);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* An estimate over its calibrated range: the model alone and the published
 * bytes (margin included), at geometrically spaced token counts plus the
 * envelope's knots, so corners are drawn where they are. */
static int write_band(const warmcal_table *t, const warmcal_estimate *e, const char *dir,
                      const char *name, report_need_panel *p)
{
    size_t cap = BAND_SAMPLES + 2 + e->n_knots, n = 0;
    uint64_t *tokens = malloc(cap * sizeof *tokens);
    if (!tokens)
        return out_of_memory();
    double lo = (double)e->tokens_min, hi = (double)e->tokens_max;
    for (size_t s = 0; s <= BAND_SAMPLES; s++) {
        double x = lo * pow(hi / lo, (double)s / BAND_SAMPLES);
        uint64_t v = (uint64_t)llround(x);
        tokens[n++] = v < e->tokens_min ? e->tokens_min : v > e->tokens_max ? e->tokens_max : v;
    }
    tokens[n++] = e->tokens_max;
    for (size_t j = 0; e->form == WARMCAL_FORM_ENVELOPE && j < e->n_knots; j++)
        if (e->knot_tokens[j] >= e->tokens_min && e->knot_tokens[j] <= e->tokens_max)
            tokens[n++] = e->knot_tokens[j];
    qsort(tokens, n, sizeof *tokens, cmp_u64);
    FILE *f = open_data(dir, name);
    if (!f) {
        free(tokens);
        return -1;
    }
    fprintf(f, "# rank %d, label %s: %s estimate over its calibrated range %llu..%llu tokens\n"
               "# tokens  model_bytes(without margin)  published_bytes(with margin)\n",
            e->rank, e->label, warmcal_form_name(e->form), (unsigned long long)e->tokens_min,
            (unsigned long long)e->tokens_max);
    int rc = 0;
    for (size_t j = 0; j < n && rc == 0; j++) {
        if (j > 0 && tokens[j] == tokens[j - 1])
            continue;
        double model = 0;
        uint64_t published = 0;
        warmcal_error err = {0};
        if (warmcal_estimate_model(e, tokens[j], &model, &err) != WARMCAL_OK ||
            warmcal_estimate_eval(e, t->above_range, tokens[j], &published, &err) != WARMCAL_OK) {
            char msg[600];
            fprintf(stderr, "warmcal report: rank %d, label %s: %s\n", e->rank, e->label,
                    warmcal_error_format(&err, msg, sizeof msg));
            rc = -1;
            break;
        }
        fprintf(f, "%llu %.0f %llu\n", (unsigned long long)tokens[j], fmax(model, 0),
                (unsigned long long)published);
        p->y_max = fmax(p->y_max, (double)published);
    }
    widen(&p->tokens_min, &p->tokens_max, e->tokens_min);
    widen(&p->tokens_min, &p->tokens_max, e->tokens_max);
    free(tokens);
    if (close_data(f, name))
        rc = -1;
    return rc;
}

/* Above a rank's own calibrated range, when the any-rank entry reaches
 * further, the gate serves the rank from that entry, never below the
 * rank's own estimate at its top (warmcal_table_estimate, the gate's rule):
 * what the rank is held to from own->tokens_max to any->tokens_max, so the
 * line starts at the top of the rank's own band. */
static int write_continuation(const warmcal_table *t, int rank, const warmcal_estimate *own,
                              const warmcal_estimate *any, const char *dir, const char *name,
                              report_need_panel *p)
{
    size_t cap = BAND_SAMPLES + 2 + any->n_knots, n = 0;
    uint64_t *tokens = malloc(cap * sizeof *tokens);
    if (!tokens)
        return out_of_memory();
    double lo = (double)own->tokens_max, hi = (double)any->tokens_max;
    for (size_t s = 0; s <= BAND_SAMPLES; s++) {
        uint64_t v = (uint64_t)llround(lo * pow(hi / lo, (double)s / BAND_SAMPLES));
        tokens[n++] = v < own->tokens_max ? own->tokens_max : v > any->tokens_max ? any->tokens_max : v;
    }
    tokens[n++] = any->tokens_max;
    for (size_t j = 0; any->form == WARMCAL_FORM_ENVELOPE && j < any->n_knots; j++)
        if (any->knot_tokens[j] > own->tokens_max && any->knot_tokens[j] <= any->tokens_max)
            tokens[n++] = any->knot_tokens[j];
    qsort(tokens, n, sizeof *tokens, cmp_u64);
    FILE *f = open_data(dir, name);
    if (!f) {
        free(tokens);
        return -1;
    }
    fprintf(f, "# rank %d, label %s: above its own calibrated range (to %llu tokens), the gate's\n"
               "# estimate from the any-rank entry (to %llu tokens), never below the rank's own\n"
               "# estimate at its top\n# tokens  published_bytes\n",
            rank, own->label, (unsigned long long)own->tokens_max,
            (unsigned long long)any->tokens_max);
    int rc = 0;
    for (size_t j = 0; j < n; j++) {
        if (j > 0 && tokens[j] == tokens[j - 1])
            continue;
        uint64_t published = 0;
        warmcal_error err = {0};
        if (warmcal_table_estimate(t, rank, own->label, tokens[j], 1, &published, &err) !=
            WARMCAL_OK) {
            char msg[600];
            fprintf(stderr, "warmcal report: rank %d, label %s: %s\n", rank, own->label,
                    warmcal_error_format(&err, msg, sizeof msg));
            rc = -1;
            break;
        }
        fprintf(f, "%llu %llu\n", (unsigned long long)tokens[j], (unsigned long long)published);
        p->y_max = fmax(p->y_max, (double)published);
    }
    free(tokens);
    if (close_data(f, name))
        rc = -1;
    return rc;
}

static const warmcal_estimate *own_entry(const warmcal_table *t, int rank, const char *label)
{
    for (size_t i = 0; t && i < t->n_estimates; i++)
        if (t->estimates[i].rank == rank && strcmp(t->estimates[i].label, label) == 0)
            return &t->estimates[i];
    return NULL;
}

static char *take(report_buf *b)
{
    if (b->failed)
        return NULL;
    if (!b->text)
        return strdup("");
    char *text = b->text;
    b->text = NULL;
    return text;
}

int report_write_need_data(const report_data *d, size_t k, const char *dir, report_need_panel *p)
{
    memset(p, 0, sizeof *p);
    report_buf need = {0}, band = {0}, cont = {0}, oom = {0}, aborted = {0};
    const warmcal_estimate *any = own_entry(d->table, WARMCAL_TABLE_ANY_RANK, d->labels[k]);
    int rc = 0;
    for (size_t i = 0; i < d->n_ranks && rc == 0; i++) {
        rc = write_need(d, k, i, dir, p, &need);
        if (rc == 0)
            rc = write_failures(d, k, i, WARMCAL_OUTCOME_OOM, dir, p, &oom);
        if (rc == 0)
            rc = write_failures(d, k, i, WARMCAL_OUTCOME_ABORTED, dir, p, &aborted);
        const warmcal_estimate *e = own_entry(d->table, d->ranks[i], d->labels[k]);
        if (rc == 0 && e) {
            char name[64];
            snprintf(name, sizeof name, "band-L%zu-R%zu.dat", k + 1, i + 1);
            rc = write_band(d->table, e, dir, name, p);
            add_word(&band, i + 1);
        }
        if (rc == 0 && e && any && any->tokens_max > e->tokens_max) {
            char name[64];
            snprintf(name, sizeof name, "cont-L%zu-R%zu.dat", k + 1, i + 1);
            rc = write_continuation(d->table, d->ranks[i], e, any, dir, name, p);
            add_word(&cont, i + 1);
        }
    }
    if (rc == 0 && any) {
        char name[64];
        snprintf(name, sizeof name, "band-L%zu-any.dat", k + 1);
        rc = write_band(d->table, any, dir, name, p);
        p->have_any = 1;
    }
    if (rc == 0 && d->per_token)
        p->y_max = fmax(p->y_max, (double)d->per_token * (double)p->tokens_max);
    p->need_series = take(&need);
    p->band_series = take(&band);
    p->cont_series = take(&cont);
    p->oom_series = take(&oom);
    p->aborted_series = take(&aborted);
    report_buf_free(&need);
    report_buf_free(&band);
    report_buf_free(&cont);
    report_buf_free(&oom);
    report_buf_free(&aborted);
    if (rc == 0 && (!p->need_series || !p->band_series || !p->cont_series || !p->oom_series ||
                    !p->aborted_series))
        rc = out_of_memory();
    return rc;
}

void report_need_panel_free(report_need_panel *p)
{
    free(p->need_series);
    free(p->band_series);
    free(p->cont_series);
    free(p->oom_series);
    free(p->aborted_series);
    memset(p, 0, sizeof *p);
}

int report_write_free_data(const report_data *d, const char *dir, report_free_panel *p)
{
    memset(p, 0, sizeof *p);
    report_buf series = {0}, mins = {0}, ooms = {0};
    int rc = 0;
    for (size_t i = 0; i < d->n_ranks && rc == 0; i++) {
        size_t n = 0;
        phase_ref *refs = collect(d, d->ranks[i], NULL, -1, &n);
        if (!refs) {
            rc = out_of_memory();
            break;
        }
        uint64_t lowest = WARMCAL_FREE_UNKNOWN;
        size_t sampled = 0, oom = 0;
        for (size_t j = 0; j < n; j++)
            if (refs[j].p->device_free_begin != WARMCAL_FREE_UNKNOWN) {
                sampled++;
                oom += refs[j].p->outcome == WARMCAL_OUTCOME_OOM;
                if (refs[j].p->device_free_begin < lowest)
                    lowest = refs[j].p->device_free_begin;
            }
        if (sampled) {
            char name[64];
            snprintf(name, sizeof name, "free-R%zu.dat", i + 1);
            FILE *f = open_data(dir, name);
            if (!f) {
                free(refs);
                rc = -1;
                break;
            }
            fprintf(f, "# rank %d: device free memory at each phase's begin, every label\n"
                       "# tokens  free_bytes  outcome\n", d->ranks[i]);
            for (size_t j = 0; j < n; j++) {
                const warmcal_phase *ph = refs[j].p;
                if (ph->device_free_begin == WARMCAL_FREE_UNKNOWN)
                    continue;
                fprintf(f, "%llu %llu %u\n", (unsigned long long)ph->tokens,
                        (unsigned long long)ph->device_free_begin, (unsigned)ph->outcome);
                p->y_max = fmax(p->y_max, (double)ph->device_free_begin);
                widen(&p->tokens_min, &p->tokens_max, ph->tokens);
            }
            rc = close_data(f, name);
            add_word(&series, i + 1);
            if (oom)
                add_word(&ooms, i + 1);
            report_buf_printf(&mins, "%s%llu", mins.len ? " " : "", (unsigned long long)lowest);
        }
        free(refs);
    }
    p->free_series = take(&series);
    p->free_min = take(&mins);
    p->oom_series = take(&ooms);
    report_buf_free(&series);
    report_buf_free(&mins);
    report_buf_free(&ooms);
    if (rc == 0 && (!p->free_series || !p->free_min || !p->oom_series))
        rc = out_of_memory();
    return rc;
}

void report_free_panel_free(report_free_panel *p)
{
    free(p->free_series);
    free(p->free_min);
    free(p->oom_series);
    memset(p, 0, sizeof *p);
}
