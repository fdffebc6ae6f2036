// Cross-rank agreement: every rank contributes named fields (its configuration, its input shapes,
// its command line); a difference anywhere ends every rank alike with one message naming the
// ranks that differ from rank 0 and their values.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "usp/comm.hpp"
#include "usp/memory.hpp"

namespace usp {

// Named values, in the same order on every rank: {{"ring", "4"}, {"causal", "true"}, ...}.
using Fields = std::vector<std::pair<std::string, std::string>>;

// recv (comm.size() blocks of `bytes`, by rank) = every rank's `send`, both in host memory. A
// communicator on a device moves device memory only, so there the blocks travel through buffers
// from `device_alloc`, which must be on comm.device() (for a host communicator it is unused).
void allgather_host(Communicator& comm, Allocator& device_alloc, const void* send, void* recv,
                    std::size_t bytes);

// Every rank's string, indexed by rank (collective; lengths first, then the padded texts).
std::vector<std::string> allgather_strings(Communicator& comm, Allocator& device_alloc,
                                           const std::string& mine);

// Every rank's fields, indexed by rank (collective over comm; staged through `device_alloc` as
// allgather_host).
std::vector<Fields> allgather_fields(Communicator& comm, Allocator& device_alloc,
                                     const Fields& mine);

// "" when every rank has rank 0's fields, else one line "<what> across ranks: rank 3 has
// seq_len=128; rank 0 has seq_len=64 (<hint>)", naming up to four differing ranks, only the
// differing fields, values cut to 60 characters. `what` says what differs, e.g. "configuration
// mismatch" or "the command line differs".
std::string disagreement(const std::vector<Fields>& per_rank, std::string_view what,
                         std::string_view hint);

// All-gathers the fields over comm and throws Error(invalid_argument) with disagreement(...) on
// every rank when they differ. Collective: every rank of comm calls it with its own fields.
void agree_fields(Communicator& comm, Allocator& device_alloc, const Fields& mine,
                  std::string_view what, std::string_view hint);

}  // namespace usp
