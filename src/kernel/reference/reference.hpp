// The float64 naive oracle the tests compare every kernel and every parallel algorithm against:
// host tensors of any dtype in, f64-accurate doubles out (an internal header; tests reach src/).
#pragma once

#include <vector>

#include "usp/kernel.hpp"
#include "usp/tensor.hpp"

namespace usp::reference {

struct ForwardResult {
  std::vector<double> out;  // [b, sq, h, d]
  std::vector<double> lse;  // [b, h, sq]
};
struct BackwardResult {
  std::vector<double> dq, dk, dv;  // shapes of q, k, v
};
ForwardResult forward(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
                      double scale);
// Computes the true gradients of the attention (q, k, v, dout) → dq, dk, dv, analytically.
BackwardResult backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dout,
                        const BlockMask& mask, double scale);

}  // namespace usp::reference
