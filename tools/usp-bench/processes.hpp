// usp-bench as one process of an mpirun job (--backend mpi or nccl: one process per rank).
#pragma once

#include <string>
#include <vector>

namespace usp::bench {

// The value of the last --backend on the command line ("" when absent), read before the full
// parse: it decides whether MPI is started.
std::string backend_flag(const std::vector<std::string>& args);

// Starts MPI, agrees with the other ranks on the command line (a difference ends every rank with
// exit 2 and one message from rank 0 naming the ranks and values), checks that the world size is
// every row's u·r (or says how to start the job when this process is alone), runs the rows with
// this process as one rank and returns the exit code all ranks agree on. Only rank 0 prints the
// report and writes files.
int main_processes(int* argc, char*** argv, const std::vector<std::string>& args);

}  // namespace usp::bench
