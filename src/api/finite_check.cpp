#include "api/finite_check.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <sstream>

#include "core/finite.hpp"
#include "usp/backend.hpp"
#include "usp/error.hpp"

namespace usp::detail {
namespace {

double value_at(const unsigned char* p, DType t) {
  std::uint16_t h = 0;
  if (t != DType::f32) std::memcpy(&h, p, 2);
  switch (t) {
    case DType::f32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case DType::bf16:
      return bf16_to_f32(h);
    case DType::f16:
      return f16_to_f32(h);
  }
  return 0;
}

// What one rank found, as it travels in the all-gather.
struct Finding {
  std::int32_t world_rank = 0;
  std::int32_t tensor = -1;  // index into the named list; -1: all finite
  std::int64_t index[Tensor::kMaxDims] = {};
  double value = 0;
};

Finding scan(int world_rank, const std::vector<std::pair<std::string_view, const Tensor*>>& ts) {
  Finding f;
  f.world_rank = world_rank;
  for (std::size_t i = 0; i < ts.size(); ++i) {
    const Tensor& t = *ts[i].second;
    const Tensor host = t.device() == Device::host ? t : copy_to(t, default_host_allocator());
    const std::int64_t flat = first_non_finite(host);
    if (flat < 0) continue;
    f.tensor = static_cast<std::int32_t>(i);
    std::int64_t rest = flat;
    for (int d = t.dim() - 1; d >= 0; --d) {
      f.index[d] = rest % t.size(d);
      rest /= t.size(d);
    }
    std::int64_t off = 0;
    for (int d = 0; d < t.dim(); ++d) off += f.index[d] * host.stride(d);
    f.value = value_at(static_cast<const unsigned char*>(host.data()) +
                           off * static_cast<std::int64_t>(dtype_size(host.dtype())),
                       host.dtype());
    break;
  }
  return f;
}

}  // namespace

void refuse_non_finite(Communicator& comm, Allocator& alloc, int world_rank,
                       const std::vector<std::pair<std::string_view, const Tensor*>>& tensors) {
  const Finding mine = scan(world_rank, tensors);
  std::vector<Finding> all(static_cast<std::size_t>(comm.size()));
  allgather_host(comm, alloc, &mine, all.data(), sizeof mine);
  int bad = 0;
  const Finding* first = nullptr;
  for (const Finding& f : all) {
    if (f.tensor < 0) continue;
    ++bad;
    if (!first) first = &f;
  }
  if (!first) return;
  const std::size_t ti = static_cast<std::size_t>(first->tensor);
  const Tensor& t = *tensors.at(ti).second;
  std::ostringstream at;
  for (int d = 0; d < t.dim(); ++d) at << (d ? ", " : "") << first->index[d];
  const char* what = std::isnan(first->value) ? "NaN" : first->value > 0 ? "+inf" : "-inf";
  USP_FAIL(invalid_argument, "check_finite: ", tensors[ti].first, " holds ", what, " at [",
           at.str(), "] on rank ", first->world_rank, " (", tensors[ti].first, " ", t.describe(),
           ")", bad > 1 ? detail::concat("; ", bad - 1, " more ranks hold non-finite inputs") : "");
}

}  // namespace usp::detail
