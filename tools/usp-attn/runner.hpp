// usp-attn's work: the ranks' attention and the files it writes.
#pragma once

#include <vector>

#include "inputs.hpp"
#include "options.hpp"
#include "usp/comm.hpp"
#include "usp/tensor.hpp"

namespace usp::attn_tool {

struct Results {
  // Global-order slots ring_rank * ulysses + ulysses_rank, host memory; filled on rank 0 only
  // when the ranks are processes.
  std::vector<Tensor> out, lse, dq, dk, dv;
  double forward_s = 0, backward_s = 0;  // slowest rank
};

// Runs the attention on ulysses x ring ranks: threads of this process (world == nullptr, backends
// local and cuda-local), or this process's rank of an mpirun job (world: its communicator, whose
// size must be ulysses x ring), in which case the shards are gathered on rank 0.
Results run(const Options& o, const NpyInputs& p, Communicator* world);

// Throws Error(unsupported) saying what is missing when this build or machine cannot run
// o.backend, and Error(invalid_argument) for what the GPU kernel does not support.
void check_backend(const Options& o);

// Creates --out-dir (throws Error(io) when it cannot).
void make_out_dir(const Options& o);

// Writes DIR/out.npy, lse.npy (and dq, dk, dv) and prints the summary line on stdout.
void write_results(const Options& o, const NpyInputs& p, const Results& r);

}  // namespace usp::attn_tool
