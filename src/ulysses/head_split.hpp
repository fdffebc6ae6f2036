// Which attention heads each Ulysses rank computes after the all-to-all.
//
// Query heads split evenly: rank j of u takes heads [j·h/u, (j+1)·h/u). K/V heads follow the
// query heads they serve (query head i uses kv head i / (h/hkv)): with hu = h/u query heads per
// rank, g = h/hkv query heads per kv head and G = gcd(hu, g), rank j takes hu/G kv heads, slot m
// holding global kv head (j·hu + m·G) / g, and its local query head i uses slot i / G — the
// kernel's own GQA rule on the local heads. When hkv % u == 0 this is the plain even split; when
// hkv < u a kv head is replicated on every rank whose query heads need it (its gradients are
// summed back). Any u dividing h works.
#pragma once

#include <cstdint>
#include <vector>

namespace usp::detail {

class HeadSplit {
 public:
  // Query heads: the even split of `heads` over `ranks`.
  static HeadSplit even(std::int64_t heads, int ranks);
  // The kv heads serving each rank's query heads (see above).
  static HeadSplit kv_for_queries(std::int64_t heads, std::int64_t kv_heads, int ranks);

  int ranks() const { return ranks_; }
  std::int64_t total() const { return total_; }        // heads on the shard side
  std::int64_t per_rank() const { return per_rank_; }  // heads on the ring side
  // Global head of rank `rank`'s slot `slot`.
  std::int64_t global(int rank, std::int64_t slot) const {
    return table_[static_cast<std::size_t>(rank * per_rank_ + slot)];
  }
  // Some global head is held by more than one (rank, slot).
  bool replicated() const { return ranks_ * per_rank_ > total_; }

  // Maximal runs of slots of `rank` holding consecutive global heads.
  struct Run {
    std::int64_t slot;
    std::int64_t head;
    std::int64_t count;
  };
  std::vector<Run> runs(int rank) const;

 private:
  int ranks_ = 1;
  std::int64_t total_ = 0;
  std::int64_t per_rank_ = 0;
  std::vector<std::int64_t> table_;  // [rank][slot] → global head
};

}  // namespace usp::detail
