/* `warmcal report TRACE... [--table TABLE] [--compare-constant B] -o FILE`:
 * pictures of what the warmup passes needed per rank and label, the
 * table's estimates with their margins, the passes that failed and each
 * rank's free memory, drawn by gnuplot from the templates in tools/report,
 * as one PNG or SVG, or a self-contained HTML page with the tables. This
 * file parses the command line and runs the steps; report.h names the
 * parts. */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli_args.h"
#include "commands.h"
#include "progress.h"
#include "report.h"
#include "warmcal/units.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: warmcal report TRACE... [--table TABLE] [--compare-constant BYTES]\n"
            "                      -o FILE.png|FILE.svg|FILE.html\n\n"
            "Draw, per label, the memory each warmup pass needed against its tokens on every\n"
            "rank; the table's estimates with their margins as bands over their calibrated\n"
            "ranges; the passes that ran out of memory (with the size asked for) or never\n"
            "ended; and each rank's device free memory, so a rank with less stands out.\n"
            "gnuplot draws them (Debian: gnuplot-nox).\n\n"
            "  -o, --output FILE          .png or .svg: one picture; .html: one self-contained\n"
            "                             page with the pictures and the tables inline. Written\n"
            "                             beside FILE and renamed over it once complete; an\n"
            "                             existing FILE that is not a regular file is refused\n"
            "  --table TABLE              an estimate table (warmcal fit) to draw\n"
            "  --compare-constant BYTES   also draw a constant guess of BYTES per token\n"
            "                             (131072, 128KiB, 0.5MiB)\n"
            "Each option once, as --option VALUE or --option=VALUE; after --, every argument\n"
            "is a trace.\n\n"
            "environment: WARMCAL_GNUPLOT (the gnuplot to run; default: gnuplot on PATH),\n"
            "WARMCAL_REPORT_TEMPLATES (a folder of edited templates; default: the installed\n"
            "share/warmcal/report, else the source tree's tools/report), TMPDIR.\n"
            "A progress line goes to stderr when it is a terminal (WARMCAL_PROGRESS=0|1).\n\n"
            "exit status: 0 the report was written; 1 drawing or writing it failed: gnuplot\n"
            "failed, a template could not be filled, or the working folder or the report\n"
            "could not be written (a full disk, an I/O error); 2 bad usage or bad input: an\n"
            "option, a trace or the table, no gnuplot or no templates found, or an -o FILE\n"
            "that cannot be a report (unknown extension, missing or unwritable folder, not\n"
            "a regular file, one of the inputs). On 1 and 2 nothing is written. Stopped by\n"
            "SIGINT, SIGTERM or SIGHUP (not ignored), it says whether the report was in\n"
            "place and ends by that signal.\n\n"
            "example:\n"
            "  warmcal report traces/rank-*.h5 --table table.json --compare-constant 128KiB \\\n"
            "      -o report.html\n");
}

static volatile sig_atomic_t stop_signal = 0;

static void on_stop(int sig)
{
    if (!stop_signal)
        stop_signal = sig;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n > m && strcasecmp(s + n - m, suffix) == 0;
}

/* "131072", "128KiB", "128KiB/token" -> bytes per token > 0, or 0 with a message. */
static uint64_t parse_per_token(const char *text)
{
    char value[64];
    size_t n = strlen(text);
    if (n >= strlen("/token") && strcmp(text + n - strlen("/token"), "/token") == 0)
        n -= strlen("/token");
    uint64_t bytes = 0;
    warmcal_error err = {0};
    if (n < sizeof value) {
        memcpy(value, text, n);
        value[n] = '\0';
        if (warmcal_parse_bytes(value, &bytes, "--compare-constant", &err) == WARMCAL_OK && bytes)
            return bytes;
    }
    fprintf(stderr, "warmcal report: --compare-constant: expected bytes per token above 0 "
                    "(131072, 128KiB), found '%s'\n", text);
    return 0;
}

/* The stop signals: each caught (when it was not ignored: under nohup a
 * hang-up must not end the report) so that the working folder and any
 * temporary file go before the signal takes its course. */
static const int stop_signals[] = {SIGINT, SIGTERM, SIGHUP};
#define N_STOP_SIGNALS (sizeof stop_signals / sizeof stop_signals[0])

typedef struct {
    struct sigaction old[N_STOP_SIGNALS];
    int caught[N_STOP_SIGNALS];
} stop_handlers;

static void catch_stops(stop_handlers *h)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop;
    sigemptyset(&sa.sa_mask);
    for (size_t s = 0; s < N_STOP_SIGNALS; s++) {
        h->caught[s] = sigaction(stop_signals[s], NULL, &h->old[s]) == 0 &&
                       h->old[s].sa_handler != SIG_IGN &&
                       sigaction(stop_signals[s], &sa, NULL) == 0;
    }
}

static void release_stops(stop_handlers *h)
{
    for (size_t s = 0; s < N_STOP_SIGNALS; s++)
        if (h->caught[s])
            sigaction(stop_signals[s], &h->old[s], NULL);
}

int warmcal_cmd_report(int argc, char **argv)
{
    const char *output = NULL, *table_path = NULL, *per_token_text = NULL;
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    size_t n_traces = 0;
    if (!inputs) {
        fprintf(stderr, "warmcal report: out of memory\n");
        return WARMCAL_EXIT_USAGE;
    }
    const cli_option opts[] = {{"--output", "-o", &output},
                           {"--table", NULL, &table_path},
                           {"--compare-constant", NULL, &per_token_text}};
    int status = WARMCAL_EXIT_USAGE, options_done = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (options_done || a[0] != '-' || !a[1]) {
            inputs[n_traces++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            options_done = 1; /* what follows are traces, even named -x */
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            free(inputs);
            return WARMCAL_EXIT_OK;
        }
        int taken = cli_take_option("report", argc, argv, &i, opts, sizeof opts / sizeof opts[0]);
        if (taken < 0)
            goto out;
        if (taken == 0) {
            fprintf(stderr, "warmcal report: unknown option '%s' (see 'warmcal report --help')\n", a);
            goto out;
        }
    }
    if (!output || n_traces == 0) {
        fprintf(stderr, "warmcal report: %s (see 'warmcal report --help')\n",
                !output ? "-o FILE is required" : "no traces given");
        goto out;
    }
    report_kind kind;
    if (ends_with(output, ".png"))
        kind = REPORT_PNG;
    else if (ends_with(output, ".svg"))
        kind = REPORT_SVG;
    else if (ends_with(output, ".html") || ends_with(output, ".htm"))
        kind = REPORT_HTML;
    else {
        fprintf(stderr, "warmcal report: -o %s: unknown kind of file: expected a name ending "
                        "in .png, .svg or .html\n", output);
        goto out;
    }
    uint64_t per_token = 0;
    if (per_token_text && !(per_token = parse_per_token(per_token_text)))
        goto out;
    /* the table is an input too: never written over */
    size_t n_inputs = n_traces;
    if (table_path)
        inputs[n_inputs++] = table_path;
    if (report_check_target(output, inputs, n_inputs))
        goto out;

    report_data d = {0};
    char *templates = NULL, *gnuplot = NULL, *work = NULL;
    report_buf page = {0};
    char *picture = NULL;
    size_t picture_len = 0, n_panels = 0;
    warmcal_progress progress;
    cli_progress_start(&progress, 1);
    stop_handlers stops;
    int installed = 0;
    if (report_data_load(&d, inputs, n_traces, table_path, &progress))
        goto cleanup;
    d.per_token = per_token;
    d.per_token_text = per_token_text;
    if (!(templates = report_template_dir()) || !(gnuplot = report_find_gnuplot()))
        goto cleanup;

    catch_stops(&stops);
    /* from here on, the input is good: a failure is in drawing or writing */
    status = WARMCAL_EXIT_NEGATIVE;
    if (!(work = report_make_workdir()) ||
        report_write_script(&d, templates, work, kind, &n_panels))
        goto restore;
    warmcal_progress_show(&progress, "warmcal report: drawing %zu picture%s with gnuplot",
                          kind == REPORT_HTML ? n_panels : (size_t)1,
                          kind == REPORT_HTML && n_panels != 1 ? "s" : "");
    if (stop_signal || report_run_gnuplot(gnuplot, work, &stop_signal, &progress) || stop_signal)
        goto restore;
    if (kind == REPORT_HTML) {
        if (report_write_html(&d, templates, work, n_panels, &page))
            goto restore;
        picture = page.text;
        picture_len = page.len;
        page.text = NULL;
    } else {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", work, kind == REPORT_PNG ? "out.png" : "out.svg");
        if (!(picture = report_read_file(path, &picture_len)) || picture_len == 0) {
            fprintf(stderr, "warmcal report: gnuplot wrote no picture; nothing was written\n");
            goto restore;
        }
    }
    if (stop_signal)
        goto restore;
    int install = report_install(output, picture, picture_len);
    if (install == REPORT_INSTALL_TARGET)
        status = WARMCAL_EXIT_USAGE; /* what -o names cannot be a report */
    if (install != 0)
        goto restore;
    installed = 1;
    printf("report %s: %zu traces, %zu ranks, %zu labels%s%s\n", output, d.n_traces, d.n_ranks,
           d.n_labels, d.table ? ", table " : "", d.table ? table_path : "");
    status = WARMCAL_EXIT_OK;
restore:
    warmcal_progress_clear(&progress);
    report_remove_workdir(work);
    work = NULL;
    release_stops(&stops);
    if (stop_signal) {
        /* a stop that came once the report was in place changes nothing
         * in it: said as it is, and the signal still ends the command */
        if (installed)
            fprintf(stderr, "warmcal report: interrupted after %s was written (it is "
                            "complete)\n", output);
        else
            fprintf(stderr, "warmcal report: interrupted; nothing was written\n");
        fflush(stdout);
        free(picture);
        report_buf_free(&page);
        free(templates);
        free(gnuplot);
        report_data_free(&d);
        free(inputs);
        raise(stop_signal);
        return installed ? WARMCAL_EXIT_OK : WARMCAL_EXIT_NEGATIVE;
    }
cleanup:
    warmcal_progress_clear(&progress);
    free(picture);
    report_buf_free(&page);
    free(templates);
    free(gnuplot);
    report_data_free(&d);
out:
    free(inputs);
    return status;
}
