/* What the C example in docs/integration.md calls but does not define: a
 * logger and an engine, recorded here for doc_example_main.h to check. The
 * example itself is cut from the document when CMake configures, so the
 * guide cannot drift from what builds and runs. */
#include "warmcal/gate.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static char logged[4096];
static unsigned long long ran[8];
static int n_ran;

static void log_line(const char *level, const char *fmt, va_list ap)
{
    size_t used = strlen(logged);
    int k = snprintf(logged + used, sizeof logged - used, "%s: ", level);
    if (k > 0 && (size_t)k < sizeof logged - used)
        used += (size_t)k;
    vsnprintf(logged + used, sizeof logged - used, fmt, ap);
    used = strlen(logged);
    if (used + 1 < sizeof logged)
        strcat(logged, "\n");
}

static void log_error(const char *fmt, ...) WARMCAL_PRINTF(1, 2);
static void log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line("error", fmt, ap);
    va_end(ap);
}

static void log_warning(const char *fmt, ...) WARMCAL_PRINTF(1, 2);
static void log_warning(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_line("warning", fmt, ap);
    va_end(ap);
}

static int engine_batch_ok(unsigned batch)
{
    return batch <= 64;
}

static void engine_warmup_pass(const warmcal_shape *s)
{
    if (n_ran < 8)
        ran[n_ran++] = (unsigned long long)s->tokens;
}
