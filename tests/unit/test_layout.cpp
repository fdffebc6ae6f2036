// Layouts alone: ownership, round trips, ring-level consistency, hand-written examples,
// shard/unshard on random tensors, validation messages.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "support/support.hpp"
#include "usp/error.hpp"
#include "usp/layout.hpp"
#include "usp/tensor.hpp"

namespace usp {
namespace {

using test::kMeshes;
constexpr auto& kTypes = test::kRingTypes;

// Lengths valid for every type at (u, r): multiples of 2·u·r, including non-powers of two.
std::vector<std::int64_t> lengths(int u, int r) {
  const std::int64_t unit = 2LL * u * r;
  return {unit, 3 * unit, 5 * unit, 12 * unit};
}

Layout make(RingType t, std::int64_t s, int u, int r) {
  return {.type = t, .seq_len = s, .ulysses = u, .ring = r};
}

std::string label(const Layout& l) {
  return std::string(ring_type_name(l.type)) + " s=" + std::to_string(l.seq_len) +
         " u=" + std::to_string(l.ulysses) + " r=" + std::to_string(l.ring);
}

// Tokens of (ring_rank, ulysses_rank) in local order.
std::vector<std::int64_t> tokens_of(const Layout& l, int rr, int ur) {
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < l.shard_len(); ++i) out.push_back(l.global(rr, ur, i));
  return out;
}

std::vector<std::int64_t> ring_tokens_of(const Layout& l, int rr) {
  std::vector<std::int64_t> out;
  for (std::int64_t i = 0; i < l.ring_len(); ++i) out.push_back(l.ring_global(rr, i));
  return out;
}

TEST(LayoutNames, RoundTripAndAliases) {
  for (RingType t : kTypes) EXPECT_EQ(parse_ring_type(ring_type_name(t)), t);
  EXPECT_STREQ(ring_type_name(RingType::basic), "basic");
  EXPECT_STREQ(ring_type_name(RingType::stripe), "stripe");
  EXPECT_STREQ(ring_type_name(RingType::zigzag), "zigzag");
}

TEST(LayoutNames, UnknownTypeNamesValueAndAllowedSet) {
  USP_EXPECT_ERROR(parse_ring_type("zigzog"), invalid_argument, "'zigzog'",
                   "basic, stripe, zigzag");
  EXPECT_THROW(parse_ring_type(""), Error);
  EXPECT_THROW(parse_ring_type("Basic"), Error);
}

// Calls fn(l) for every ring type × mesh × valid length, the layout traced.
template <class Fn>
void for_each_layout(Fn&& fn) {
  for (RingType t : kTypes)
    for (auto [u, r] : kMeshes)
      for (std::int64_t s : lengths(u, r)) {
        const Layout l = make(t, s, u, r);
        SCOPED_TRACE(label(l));
        fn(l);
      }
}

TEST(LayoutMap, EveryTokenOwnedExactlyOnceAndRoundTrips) {
  for_each_layout([](const Layout& l) {
    const int u = l.ulysses, r = l.ring;
    const std::int64_t s = l.seq_len;
    ASSERT_NO_THROW(l.validate());
    ASSERT_EQ(l.shard_len() * u * r, s);
    std::vector<int> owners(static_cast<std::size_t>(s), 0);
    for (int rr = 0; rr < r; ++rr) {
      for (int ur = 0; ur < u; ++ur) {
        for (std::int64_t i = 0; i < l.shard_len(); ++i) {
          const std::int64_t g = l.global(rr, ur, i);
          ASSERT_GE(g, 0);
          ASSERT_LT(g, s);
          ++owners[static_cast<std::size_t>(g)];
          const TokenLocation loc = l.locate(g);
          ASSERT_EQ(loc.ring_rank, rr);
          ASSERT_EQ(loc.ulysses_rank, ur);
          ASSERT_EQ(loc.index, i);
        }
      }
    }
    for (std::int64_t g = 0; g < s; ++g) {
      ASSERT_EQ(owners[static_cast<std::size_t>(g)], 1) << "token " << g;
      ASSERT_EQ(l.global(l.locate(g)), g);
      const auto [rr, ri] = l.ring_locate(g);
      ASSERT_EQ(l.ring_global(rr, ri), g);
    }
  });
}

TEST(LayoutMap, UlyssesPartsConcatenateToRingLocalOrder) {
  for_each_layout([](const Layout& l) {
    const int u = l.ulysses, r = l.ring;
    for (int rr = 0; rr < r; ++rr) {
      std::vector<std::int64_t> cat;
      for (int ur = 0; ur < u; ++ur) {
        const auto part = tokens_of(l, rr, ur);
        cat.insert(cat.end(), part.begin(), part.end());
      }
      ASSERT_EQ(cat, ring_tokens_of(l, rr));
    }
  });
}

TEST(LayoutMap, RingLevelDoesNotDependOnUlysses) {
  for (RingType t : kTypes) {
    for (int r : {1, 2, 3, 4}) {
      const std::int64_t s = 2 * 4 * r * 3;
      const Layout a = make(t, s, 1, r);
      const Layout b = make(t, s, 4, r);
      for (int rr = 0; rr < r; ++rr) EXPECT_EQ(ring_tokens_of(a, rr), ring_tokens_of(b, rr));
    }
  }
}

using V = std::vector<std::int64_t>;
// The tokens of ring rank `ring` (ulysses < 0) or of local rank (ring, ulysses).
struct Tokens {
  int ring, ulysses;
  V tokens;
};

void expect_tokens(const Layout& l, std::initializer_list<Tokens> want) {
  for (const Tokens& w : want) {
    SCOPED_TRACE(label(l) + " ring " + std::to_string(w.ring) + " ulysses " +
                 std::to_string(w.ulysses));
    EXPECT_EQ(w.ulysses < 0 ? ring_tokens_of(l, w.ring) : tokens_of(l, w.ring, w.ulysses),
              w.tokens);
  }
}

TEST(LayoutExamples, BasicIsContiguousChunks) {
  expect_tokens(make(RingType::basic, 12, 2, 3),
                {{0, -1, {0, 1, 2, 3}}, {2, -1, {8, 9, 10, 11}}, {1, 0, {4, 5}}, {1, 1, {6, 7}}});
}

TEST(LayoutExamples, ZigzagTakesChunkIAndMirror) {
  expect_tokens(make(RingType::zigzag, 8, 1, 2), {{0, -1, {0, 1, 6, 7}}, {1, -1, {2, 3, 4, 5}}});
  // P = 4, s = 16: chunks of 2; ring rank 1 holds chunks 1 and 6; u = 2 splits that pair.
  expect_tokens(make(RingType::zigzag, 16, 2, 4),
                {{1, -1, {2, 3, 12, 13}}, {1, 0, {2, 3}}, {1, 1, {12, 13}}, {3, -1, {6, 7, 8, 9}}});
  // u = 2, P = 2, s = 16: ring rank 0 holds chunks 0 and 3 (0..3, 12..15), ulysses splits mid-pair.
  expect_tokens(make(RingType::zigzag, 16, 2, 2), {{0, 0, {0, 1, 2, 3}},
                                                   {0, 1, {12, 13, 14, 15}},
                                                   {1, 0, {4, 5, 6, 7}},
                                                   {1, 1, {8, 9, 10, 11}}});
  // u = 4, P = 1, s = 8: one ring rank holds chunk 0 (0..3) then chunk 1 (4..7): identity.
  expect_tokens(make(RingType::zigzag, 8, 4, 1), {{0, 1, {2, 3}}, {0, 3, {6, 7}}});
}

TEST(LayoutExamples, StripeIsTokenModP) {
  const Layout l = make(RingType::stripe, 16, 2, 4);
  expect_tokens(l, {{1, -1, {1, 5, 9, 13}}, {1, 0, {1, 5}}, {1, 1, {9, 13}}, {3, 1, {11, 15}}});
  const TokenLocation loc = l.locate(14);
  EXPECT_EQ(loc.ring_rank, 2);
  EXPECT_EQ(loc.ulysses_rank, 1);
  EXPECT_EQ(loc.index, 1);
}

TEST(LayoutValidate, GoodConfigsPass) {
  EXPECT_NO_THROW(make(RingType::basic, 12, 3, 2).validate());
  EXPECT_NO_THROW(make(RingType::stripe, 6, 3, 2).validate());
  EXPECT_NO_THROW(make(RingType::zigzag, 12, 3, 2).validate());
  EXPECT_NO_THROW(make(RingType::zigzag, 2, 1, 1).validate());
  EXPECT_NO_THROW(make(RingType::basic, 1, 1, 1).validate());
}

std::string validation_message(const Layout& l) {
  try {
    l.validate();
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    return e.what();
  }
  ADD_FAILURE() << "no error for " << label(l);
  return "";
}

TEST(LayoutValidate, ZigzagNeedsTwoChunksPerRingRank) {
  const std::string m = validation_message(make(RingType::zigzag, 1000, 2, 4));
  EXPECT_NE(m.find("seq_len 1000 is not divisible by 2·ulysses·ring = 16"), std::string::npos) << m;
  EXPECT_NE(m.find("zigzag"), std::string::npos) << m;
  // Divisible by u·r but not by 2·u·r.
  EXPECT_NE(validation_message(make(RingType::zigzag, 36, 3, 4)).find("= 24"), std::string::npos);
  EXPECT_NO_THROW(make(RingType::basic, 36, 3, 4).validate());
}

TEST(LayoutValidate, BasicAndStripeNeedEqualShards) {
  for (RingType t : {RingType::basic, RingType::stripe}) {
    const std::string m = validation_message(make(t, 1001, 2, 4));
    EXPECT_NE(m.find("seq_len 1001 is not divisible by ulysses·ring = 8"), std::string::npos) << m;
    EXPECT_NE(m.find(ring_type_name(t)), std::string::npos) << m;
  }
}

TEST(LayoutValidate, DegreesAndLength) {
  EXPECT_NE(
      validation_message(make(RingType::basic, 8, 0, 2)).find("ulysses degree 0 must be >= 1"),
      std::string::npos);
  EXPECT_NE(validation_message(make(RingType::basic, 8, 2, -1)).find("ring degree -1 must be >= 1"),
            std::string::npos);
  EXPECT_NE(validation_message(make(RingType::stripe, 0, 1, 1)).find("seq_len 0 must be >= 1"),
            std::string::npos);
}

TEST(LayoutValidate, OutOfRangeIndicesAreRejected) {
  const Layout l = make(RingType::zigzag, 16, 2, 2);
  EXPECT_THROW(l.locate(16), Error);
  EXPECT_THROW(l.locate(-1), Error);
  EXPECT_THROW(l.global(2, 0, 0), Error);
  EXPECT_THROW(l.global(0, 2, 0), Error);
  EXPECT_THROW(l.global(0, 0, 4), Error);
  EXPECT_THROW(l.ring_global(0, 8), Error);
}

// Random bit patterns in any dtype (no NaN worries: the tests compare bytes).
using test::random_bits;

const unsigned char* row(const Tensor& t, std::int64_t outer, std::int64_t tok, int seq_dim,
                         std::size_t row_bytes) {
  return static_cast<const unsigned char*>(t.data()) +
         static_cast<std::size_t>(outer * t.size(seq_dim) + tok) * row_bytes;
}

TEST(LayoutShard, RoundTripRandomTensors) {
  USP_TEST_RNG(rng);
  for (RingType t : kTypes) {
    for (auto [u, r] : kMeshes) {
      for (DType dt : {DType::f32, DType::f16}) {
        for (int seq_dim : {1, 2}) {
          const std::int64_t s = 2LL * u * r * 3;
          const Layout l = make(t, s, u, r);
          SCOPED_TRACE(label(l) + " " + dtype_name(dt) + " seq_dim " + std::to_string(seq_dim));
          const Tensor::Dims shape =
              seq_dim == 1 ? Tensor::Dims{2, s, 3, 5} : Tensor::Dims{2, 3, s};
          const Tensor g = random_bits(shape, dt, rng);
          std::int64_t outer = 1;
          for (int d = 0; d < seq_dim; ++d) outer *= g.size(d);
          const std::size_t row_bytes = g.nbytes() / static_cast<std::size_t>(outer * s);

          std::vector<Tensor> locals;
          for (int rr = 0; rr < r; ++rr) {
            for (int ur = 0; ur < u; ++ur) {
              Tensor loc = shard(l, g, rr, ur, seq_dim);
              ASSERT_EQ(loc.dtype(), dt);
              ASSERT_TRUE(loc.is_contiguous());
              ASSERT_EQ(loc.dim(), g.dim());
              for (int d = 0; d < g.dim(); ++d)
                ASSERT_EQ(loc.size(d), d == seq_dim ? l.shard_len() : g.size(d));
              // Every local row is the global row of the token the layout names.
              for (std::int64_t o = 0; o < outer; ++o) {
                for (std::int64_t i = 0; i < l.shard_len(); ++i) {
                  ASSERT_EQ(
                      std::memcmp(row(loc, o, i, seq_dim, row_bytes),
                                  row(g, o, l.global(rr, ur, i), seq_dim, row_bytes), row_bytes),
                      0)
                      << "outer " << o << " local " << i;
                }
              }
              locals.push_back(std::move(loc));
            }
          }
          const Tensor back = unshard(l, locals, seq_dim);
          ASSERT_EQ(back.shape(), g.shape());
          ASSERT_EQ(back.dtype(), dt);
          ASSERT_EQ(std::memcmp(back.data(), g.data(), g.nbytes()), 0);
        }
      }
    }
  }
}

TEST(LayoutShard, StridedViewIsShardedByValue) {
  std::mt19937 rng(7);
  const Layout l = make(RingType::zigzag, 16, 2, 2);
  const Tensor big = random_bits({1, 16, 6, 4}, DType::f32, rng);
  const Tensor view = big.slice(2, 1, 3);  // heads 1..3: not contiguous
  ASSERT_FALSE(view.is_contiguous());
  const Tensor loc = shard(l, view, 1, 1, 1);
  ASSERT_EQ(loc.shape(), (Tensor::Dims{1, 4, 3, 4}));
  for (std::int64_t i = 0; i < 4; ++i) {
    const std::int64_t g = l.global(1, 1, i);
    for (std::int64_t h = 0; h < 3; ++h) {
      EXPECT_EQ(std::memcmp(loc.ptr({0, i, h, 0}), view.ptr({0, g, h, 0}), 4 * sizeof(float)), 0);
    }
  }
}

TEST(LayoutShard, MismatchesAreRejectedWithMessages) {
  std::mt19937 rng(11);
  const Layout l = make(RingType::basic, 8, 2, 2);
  const Tensor g = random_bits({1, 8, 2, 4}, DType::f32, rng);
  EXPECT_TRUE(
      test::contains_all(test::error_message([&] { shard(l, g, 0, 0, 2); }), {"seq_len 8"}));
  EXPECT_THROW(shard(l, g, 2, 0), Error);
  EXPECT_THROW(shard(l, g, 0, 2), Error);
  EXPECT_THROW(shard(l, g, 0, 0, 4), Error);
  std::vector<Tensor> locals;
  for (int i = 0; i < 3; ++i) locals.push_back(shard(l, g, i / 2, i % 2));
  EXPECT_TRUE(test::contains_all(test::error_message([&] { unshard(l, locals); }),
                                 {"got 3 local tensors"}));
  locals.push_back(random_bits({1, 2, 3, 4}, DType::f32, rng));
  EXPECT_THROW(unshard(l, locals), Error);
  locals.back() = random_bits({1, 2, 2, 4}, DType::f16, rng);
  EXPECT_THROW(unshard(l, locals), Error);
}

}  // namespace
}  // namespace usp
