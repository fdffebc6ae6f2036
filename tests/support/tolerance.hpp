// Tolerances relative to a naive same-dtype attention: a result's error against the float64
// oracle may be at most k times the error of the naive attention computed in the inputs' dtype
// (scores, probabilities and outputs rounded to it, sums in fp32) against the same oracle, plus a
// tiny absolute floor; and never more than the fixed bound (`cap`) the test held before.
#pragma once

#include <gtest/gtest.h>

#include <limits>
#include <vector>

#include "usp/kernel.hpp"
#include "usp/tensor.hpp"

namespace usp::test {

struct NaiveForward {
  std::vector<double> out;  // [b, sq, h, d], rounded to q's dtype
  std::vector<double> lse;  // [b, h, sq]
};
struct NaiveBackward {
  std::vector<double> dq, dk, dv;  // fp32 sums of dtype-rounded products
};

NaiveForward naive_forward(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
                           float scale);
NaiveBackward naive_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dout,
                             const BlockMask& mask, float scale);

// A cap that leaves a value unchecked (the test bounds it another way).
inline constexpr double kUnbounded = std::numeric_limits<double>::infinity();

// Calibrated on the generic, AVX2 and AVX-512 paths: the kernel's error stays within ~10× the
// naive one but for the extreme-logit case; where the naive run happens to be exact (one visible
// key) the kernel still carries a few fp32 ulps, hence the floors (the largest errors seen stay
// below half the bound). Gradient errors are measured against max(‖ref‖, 1% of ‖dv‖)
// (grad_error), which magnifies that cancellation; their floor is still half the old fixed fp32
// bound of 1e-4.
inline constexpr double kNaiveMultiple = 16;
inline constexpr double kForwardFloor = 2e-6;
inline constexpr double kGradFloor = 5e-5;

struct Tolerance {
  double cap;                    // the fixed bound: the relative bound never exceeds it
  double k = kNaiveMultiple;     // allowed multiple of the naive same-dtype error
  double floor = kForwardFloor;  // floor for the cases the naive run gets (nearly) exact
};

// err ≤ min(cap, k·naive_err + floor), with both errors in the message.
::testing::AssertionResult within(double err, double naive_err, const Tolerance& tol);

// ‖x − ref‖ / max(‖ref‖, floor) for gradients. With a single visible key dq and dk are exactly 0
// in float64 and only fp32 cancellation in dP − D is left, which a pure relative error would
// report as infinite; the floor is 1% of ‖dv‖ (dv is never cancelled and shares dk's scale).
double grad_error(const std::vector<double>& x, const std::vector<double>& ref, double floor);
inline double grad_error(const Tensor& x, const std::vector<double>& ref, double floor) {
  return grad_error(to_doubles(x), ref, floor);
}
double norm(const std::vector<double>& x);

}  // namespace usp::test
