// usp-attn as one process of an mpirun job (--backend mpi or nccl: one process per rank).
#pragma once

namespace usp::attn_tool {

// The value of the last --backend on the command line ("" when absent), read before the full
// parse: it decides whether MPI is started.
const char* backend_flag(int argc, char** argv);

// Prints "usp-attn: error: <what>" as one line on stderr.
void report(const char* what);

// Starts MPI; every rank reads the inputs and checks the command line, the ranks agree on errors
// and on the configuration (a difference ends every rank with exit 2 and one message from rank 0
// naming the ranks and values), the world size must be ulysses x ring (a process alone says how
// to start the job), then each process runs its rank and rank 0 writes the results. Returns the
// exit code every rank agrees on (0, or 2 on any error).
int main_processes(int argc, char** argv);

}  // namespace usp::attn_tool
