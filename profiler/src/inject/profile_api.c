/* The C phase API (warmcal/profile.h) and the phase ownership it shares
 * with the NVTX injection (inject.h): both open phases through
 * warmcal__phase_open, so "one phase at a time, closed by its opener" holds
 * whichever way a program marks its passes. */
#include "inject.h"
#include "phase_message.h"

#include "warmcal/error.h"
#include "warmcal/profile.h"

#include <pthread.h>

static pthread_mutex_t phase_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t open_token;  /* the open phase's token, 0 when none */
static uint64_t last_token;  /* tokens are never reused */
static uint64_t api_token;   /* the token of the phase warmcal_phase_begin opened, or 0 */
/* (all three under phase_lock) */

static int open_locked(const char *label, uint64_t tokens, uint32_t batch, uint64_t *token)
{
    *token = 0;
    if (open_token)
        return WARMCAL__PHASE_NESTED;
    int rc = warmcal__inject_phase_begin(label, tokens, batch);
    if (rc == 0)
        *token = open_token = ++last_token;
    return rc;
}

static int close_locked(uint64_t token)
{
    if (!token || token != open_token)
        return WARMCAL_E_STATE;
    open_token = 0; /* even when the core fails: that phase is over for us */
    return warmcal__inject_phase_end();
}

int warmcal__phase_open(const char *label, uint64_t tokens, uint32_t batch, uint64_t *token)
{
    pthread_mutex_lock(&phase_lock);
    int rc = open_locked(label, tokens, batch, token);
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

int warmcal_phase_begin(const char *label, uint64_t tokens, uint32_t batch)
{
    warmcal_phase_message m;
    if (warmcal__phase_check(label, tokens, batch, &m) != WARMCAL_MSG_PHASE)
        return WARMCAL_E_INVAL;
    if (!warmcal__inject_active())
        return WARMCAL_E_STATE;
    uint64_t token;
    pthread_mutex_lock(&phase_lock);
    int rc = open_locked(m.label, m.tokens, m.batch, &token);
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
