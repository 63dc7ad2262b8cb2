/* warmcal/progress.h — one rewritten status line for long work ("reading
 * traces 3/40"), shown only where a person watches: stderr a terminal, or
 * WARMCAL_PROGRESS=1. This part decides, paces (about ten lines a second)
 * and formats; it never writes anything itself. The caller hands it a write
 * function, so the libraries that link warmcal-common keep their rule that
 * libraries never print: only a command line passes a function that writes
 * to stderr. */
#ifndef WARMCAL_PROGRESS_H
#define WARMCAL_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "warmcal/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes len bytes of terminal text (a carriage return, the line, spaces
 * over what the previous line left); its result is ignored, as a status
 * line that cannot be shown is no reason to stop the work. */
typedef void (*warmcal_progress_write_fn)(void *user, const char *text, size_t len);

#define WARMCAL_PROGRESS_LINE_LEN 100 /* longer lines are cut: one terminal row */
#define WARMCAL_PROGRESS_INTERVAL_NS 100000000ull /* at most ten lines a second */

typedef struct {
    int enabled;                 /* 0: every call does nothing */
    warmcal_progress_write_fn write;
    void *user;
    uint64_t last_ns;            /* when the line was last drawn, 0: never */
    size_t shown;                /* characters of the line now on screen, 0: none */
    char text[WARMCAL_PROGRESS_LINE_LEN + 1];
} warmcal_progress;

/* Whether progress is wanted: env_value is WARMCAL_PROGRESS's value (NULL
 * when unset): "0" never, "1" always; otherwise (unset, empty, anything
 * else) only when is_terminal. Pure, so that tests reach every case. */
WARMCAL_API int warmcal_progress_decide(const char *env_value, int is_terminal);

/* warmcal_progress_decide for file descriptor fd: reads WARMCAL_PROGRESS
 * and asks isatty(fd). Callers ask once, at start. */
WARMCAL_API int warmcal_progress_wanted(int fd);

/* Set p up (the caller owns it; nothing to free). enabled as decided above;
 * write may be NULL only when enabled is 0. */
WARMCAL_API void warmcal_progress_init(warmcal_progress *p, int enabled,
                                       warmcal_progress_write_fn write, void *user);

/* Show the line fmt... in place of the one shown, unless one was drawn less
 * than WARMCAL_PROGRESS_INTERVAL_NS ago (then the call does nothing, not
 * even the formatting). The first line is drawn at once. */
WARMCAL_API void warmcal_progress_show(warmcal_progress *p, const char *fmt, ...)
    WARMCAL_PRINTF(2, 3);

/* "WHAT DONE/TOTAL" (with ": NAME" when name is not NULL), paced as
 * warmcal_progress_show, except that the last step (done == total) is
 * always drawn, so the line never stops short of the end. */
WARMCAL_API void warmcal_progress_step(warmcal_progress *p, const char *what, size_t done,
                                       size_t total, const char *name);

/* Erase the line (before another message goes to the same terminal, and
 * at the end of the work); the next show draws it again at once. */
WARMCAL_API void warmcal_progress_clear(warmcal_progress *p);

#ifdef __cplusplus
}
#endif
#endif
