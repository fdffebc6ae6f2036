// Whether an MPI launcher started this process (environment only, no MPI call): works in every
// build so tools can say "use mpirun" even when MPI support is missing.
#include <cstdlib>

#include "usp/comm_mpi.hpp"

namespace usp {

bool mpi_launched() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE",
                        "MV2_COMM_WORLD_SIZE", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

}  // namespace usp
