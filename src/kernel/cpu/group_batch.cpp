#include "kernel/cpu/group_batch.hpp"

#include <algorithm>

namespace usp::cpu {

std::vector<GroupBatch> plan_batches(std::int64_t groups, std::int64_t tasks_per_group,
                                     std::size_t floats_per_group, int threads) {
  // Enough tasks to balance the pool (causal tiles differ in cost), panels within a budget. One
  // thread has nothing to balance: one group at a time keeps its panels smallest.
  constexpr std::size_t kPanelBudgetFloats = std::size_t{64} << 20 >> 2;  // 64 MiB
  const std::int64_t want_tasks = threads > 1 ? 8 * static_cast<std::int64_t>(threads) : 1;
  std::vector<GroupBatch> out;
  std::int64_t g = 0;
  while (g < groups) {
    GroupBatch b{g, 1};
    while (g + b.count < groups && b.count * tasks_per_group < want_tasks &&
           static_cast<std::size_t>(b.count + 1) * floats_per_group <= kPanelBudgetFloats)
      ++b.count;
    out.push_back(b);
    g += b.count;
  }
  return out;
}

std::int64_t largest_batch(const std::vector<GroupBatch>& batches) {
  std::int64_t most = 0;
  for (const GroupBatch& b : batches) most = std::max(most, b.count);
  return most;
}

}  // namespace usp::cpu
