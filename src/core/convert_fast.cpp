// Vector conversions for usp::convert (see convert_fast.hpp).
#include "core/convert_fast.hpp"

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

__attribute__((target("avx,f16c"))) void f32_to_f16_f16c(const float* src, std::uint16_t* dst,
                                                         std::size_t n) {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h =
        _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
  }
  for (; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

}  // namespace

bool f32_to_f16_fast(const float* src, std::uint16_t* dst, std::size_t n, CpuPath path) {
  switch (path) {
    case CpuPath::avx512:
    case CpuPath::amx:
      f32_to_f16_avx512(src, dst, n);
      return true;
    case CpuPath::avx2:
      f32_to_f16_f16c(src, dst, n);
      return true;
    case CpuPath::generic:
    case CpuPath::neon:
      break;
  }
  return false;
}

#else

bool f32_to_f16_fast(const float*, std::uint16_t*, std::size_t, CpuPath) {
  return false;
}

#endif

}  // namespace usp::detail
