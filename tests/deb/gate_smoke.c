/* A server's view of an installed warmcal: built inside the fresh root with
 * `gcc gate_smoke.c $(pkg-config --cflags --libs warmcal-gate)` and run
 * under mpirun -np 4. Each rank reports 8 GiB free against a table needing
 * 1 GiB + 1 MiB per token: 4096 tokens run, 8192 tokens skip, on every rank. */
#include <stdio.h>
#include <warmcal/gate.h>

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (argc != 2) {
        fprintf(stderr, "usage: mpirun -np 4 gate_smoke TABLE\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.probe = WARMCAL_PROBE_VALUE;
    o.free_bytes = (uint64_t)8 << 30;
    o.deadline_s = 30;
    warmcal_gate *g = NULL;
    int rc = warmcal_gate_open(&g, argv[1], MPI_COMM_WORLD, &o);
    int ok = rc == 0;
    warmcal_shape s[2] = {{4096, 1, "context", 1}, {8192, 1, "context", 1}};
    warmcal_decision d[2];
    if (ok) {
        rc = warmcal_gate_decide(g, s, 2, d);
        ok = rc == 0 && d[0].run == 1 && d[1].run == 0 &&
             d[1].reason == WARMCAL_REASON_LOW_MEMORY;
    }
    if (!ok)
        fprintf(stderr, "rank %d: rc %d (%s): %s\n", rank, rc, warmcal_strerror(rc),
                g ? warmcal_gate_last_error(g) : "no gate");
    else if (rank == 0)
        printf("C gate on 4 ranks: 4096 tokens run, 8192 skip: %s\n", d[1].text);
    warmcal_gate_close(g);
    int all = 0;
    MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    MPI_Finalize();
    return all ? 0 : 1;
}
