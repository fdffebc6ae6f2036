// Deterministic benchmark inputs. Element (batch, token, head, dim) of tensor `id` is a pure
// function of (seed, id, batch, global token, head, dim) — a counter-based hash, no state — so
// every rank generates only its own shard and the data is identical for every layout and degree.
#pragma once

#include <cstdint>

#include "usp/layout.hpp"
#include "usp/tensor.hpp"

namespace usp::bench {

enum class TensorId : std::uint64_t { q = 1, k = 2, v = 3, dout = 4 };

// splitmix64 finaliser.
constexpr std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// Uniform in [-1, 1) from the element's coordinates.
double element_value(std::uint64_t seed, TensorId id, std::int64_t batch, std::int64_t token,
                     std::int64_t head, std::int64_t dim, std::int64_t seq_len, std::int64_t heads,
                     std::int64_t head_size);

// Allocates (from alloc) and fills the shard [b, s_local, heads, d] of tensor `id` held by
// (ring_rank, ulysses_rank) in `layout`; local row i is global token layout.global(rr, ur, i).
Tensor make_shard(const Layout& layout, int ring_rank, int ulysses_rank, TensorId id,
                  std::uint64_t seed, std::int64_t batch, std::int64_t heads,
                  std::int64_t head_size, DType dtype, Allocator& alloc);

}  // namespace usp::bench
