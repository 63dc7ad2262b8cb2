/* The gnuplot side of `warmcal report`: the templates in tools/report
 * filled in (@NAME@ placeholders) into one script, and gnuplot run on it in
 * the private working folder, where the script names its data files and
 * outputs by plain relative names, so no path ever needs quoting inside
 * gnuplot. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "install_paths.h"
#include "report.h"
#include "warmcal/units.h"

#define TEMPLATE_PROBE "need.gp" /* a folder holding it holds the templates */
#define PANEL_WIDTH 1200
#define PANEL_HEIGHT 440
#define STDERR_FILE "gnuplot.err"
#define STDERR_LINES 6 /* lines of gnuplot's messages shown on failure */
/* Seconds gnuplot has to end on the stop signal passed on to it before it
 * gets SIGKILL: it catches SIGINT to end a plot, not itself. */
#define STOP_GRACE_S 2.0

/* --- finding things ------------------------------------------------------------ */

static int has_templates(const char *dir)
{
    char probe[PATH_MAX];
    struct stat st;
    int n = snprintf(probe, sizeof probe, "%s/%s", dir, TEMPLATE_PROBE);
    return n > 0 && (size_t)n < sizeof probe && stat(probe, &st) == 0 && S_ISREG(st.st_mode);
}

/* An installed warmcal keeps its templates in PREFIX/share/warmcal/report
 * and its command in PREFIX/bin: found from the executable, wherever
 * PREFIX is. It comes before the build tree's folder, which an installed
 * copy may no longer match. */
char *report_template_dir(void)
{
    const char *env = getenv("WARMCAL_REPORT_TEMPLATES");
    if (env && env[0]) {
        if (has_templates(env))
            return strdup(env);
        fprintf(stderr, "warmcal report: WARMCAL_REPORT_TEMPLATES=%s: no %s there (expected the "
                        "folder of the report templates, tools/report in warmcal's sources)\n",
                env, TEMPLATE_PROBE);
        return NULL;
    }
    static const char *const beside[] = {
        WARMCAL_INSTALL_TEMPLATES_REL,
#ifdef WARMCAL_REPORT_TEMPLATES_BUILD_DIR
        WARMCAL_REPORT_TEMPLATES_BUILD_DIR,
#endif
    };
    char *dir = warmcal_beside_exe_first(beside, sizeof beside / sizeof beside[0], has_templates);
    if (dir)
        return dir;
    fprintf(stderr, "warmcal report: cannot find the report templates (%s, ...): set "
                    "WARMCAL_REPORT_TEMPLATES to their folder (tools/report in warmcal's "
                    "sources)\n", TEMPLATE_PROBE);
    return NULL;
}

static int is_executable_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* name as the shell finds it: itself when it holds a slash, else the first
 * executable file of that name in $PATH. */
static char *search_path(const char *name)
{
    if (strchr(name, '/'))
        return is_executable_file(name) ? strdup(name) : NULL;
    const char *path = getenv("PATH");
    if (!path)
        path = "/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        char candidate[PATH_MAX];
        int n = snprintf(candidate, sizeof candidate, "%.*s/%s", (int)(len ? len : 1),
                         len ? path : ".", name);
        if (n > 0 && (size_t)n < sizeof candidate && is_executable_file(candidate))
            return strdup(candidate);
        path += len;
        if (*path == ':')
            path++;
    }
    return NULL;
}

/* path made absolute against the current folder: gnuplot runs in the
 * working folder, where a relative name (WARMCAL_GNUPLOT=bin/gnuplot, or
 * found through a PATH entry '.' or empty) names nothing. Not realpath: a
 * program reached through a link keeps the name it was called by. */
static char *absolute(char *path)
{
    if (!path || path[0] == '/')
        return path;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof cwd)) {
        fprintf(stderr, "warmcal report: gnuplot %s: cannot tell the current folder: %s\n", path,
                strerror(errno));
        free(path);
        return NULL;
    }
    const char *rest = strncmp(path, "./", 2) == 0 ? path + 2 : path;
    size_t n = strlen(cwd) + strlen(rest) + 2;
    char *full = malloc(n);
    if (full)
        snprintf(full, n, "%s/%s", cwd, rest);
    else
        fprintf(stderr, "warmcal report: out of memory\n");
    free(path);
    return full;
}

char *report_find_gnuplot(void)
{
    const char *env = getenv("WARMCAL_GNUPLOT");
    if (env && env[0]) {
        char *found = search_path(env);
        if (!found)
            fprintf(stderr, "warmcal report: WARMCAL_GNUPLOT=%s: no such executable (install "
                            "gnuplot, e.g. Debian's gnuplot-nox, or name it there)\n", env);
        return absolute(found);
    }
    char *found = search_path("gnuplot");
    if (!found)
        fprintf(stderr, "warmcal report: gnuplot not found on PATH: install it (Debian, "
                        "Ubuntu: apt-get install gnuplot-nox) or name it in WARMCAL_GNUPLOT\n");
    return absolute(found);
}

/* --- templates ------------------------------------------------------------------- */

char *report_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    report_buf b = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        report_buf_append(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad || b.failed) {
        report_buf_free(&b);
        errno = bad ? EIO : ENOMEM;
        return NULL;
    }
    if (!b.text)
        report_buf_append(&b, "", 0);
    if (b.failed) {
        errno = ENOMEM;
        return NULL;
    }
    if (len)
        *len = b.len;
    return b.text;
}

static int is_name_char(char c)
{
    return (c >= 'A' && c <= 'Z') || c == '_' || (c >= '0' && c <= '9');
}

char *report_fill(const char *template_path, const char *const *names, const char *const *values,
                  size_t n)
{
    char *text = report_read_file(template_path, NULL);
    if (!text) {
        fprintf(stderr, "warmcal report: template %s: %s\n", template_path, strerror(errno));
        return NULL;
    }
    report_buf out = {0};
    const char *p = text;
    while (*p) {
        const char *at = strchr(p, '@');
        if (!at) {
            report_buf_puts(&out, p);
            break;
        }
        report_buf_append(&out, p, (size_t)(at - p));
        const char *end = at + 1;
        while (is_name_char(*end))
            end++;
        if (*end != '@' || end == at + 1) {
            /* not a placeholder: an @ of the text itself */
            report_buf_append(&out, at, 1);
            p = at + 1;
            continue;
        }
        size_t len = (size_t)(end - at - 1);
        size_t i = 0;
        while (i < n && !(strlen(names[i]) == len && memcmp(names[i], at + 1, len) == 0))
            i++;
        if (i == n) {
            fprintf(stderr, "warmcal report: template %s: unknown placeholder @%.*s@ (this "
                            "warmcal fills in: ", template_path, (int)len, at + 1);
            for (size_t j = 0; j < n; j++)
                fprintf(stderr, "%s@%s@", j ? ", " : "", names[j]);
            fprintf(stderr, ")\n");
            free(text);
            report_buf_free(&out);
            return NULL;
        }
        report_buf_puts(&out, values[i]);
        p = end + 1;
    }
    free(text);
    if (out.failed || !out.text) {
        if (out.failed)
            fprintf(stderr, "warmcal report: out of memory\n");
        report_buf_free(&out);
        return out.failed ? NULL : strdup("");
    }
    return out.text;
}

/* text as a gnuplot string literal: single quotes, where only '' is special;
 * control characters, which no label should hold, become '?'. */
static char *gp_quote(const char *text)
{
    report_buf b = {0};
    report_buf_puts(&b, "'");
    for (const char *c = text; *c; c++) {
        if (*c == '\'')
            report_buf_puts(&b, "''");
        else if ((unsigned char)*c < 0x20 || *c == 0x7f)
            report_buf_puts(&b, "?");
        else
            report_buf_append(&b, c, 1);
    }
    report_buf_puts(&b, "'");
    if (b.failed) {
        report_buf_free(&b);
        return NULL;
    }
    return b.text;
}

static char *template_path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *path = malloc(n);
    if (path)
        snprintf(path, n, "%s/%s", dir, name);
    return path;
}

static char *fill_template(const char *dir, const char *name, const char *const *names,
                           const char *const *values, size_t n)
{
    char *path = template_path(dir, name);
    if (!path) {
        fprintf(stderr, "warmcal report: out of memory\n");
        return NULL;
    }
    char *text = report_fill(path, names, values, n);
    free(path);
    return text;
}

static int log_tokens(uint64_t lo, uint64_t hi)
{
    return lo > 0 && (double)hi / (double)lo > 64.0;
}

static char *need_panel(const report_data *d, const char *template_dir, const char *work, size_t k)
{
    report_need_panel p;
    if (report_write_need_data(d, k, work, &p)) {
        report_need_panel_free(&p);
        return NULL;
    }
    const char *unit_name;
    double unit = report_unit(p.y_max, &unit_name);
    char k_text[24], unit_text[32], per_token[32], have_any[4], log_text[4], title[96],
        unit_quoted[8];
    snprintf(k_text, sizeof k_text, "%zu", k + 1);
    snprintf(unit_text, sizeof unit_text, "%.0f", unit);
    snprintf(per_token, sizeof per_token, "%llu", (unsigned long long)d->per_token);
    snprintf(have_any, sizeof have_any, "%d", p.have_any);
    snprintf(log_text, sizeof log_text, "%d", log_tokens(p.tokens_min, p.tokens_max));
    snprintf(unit_quoted, sizeof unit_quoted, "'%s'", unit_name);
    char bytes[32];
    snprintf(title, sizeof title, "'constant %s/token, every pass'",
             warmcal_format_bytes(d->per_token, bytes, sizeof bytes));
    char *label = gp_quote(d->labels[k]);
    const char *names[] = {"K", "LABEL", "NEED_SERIES", "BAND_SERIES", "CONT_SERIES",
                           "OOM_SERIES", "ABORTED_SERIES", "HAVE_ANY", "PER_TOKEN",
                           "PER_TOKEN_TITLE", "UNIT_BYTES", "UNIT_NAME", "LOG_TOKENS"};
    const char *values[] = {k_text, label ? label : "", p.need_series, p.band_series,
                            p.cont_series, p.oom_series, p.aborted_series, have_any, per_token,
                            title, unit_text, unit_quoted, log_text};
    char *text = label ? fill_template(template_dir, "need.gp", names, values,
                                       sizeof names / sizeof names[0])
                       : NULL;
    free(label);
    report_need_panel_free(&p);
    return text;
}

/* The free-memory panel, or "" when no trace sampled free memory. */
static char *free_panel(const report_data *d, const char *template_dir, const char *work)
{
    report_free_panel p;
    if (report_write_free_data(d, work, &p)) {
        report_free_panel_free(&p);
        return NULL;
    }
    if (!p.free_series[0]) {
        report_free_panel_free(&p);
        return strdup("");
    }
    const char *unit_name;
    double unit = report_unit(p.y_max, &unit_name);
    char unit_text[32], log_text[4], unit_quoted[8];
    snprintf(unit_text, sizeof unit_text, "%.0f", unit);
    snprintf(log_text, sizeof log_text, "%d", log_tokens(p.tokens_min, p.tokens_max));
    snprintf(unit_quoted, sizeof unit_quoted, "'%s'", unit_name);
    const char *names[] = {"FREE_SERIES", "FREE_MIN", "FREE_OOM_SERIES", "UNIT_BYTES",
                           "UNIT_NAME", "LOG_TOKENS"};
    const char *values[] = {p.free_series, p.free_min, p.oom_series, unit_text, unit_quoted,
                            log_text};
    char *text = fill_template(template_dir, "free.gp", names, values, sizeof names / sizeof names[0]);
    report_free_panel_free(&p);
    return text;
}

static char *picture(const char *template_dir, const char *terminal, const char *output,
                     size_t rows, const char *panels)
{
    char width[16], height[16], rows_text[16], quoted[64];
    snprintf(width, sizeof width, "%d", PANEL_WIDTH);
    snprintf(height, sizeof height, "%zu", (size_t)PANEL_HEIGHT * rows);
    snprintf(rows_text, sizeof rows_text, "%zu", rows);
    snprintf(quoted, sizeof quoted, "'%s'", output);
    const char *names[] = {"TERMINAL", "WIDTH", "HEIGHT", "OUTPUT", "ROWS", "PANELS"};
    const char *values[] = {terminal, width, height, quoted, rows_text, panels};
    return fill_template(template_dir, "picture.gp", names, values, sizeof names / sizeof names[0]);
}

int report_write_script(const report_data *d, const char *template_dir, const char *work,
                        report_kind kind, size_t *n_panels)
{
    size_t n = d->n_labels + 1;
    char **panels = calloc(n, sizeof *panels);
    report_buf script = {0};
    int rc = -1;
    if (!panels) {
        fprintf(stderr, "warmcal report: out of memory\n");
        return -1;
    }
    /* what a clause with an empty iteration opens (and does not draw):
     * need.gp says why */
    char *none = template_path(work, "none.dat");
    FILE *f = none ? fopen(none, "w") : NULL;
    free(none);
    int written = f && fputs("# stands in for the file of a series a panel does not have\n"
                             "1 1 1 \"\"\n", f) != EOF;
    if (f && fclose(f) != 0)
        written = 0;
    if (!written) {
        fprintf(stderr, "warmcal report: cannot write in the working folder %s\n", work);
        goto done;
    }
    for (size_t k = 0; k < d->n_labels; k++)
        if (!(panels[k] = need_panel(d, template_dir, work, k)))
            goto done;
    if (!(panels[d->n_labels] = free_panel(d, template_dir, work)))
        goto done;
    if (!panels[d->n_labels][0])
        n--; /* no free memory sampled: no panel for it */

    /* RANK_NAMES: "0 1 2 3" */
    report_buf ranks = {0};
    for (size_t i = 0; i < d->n_ranks; i++)
        report_buf_printf(&ranks, "%s%d", i ? " " : "", d->ranks[i]);
    const char *names[] = {"RANK_NAMES"};
    const char *values[] = {ranks.text ? ranks.text : ""};
    char *style = ranks.failed ? NULL : fill_template(template_dir, "style.gp", names, values, 1);
    report_buf_free(&ranks);
    if (!style)
        goto done;
    report_buf_puts(&script, style);
    free(style);

    if (kind == REPORT_HTML) {
        for (size_t i = 0; i < n; i++) {
            char output[32];
            snprintf(output, sizeof output, "panel-%zu.svg", i + 1);
            char *pic = picture(template_dir, "svg", output, 1, panels[i]);
            if (!pic)
                goto done;
            report_buf_puts(&script, pic);
            free(pic);
        }
    } else {
        report_buf all = {0};
        for (size_t i = 0; i < n; i++)
            report_buf_puts(&all, panels[i]);
        char *pic = all.failed ? NULL
                               : picture(template_dir, kind == REPORT_PNG ? "pngcairo" : "svg",
                                         kind == REPORT_PNG ? "out.png" : "out.svg", n,
                                         all.text ? all.text : "");
        report_buf_free(&all);
        if (!pic)
            goto done;
        report_buf_puts(&script, pic);
        free(pic);
    }
    if (script.failed) {
        fprintf(stderr, "warmcal report: out of memory\n");
        goto done;
    }
    char *path = template_path(work, "report.gp");
    f = path ? fopen(path, "w") : NULL;
    written = f && fputs(script.text, f) != EOF;
    if (f && fclose(f) != 0)
        written = 0;
    if (!written) {
        fprintf(stderr, "warmcal report: cannot write the gnuplot script in %s: %s\n", work,
                strerror(errno));
        free(path);
        goto done;
    }
    free(path);
    *n_panels = n;
    rc = 0;
done:
    for (size_t i = 0; i < d->n_labels + 1; i++)
        free(panels[i]);
    free(panels);
    report_buf_free(&script);
    return rc;
}

/* --- running gnuplot ------------------------------------------------------------- */

/* Print up to STDERR_LINES non-empty lines of gnuplot's messages. */
static void show_messages(const char *work, const char *prefix)
{
    char *path = template_path(work, STDERR_FILE);
    char *text = path ? report_read_file(path, NULL) : NULL;
    free(path);
    if (!text)
        return;
    int shown = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        while (*line == ' ' || *line == '\t')
            line++;
        if (!*line)
            continue;
        if (shown == STDERR_LINES) {
            fprintf(stderr, "%s...\n", prefix);
            break;
        }
        fprintf(stderr, "%s%s\n", prefix, line);
        shown++;
    }
    free(text);
}

/* Only wakes the wait in report_run_gnuplot: its return is the news. */
static void on_child(int sig)
{
    (void)sig;
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + 1e-9 * (double)(now.tv_nsec - start->tv_nsec);
}

/* sig to gnuplot's process group (what it started goes too), or to gnuplot
 * alone when it could not get a group of its own. */
static void signal_gnuplot(pid_t pid, int sig)
{
    if (kill(-pid, sig) != 0)
        kill(pid, sig);
}

int report_run_gnuplot(const char *gnuplot, const char *work, const volatile sig_atomic_t *stop,
                       warmcal_progress *progress)
{
    /* SIGCHLD and the stop signals (those report.c catches) stay blocked
     * except inside the wait (pselect unblocks them atomically), so a stop
     * that arrives between a look at *stop and the wait still ends the
     * wait at once. */
    sigset_t blocked, unblocked;
    sigemptyset(&blocked);
    sigaddset(&blocked, SIGCHLD);
    sigaddset(&blocked, SIGINT);
    sigaddset(&blocked, SIGTERM);
    sigaddset(&blocked, SIGHUP);
    struct sigaction child_action, old_child_action;
    memset(&child_action, 0, sizeof child_action);
    child_action.sa_handler = on_child;
    sigemptyset(&child_action.sa_mask);
    sigaction(SIGCHLD, &child_action, &old_child_action);
    sigprocmask(SIG_BLOCK, &blocked, &unblocked);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        sigprocmask(SIG_SETMASK, &unblocked, NULL);
        sigaction(SIGCHLD, &old_child_action, NULL);
        warmcal_progress_clear(progress);
        fprintf(stderr, "warmcal report: cannot start gnuplot: %s\n", strerror(e));
        return -1;
    }
    if (pid == 0) {
        /* in a process group of its own, so that a stop reaches what it
         * started too; in the working folder, its messages to a file
         * there, nothing to read; -d: the user's ~/.gnuplot (and a
         * system-wide gnuplotrc) neither restyle nor break the pictures */
        sigprocmask(SIG_SETMASK, &unblocked, NULL);
        setpgid(0, 0);
        int err_fd = -1, null_fd = open("/dev/null", O_RDONLY);
        if (chdir(work) == 0)
            err_fd = open(STDERR_FILE, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (err_fd < 0 || null_fd < 0 || dup2(null_fd, 0) < 0 || dup2(err_fd, 1) < 0 ||
            dup2(err_fd, 2) < 0)
            _exit(126);
        execl(gnuplot, gnuplot, "-d", "report.gp", (char *)NULL);
        fprintf(stderr, "cannot run %s: %s\n", gnuplot, strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* here too: whichever of the two runs first */

    /* stopped: the same signal to gnuplot, then SIGKILL STOP_GRACE_S later */
    int status = 0, rc = 0, signalled = 0, killed = 0;
    struct timespec stopped_at = {0, 0};
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR) {
            int e = errno;
            warmcal_progress_clear(progress);
            fprintf(stderr, "warmcal report: waiting for gnuplot: %s\n", strerror(e));
            rc = -1;
            break;
        }
        if (*stop && !signalled) {
            signal_gnuplot(pid, *stop);
            clock_gettime(CLOCK_MONOTONIC, &stopped_at);
            signalled = 1;
        }
        if (signalled && !killed && seconds_since(&stopped_at) >= STOP_GRACE_S) {
            signal_gnuplot(pid, SIGKILL);
            killed = 1;
        }
        struct timespec tick = {0, 100 * 1000 * 1000};
        pselect(0, NULL, NULL, NULL, signalled && !killed ? &tick : NULL, &unblocked);
    }
    /* stopped: what gnuplot started may outlive it (a wrapper's child
     * that ignores SIGINT); the rest of its group goes too */
    if (signalled)
        kill(-pid, SIGKILL);
    sigprocmask(SIG_SETMASK, &unblocked, NULL);
    sigaction(SIGCHLD, &old_child_action, NULL);
    warmcal_progress_clear(progress);
    if (rc != 0 || *stop)
        return -1; /* stopped: the caller says so */
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        show_messages(work, "warning: gnuplot: ");
        return 0;
    }
    if (WIFSIGNALED(status))
        fprintf(stderr, "warmcal report: gnuplot (%s) was killed by signal %d; nothing was "
                        "written\n", gnuplot, WTERMSIG(status));
    else
        fprintf(stderr, "warmcal report: gnuplot (%s) failed with exit status %d; nothing was "
                        "written\n", gnuplot, WEXITSTATUS(status));
    show_messages(work, "gnuplot: ");
    return -1;
}
