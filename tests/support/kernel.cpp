#include "support/kernel.hpp"

#include <cmath>
#include <cstdlib>
#include <limits>
#include <sstream>

#include "kernel/reference/reference.hpp"
#include "support/random.hpp"
#include "usp/error.hpp"

namespace usp::test {

void* PoisonAllocator::do_allocate(std::size_t bytes) {
  const std::size_t rounded = (bytes + 63) / 64 * 64 + 64;
  auto* p = static_cast<float*>(std::aligned_alloc(64, rounded));
  if (p == nullptr) throw Error(ErrorKind::internal, "test allocator: out of memory");
  for (std::size_t i = 0; i < rounded / sizeof(float); ++i)
    p[i] = std::numeric_limits<float>::quiet_NaN();
  return p;
}

void PoisonAllocator::do_deallocate(void* p, std::size_t) noexcept {
  std::free(p);
}

std::string KernelCase::str() const {
  std::ostringstream os;
  os << "b=" << b << " sq=" << sq << " sk=" << sk << " h=" << h << " hkv=" << hkv << " d=" << d
     << " mask=" << mask_name(mask) << " dtype=" << dtype_name(dtype);
  return os.str();
}

Inputs make_inputs(const KernelCase& c, std::mt19937& rng) {
  Inputs in;
  in.q = random_tensor(c.q_shape(), c.dtype, rng);
  in.k = random_tensor(c.kv_shape(), c.dtype, rng);
  in.v = random_tensor(c.kv_shape(), c.dtype, rng);
  in.dout = random_tensor(c.q_shape(), c.dtype, rng);
  in.scale = 1.0f / std::sqrt(static_cast<float>(c.d));
  return in;
}

Forward run_forward(AttentionKernel& kernel, const Inputs& in, const BlockMask& mask,
                    DType out_dtype) {
  Forward f{Tensor::empty(in.q.shape(), out_dtype),
            Tensor::empty({in.q.size(0), in.q.size(2), in.q.size(1)}, DType::f32)};
  kernel.forward(in.q, in.k, in.v, mask, in.scale, f.out, f.lse);
  return f;
}

Grads run_backward(AttentionKernel& kernel, const Inputs& in, const Forward& f,
                   const BlockMask& mask) {
  Grads g{Tensor::empty(in.q.shape(), DType::f32), Tensor::empty(in.k.shape(), DType::f32),
          Tensor::empty(in.v.shape(), DType::f32)};
  kernel.backward(in.q, in.k, in.v, f.out, f.lse, in.dout, mask, in.scale, g.dq, g.dk, g.dv, false);
  return g;
}

bool all_finite_or_neg_inf(const Tensor& t) {
  for (double x : to_doubles(t))
    if (std::isnan(x) || x == std::numeric_limits<double>::infinity()) return false;
  return true;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  const auto x = to_doubles(a), y = to_doubles(b);
  if (x.size() != y.size()) return false;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) != std::isnan(y[i])) return false;
    if (!std::isnan(x[i]) && (x[i] != y[i] || std::signbit(x[i]) != std::signbit(y[i])))
      return false;
  }
  return true;
}

void expect_same_bits(const Forward& a, const Forward& b) {
  EXPECT_TRUE(bitwise_equal(a.out, b.out)) << "out";
  EXPECT_TRUE(bitwise_equal(a.lse, b.lse)) << "lse";
}

void expect_same_bits(const Grads& a, const Grads& b) {
  EXPECT_TRUE(bitwise_equal(a.dq, b.dq)) << "dq";
  EXPECT_TRUE(bitwise_equal(a.dk, b.dk)) << "dk";
  EXPECT_TRUE(bitwise_equal(a.dv, b.dv)) << "dv";
}

void expect_forward_matches(const Inputs& in, const BlockMask& mask, const Forward& f,
                            double cap_out, double cap_lse) {
  const auto ref = reference::forward(in.q, in.k, in.v, mask, in.scale);
  const auto naive = naive_forward(in.q, in.k, in.v, mask, in.scale);
  EXPECT_TRUE(within(relative_error(to_doubles(f.out), ref.out), relative_error(naive.out, ref.out),
                     {cap_out}))
      << "out in " << dtype_name(f.out.dtype());
  EXPECT_TRUE(within(relative_error(to_doubles(f.lse), ref.lse), relative_error(naive.lse, ref.lse),
                     {cap_lse}))
      << "lse";
}

void expect_backward_matches(const Inputs& in, const BlockMask& mask, const Grads& g,
                             const GradCheck& c) {
  auto ref = reference::backward(in.q, in.k, in.v, in.dout, mask, in.scale);
  auto naive = naive_backward(in.q, in.k, in.v, in.dout, mask, in.scale);
  for (auto* v : {&ref.dq, &ref.dk, &ref.dv, &naive.dq, &naive.dk, &naive.dv})
    for (double& x : *v) x += c.shift;
  const double floor = c.dv_floor ? 1e-2 * norm(ref.dv) : 0.0;
  const auto check = [&](const char* name, const Tensor& x, const std::vector<double>& r,
                         const std::vector<double>& n, double cap) {
    if (cap == kUnbounded) return;
    EXPECT_TRUE(
        within(grad_error(x, r, floor), grad_error(n, r, floor), {cap, kNaiveMultiple, kGradFloor}))
        << name;
  };
  check("dq", g.dq, ref.dq, naive.dq, c.cap_dq);
  check("dk", g.dk, ref.dk, naive.dk, c.cap_dk);
  check("dv", g.dv, ref.dv, naive.dv, c.cap_dv);
}

void expect_matches_reference(AttentionKernel& kernel, const KernelCase& c, bool with_backward) {
  const std::uint32_t seed = fresh_seed();
  SCOPED_TRACE(c.str() + " seed=" + std::to_string(seed));
  std::mt19937 rng(seed);
  const Inputs in = make_inputs(c, rng);
  const bool half = c.dtype != DType::f32;
  const double tol_fwd = half ? 1e-2 : 1e-5;
  const double tol_bwd = half ? 1e-2 : 1e-4;

  const Forward f = run_forward(kernel, in, c.mask);
  EXPECT_TRUE(all_finite_or_neg_inf(f.out));
  EXPECT_TRUE(all_finite_or_neg_inf(f.lse));
  expect_forward_matches(in, c.mask, f, tol_fwd, tol_fwd);
  if (half)
    expect_forward_matches(in, c.mask, run_forward(kernel, in, c.mask, c.dtype), 1e-2, 1e-2);
  if (!with_backward) return;

  const Grads g = run_backward(kernel, in, f, c.mask);
  EXPECT_TRUE(all_finite_or_neg_inf(g.dq) && all_finite_or_neg_inf(g.dk) &&
              all_finite_or_neg_inf(g.dv));
  expect_backward_matches(in, c.mask, g, {tol_bwd, tol_bwd, tol_bwd});
}

}  // namespace usp::test
