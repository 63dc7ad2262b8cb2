/* Every host allocation the recorder and the simulated device make is made
 * to fail in turn (SQLite-style): each failure must surface as
 * WARMCAL_E_NOMEM from the call that needed the memory, never a crash, an
 * exit or a leak (ASan checks the last two). The allocator is wrapped at
 * link time (-Wl,--wrap), which reaches the static libraries too. */
#include "../alloc_fail.h"
#include "../check.h"
#include "warmcal/recorder.h"
#include "warmcal/simdev.h"

#include <stddef.h>


/* A workload touching every allocating path: recorder open, block table
 * growth, spare reuse, phase array growth, simulated-device bookkeeping. */
static int workload(int *saw_nomem)
{
    warmcal_error err = {0};
    warmcal_recorder *r = NULL;
    warmcal_simdev *d = NULL;
    int rc = warmcal_recorder_open(&r, NULL, &err);
    warmcal_simdev_options o = {.total_bytes = 1ull << 40};
    if (rc == WARMCAL_OK)
        rc = warmcal_simdev_open(&d, &o, r, &err);
    uint64_t addr[300];
    /* 70 phases outgrow the phase array's first 64 slots; one phase of 300
     * live blocks makes the block table expand its buckets */
    for (int phase = 0; phase < 70 && rc == WARMCAL_OK; phase++) {
        rc = warmcal_recorder_phase_begin(r, 0, "context", (uint64_t)phase + 1, 1, &err);
        int blocks = phase == 5 ? 300 : 3, n = 0;
        for (; n < blocks && rc == WARMCAL_OK; n++)
            rc = warmcal_simdev_alloc(d, 4096u * (unsigned)(n + 1), WARMCAL_MEM_DEVICE, &addr[n], &err);
        if (rc != WARMCAL_OK)
            n--; /* the failed allocation returned no address */
        for (int i = 0; i < n; i++) {
            int rc2 = warmcal_simdev_free(d, addr[i], &err);
            if (rc == WARMCAL_OK)
                rc = rc2;
        }
        if (rc == WARMCAL_OK)
            rc = warmcal_recorder_phase_end(r, 1, &err);
    }
    if (rc != WARMCAL_OK) {
        *saw_nomem = rc == WARMCAL_E_NOMEM && err.code == WARMCAL_E_NOMEM &&
                     strstr(err.text, "out of memory") != NULL;
        if (!*saw_nomem)
            fprintf(stderr, "  unexpected error %d: %s\n", rc, err.text);
    }
    warmcal_simdev_close(d);
    warmcal_recorder_close(r);
    return rc;
}

static void every_allocation_failure_is_reported_as_nomem(void)
{
    int saw = 0;
    alloc_fail_countdown = -1;
    CHECK(workload(&saw) == WARMCAL_OK);
    long tried = 0;
    for (long n = 0;; n++) {
        alloc_fail_countdown = n;
        alloc_fail_count = 0;
        saw = 0;
        int rc = workload(&saw);
        alloc_fail_countdown = -1;
        if (alloc_fail_count == 0) { /* the n-th allocation was never reached: all done */
            CHECK(rc == WARMCAL_OK);
            break;
        }
        tried++;
        if (rc != WARMCAL_OK)
            CHECK(saw);
    }
    fprintf(stderr, "  %ld allocation sites failed in turn\n", tried);
    CHECK(tried > 10);
}

int main(void)
{
    RUN(every_allocation_failure_is_reported_as_nomem);
    CHECK_DONE();
}
