/* The HTML page of `warmcal report`: tools/report/page.html filled with a
 * header naming the traces, the model and the table, gnuplot's SVGs pasted
 * inline, and the phase and estimate tables. One self-contained file: the
 * SVGs lose their XML prolog and namespace declarations (an HTML parser
 * needs none, and they are the only URLs in them) and their ids get a
 * prefix per picture, so that two pictures never share an id. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"
#include "warmcal/units.h"

static void put_escaped(report_buf *b, const char *text)
{
    for (const char *c = text; *c; c++) {
        switch (*c) {
        case '&': report_buf_puts(b, "&amp;"); break;
        case '<': report_buf_puts(b, "&lt;"); break;
        case '>': report_buf_puts(b, "&gt;"); break;
        case '"': report_buf_puts(b, "&quot;"); break;
        case '\'': report_buf_puts(b, "&#39;"); break;
        default: report_buf_append(b, c, 1);
        }
    }
}

static int starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Skip one attribute name="value" (or '...') at s, with the blanks before it. */
static const char *skip_attribute(const char *s)
{
    const char *q = strpbrk(s, "\"'");
    if (!q)
        return s + strlen(s);
    const char *end = strchr(q + 1, *q);
    return end ? end + 1 : s + strlen(s);
}

/* One gnuplot SVG made fit to sit inside an HTML page. */
static int paste_svg(report_buf *b, const char *svg, size_t figure)
{
    const char *p = strstr(svg, "<svg");
    if (!p) {
        fprintf(stderr, "warmcal report: gnuplot wrote no <svg> element for picture %zu\n", figure);
        return -1;
    }
    const char *tag_end = strchr(p, '>');
    if (!tag_end)
        return -1;
    char prefix[24];
    snprintf(prefix, sizeof prefix, "p%zu-", figure);
    /* the start tag without xmlns attributes */
    while (p < tag_end) {
        const char *blank = p;
        while (blank < tag_end && *blank != ' ' && *blank != '\n' && *blank != '\t')
            blank++;
        report_buf_append(b, p, (size_t)(blank - p));
        while (blank < tag_end && (*blank == ' ' || *blank == '\n' || *blank == '\t'))
            blank++;
        if (blank >= tag_end)
            break;
        if (starts_with(blank, "xmlns")) {
            p = skip_attribute(blank);
            continue;
        }
        report_buf_puts(b, " ");
        const char *attr_end = skip_attribute(blank);
        report_buf_append(b, blank, (size_t)(attr_end - blank));
        p = attr_end;
    }
    report_buf_puts(b, " role=\"img\">");
    /* the body: ids and references to them prefixed */
    for (p = tag_end + 1; *p;) {
        if (starts_with(p, "xlink:href=")) {
            p += strlen("xlink:");
            continue;
        }
        if ((starts_with(p, "id='") || starts_with(p, "id=\"")) && (p[-1] == ' ' || p[-1] == '\t')) {
            report_buf_append(b, p, 4);
            report_buf_puts(b, prefix);
            p += 4;
            continue;
        }
        if (starts_with(p, "href='#") || starts_with(p, "href=\"#") || starts_with(p, "url(#")) {
            size_t n = starts_with(p, "url(#") ? 5 : 7;
            report_buf_append(b, p, n);
            report_buf_puts(b, prefix);
            p += n;
            continue;
        }
        const char *next = p + 1;
        while (*next && *next != 'x' && *next != 'i' && *next != 'h' && *next != 'u')
            next++;
        report_buf_append(b, p, (size_t)(next - p));
        p = next;
    }
    report_buf_puts(b, "\n");
    return 0;
}

static void size_cell(report_buf *b, uint64_t bytes, int known)
{
    char text[32];
    report_buf_printf(b, "<td class=\"n\">%s</td>",
                      known ? warmcal_format_bytes(bytes, text, sizeof text) : "&ndash;");
}

static void header(report_buf *b, const report_data *d)
{
    const warmcal_trace *first = d->traces[0];
    char bytes[32], now[32];
    report_buf_puts(b, "<dl class=\"about\">\n<dt>model</dt><dd>");
    put_escaped(b, first->model);
    report_buf_printf(b, "</dd>\n<dt>GPU</dt><dd>");
    put_escaped(b, first->gpu_name);
    report_buf_printf(b, " (%s), world size %d, source %s</dd>\n",
                      warmcal_format_bytes(first->gpu_total_bytes, bytes, sizeof bytes),
                      first->world_size, first->source);
    report_buf_printf(b, "<dt>traces</dt><dd>");
    for (size_t i = 0; i < d->n_traces; i++) {
        report_buf_puts(b, i ? ",<br>" : "");
        report_buf_puts(b, "<code>");
        put_escaped(b, d->paths[i]);
        report_buf_printf(b, "</code> (rank %d, %zu phases%s)", d->traces[i]->rank,
                          d->traces[i]->n_phases,
                          d->traces[i]->complete ? "" : ", writer did not finish");
    }
    report_buf_puts(b, "</dd>\n<dt>table</dt><dd>");
    if (d->table) {
        report_buf_puts(b, "<code>");
        put_escaped(b, d->table_path);
        report_buf_puts(b, "</code>: ");
        put_escaped(b, d->table->config.model);
        report_buf_printf(b, ", tp %d, ", d->table->config.tp);
        put_escaped(b, d->table->config.gpu_name);
        report_buf_puts(b, "; created ");
        put_escaped(b, d->table->created);
        report_buf_printf(b, ", above the calibrated range: %s; SHA-256 <code>%.16s&hellip;</code>",
                          warmcal_above_policy_name(d->table->above_range), d->table->sha256);
    } else {
        report_buf_puts(b, "none given (no estimates drawn)");
    }
    report_buf_puts(b, "</dd>\n");
    if (d->per_token) {
        report_buf_printf(b, "<dt>constant guess</dt><dd>%s per token (<code>",
                          warmcal_format_bytes(d->per_token, bytes, sizeof bytes));
        put_escaped(b, d->per_token_text);
        report_buf_puts(b, "</code>), drawn for comparison</dd>\n");
    }
    report_buf_printf(b, "<dt>made</dt><dd>%s by warmcal %s</dd>\n</dl>\n",
                      warmcal_utc_now(now, sizeof now), WARMCAL_VERSION);
}

static void summary_table(report_buf *b, const report_data *d)
{
    report_buf_puts(b, "<table>\n<tr><th>rank</th><th>label</th><th>phases</th><th>ok</th>"
                       "<th>out of memory</th><th>aborted</th><th>largest need (ok)</th>"
                       "<th>lowest free at begin</th></tr>\n");
    for (size_t i = 0; i < d->n_summary; i++) {
        const report_summary *s = &d->summary[i];
        report_buf_printf(b, "<tr%s><td class=\"n\">%d</td><td>",
                          s->oom || s->aborted ? " class=\"failed\"" : "", s->rank);
        put_escaped(b, s->label);
        report_buf_printf(b, "</td><td class=\"n\">%zu</td><td class=\"n\">%zu</td>"
                             "<td class=\"n\">%zu</td><td class=\"n\">%zu</td>",
                          s->phases, s->ok, s->oom, s->aborted);
        size_cell(b, s->max_need, s->ok > 0);
        size_cell(b, s->min_free, s->min_free != WARMCAL_FREE_UNKNOWN);
        report_buf_puts(b, "</tr>\n");
    }
    report_buf_puts(b, "</table>\n");
}

static void estimates_table(report_buf *b, const report_data *d)
{
    if (!d->table) {
        report_buf_puts(b, "<p class=\"note\">No table was given (<code>--table</code>).</p>\n");
        return;
    }
    report_buf_puts(b, "<table>\n<tr><th>rank</th><th>label</th><th>model</th>"
                       "<th>margin</th><th>relative margin</th><th>calibrated tokens</th>"
                       "<th>points</th><th>estimate at the top of the range</th>"
                       "<th>failures in calibration</th></tr>\n");
    for (size_t i = 0; i < d->table->n_estimates; i++) {
        const warmcal_estimate *e = &d->table->estimates[i];
        char bytes[32], rank[16];
        if (e->rank == WARMCAL_TABLE_ANY_RANK)
            snprintf(rank, sizeof rank, "any");
        else
            snprintf(rank, sizeof rank, "%d", e->rank);
        report_buf_printf(b, "<tr><td class=\"n\">%s</td><td>", rank);
        put_escaped(b, e->label);
        report_buf_printf(b, "</td><td>%s</td>", warmcal_form_name(e->form));
        size_cell(b, (uint64_t)(e->margin.total + 0.5), 1);
        report_buf_printf(b, "<td class=\"n\">%.1f%%</td><td class=\"n\">%llu&ndash;%llu</td>"
                             "<td class=\"n\">%zu</td>",
                          100.0 * e->margin.relative, (unsigned long long)e->tokens_min,
                          (unsigned long long)e->tokens_max, e->fit.points);
        uint64_t top = 0;
        if (warmcal_estimate_eval(e, d->table->above_range, e->tokens_max, &top, NULL) == WARMCAL_OK)
            report_buf_printf(b, "<td class=\"n\">%s</td>",
                              warmcal_format_bytes(top, bytes, sizeof bytes));
        else
            report_buf_puts(b, "<td class=\"n\">&ndash;</td>");
        if (e->failures.oom)
            report_buf_printf(b, "<td>%zu out of memory, from %llu tokens</td>", e->failures.oom,
                              (unsigned long long)e->failures.oom_tokens_min);
        else if (e->failures.aborted)
            report_buf_printf(b, "<td>%zu aborted</td>", e->failures.aborted);
        else
            report_buf_puts(b, "<td>&ndash;</td>");
        report_buf_puts(b, "</tr>\n");
    }
    report_buf_puts(b, "</table>\n");
}

int report_write_html(const report_data *d, const char *template_dir, const char *work,
                      size_t n_panels, report_buf *page)
{
    report_buf title = {0}, head = {0}, figures = {0}, summary = {0}, estimates = {0};
    int rc = -1;
    report_buf_puts(&title, "warmcal report: ");
    put_escaped(&title, d->traces[0]->model);
    header(&head, d);
    for (size_t i = 0; i < n_panels; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/panel-%zu.svg", work, i + 1);
        char *svg = report_read_file(path, NULL);
        if (!svg) {
            fprintf(stderr, "warmcal report: gnuplot left no picture %zu (%s)\n", i + 1,
                    strerror(errno));
            goto done;
        }
        report_buf_puts(&figures, "<figure>\n");
        int bad = paste_svg(&figures, svg, i + 1);
        free(svg);
        if (bad)
            goto done;
        report_buf_puts(&figures, "</figure>\n");
    }
    summary_table(&summary, d);
    estimates_table(&estimates, d);
    if (title.failed || head.failed || figures.failed || summary.failed || estimates.failed) {
        fprintf(stderr, "warmcal report: out of memory\n");
        goto done;
    }
    const char *names[] = {"TITLE", "HEADER", "FIGURES", "SUMMARY", "ESTIMATES"};
    const char *values[] = {title.text, head.text, figures.text ? figures.text : "",
                            summary.text, estimates.text};
    size_t n = strlen(template_dir) + sizeof "/page.html";
    char *path = malloc(n);
    if (!path) {
        fprintf(stderr, "warmcal report: out of memory\n");
        goto done;
    }
    snprintf(path, n, "%s/page.html", template_dir);
    char *text = report_fill(path, names, values, sizeof names / sizeof names[0]);
    free(path);
    if (!text)
        goto done;
    report_buf_puts(page, text);
    free(text);
    rc = page->failed ? -1 : 0;
done:
    report_buf_free(&title);
    report_buf_free(&head);
    report_buf_free(&figures);
    report_buf_free(&summary);
    report_buf_free(&estimates);
    return rc;
}
