#include "api/indeterminate_rows.hpp"

#include <cstdint>
#include <cstring>
#include <limits>

namespace usp::detail {

void mark_indeterminate_rows(Tensor& out, Tensor& lse) {
  if (out.device() != Device::host || lse.device() != Device::host) return;
  const std::int64_t b = out.size(0), s = out.size(1), h = out.size(2), d = out.size(3);
  const std::size_t es = dtype_size(out.dtype());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::uint16_t nan16 = out.dtype() == DType::bf16 ? 0x7fc0 : 0x7e00;
  for (std::int64_t bi = 0; bi < b; ++bi)
    for (std::int64_t hi = 0; hi < h; ++hi)
      for (std::int64_t i = 0; i < s; ++i) {
        auto* l = static_cast<float*>(lse.ptr({bi, hi, i}));
        if (*l != -std::numeric_limits<float>::infinity()) continue;
        *l = nan;
        auto* row = static_cast<unsigned char*>(out.ptr({bi, i, hi, 0}));
        const std::int64_t step = out.stride(3) * static_cast<std::int64_t>(es);
        for (std::int64_t c = 0; c < d; ++c, row += step) {
          if (out.dtype() == DType::f32)
            std::memcpy(row, &nan, 4);
          else
            std::memcpy(row, &nan16, 2);
        }
      }
}

}  // namespace usp::detail
