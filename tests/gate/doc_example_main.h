/* Runs the example's warmup() on every rank (under mpirun -np 4, with the
 * fake CUDA driver reporting 5 GiB free on a "test GPU") against a TP-4
 * table that needs 1 GiB + 1 MiB per context token: the 1024-token pass
 * runs, the 8192-token pass is skipped for memory and the generation pass
 * for want of an estimate, on every rank alike. */
#include "../check.h"
#include "test_table.h"

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0, size = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc < 2 || size != 4) {
        fprintf(stderr, "usage: mpirun -np 4 doc_example TABLE\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    if (rank == 0)
        write_test_table(argv[1], 0);
    MPI_Barrier(MPI_COMM_WORLD);
    int rc = warmup(MPI_COMM_WORLD, argv[1]);
    if (rc != 0 || rank == 0)
        fprintf(stderr, "rank %d: warmup returned %d\n%s", rank, rc, logged);
    CHECK(rc == 0);
    CHECK(n_ran == 1 && ran[0] == 1024);
    CHECK_STR_CONTAINS(logged, "warmup context 8192 tokens skipped: skip: rank 0 is short of");
    CHECK_STR_CONTAINS(logged, "warmup generation 64 tokens skipped: skip: the table has no "
                               "generation estimate for rank 0");
    int failed = check_failures, any = 0;
    MPI_Allreduce(&failed, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    if (!failed)
        printf("ok doc example (rank %d)\n", rank);
    MPI_Finalize();
    return any ? 1 : 0;
}
