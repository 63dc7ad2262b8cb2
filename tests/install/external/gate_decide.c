/* A program outside warmcal's build, compiled against an installed warmcal
 * (pkg-config or find_package): rank 0 writes a table with the installed
 * table API, then every rank opens a gate on it and decides two shapes.
 * Any rank needs 1 GiB + 1 MiB per token; ranks have 4 GiB free except
 * rank 2 with 1.5 GiB: 256 tokens run, 1024 tokens are blocked by rank 2.
 * Exit 0 when this rank's decisions are those and the same on every rank. */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>

#include <warmcal/gate.h>

#define GiB (1ull << 30)
#define MiB (1ull << 20)

static int write_table(const char *path)
{
    warmcal_table *t = NULL;
    warmcal_error err = {0};
    if (warmcal_table_new(&t, &err) != WARMCAL_OK)
        goto fail;
    snprintf(t->config.model, sizeof t->config.model, "test-model");
    t->config.tp = 4;
    snprintf(t->config.gpu_name, sizeof t->config.gpu_name, "test GPU");
    t->config.gpu_total_bytes = 80 * GiB;
    warmcal_estimate e = {.rank = -1, .label = "context", .tokens_min = 1, .tokens_max = 32768,
                          .form = WARMCAL_FORM_LINEAR, .coef = {(double)GiB, (double)MiB}};
    e.fit.points = 10;
    if (warmcal_table_add_estimate(t, &e, &err) != WARMCAL_OK ||
        warmcal_table_write(t, path, &err) != WARMCAL_OK)
        goto fail;
    warmcal_table_free(t);
    return 0;
fail:;
    char buf[512];
    fprintf(stderr, "table: %s\n", warmcal_error_format(&err, buf, sizeof buf));
    warmcal_table_free(t);
    return 1;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0, size = 0, bad = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (argc != 2 || size != 4) {
        fprintf(stderr, "usage: mpirun -np 4 %s TABLE.json\n", argv[0]);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    if (rank == 0)
        bad = write_table(argv[1]);
    MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (bad)
        MPI_Abort(MPI_COMM_WORLD, 1);

    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    o.free_bytes = rank == 2 ? GiB + GiB / 2 : 4 * GiB;
    o.deadline_s = 30;
    warmcal_gate *g = NULL;
    if (warmcal_gate_open(&g, argv[1], MPI_COMM_WORLD, &o) != WARMCAL_OK) {
        fprintf(stderr, "rank %d: open: %s\n", rank, warmcal_gate_last_error(g));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    warmcal_shape shapes[2] = {{.tokens = 256, .batch = 1, .batch_valid = 1},
                               {.tokens = 1024, .batch = 1, .batch_valid = 1}};
    warmcal_decision d[2];
    if (warmcal_gate_decide(g, shapes, 2, d) != WARMCAL_OK) {
        fprintf(stderr, "rank %d: decide: %s\n", rank, warmcal_gate_last_error(g));
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    warmcal_gate_close(g);

    int mine[4] = {d[0].run, d[0].blocking_rank, d[1].run, d[1].blocking_rank};
    int lo[4], hi[4];
    MPI_Allreduce(mine, lo, 4, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(mine, hi, 4, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    for (int i = 0; i < 4; i++)
        if (lo[i] != hi[i])
            bad = 1;
    if (!(mine[0] == 1 && mine[1] == -1 && mine[2] == 0 && mine[3] == 2 &&
          d[1].reason == WARMCAL_REASON_LOW_MEMORY))
        bad = 1;
    printf("rank %d: 256 tokens %s, 1024 tokens %s (blocking rank %d: %s)%s\n", rank,
           d[0].run ? "run" : "skip", d[1].run ? "run" : "skip", d[1].blocking_rank, d[1].text,
           bad ? " WRONG" : "");
    MPI_Finalize();
    return bad;
}
