// NaN and ±Inf in tensors of any storage type: where the first one is (check_finite's message)
// and whether there is one at all (the kernels' choice of the loops that keep hidden keys out of
// the sums).
#pragma once

#include <cstdint>

#include "usp/tensor.hpp"

namespace usp::detail {

// The flat index (row-major over the tensor's shape) of the first NaN or ±Inf in a host tensor
// of any dtype and strides, or -1.
std::int64_t first_non_finite(const Tensor& t);

// Whether a host tensor holds no NaN and no ±Inf (a scan of its exponent bits, vectorised over
// the innermost dimension when that is contiguous).
bool all_finite(const Tensor& t);

}  // namespace usp::detail
