// Consecutive (batch, kv head) groups processed together: their K/V (and for the backward Q/dout)
// are packed into fp32 panels once, then every tile task of the batch reads the panels. Batches
// are sized to give the pool enough tasks while bounding the panel memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace usp::cpu {

struct GroupBatch {
  std::int64_t first, count;  // groups [first, first + count), group = b · hkv + kv head
};
std::vector<GroupBatch> plan_batches(std::int64_t groups, std::int64_t tasks_per_group,
                                     std::size_t floats_per_group, int threads);
// Groups in the largest batch.
std::int64_t largest_batch(const std::vector<GroupBatch>& batches);

}  // namespace usp::cpu
