// A C++ program on the installed gate: warmcal/gate.h includes <mpi.h>,
// whose C++ bindings (Open MPI's, MPICH's) would need libmpi_cxx, which
// pkg-config's ompi-c does not link; the header asks for MPI's C API only.
#include <warmcal/gate.h>

#include <cstdio>

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank = 0;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    std::printf("rank %d: C++ sees the gate (deadline %.0f s)\n", rank, o.deadline_s);
    MPI_Finalize();
    return 0;
}
