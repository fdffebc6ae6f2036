// Non-finite inputs through the whole call: one NaN, +inf or -inf planted in q, k or v, every
// ring type × (u, r) × causal/full × fp32/bf16, forward and backward. Every element of out, lse,
// dq, dk and dv must be of the float64 reference's kind (NaN, +inf, -inf or finite): a row that
// the reference makes NaN is never finite here, and the finite ones keep the reference's values.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernel/reference/reference.hpp"
#include "support/cases.hpp"
#include "support/distributed.hpp"

namespace usp::test {
namespace {

char kind(double x) {
  if (std::isnan(x)) return 'n';
  if (std::isinf(x)) return x > 0 ? '+' : '-';
  return 'f';
}

const char* kind_name(char c) {
  switch (c) {
    case 'n':
      return "NaN";
    case '+':
      return "+inf";
    case '-':
      return "-inf";
    default:
      return "finite";
  }
}

// Where ours and the reference's kinds differ: the count and the first index.
std::string kind_mismatches(const char* what, const std::vector<double>& ours,
                            const std::vector<double>& ref) {
  std::size_t n = 0, first = 0;
  for (std::size_t i = 0; i < ref.size(); ++i)
    if (kind(ours[i]) != kind(ref[i]) && n++ == 0) first = i;
  if (n == 0) return {};
  return detail::concat(what, ": ", n, " of ", ref.size(), " differ in kind, first at ", first,
                        " (", kind_name(kind(ours[first])), " vs the reference's ",
                        kind_name(kind(ref[first])), ")\n");
}

// Relative error over the elements both hold finite.
double finite_error(const std::vector<double>& ours, const std::vector<double>& ref) {
  std::vector<double> a, b;
  for (std::size_t i = 0; i < ref.size(); ++i)
    if (std::isfinite(ref[i]) && std::isfinite(ours[i])) {
      a.push_back(ours[i]);
      b.push_back(ref[i]);
    }
  return a.empty() ? 0.0 : relative_error(a, b);
}

class NonFiniteMatrix : public ::testing::TestWithParam<UspCase> {};

TEST_P(NonFiniteMatrix, KindsMatchTheReference) {
  const UspCase base = GetParam();
  const float inf = std::numeric_limits<float>::infinity();
  std::mt19937 pick(base.seed);
  for (char tensor : {'q', 'k', 'v'})
    for (float value : {std::numeric_limits<float>::quiet_NaN(), inf, -inf})
      // The first token (causal: a row that sees one key) and one drawn at random.
      for (std::int64_t token :
           {std::int64_t{0}, std::int64_t{1} + static_cast<std::int64_t>(
                                                   pick() % static_cast<unsigned>(base.s - 1))}) {
        UspCase p = base;
        p.seed = base.seed * 131 + static_cast<std::uint32_t>(token);
        Inputs in = make_inputs(p);
        Tensor& t = tensor == 'q' ? in.q : tensor == 'k' ? in.k : in.v;
        const std::int64_t head = static_cast<std::int64_t>(pick() % t.shape()[2]);
        const std::int64_t c = static_cast<std::int64_t>(pick() % p.d);
        *static_cast<float*>(t.ptr({0, token, head, c})) = value;
        const std::string what =
            detail::concat(tensor, "[0, ", token, ", ", head, ", ", c, "] = ", value, " ");
        SCOPED_TRACE(what + p.name());

        const Results res = run_usp(p, in);
        const Tensor q = to_dtype(in.q, p.dtype), k = to_dtype(in.k, p.dtype),
                     v = to_dtype(in.v, p.dtype), dout = to_dtype(in.dout, p.dtype);
        const double scale = 1.0 / std::sqrt(static_cast<double>(p.d));
        const BlockMask mask = p.global_mask();
        const reference::ForwardResult f = reference::forward(q, k, v, mask, scale);
        const reference::BackwardResult g = reference::backward(q, k, v, dout, mask, scale);
        const std::vector<double> out = to_doubles(res.out), lse = to_doubles(res.lse),
                                  dq = to_doubles(res.dq), dk = to_doubles(res.dk),
                                  dv = to_doubles(res.dv);
        const std::string bad = kind_mismatches("out", out, f.out) +
                                kind_mismatches("lse", lse, f.lse) +
                                kind_mismatches("dq", dq, g.dq) + kind_mismatches("dk", dk, g.dk) +
                                kind_mismatches("dv", dv, g.dv);
        EXPECT_TRUE(bad.empty()) << bad;
        const double tol = p.dtype == DType::f32 ? 1e-4 : 5e-2;
        EXPECT_LE(finite_error(out, f.out), tol);
        EXPECT_LE(finite_error(lse, f.lse), tol);
      }
}

// Every ring type on 1×4 and 2×2, Ulysses alone (4×1) and one rank, causal and full, fp32 and
// bf16; then the double ring and the general masks (a sliding window, packed documents).
std::vector<UspCase> non_finite_cases() {
  std::vector<UspCase> out;
  std::uint32_t seed = 700;
  const auto add = [&](UspCase p) {
    p.s = 32;
    p.h = 4;
    p.hkv = 2;
    p.d = 8;
    p.seed = seed++;
    out.push_back(p);
  };
  for (const auto& [u, r] : {std::pair{1, 1}, std::pair{4, 1}, std::pair{1, 4}, std::pair{2, 2}})
    for (RingType t : kRingTypes) {
      if (r == 1 && t != RingType::zigzag) continue;
      for (bool causal : {true, false})
        for (DType dt : {DType::f32, DType::bf16})
          add({.type = t, .ulysses = u, .ring = r, .causal = causal, .dtype = dt});
    }
  for (RingType t : {RingType::zigzag, RingType::basic})
    add({.type = t, .ring = 4, .dtype = DType::f16, .double_ring = 2});
  for (RingType t : {RingType::zigzag, RingType::allgather}) {
    add({.type = t, .ring = 4, .window = {5, 0}});
    add({.type = t, .ulysses = 2, .ring = 2, .causal = false, .window = {3, 4}});
    add({.type = t, .ring = 4, .cu_seqlens = {0, 5, 17, 18, 32}});
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(UspNonFinite, NonFiniteMatrix, ::testing::ValuesIn(non_finite_cases()),
                         [](const auto& info) {
                           const UspCase& p = info.param;
                           return detail::concat(
                               ring_type_name(p.type), "_u", p.ulysses, "_r", p.ring,
                               p.double_ring > 0 ? detail::concat("_dr", p.double_ring) : "",
                               p.causal ? "_causal_" : "_full_", dtype_name(p.dtype),
                               p.window.unbounded() ? "" : "_window",
                               p.cu_seqlens.empty() ? "" : "_docs");
                         });

}  // namespace
}  // namespace usp::test
