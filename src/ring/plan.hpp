// A ring step plan: which block computations a rank performs with the K/V block in hand.
//
// Ring of P ranks; at step s rank r holds the K/V block that started on rank (r − s) mod P (its
// "source"). Both blocks are in ring-local order of the layout (layout.hpp), L rows each. A plan
// lists, for that step, the query rows of my block that attend to which key rows of the received
// block and under which mask. Non-causal attention is one full block every step; the causal rule
// is the one place where the ring variants differ (basic.cpp, stripe.cpp, zigzag.cpp).
#pragma once

#include <array>
#include <cstdint>

#include "usp/kernel.hpp"
#include "usp/layout.hpp"

namespace usp::detail {

// Query rows [q_begin, q_begin + q_len) of my block × key rows [k_begin, k_begin + k_len) of the
// block in hand, masked with `mask` (indices local to those ranges).
struct BlockTask {
  std::int64_t q_begin = 0;
  std::int64_t q_len = 0;
  std::int64_t k_begin = 0;
  std::int64_t k_len = 0;
  MaskMode mask = MaskMode::none;
};

// The tasks of one step (no variant needs more than one; room for two keeps plans open).
class StepPlan {
 public:
  void add(const BlockTask& t) { tasks_[static_cast<std::size_t>(count_++)] = t; }
  int size() const { return count_; }
  bool empty() const { return count_ == 0; }
  const BlockTask* begin() const { return tasks_.data(); }
  const BlockTask* end() const { return tasks_.data() + count_; }
  const BlockTask& operator[](int i) const { return tasks_[static_cast<std::size_t>(i)]; }

 private:
  std::array<BlockTask, 2> tasks_{};
  int count_ = 0;
};

// The rank whose K/V block rank `rank` holds at `step`.
inline int ring_source(int ring_size, int rank, int step) {
  return ((rank - step) % ring_size + ring_size) % ring_size;
}

// The causal rules, written against the source rank of the block in hand. block_len is L.
StepPlan basic_causal_step(int ring_size, int rank, int source, std::int64_t block_len);
StepPlan stripe_causal_step(int ring_size, int rank, int source, std::int64_t block_len);
StepPlan zigzag_causal_step(int ring_size, int rank, int source, std::int64_t block_len);

// The plan of rank `rank` for the block of rank `source` (allgather: the zigzag rule).
StepPlan plan_blocks(RingType type, int ring_size, int rank, int source, bool causal,
                     std::int64_t block_len);
// The plan of rank `rank` at `step` (0 ≤ step < ring_size) of the single ring.
StepPlan plan_step(RingType type, int ring_size, int rank, int step, bool causal,
                   std::int64_t block_len);

}  // namespace usp::detail
