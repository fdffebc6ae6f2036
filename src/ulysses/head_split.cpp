#include "ulysses/head_split.hpp"

#include <numeric>

#include "usp/error.hpp"

namespace usp::detail {

HeadSplit HeadSplit::even(std::int64_t heads, int ranks) {
  USP_CHECK_ARG(ranks >= 1, "ulysses degree ", ranks, " must be >= 1");
  USP_CHECK_ARG(heads >= 1 && heads % ranks == 0, "nheads ", heads,
                " is not divisible by ulysses degree ", ranks,
                " (each ulysses rank computes nheads / ulysses heads)");
  HeadSplit s;
  s.ranks_ = ranks;
  s.total_ = heads;
  s.per_rank_ = heads / ranks;
  s.table_.resize(static_cast<std::size_t>(heads));
  std::iota(s.table_.begin(), s.table_.end(), std::int64_t{0});
  return s;
}

HeadSplit HeadSplit::kv_for_queries(std::int64_t heads, std::int64_t kv_heads, int ranks) {
  const HeadSplit q = even(heads, ranks);
  USP_CHECK_ARG(kv_heads >= 1 && heads % kv_heads == 0, "nheads ", heads,
                " is not a multiple of kv heads ", kv_heads,
                " (grouped-query attention shares each kv head among nheads / kv heads queries)");
  const std::int64_t hu = q.per_rank_, g = heads / kv_heads, gg = std::gcd(hu, g);
  HeadSplit s;
  s.ranks_ = ranks;
  s.total_ = kv_heads;
  s.per_rank_ = hu / gg;
  for (int j = 0; j < ranks; ++j)
    for (std::int64_t m = 0; m < s.per_rank_; ++m) s.table_.push_back((j * hu + m * gg) / g);
  return s;
}

std::vector<HeadSplit::Run> HeadSplit::runs(int rank) const {
  std::vector<Run> out;
  for (std::int64_t m = 0; m < per_rank_; ++m) {
    const std::int64_t head = global(rank, m);
    if (!out.empty() && out.back().head + out.back().count == head) {
      ++out.back().count;
    } else {
      out.push_back({m, head, 1});
    }
  }
  return out;
}

}  // namespace usp::detail
