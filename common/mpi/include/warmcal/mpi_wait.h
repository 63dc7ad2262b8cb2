/* warmcal/mpi_wait.h — the one bounded wait on a non-blocking MPI operation,
 * shared by the gate and warmcal-synth. Only parts that call MPI link it
 * (target warmcal-mpi-wait); the profiler never does. Internal: not
 * installed, not part of the gate's API. */
#ifndef WARMCAL_MPI_WAIT_H
#define WARMCAL_MPI_WAIT_H

#include <mpi.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The instant `seconds` from now on warmcal_now_ns's monotonic clock,
 * saturated at UINT64_MAX; now itself when seconds is not positive (NaN
 * included). */
uint64_t warmcal_deadline_after(double seconds);

/* Wait for *req until it completes or deadline_ns passes. Returns 1 when
 * MPI_Test reported it complete or failed (*mpi_rc, which may be NULL, says
 * which), 0 at the deadline with the request still pending: its buffers
 * then still belong to MPI and must stay allocated. The wait spins on
 * MPI_Test for its first millisecond (a decision normally completes in
 * microseconds), then naps between tests, each about 1% of the time waited
 * so far (50 us to 4 ms), so a rank that waits for a missing peer sleeps
 * instead of burning a core, and a slow collective is noticed soon after it
 * completes. */
int warmcal_mpi_wait(MPI_Request *req, uint64_t deadline_ns, int *mpi_rc);

#ifdef __cplusplus
}
#endif
#endif
