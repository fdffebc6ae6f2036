// Internal argument checks shared by the kernels and the reference.
#pragma once

#include "usp/kernel.hpp"

namespace usp::detail {

// q [b, sq, h, d], k/v [b, sk, hkv, d]: ranks, sizes >= 1, devices, last-dim strides, dtypes,
// h % hkv, d <= 256, causal masks need sq == sk.
void check_qkv(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask);

}  // namespace usp::detail
