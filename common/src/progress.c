/* The status line of long work (see warmcal/progress.h): when to draw it,
 * at what pace, and the text that rewrites it in place. No output of its
 * own: the caller's write function carries the text. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/progress.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "warmcal/units.h"

int warmcal_progress_decide(const char *env_value, int is_terminal)
{
    if (env_value && strcmp(env_value, "0") == 0)
        return 0;
    if (env_value && strcmp(env_value, "1") == 0)
        return 1;
    return is_terminal != 0;
}

int warmcal_progress_wanted(int fd)
{
    return warmcal_progress_decide(getenv("WARMCAL_PROGRESS"), isatty(fd) == 1);
}

void warmcal_progress_init(warmcal_progress *p, int enabled, warmcal_progress_write_fn write,
                           void *user)
{
    memset(p, 0, sizeof *p);
    p->enabled = enabled && write;
    p->write = write;
    p->user = user;
}

/* "\r", the text, then spaces over the rest of the previous line and as
 * many backspaces, so the cursor ends after the text. Plain characters
 * only: no escape sequence a dumb terminal or a log viewer would show. */
static void draw(warmcal_progress *p)
{
    size_t len = strlen(p->text);
    size_t pad = p->shown > len ? p->shown - len : 0;
    char out[1 + 3 * WARMCAL_PROGRESS_LINE_LEN + 1];
    size_t n = 0;
    out[n++] = '\r';
    memcpy(out + n, p->text, len);
    n += len;
    memset(out + n, ' ', pad);
    n += pad;
    memset(out + n, '\b', pad);
    n += pad;
    p->write(p->user, out, n);
    p->shown = len;
    p->last_ns = warmcal_now_ns();
    if (!p->last_ns)
        p->last_ns = 1; /* 0 means "never drawn" */
}

/* Whether a line may be drawn now without passing ten a second. */
static int due(const warmcal_progress *p)
{
    return !p->last_ns || warmcal_now_ns() - p->last_ns >= WARMCAL_PROGRESS_INTERVAL_NS;
}

/* Terminal control characters in a name (a file's) would move the cursor:
 * they become '?'. A line longer than a row ends in "..." so it never wraps. */
static void tidy(char *text, int cut)
{
    for (char *c = text; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    if (cut)
        memcpy(text + WARMCAL_PROGRESS_LINE_LEN - 3, "...", 3);
}

static void show_v(warmcal_progress *p, int force, const char *fmt, va_list ap)
{
    if (!p->enabled || (!force && !due(p)))
        return;
    int n = vsnprintf(p->text, sizeof p->text, fmt, ap);
    if (n < 0)
        return;
    tidy(p->text, (size_t)n > WARMCAL_PROGRESS_LINE_LEN);
    draw(p);
}

void warmcal_progress_show(warmcal_progress *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    show_v(p, 0, fmt, ap);
    va_end(ap);
}

static void step_line(warmcal_progress *p, int force, const char *fmt, ...) WARMCAL_PRINTF(3, 4);
static void step_line(warmcal_progress *p, int force, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    show_v(p, force, fmt, ap);
    va_end(ap);
}

void warmcal_progress_step(warmcal_progress *p, const char *what, size_t done, size_t total,
                           const char *name)
{
    step_line(p, done == total, "%s %zu/%zu%s%s", what, done, total, name ? ": " : "",
              name ? name : "");
}

void warmcal_progress_clear(warmcal_progress *p)
{
    if (!p->enabled || !p->shown)
        return;
    char out[1 + 2 * WARMCAL_PROGRESS_LINE_LEN + 1];
    size_t n = 0;
    out[n++] = '\r';
    memset(out + n, ' ', p->shown);
    n += p->shown;
    out[n++] = '\r';
    p->write(p->user, out, n);
    p->shown = 0;
    p->last_ns = 0;
}
