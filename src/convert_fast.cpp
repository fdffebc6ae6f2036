// AVX-512 conversions for usp::convert (see convert_fast.hpp).
#include "convert_fast.hpp"

#include "usp/dtype.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define USP_CONVERT_X86 1
#endif

namespace usp::detail {

#ifdef USP_CONVERT_X86
namespace {

__attribute__((target("avx512f"))) void f32_to_f16_avx512(const float* src, std::uint16_t* dst,
                                                          std::size_t n) {
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    // The masked form with a zero source: the plain one passes an undefined vector that GCC 12
    // reports as maybe-uninitialized.
    const __m256i h = _mm512_mask_cvtps_ph(_mm256_setzero_si256(), 0xffff, _mm512_loadu_ps(src + i),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

bool has_avx512f() {
  static const bool yes = __builtin_cpu_supports("avx512f");
  return yes;
}

}  // namespace

bool f32_to_f16_fast(const float* src, std::uint16_t* dst, std::size_t n) {
  if (!has_avx512f()) return false;
  f32_to_f16_avx512(src, dst, n);
  return true;
}

#else

bool f32_to_f16_fast(const float*, std::uint16_t*, std::size_t) {
  return false;
}

#endif

}  // namespace usp::detail
