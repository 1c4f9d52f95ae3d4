// model/mpi_job.h: bin/train_tiny as one rank of an MPI job (`mpirun -np N bin/train_tiny ...`), the
// transport behind model/data_parallel.h. OpenMPI from the distribution's packages; docs/scaling.md.
//
// Built with MPI when the Makefile finds it (it defines RATTN_MPI for model/mpi_job.cpp alone and links
// MPI into bin/train_tiny alone); otherwise this file compiles to a stub that runs one process and
// refuses to be one of several under mpirun (each would train alone and overwrite the others'
// checkpoints).
#pragma once
#include <memory>

#include "model/data_parallel.h"

namespace model {

// Processes this program was started as: the launcher's count in the environment (OpenMPI's
// OMPI_COMM_WORLD_SIZE, or PMI_SIZE / PMIX_SIZE), 1 when not under a launcher.
int launched_ranks();

// Join the job when started by mpirun with MPI built in: returns this process's rank (MPI_Init done);
// nullptr when not under mpirun (one process, no MPI call at all: no MPI start-up cost, nothing for the
// sanitizers to see). Throws std::runtime_error when under mpirun with several processes but built
// without MPI.
std::unique_ptr<DataParallel> join_mpi_job(int* argc, char*** argv);

// Leave the job with the program's exit status: MPI_Finalize, or, when the status may be this rank's
// alone (an environment failure after training began, while other ranks wait in a collective),
// MPI_Abort, which ends every rank. Returns the status to exit with.
int leave_mpi_job(std::unique_ptr<DataParallel> job, int status);

// Whether this build has MPI (bin/train_tiny --help says so).
bool built_with_mpi();

}  // namespace model
