// One GPU per process: checks the GPU each rank of a process-per-GPU backend (NCCL) picked.
// NCCL refuses two ranks of one communicator on the same GPU with a terse message deep inside
// initialisation; this check names the ranks, the GPU and the fix before NCCL is called.
#pragma once

#include <string>
#include <vector>

namespace usp::detail {

struct GpuSlot {
  std::string host;      // host name
  std::string bus_id;    // PCI bus id of the GPU ("0000:3b:00.0"), unique on its host
  int device = 0;        // CUDA device ordinal in that process
  int device_count = 0;  // GPUs visible to that process
};

// Empty when no two ranks share a GPU; else one line naming the first two ranks that do (slots[i]
// is rank i's choice).
std::string shared_gpu_message(const std::vector<GpuSlot>& slots);

}  // namespace usp::detail
