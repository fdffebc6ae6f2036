// How a global sequence is sharded over a ulysses × ring mesh. Pure functions, no communication.
//
// Ring level (ring of P ranks, before the Ulysses split):
//   basic:  ring rank i holds the contiguous chunk i of P chunks.
//   zigzag: the sequence is cut into 2P chunks; ring rank i holds chunks i and 2P−1−i (in that
//   order). stripe: token t goes to ring rank t mod P (local index t / P).
//   allgather: zigzag's chunks (the all-gather-KV strategy: K/V gathered over the ring group
//   instead of passed around it; the layout keeps causal work balanced).
// Each ring rank's tokens (in that order) are then cut into u contiguous parts, one per ulysses
// rank. After the Ulysses all-to-all a rank of ring rank i holds exactly ring rank i's tokens in
// ring-local order, for a subset of heads.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "usp/mask.hpp"
#include "usp/tensor.hpp"

namespace usp {

enum class RingType : std::uint8_t { basic, stripe, zigzag, allgather };
const char* ring_type_name(RingType t);  // "basic", "stripe", "zigzag", "allgather"
RingType parse_ring_type(std::string_view s);
// zigzag and allgather: two chunks per ring rank, the sequence cut into 2P chunks.
constexpr bool two_chunks_per_rank(RingType t) {
  return t == RingType::zigzag || t == RingType::allgather;
}

struct TokenLocation {
  int ring_rank = 0;
  int ulysses_rank = 0;
  std::int64_t index = 0;  // index in that rank's local shard
};

struct Layout {
  RingType type = RingType::basic;
  std::int64_t seq_len = 0;  // global
  int ulysses = 1;
  int ring = 1;

  // Throws Error naming seq_len / degrees and the rule (basic, stripe: seq_len % (u·r) == 0;
  // zigzag, allgather: seq_len % (2·u·r) == 0; degrees >= 1).
  void validate() const;
  std::int64_t shard_len() const { return seq_len / (static_cast<std::int64_t>(ulysses) * ring); }
  std::int64_t ring_len() const { return seq_len / ring; }

  // Ring level: global token ↔ (ring rank, index in the ring-local order).
  std::pair<int, std::int64_t> ring_locate(std::int64_t token) const;
  std::int64_t ring_global(int ring_rank, std::int64_t ring_index) const;

  // The global positions of ring rank r's ring-local rows (ring_len() of them): basic r·L + i,
  // stripe r + i·P, zigzag and allgather chunk r then chunk 2P − 1 − r.
  Positions ring_positions(int ring_rank) const;

  // Full: global token ↔ (ring rank, ulysses rank, local index).
  TokenLocation locate(std::int64_t token) const;
  std::int64_t global(int ring_rank, int ulysses_rank, std::int64_t index) const;
  std::int64_t global(const TokenLocation& loc) const {
    return global(loc.ring_rank, loc.ulysses_rank, loc.index);
  }
};

// Gathers the tokens of (ring_rank, ulysses_rank) from a global host tensor whose sequence
// dimension is seq_dim (1 for [b, s, h, d], 2 for lse [b, h, s]) into a new contiguous tensor.
Tensor shard(const Layout& layout, const Tensor& global, int ring_rank, int ulysses_rank,
             int seq_dim = 1, Allocator& alloc = default_host_allocator());
// Inverse: locals[ring_rank * ulysses + ulysses_rank] → one global tensor in token order.
Tensor unshard(const Layout& layout, const std::vector<Tensor>& locals, int seq_dim = 1,
               Allocator& alloc = default_host_allocator());

}  // namespace usp
