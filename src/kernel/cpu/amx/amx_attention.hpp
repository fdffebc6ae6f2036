// The AMX (bf16 tile) forward and backward of the CPU kernel. CpuKernel calls them for bf16
// inputs when usp::cpu_path() is amx; they return false (and touch nothing) when they do not
// take the call, and the fp32 passes run instead.
#pragma once

#include "kernel/cpu/passes.hpp"

namespace usp::cpu::amx {

// Whether this build has the AMX path at all (x86-64 with GCC or Clang).
bool compiled();

bool forward(const BlockProblem& p, const Context& cx, const Tensor& q, const Tensor& k,
             const Tensor& v, Tensor& out, Tensor& lse);
bool backward(const BlockProblem& p, const Context& cx, const Tensor& q, const Tensor& k,
              const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& dout, Tensor& dq,
              Tensor& dk, Tensor& dv, bool accumulate);

}  // namespace usp::cpu::amx
