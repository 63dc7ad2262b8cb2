/* The progress line's rules (common/include/warmcal/progress.h), without a
 * terminal: who decides it is shown, the pace of at most ten lines a second,
 * the text that rewrites and erases one line, and that a file name cannot
 * move the cursor. The terminal itself is tests/cli/test_cli.py's. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "warmcal/progress.h"
#include "warmcal/units.h"

static int failures;

#define CHECK(cond, ...)                                                                         \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                 \
            fprintf(stderr, __VA_ARGS__);                                                        \
            fputc('\n', stderr);                                                                 \
            failures++;                                                                          \
        }                                                                                        \
    } while (0)

/* What the progress line wrote, as one string; calls counted. */
typedef struct {
    char text[4096];
    size_t len;
    int calls;
} sink;

static void capture(void *user, const char *text, size_t len)
{
    sink *s = user;
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
        s->text[s->len] = '\0';
    }
    s->calls++;
}

static void reset(sink *s)
{
    memset(s, 0, sizeof *s);
}

static void sleep_past_interval(void)
{
    struct timespec t = {0, (long)(WARMCAL_PROGRESS_INTERVAL_NS + 20000000ull)};
    nanosleep(&t, NULL);
}

static void the_environment_overrides_the_terminal_test(void)
{
    CHECK(warmcal_progress_decide(NULL, 1) == 1, "unset, terminal: shown");
    CHECK(warmcal_progress_decide(NULL, 0) == 0, "unset, pipe: not shown");
    CHECK(warmcal_progress_decide("1", 0) == 1, "WARMCAL_PROGRESS=1 on a pipe: shown");
    CHECK(warmcal_progress_decide("0", 1) == 0, "WARMCAL_PROGRESS=0 on a terminal: not shown");
    CHECK(warmcal_progress_decide("", 1) == 1 && warmcal_progress_decide("", 0) == 0,
          "empty: the terminal decides");
    CHECK(warmcal_progress_decide("yes", 0) == 0 && warmcal_progress_decide("2", 1) == 1,
          "other values: the terminal decides");
}

static void a_disabled_line_writes_nothing(void)
{
    sink s;
    reset(&s);
    warmcal_progress p;
    warmcal_progress_init(&p, 0, capture, &s);
    warmcal_progress_show(&p, "reading %d", 1);
    warmcal_progress_step(&p, "traces", 3, 3, NULL);
    warmcal_progress_clear(&p);
    CHECK(s.calls == 0, "disabled: %d writes", s.calls);
    warmcal_progress_init(&p, 1, NULL, NULL); /* no writer: nothing to call */
    warmcal_progress_show(&p, "x");
    warmcal_progress_clear(&p);
}

static void lines_are_paced_and_the_last_step_always_drawn(void)
{
    sink s;
    reset(&s);
    warmcal_progress p;
    warmcal_progress_init(&p, 1, capture, &s);
    warmcal_progress_step(&p, "reading traces", 1, 1000, "a.h5");
    CHECK(s.calls == 1 && strcmp(s.text, "\rreading traces 1/1000: a.h5") == 0,
          "first step drawn at once: %d %s", s.calls, s.text);
    uint64_t start = warmcal_now_ns();
    for (size_t i = 2; i < 1000; i++)
        warmcal_progress_step(&p, "reading traces", i, 1000, "a.h5");
    /* at most one line per interval that passed (however slow the machine),
     * plus the first */
    uint64_t intervals = (warmcal_now_ns() - start) / WARMCAL_PROGRESS_INTERVAL_NS;
    CHECK((uint64_t)s.calls <= 1 + intervals + 1, "paced: %d lines for 998 steps in %llu intervals",
          s.calls, (unsigned long long)intervals);
    int before = s.calls;
    warmcal_progress_step(&p, "reading traces", 1000, 1000, NULL);
    CHECK(s.calls == before + 1, "the last step is drawn even when early");
    CHECK(strstr(s.text, "reading traces 1000/1000") != NULL, "last step's text: %s", s.text);
    sleep_past_interval();
    before = s.calls;
    warmcal_progress_show(&p, "fitting");
    CHECK(s.calls == before + 1, "a line after the interval is drawn");
}

static void a_shorter_line_covers_the_longer_one_and_clear_erases_it(void)
{
    sink s;
    reset(&s);
    warmcal_progress p;
    warmcal_progress_init(&p, 1, capture, &s);
    warmcal_progress_show(&p, "0123456789");
    sleep_past_interval();
    reset(&s);
    warmcal_progress_show(&p, "abc");
    CHECK(strcmp(s.text, "\rabc       \b\b\b\b\b\b\b") == 0, "7 spaces over the old tail, and back: %s",
          s.text);
    reset(&s);
    warmcal_progress_clear(&p);
    CHECK(strcmp(s.text, "\r   \r") == 0, "clear: blanks over the line, cursor at its start: '%s'",
          s.text);
    reset(&s);
    warmcal_progress_clear(&p);
    CHECK(s.calls == 0, "clearing twice writes once");
    warmcal_progress_show(&p, "again");
    CHECK(s.calls == 1, "after a clear the next line is drawn at once");
}

static void names_cannot_move_the_cursor_and_long_lines_fit_a_row(void)
{
    sink s;
    reset(&s);
    warmcal_progress p;
    warmcal_progress_init(&p, 1, capture, &s);
    warmcal_progress_step(&p, "reading", 1, 2, "evil\r\033[2Jname\n.h5");
    CHECK(strcmp(s.text, "\rreading 1/2: evil??[2Jname?.h5") == 0, "controls become '?': %s",
          s.text);
    char name[300];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    sleep_past_interval();
    reset(&s);
    warmcal_progress_step(&p, "reading", 2, 2, name);
    size_t shown = strlen(s.text + 1); /* longer than the line before: no padding */
    CHECK(shown == WARMCAL_PROGRESS_LINE_LEN, "a long line is cut to one row: %zu", shown);
    CHECK(strncmp(s.text + 1 + WARMCAL_PROGRESS_LINE_LEN - 3, "...", 3) == 0, "and ends in ...");
}

int main(void)
{
    the_environment_overrides_the_terminal_test();
    a_disabled_line_writes_nothing();
    lines_are_paced_and_the_last_step_always_drawn();
    a_shorter_line_covers_the_longer_one_and_clear_erases_it();
    names_cannot_move_the_cursor_and_long_lines_fit_a_row();
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
