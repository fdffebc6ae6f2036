// Helpers for the kernel tests: fresh random tensors with a printed seed, comparison against the
// float64 reference.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernel/reference/reference.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"
#include "usp/memory.hpp"
#include "usp/tensor.hpp"

namespace usp::test {

// Host memory whose fresh bytes are quiet NaNs, so a kernel that reads scratch it never wrote
// produces NaNs instead of passing by luck. `d` is the device it claims to be on (a kernel must
// refuse scratch on the wrong one).
class PoisonAllocator final : public Allocator {
 public:
  explicit PoisonAllocator(Device d = Device::host) : device_(d) {}
  Device device() const override { return device_; }

 protected:
  void* do_allocate(std::size_t bytes) override {
    const std::size_t rounded = (bytes + 63) / 64 * 64 + 64;
    auto* p = static_cast<float*>(std::aligned_alloc(64, rounded));
    if (p == nullptr) throw Error(ErrorKind::internal, "test allocator: out of memory");
    for (std::size_t i = 0; i < rounded / sizeof(float); ++i)
      p[i] = std::numeric_limits<float>::quiet_NaN();
    return p;
  }
  void do_deallocate(void* p, std::size_t) noexcept override { std::free(p); }

 private:
  Device device_;
};

// A fresh seed per call (from std::random_device), reported by the caller on failure.
inline std::uint32_t fresh_seed() {
  static std::random_device rd;
  return rd();
}

// Uniform values in [-amp, amp) stored as dtype t.
inline Tensor random_tensor(const Tensor::Dims& shape, DType t, std::mt19937& rng,
                            float amp = 1.0f) {
  Tensor f = Tensor::empty(shape, DType::f32);
  std::uniform_real_distribution<float> u(-amp, amp);
  float* p = f.data_as<float>();
  for (std::int64_t i = 0; i < f.numel(); ++i) p[i] = u(rng);
  return t == DType::f32 ? f : to_dtype(f, t);
}

inline Tensor filled(const Tensor::Dims& shape, float value) {
  Tensor f = Tensor::empty(shape, DType::f32);
  float* p = f.data_as<float>();
  for (std::int64_t i = 0; i < f.numel(); ++i) p[i] = value;
  return f;
}

inline bool all_finite_or_neg_inf(const Tensor& t) {
  for (double x : to_doubles(t))
    if (std::isnan(x) || x == std::numeric_limits<double>::infinity()) return false;
  return true;
}

inline bool bitwise_equal(const Tensor& a, const Tensor& b) {
  const auto x = to_doubles(a), y = to_doubles(b);
  if (x.size() != y.size()) return false;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i]) != std::isnan(y[i])) return false;
    if (!std::isnan(x[i]) && (x[i] != y[i] || std::signbit(x[i]) != std::signbit(y[i])))
      return false;
  }
  return true;
}

// ‖x − ref‖ / max(‖ref‖, floor) for gradients. With a single visible key dq and dk are exactly 0
// in float64 and only fp32 cancellation in dP − D is left, which a pure relative error would
// report as infinite; the floor is 1% of ‖dv‖ (dv is never cancelled and shares dk's scale).
inline double grad_error(const Tensor& x, const std::vector<double>& ref, double floor) {
  double num = 0, den = 0;
  const auto xd = to_doubles(x);
  for (std::size_t i = 0; i < ref.size(); ++i) {
    num += (xd[i] - ref[i]) * (xd[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  if (num == 0) return 0;
  return std::sqrt(num) / std::max(std::sqrt(den), floor);
}

inline double norm(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return std::sqrt(s);
}

struct Problem {
  std::int64_t b = 1, sq = 1, sk = 1, h = 1, hkv = 1, d = 16;
  MaskMode mask = MaskMode::none;
  DType dtype = DType::f32;

  std::string str() const {
    std::ostringstream os;
    os << "b=" << b << " sq=" << sq << " sk=" << sk << " h=" << h << " hkv=" << hkv << " d=" << d
       << " mask=" << mask_name(mask) << " dtype=" << dtype_name(dtype);
    return os.str();
  }
};

struct Inputs {
  Tensor q, k, v, dout;
  float scale;
};

inline Inputs make_inputs(const Problem& p, std::mt19937& rng) {
  Inputs in;
  in.q = random_tensor({p.b, p.sq, p.h, p.d}, p.dtype, rng);
  in.k = random_tensor({p.b, p.sk, p.hkv, p.d}, p.dtype, rng);
  in.v = random_tensor({p.b, p.sk, p.hkv, p.d}, p.dtype, rng);
  in.dout = random_tensor({p.b, p.sq, p.h, p.d}, p.dtype, rng);
  in.scale = 1.0f / std::sqrt(static_cast<float>(p.d));
  return in;
}

// Runs forward (fp32 out and, for half inputs, out in the input dtype) and backward on `kernel`
// and asserts the relative errors against the float64 reference.
inline void expect_matches_reference(AttentionKernel& kernel, const Problem& p,
                                     bool with_backward = true) {
  const std::uint32_t seed = fresh_seed();
  SCOPED_TRACE(p.str() + " seed=" + std::to_string(seed));
  std::mt19937 rng(seed);
  const Inputs in = make_inputs(p, rng);
  const bool half = p.dtype != DType::f32;
  const double tol_fwd = half ? 1e-2 : 1e-5;
  const double tol_bwd = half ? 1e-2 : 1e-4;

  Tensor out = Tensor::empty({p.b, p.sq, p.h, p.d}, DType::f32);
  Tensor lse = Tensor::empty({p.b, p.h, p.sq}, DType::f32);
  kernel.forward(in.q, in.k, in.v, p.mask, in.scale, out, lse);
  const auto ref = reference::forward(in.q, in.k, in.v, p.mask, in.scale);
  EXPECT_TRUE(all_finite_or_neg_inf(out));
  EXPECT_TRUE(all_finite_or_neg_inf(lse));
  EXPECT_LE(relative_error(to_doubles(out), ref.out), tol_fwd) << "out";
  EXPECT_LE(relative_error(to_doubles(lse), ref.lse), tol_fwd) << "lse";
  if (half) {
    Tensor out_h = Tensor::empty({p.b, p.sq, p.h, p.d}, p.dtype);
    Tensor lse_h = Tensor::empty({p.b, p.h, p.sq}, DType::f32);
    kernel.forward(in.q, in.k, in.v, p.mask, in.scale, out_h, lse_h);
    EXPECT_LE(relative_error(to_doubles(out_h), ref.out), 1e-2) << "out in " << dtype_name(p.dtype);
  }
  if (!with_backward) return;

  Tensor dq = Tensor::empty({p.b, p.sq, p.h, p.d}, DType::f32);
  Tensor dk = Tensor::empty({p.b, p.sk, p.hkv, p.d}, DType::f32);
  Tensor dv = Tensor::empty({p.b, p.sk, p.hkv, p.d}, DType::f32);
  kernel.backward(in.q, in.k, in.v, out, lse, in.dout, p.mask, in.scale, dq, dk, dv, false);
  const auto g = reference::backward(in.q, in.k, in.v, in.dout, p.mask, in.scale);
  EXPECT_TRUE(all_finite_or_neg_inf(dq) && all_finite_or_neg_inf(dk) && all_finite_or_neg_inf(dv));
  const double floor = 1e-2 * norm(g.dv);
  EXPECT_LE(grad_error(dq, g.dq, floor), tol_bwd) << "dq";
  EXPECT_LE(grad_error(dk, g.dk, floor), tol_bwd) << "dk";
  EXPECT_LE(grad_error(dv, g.dv, floor), tol_bwd) << "dv";
}

}  // namespace usp::test
