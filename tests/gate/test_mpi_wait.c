/* The one bounded wait (common/mpi, warmcal/mpi_wait.h) that the gate and
 * warmcal-synth poll their collectives with: it gives up at its deadline and
 * not before, sleeps while it waits, and returns as soon as a request
 * completes. Each rank waits on messages to itself (run under mpirun). */
#define _POSIX_C_SOURCE 200809L
#include "../check.h"
#include "warmcal/mpi_wait.h"
#include "warmcal/units.h"

#include <math.h>
#include <mpi.h>
#include <time.h>

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_s(void)
{
    return (double)warmcal_now_ns() / 1e9;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);

    /* a message nobody sends: the wait ends at the deadline, having slept */
    int never = 0;
    MPI_Request req;
    MPI_Irecv(&never, 1, MPI_INT, rank, 1, MPI_COMM_WORLD, &req);
    int mpi_rc = -1;
    double t0 = wall_s(), c0 = cpu_s();
    int done = warmcal_mpi_wait(&req, warmcal_deadline_after(3.0), &mpi_rc);
    double waited = wall_s() - t0, cpu = cpu_s() - c0;
    printf("rank %d: waited %.3f s for a message that never came, cpu %.3f s\n", rank, waited,
           cpu);
    CHECK(done == 0);
    CHECK(waited >= 3.0);  /* never gives up early */
    CHECK(waited < 30.0);  /* and ends (a hang would be killed by the runner) */
    CHECK(cpu < 1.0);      /* a spinning wait burns about as much CPU as it waits */
    MPI_Cancel(&req);
    MPI_Wait(&req, MPI_STATUS_IGNORE);

    /* a message that arrives: the wait returns at once, well before the deadline */
    int sent = 42, got = 0;
    MPI_Request send;
    MPI_Irecv(&got, 1, MPI_INT, rank, 2, MPI_COMM_WORLD, &req);
    MPI_Isend(&sent, 1, MPI_INT, rank, 2, MPI_COMM_WORLD, &send);
    t0 = wall_s();
    done = warmcal_mpi_wait(&req, warmcal_deadline_after(60.0), &mpi_rc);
    CHECK(done == 1 && mpi_rc == MPI_SUCCESS && got == 42);
    CHECK(wall_s() - t0 < 30.0);
    MPI_Wait(&send, MPI_STATUS_IGNORE);

    /* no time at all: a pending request is given up at once */
    MPI_Irecv(&never, 1, MPI_INT, rank, 3, MPI_COMM_WORLD, &req);
    CHECK(warmcal_mpi_wait(&req, warmcal_deadline_after(NAN), NULL) == 0);
    CHECK(warmcal_mpi_wait(&req, warmcal_deadline_after(-1.0), NULL) == 0);
    MPI_Cancel(&req);
    MPI_Wait(&req, MPI_STATUS_IGNORE);
    /* a deadline beyond the clock's range saturates instead of wrapping */
    CHECK(warmcal_deadline_after(1e300) == UINT64_MAX);
    CHECK(warmcal_deadline_after(1.0) > warmcal_now_ns());

    int failed = check_failures, any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (!failed)
        printf("ok mpi_wait (rank %d)\n", rank);
    MPI_Finalize();
    return any ? 1 : 0;
}
