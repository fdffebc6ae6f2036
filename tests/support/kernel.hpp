// Kernel test cases: one attention problem's shape, its random inputs, a kernel's forward and
// backward on them, and the comparison with the float64 oracle under tolerances relative to a
// naive same-dtype attention (tolerance.hpp).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "support/tolerance.hpp"
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
  void* do_allocate(std::size_t bytes) override;
  void do_deallocate(void* p, std::size_t) noexcept override;

 private:
  Device device_;
};

// One kernel call's shape: q [b, sq, h, d], k/v [b, sk, hkv, d].
struct KernelCase {
  std::int64_t b = 1, sq = 1, sk = 1, h = 1, hkv = 1, d = 16;
  MaskMode mask = MaskMode::none;
  DType dtype = DType::f32;

  std::string str() const;
  KernelCase with(MaskMode m, DType t = DType::f32) const {
    KernelCase c = *this;
    c.mask = m;
    c.dtype = t;
    return c;
  }
  Tensor::Dims q_shape() const { return {b, sq, h, d}; }
  Tensor::Dims kv_shape() const { return {b, sk, hkv, d}; }
  Tensor::Dims lse_shape() const { return {b, h, sq}; }
};

struct Inputs {
  Tensor q, k, v, dout;
  float scale = 1.0f;
};

// Uniform random q, k, v, dout in the case's dtype; scale 1/sqrt(d).
Inputs make_inputs(const KernelCase& c, std::mt19937& rng);

struct Forward {
  Tensor out, lse;
};
struct Grads {
  Tensor dq, dk, dv;
};

// Runs the kernel's forward into fresh out (out_dtype) and fp32 lse.
Forward run_forward(AttentionKernel& kernel, const Inputs& in, const BlockMask& mask,
                    DType out_dtype = DType::f32);
// Runs the kernel's backward into fresh fp32 gradients.
Grads run_backward(AttentionKernel& kernel, const Inputs& in, const Forward& f,
                   const BlockMask& mask);

bool all_finite_or_neg_inf(const Tensor& t);
bool bitwise_equal(const Tensor& a, const Tensor& b);
// Every tensor of `a` equals its partner in `b` bit for bit.
void expect_same_bits(const Forward& a, const Forward& b);
void expect_same_bits(const Grads& a, const Grads& b);

// Relative errors of out and lse against the oracle, each within its tolerance (cap = the old
// fixed bound; kUnbounded skips lse).
void expect_forward_matches(const Inputs& in, const BlockMask& mask, const Forward& f,
                            double cap_out, double cap_lse);
// Gradient errors (grad_error with the 1%-of-‖dv‖ floor, or plain relative errors) against the
// oracle, within the tolerance (kUnbounded skips one); `shift` is added to the oracle (gradients
// accumulated onto it).
struct GradCheck {
  double cap_dq, cap_dk, cap_dv;
  bool dv_floor = true;  // false: plain relative errors
  double shift = 0;
};
void expect_backward_matches(const Inputs& in, const BlockMask& mask, const Grads& g,
                             const GradCheck& c);

// Forward (fp32 out and, for half inputs, out in the input dtype) and backward of `kernel` on
// fresh random inputs of case `c`, against the oracle.
void expect_matches_reference(AttentionKernel& kernel, const KernelCase& c,
                              bool with_backward = true);

}  // namespace usp::test
