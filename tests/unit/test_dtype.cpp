#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "support/support.hpp"
#include "usp/dtype.hpp"
#include "usp/error.hpp"

namespace usp {
namespace {

float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
bool f16_is_nan(std::uint16_t h) {
  return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu) != 0;
}
bool bf16_is_nan(std::uint16_t h) {
  return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu) != 0;
}

TEST(DtypeNames, NamesAndParsing) {
  EXPECT_STREQ(dtype_name(DType::f32), "fp32");
  EXPECT_STREQ(dtype_name(DType::bf16), "bf16");
  EXPECT_STREQ(dtype_name(DType::f16), "fp16");
  EXPECT_EQ(dtype_size(DType::f32), 4u);
  EXPECT_EQ(dtype_size(DType::bf16), 2u);
  EXPECT_EQ(dtype_size(DType::f16), 2u);
  for (const char* s : {"fp32", "f32", "float32"}) EXPECT_EQ(parse_dtype(s), DType::f32);
  for (const char* s : {"bf16", "bfloat16"}) EXPECT_EQ(parse_dtype(s), DType::bf16);
  for (const char* s : {"fp16", "f16", "float16"}) EXPECT_EQ(parse_dtype(s), DType::f16);
  USP_EXPECT_ERROR(parse_dtype("fp8", "--dtype"), invalid_argument, "--dtype", "'fp8'", "bf16");
}

TEST(DtypeBf16, RoundsToNearestEven) {
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  EXPECT_EQ(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up.
  EXPECT_EQ(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  // Just above the halfway point rounds up.
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f808001u)), 0x3f81);
  EXPECT_EQ(f32_to_bf16(from_bits(0x3f807fffu)), 0x3f80);
  EXPECT_EQ(f32_to_bf16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_bf16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_bf16(-0.0f), 0x8000);
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(f32_to_bf16(-std::numeric_limits<float>::infinity()), 0xff80);
  // The largest float rounds up to infinity; the bf16 maximum stays.
  EXPECT_EQ(f32_to_bf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(f32_to_bf16(from_bits(0x7f7f0000u)), 0x7f7f);
  // Subnormals round like everything else.
  EXPECT_EQ(f32_to_bf16(from_bits(0x00008000u)), 0x0000);  // tie to even (0)
  EXPECT_EQ(f32_to_bf16(from_bits(0x00018000u)), 0x0002);  // tie to even (2)
  EXPECT_EQ(f32_to_bf16(from_bits(0x00008001u)), 0x0001);
}

TEST(DtypeBf16, NanStaysNan) {
  for (std::uint32_t u : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu, 0x7f80ffffu}) {
    const std::uint16_t h = f32_to_bf16(from_bits(u));
    EXPECT_TRUE(bf16_is_nan(h)) << std::hex << u << " -> " << h;
    EXPECT_EQ(h >> 15, u >> 31);
    EXPECT_TRUE(std::isnan(bf16_to_f32(h)));
  }
}

TEST(DtypeBf16, AllBitPatternsRoundTrip) {
  for (std::uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    const float f = bf16_to_f32(h);
    EXPECT_EQ(bits(f), i << 16);
    const std::uint16_t back = f32_to_bf16(f);
    if (bf16_is_nan(h)) {
      ASSERT_TRUE(bf16_is_nan(back)) << i;
      ASSERT_EQ(back & 0x8000u, h & 0x8000u) << i;
    } else {
      ASSERT_EQ(back, h) << i;
    }
  }
}

TEST(DtypeF16, RoundsToNearestEven) {
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(-2.0f), 0xc000);
  EXPECT_EQ(f32_to_f16(0.0f), 0x0000);
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even (1).
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(f32_to_f16(std::nextafter(1.0f + std::ldexp(1.0f, -11), 2.0f)), 0x3c01);
  // Largest finite half, the overflow threshold and infinity.
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.99f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);
  EXPECT_EQ(f32_to_f16(1e10f), 0x7c00);
  EXPECT_EQ(f32_to_f16(-1e10f), 0xfc00);
  EXPECT_EQ(f32_to_f16(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(f32_to_f16(-std::numeric_limits<float>::infinity()), 0xfc00);
  // Smallest normal, subnormals and underflow.
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14)), 0x0400);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)), 0x0000);  // tie to even (0)
  EXPECT_EQ(f32_to_f16(-std::ldexp(1.0f, -25)), 0x8000);
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -26)), 0x0001);  // above the tie
  EXPECT_EQ(f32_to_f16(std::ldexp(3.0f, -25)), 0x0002);  // 1.5 units: tie to even (2)
  EXPECT_EQ(f32_to_f16(std::ldexp(5.0f, -25)), 0x0002);  // 2.5 units: tie to even (2)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -14) - std::ldexp(1.0f, -25)),
            0x0400);  // rounds up to normal
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -30)), 0x0000);
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);
  EXPECT_EQ(f16_to_f32(0xfc00), -std::numeric_limits<float>::infinity());
}

TEST(DtypeF16, NanStaysNan) {
  for (std::uint32_t u : {0x7fc00000u, 0x7f800001u, 0xff800001u, 0x7fffffffu, 0x7f801fffu}) {
    const std::uint16_t h = f32_to_f16(from_bits(u));
    EXPECT_TRUE(f16_is_nan(h)) << std::hex << u << " -> " << h;
    EXPECT_EQ(h >> 15, u >> 31);
  }
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7c01)));
}

TEST(DtypeF16, AllBitPatternsRoundTrip) {
  for (std::uint32_t i = 0; i < 65536; ++i) {
    const auto h = static_cast<std::uint16_t>(i);
    const float f = f16_to_f32(h);
    const std::uint16_t back = f32_to_f16(f);
    if (f16_is_nan(h)) {
      ASSERT_TRUE(std::isnan(f)) << i;
      ASSERT_TRUE(f16_is_nan(back)) << i;
      ASSERT_EQ(back & 0x8000u, h & 0x8000u) << i;
    } else {
      ASSERT_EQ(back, h) << i;
    }
  }
}

// Every float between two adjacent halves rounds to the nearer one (ties to even): checked on
// random floats against the neighbours computed from the exact half values.
TEST(DtypeF16, RandomFloatsRoundToNearest) {
  USP_TEST_RNG(rng);
  std::uniform_int_distribution<std::uint32_t> u(0,
                                                 0x477fefffu);  // below 65520, which rounds to inf
  for (int n = 0; n < 200000; ++n) {
    const std::uint32_t b = u(rng);
    const float x = from_bits(b);
    const std::uint16_t h = f32_to_f16(x);
    const double hx = f16_to_f32(h);
    // Neighbours of h in the direction of x.
    const double up = f16_to_f32(static_cast<std::uint16_t>(h + 1));
    const double down =
        (h & 0x7fffu) == 0 ? -f16_to_f32(0x0001) : f16_to_f32(static_cast<std::uint16_t>(h - 1));
    const double err = std::fabs(hx - x);
    if ((h & 0x7fffu) < 0x7bffu) {
      ASSERT_LE(err, std::fabs(up - x)) << b;
    }
    ASSERT_LE(err, std::fabs(down - x)) << b;
  }
}

TEST(DtypeConvert, ArrayToF16MatchesTheScalarConversionBitForBit) {
  // convert() takes a vector path for fp32 → fp16 where the CPU has one (not under
  // USP_CPU_PATH=generic); every bit pattern class must come out as f32_to_f16 gives it.
  USP_TEST_RNG(rng);
  std::vector<std::uint32_t> bits;
  for (std::uint32_t e = 0; e < 256; ++e)  // every exponent, edge and random mantissas, both signs
    for (std::uint32_t m : {0u, 1u, 0x1000u, 0x1fffu, 0x2000u, 0x3fffffu, 0x400000u, 0x7fffffu,
                            static_cast<std::uint32_t>(rng()) & 0x7fffffu})
      for (std::uint32_t sign : {0u, 0x80000000u}) bits.push_back(sign | (e << 23) | m);
  for (int i = 0; i < 200000; ++i) bits.push_back(static_cast<std::uint32_t>(rng()));
  bits.push_back(0x477fefffu);                // just below the overflow to infinity
  bits.push_back(0x477ff000u);                // 65520: rounds to infinity
  bits.resize(bits.size() + 7, 0x3f800001u);  // a tail that is not a multiple of 16
  std::vector<float> x(bits.size());
  std::memcpy(x.data(), bits.data(), bits.size() * sizeof(float));
  std::vector<std::uint16_t> got(x.size());
  usp::convert(x.data(), usp::DType::f32, got.data(), usp::DType::f16, x.size());
  for (std::size_t i = 0; i < x.size(); ++i)
    ASSERT_EQ(got[i], usp::f32_to_f16(x[i])) << "fp32 bits 0x" << std::hex << bits[i];
}

TEST(DtypeConvert, BetweenTypesAndRoundThrough) {
  const float src[5] = {1.0f, -2.5f, 1.0f + std::ldexp(1.0f, -9), 65504.0f, 1e-3f};
  std::uint16_t h[5], b[5];
  float back[5], r[5];
  convert(src, DType::f32, h, DType::f16, 5);
  convert(src, DType::f32, b, DType::bf16, 5);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(h[i], f32_to_f16(src[i]));
    EXPECT_EQ(b[i], f32_to_bf16(src[i]));
  }
  convert(h, DType::f16, back, DType::f32, 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(back[i], f16_to_f32(h[i]));
  std::uint16_t hb[5];
  convert(h, DType::f16, hb, DType::bf16, 5);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(hb[i], f32_to_bf16(f16_to_f32(h[i])));
  std::memcpy(r, src, sizeof r);
  round_through(r, 5, DType::bf16);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(r[i], bf16_to_f32(b[i]));
  std::memcpy(r, src, sizeof r);
  round_through(r, 5, DType::f16);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(r[i], f16_to_f32(h[i]));
  std::memcpy(r, src, sizeof r);
  round_through(r, 5, DType::f32);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(r[i], src[i]);
  EXPECT_NE(r[2], bf16_to_f32(b[2]));  // the value needs more than bf16's 8 bits
}

}  // namespace
}  // namespace usp
