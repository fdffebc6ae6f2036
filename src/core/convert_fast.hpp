// Vector conversions behind usp::convert (dtype.cpp) for CPUs that have them. Each returns false,
// writing nothing, when this build or CPU lacks the instructions; the results are bit-identical to
// the scalar conversions (round to nearest even, NaNs quieted the same way).
#pragma once

#include <cstddef>
#include <cstdint>

#include "usp/cpu.hpp"

namespace usp::detail {

// fp32 → fp16 with vcvtps2ph: 16 lanes on the avx512 and amx paths, 8 (F16C) on avx2. `path` is
// one the CPU can run (usp::cpu_path()).
bool f32_to_f16_fast(const float* src, std::uint16_t* dst, std::size_t n, CpuPath path);

}  // namespace usp::detail
