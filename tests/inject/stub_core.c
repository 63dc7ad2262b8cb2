/* The recording stand-in for the profiler's core (stub_core.h): behaves as
 * the core does at its interface (one phase at a time, WARMCAL_E_STATE when
 * inactive) and counts what it was asked. */
#include "stub_core.h"

#include "inject.h"

#include "warmcal/error.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int active, open, begins, ends, refused, inactive, all_warnings;
static int warnings[WARMCAL__WARN_KINDS];
static stub_phase last;
static char last_warning[512];

void stub_reset(int a)
{
    pthread_mutex_lock(&lock);
    active = a;
    begins = ends = refused = inactive = all_warnings = 0;
    memset(warnings, 0, sizeof warnings);
    memset(&last, 0, sizeof last);
    last_warning[0] = '\0';
    pthread_mutex_unlock(&lock);
}

#define GETTER(name, var)                    \
    int name(void)                           \
    {                                        \
        pthread_mutex_lock(&lock);           \
        int v = var;                         \
        pthread_mutex_unlock(&lock);         \
        return v;                            \
    }
GETTER(stub_begins, begins)
GETTER(stub_ends, ends)
GETTER(stub_refused, refused)
GETTER(stub_inactive, inactive)
GETTER(stub_phase_open, open)
GETTER(stub_all_warnings, all_warnings)

int stub_warnings(int kind)
{
    pthread_mutex_lock(&lock);
    int v = kind >= 0 && kind < WARMCAL__WARN_KINDS ? warnings[kind] : -1;
    pthread_mutex_unlock(&lock);
    return v;
}

stub_phase stub_last_phase(void)
{
    pthread_mutex_lock(&lock);
    stub_phase p = last;
    pthread_mutex_unlock(&lock);
    return p;
}

const char *stub_last_warning(void)
{
    return last_warning;
}

int warmcal__inject_active(void)
{
    pthread_mutex_lock(&lock);
    int v = active;
    pthread_mutex_unlock(&lock);
    return v;
}

int warmcal__inject_phase_begin(const char *label, uint64_t tokens, uint32_t batch)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    if (!active || open) {
        refused++;
        rc = WARMCAL_E_STATE;
    } else {
        open = 1;
        begins++;
        snprintf(last.label, sizeof last.label, "%s", label);
        last.tokens = tokens;
        last.batch = batch;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

int warmcal__inject_phase_end(void)
{
    int rc = 0;
    pthread_mutex_lock(&lock);
    if (!active || !open) {
        refused++;
        rc = WARMCAL_E_STATE;
    } else {
        open = 0;
        ends++;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void warmcal__inject_inactive_phase(const char *label, uint64_t tokens)
{
    (void)label;
    (void)tokens;
    pthread_mutex_lock(&lock);
    inactive++;
    pthread_mutex_unlock(&lock);
}

void warmcal__inject_disable(const char *fmt, ...)
{
    (void)fmt;
    pthread_mutex_lock(&lock);
    active = 0;
    pthread_mutex_unlock(&lock);
}

void warmcal__inject_warn_once(int kind, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&lock);
    if (kind >= 0 && kind < WARMCAL__WARN_KINDS)
        warnings[kind]++;
    all_warnings++;
    va_start(ap, fmt);
    vsnprintf(last_warning, sizeof last_warning, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&lock);
}
