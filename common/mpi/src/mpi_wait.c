/* The one bounded wait on a non-blocking MPI operation (see
 * warmcal/mpi_wait.h): spin briefly for the fast path, then sleep in naps
 * that grow with the time already waited, until the request completes or
 * the deadline passes. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/mpi_wait.h"
#include "warmcal/units.h"

#include <time.h>

/* Spinning this long keeps a normal decision in microseconds; an explicit
 * sched_yield here once doubled a small decision's cost, and Open MPI's
 * progress already yields the core to oversubscribed ranks. */
#define SPIN_NS UINT64_C(1000000)
/* Then each nap is about 1/NAP_SHARE of the time waited so far, within
 * these bounds. Open MPI progresses a non-blocking collective only inside
 * the ranks' MPI_Test calls, so a napping rank also holds up the others'
 * next step: naps in proportion keep that delay to about 1% of a wait
 * (a collective slowed to milliseconds by a loaded machine stays close to
 * its own time), while a rank whose peer never comes wakes up a few
 * hundred times a second at most, a fraction of a percent of a core. */
#define NAP_SHARE 100
#define SHORTEST_NAP_NS UINT64_C(50000)
#define LONGEST_NAP_NS UINT64_C(4000000)

uint64_t warmcal_deadline_after(double seconds)
{
    uint64_t now = warmcal_now_ns();
    if (!(seconds > 0))
        return now;
    double ns = seconds * 1e9;
    if (ns >= (double)(UINT64_MAX - now))
        return UINT64_MAX;
    return now + (uint64_t)ns;
}

int warmcal_mpi_wait(MPI_Request *req, uint64_t deadline_ns, int *mpi_rc)
{
    uint64_t start = warmcal_now_ns();
    for (;;) {
        int done = 0;
        int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
        if (mpi_rc)
            *mpi_rc = rc;
        if (done || rc != MPI_SUCCESS)
            return 1;
        uint64_t now = warmcal_now_ns();
        if (now >= deadline_ns)
            return 0;
        uint64_t waited = now - start;
        if (waited < SPIN_NS)
            continue;
        uint64_t nap = waited / NAP_SHARE, left = deadline_ns - now;
        nap = nap < SHORTEST_NAP_NS ? SHORTEST_NAP_NS : nap > LONGEST_NAP_NS ? LONGEST_NAP_NS : nap;
        if (nap > left)
            nap = left;
        struct timespec ts = {(time_t)(nap / 1000000000u), (long)(nap % 1000000000u)};
        nanosleep(&ts, NULL);
    }
}
