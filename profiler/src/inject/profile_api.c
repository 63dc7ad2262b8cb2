/* The C phase API (warmcal/profile.h) and the phase ownership it shares
 * with the NVTX injection (inject.h): both open phases through
 * warmcal__phase_open, so "one phase at a time, closed by its opener" holds
 * whichever way a program marks its passes. */
#include "inject.h"
#include "warmcal/phase_message.h"

#include "warmcal/error.h"
#include "warmcal/profile.h"

#include <pthread.h>
#include <stdio.h>

/* First in the library's lock order (inject.h): held across the core's
 * phase edge, which takes the core's own locks. */
static pthread_mutex_t phase_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t open_token;  /* the open phase's token, 0 when none */
static uint64_t last_token;  /* tokens are never reused */
static uint64_t api_token;   /* the token of the phase warmcal_phase_begin opened, or 0 */
static warmcal__open_phase open_phase; /* what the open phase is, for the nested warning */
/* (all under phase_lock) */

static int open_locked(const char *label, uint64_t tokens, uint32_t batch, int by_api, uint64_t *token,
                       warmcal__open_phase *held)
{
    *token = 0;
    if (open_token) {
        if (held)
            *held = open_phase;
        return WARMCAL__PHASE_NESTED;
    }
    int rc = warmcal__inject_phase_begin(label, tokens, batch);
    if (rc == 0) {
        *token = open_token = ++last_token;
        snprintf(open_phase.label, sizeof open_phase.label, "%s", label ? label : "");
        open_phase.tokens = tokens;
        open_phase.batch = batch;
        open_phase.by_api = by_api;
    }
    return rc;
}

static int close_locked(uint64_t token)
{
    if (!token || token != open_token)
        return WARMCAL_E_STATE;
    open_token = 0; /* even when the core fails: that phase is over for us */
    return warmcal__inject_phase_end();
}

int warmcal__phase_open(const char *label, uint64_t tokens, uint32_t batch, uint64_t *token,
                        warmcal__open_phase *held)
{
    *token = 0;
    /* before the lock: an inactive profiler (not yet initialised, disabled,
     * or a forked child) refuses without waiting for anyone */
    if (!warmcal__inject_active()) {
        warmcal__inject_inactive_phase(label, tokens);
        return WARMCAL_E_STATE;
    }
    pthread_mutex_lock(&phase_lock);
    int rc = open_locked(label, tokens, batch, 0, token, held);
    pthread_mutex_unlock(&phase_lock);
    return rc;
}

int warmcal__phase_close(uint64_t token)
{
    pthread_mutex_lock(&phase_lock);
    int rc = close_locked(token);
    pthread_mutex_unlock(&phase_lock);
    return rc;
}

/* The child of a fork: the phase belongs to the parent, and the lock may
 * have been held by a parent thread that does not exist here. */
void warmcal__phase_after_fork_child(void)
{
    pthread_mutex_init(&phase_lock, NULL);
    open_token = api_token = 0;
}

int warmcal_phase_begin(const char *label, uint64_t tokens, uint32_t batch)
{
    warmcal_phase_message m;
    if (warmcal_phase_check(label, tokens, batch, &m) != WARMCAL_MSG_PHASE)
        return WARMCAL_E_INVAL;
    if (!warmcal__inject_active()) {
        warmcal__inject_inactive_phase(m.label, m.tokens);
        return WARMCAL_E_STATE;
    }
    uint64_t token;
    pthread_mutex_lock(&phase_lock);
    int rc = open_locked(m.label, m.tokens, m.batch, 1, &token, NULL);
    if (rc == 0)
        api_token = token;
    pthread_mutex_unlock(&phase_lock);
    return rc == WARMCAL__PHASE_NESTED ? WARMCAL_E_STATE : rc;
}

int warmcal_phase_end(void)
{
    if (!warmcal__inject_active())
        return WARMCAL_E_STATE;
    pthread_mutex_lock(&phase_lock);
    int rc = close_locked(api_token);
    api_token = 0;
    pthread_mutex_unlock(&phase_lock);
    return rc;
}
