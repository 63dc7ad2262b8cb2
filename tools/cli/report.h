/* report.h — the parts of `warmcal report` (report.c): what the traces and
 * the table say, reduced to series and summaries (report_data.c); the
 * gnuplot scripts made from the templates in tools/report and gnuplot run
 * on them (report_gnuplot.c); the self-contained HTML page
 * (report_html.c); the private working folder and the output put in place
 * only when complete (report_files.c). Functions that fail print one line
 * on stderr, prefixed "warmcal report: ", and return -1. */
#ifndef WARMCAL_CLI_REPORT_H
#define WARMCAL_CLI_REPORT_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "progress.h"

#include "warmcal/table.h"
#include "warmcal/trace.h"

#define REPORT_LABEL_LEN WARMCAL_LABEL_LEN

/* One row of the phase summary: a rank's phases of one label. */
typedef struct {
    int rank;
    char label[REPORT_LABEL_LEN];
    size_t phases, ok, oom, aborted;
    uint64_t max_need; /* largest need of an ok phase, 0 when none */
    uint64_t min_free; /* lowest device free memory at a phase's begin, or WARMCAL_FREE_UNKNOWN */
} report_summary;

typedef struct {
    const char *const *paths;      /* the traces as given */
    warmcal_trace **traces;
    size_t n_traces;
    const char *table_path;        /* NULL: no table */
    warmcal_table *table;
    uint64_t per_token;            /* the constant guess, bytes per token; 0: none */
    const char *per_token_text;    /* as given on the command line */
    int *ranks;                    /* every rank of the traces and the table, ascending */
    size_t n_ranks;
    char (*labels)[REPORT_LABEL_LEN]; /* in order of first appearance */
    size_t n_labels;
    report_summary *summary;       /* per (rank, label) that has phases, by rank then label */
    size_t n_summary;
} report_data;

/* Read the traces and the table (NULL: none) into d, showing "reading
 * traces i/n" on progress (erased before any message). Bad input: the file
 * named with what is wrong, -1. */
int report_data_load(report_data *d, const char *const *paths, size_t n_paths,
                     const char *table_path, warmcal_progress *progress);
void report_data_free(report_data *d);

/* Position of rank among d->ranks (0-based): what picks its colour and point type. */
size_t report_rank_index(const report_data *d, int rank);

/* What the gnuplot templates are filled with, per panel: the data files
 * written into the working folder and the word lists that name them. */
typedef struct {
    char *need_series;   /* rank indexes (1-based) with measured ok phases, "1 2 4" */
    char *band_series;   /* rank indexes with their own estimate for the label */
    char *cont_series;   /* rank indexes whose own range ends below the any-rank one's */
    char *oom_series;    /* rank indexes with phases that ran out of memory */
    char *aborted_series;/* rank indexes with phases that never ended */
    int have_any;        /* an any-rank estimate for the label */
    double y_max;        /* bytes: the largest value the panel shows */
    uint64_t tokens_min, tokens_max;
} report_need_panel;

typedef struct {
    char *free_series;   /* rank indexes with sampled free memory */
    char *free_min;      /* per word of free_series, the rank's lowest free bytes */
    char *oom_series;    /* rank indexes with sampled free memory and passes out of memory */
    double y_max;
    uint64_t tokens_min, tokens_max;
} report_free_panel;

/* Write the data files of label k's need panel (need-L<k>-R<i>.dat,
 * band-L<k>-R<i>.dat, cont-L<k>-R<i>.dat, band-L<k>-any.dat, oom-L<k>-R<i>.dat,
 * aborted-L<k>-R<i>.dat; k and i 1-based) into the
 * folder dir and describe them in p (its strings malloc'd: report_need_panel_free). */
int report_write_need_data(const report_data *d, size_t k, const char *dir, report_need_panel *p);
void report_need_panel_free(report_need_panel *p);
/* The free-memory panel's files (free-R<i>.dat), all labels together. */
int report_write_free_data(const report_data *d, const char *dir, report_free_panel *p);
void report_free_panel_free(report_free_panel *p);

/* A growing text buffer; on allocation failure it keeps failed = 1 and
 * ignores further appends. */
typedef struct {
    char *text;
    size_t len, cap;
    int failed;
} report_buf;

void report_buf_append(report_buf *b, const char *s, size_t n);
void report_buf_puts(report_buf *b, const char *s);
void report_buf_printf(report_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void report_buf_free(report_buf *b);

/* Bytes in the unit that suits a range whose largest value is max_bytes:
 * MiB below 2 GiB, else GiB. */
double report_unit(double max_bytes, const char **name);

/* --- gnuplot ---------------------------------------------------------------- */

/* The folder of the templates: $WARMCAL_REPORT_TEMPLATES, else the
 * installed ../share/warmcal/report beside the executable's folder, else
 * the source tree's tools/report (a build tree's). malloc'd, or NULL with a
 * message. */
char *report_template_dir(void);

/* The gnuplot to run: $WARMCAL_GNUPLOT, else `gnuplot` on PATH. malloc'd,
 * or NULL with a message saying to install gnuplot-nox. */
char *report_find_gnuplot(void);

typedef enum { REPORT_PNG, REPORT_SVG, REPORT_HTML } report_kind;

/* Write the gnuplot script for kind into dir/report.gp: for PNG and SVG
 * one picture, out.png or out.svg (every need panel above the free-memory
 * panel); for HTML one SVG per panel, panel-<n>.svg, n_panels of them. */
int report_write_script(const report_data *d, const char *template_dir, const char *dir,
                        report_kind kind, size_t *n_panels);

/* Run gnuplot (an absolute path: report_find_gnuplot) on dir/report.gp
 * with dir as its working folder and default settings (-d: no ~/.gnuplot).
 * A failure prints gnuplot's first error lines. When *stop becomes a signal
 * number (the caller's handler sets it), gnuplot and what it started get
 * that signal, then SIGKILL if they linger, and are reaped; -1 then, with
 * nothing printed. progress is erased before any message. Returns 0, or -1. */
int report_run_gnuplot(const char *gnuplot, const char *dir, const volatile sig_atomic_t *stop,
                       warmcal_progress *progress);

/* Fill a template: each @NAME@ replaced by its value from names/values (n
 * of them). An @NAME@ the caller does not know is an error naming the
 * template file. Returns the text malloc'd, or NULL. */
char *report_fill(const char *template_path, const char *const *names, const char *const *values,
                  size_t n);

/* Read a whole file (malloc'd, NUL-terminated; *len its size), or NULL with
 * errno set. */
char *report_read_file(const char *path, size_t *len);

/* --- HTML ------------------------------------------------------------------- */

/* The page: header, the panels' SVGs from dir inline, the tables; into b. */
int report_write_html(const report_data *d, const char *template_dir, const char *dir,
                      size_t n_panels, report_buf *b);

/* --- files ------------------------------------------------------------------ */

/* A private folder (mode 0700) under $TMPDIR or /tmp; malloc'd path, or NULL. */
char *report_make_workdir(void);
/* Remove the working folder and the files in it (it holds no folders). */
void report_remove_workdir(char *dir);

/* Check before any work that target can be written: nothing there, or a
 * regular file (a link to one counts as its target), and not one of the
 * inputs. Returns 0, or -1 with the reason printed. */
int report_check_target(const char *target, const char *const *inputs, size_t n_inputs);

/* Put data in place at target: a temporary file beside it, flushed, then
 * renamed over it. Nothing is left behind on failure. Returns 0;
 * REPORT_INSTALL_IO when writing failed (a full disk, an I/O error, a
 * permission lost since report_check_target); REPORT_INSTALL_TARGET when
 * target became something that cannot be a report (a folder, a device)
 * meanwhile. The reason is printed. */
#define REPORT_INSTALL_IO (-1)
#define REPORT_INSTALL_TARGET (-2)
int report_install(const char *target, const char *data, size_t len);

#endif
