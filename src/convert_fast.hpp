// Vector conversions behind usp::convert (dtype.cpp) for CPUs that have them. Each returns false,
// writing nothing, when this build or CPU lacks the instructions; the results are bit-identical to
// the scalar conversions (round to nearest even, NaNs quieted the same way).
#pragma once

#include <cstddef>
#include <cstdint>

namespace usp::detail {

// fp32 → fp16 with AVX-512F (vcvtps2ph).
bool f32_to_f16_fast(const float* src, std::uint16_t* dst, std::size_t n);

}  // namespace usp::detail
