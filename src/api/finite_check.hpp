// The opt-in refusal of non-finite inputs (UspConfig::check_finite): each rank scans its own
// tensors, the sequence-parallel group compares what it found, and every rank throws the same
// Error naming the first rank, tensor and index that hold a NaN or an infinity.
#pragma once

#include <string_view>
#include <utility>
#include <vector>

#include "usp/comm.hpp"
#include "usp/memory.hpp"
#include "usp/tensor.hpp"

namespace usp::detail {

// Collective over comm: throws Error(invalid_argument) on every rank when any rank's tensors
// (named, in order) hold a non-finite value; `world_rank` is the rank named in the message.
void refuse_non_finite(Communicator& comm, Allocator& alloc, int world_rank,
                       const std::vector<std::pair<std::string_view, const Tensor*>>& tensors);

}  // namespace usp::detail
