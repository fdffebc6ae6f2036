#include "kernel/cpu/cpu_kernel.hpp"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <thread>

#include "core/finite.hpp"
#include "kernel/cpu/amx/amx_attention.hpp"
#include "kernel/cpu/workspace.hpp"
#include "usp/cpu.hpp"
#include "usp/error.hpp"

namespace usp {

namespace cpu {

namespace {

void check_host(const Tensor& t, const char* name) {
  USP_CHECK_ARG(t.device() == Device::host, name, ": device ", device_name(t.device()),
                ", the CPU kernel needs host tensors");
}

void check_scale(float scale) {
  USP_CHECK_ARG(std::isfinite(scale) && scale > 0.0f,
                "scale must be a positive finite number, got ", scale);
}

// The AMX tiles serve bf16 inputs when the dispatch says amx (USP_CPU_PATH is read per call, as
// everywhere) and the kernel was not built on the portable ops.
bool amx_active(const TileOps& ops) {
  return amx::compiled() && std::string_view(ops.isa) != "generic" && cpu_path() == CpuPath::amx;
}

// The AMX paths take the local modes; a general mask (documents, windows) runs on the vector
// loops.
bool use_amx(const TileOps& ops, const Tensor& q, const BlockMask& mask) {
  return q.dtype() == DType::bf16 && !mask.general() && amx_active(ops);
}

// The AMX tiles multiply whole tiles, hidden pairs included (as exact zeros): a causal call with
// a NaN or an infinity among the operands of those products would spread it to rows and keys that
// never see it. Such calls run on the vector loops, which keep hidden pairs out of the sums. The
// scan costs one read of the operands, on the masked (diagonal) calls only.
bool amx_operands_finite(const BlockMask& mask, std::initializer_list<const Tensor*> ts) {
  if (mask.mode() == MaskMode::none) return true;
  for (const Tensor* t : ts)
    if (!detail::all_finite(*t)) return false;
  return true;
}

// lse as the AMX backward needs it in a masked call: no NaN and no +inf (-inf: a row without keys).
bool lse_usable(const BlockMask& mask, const Tensor& lse) {
  if (mask.mode() == MaskMode::none) return true;
  const View vl(lse);
  for (std::int64_t b = 0; b < lse.size(0); ++b)
    for (std::int64_t h = 0; h < lse.size(1); ++h)
      for (std::int64_t i = 0; i < lse.size(2); ++i) {
        const float l = *static_cast<const float*>(vl.at(b, h, i));
        if (l != l || l == std::numeric_limits<float>::infinity()) return false;
      }
  return true;
}

}  // namespace

CpuKernel::CpuKernel(int threads, const TileOps& ops, Allocator& scratch)
    : pool_(threads), ops_(ops), scratch_(scratch) {}

std::string CpuKernel::name() const {
  return std::string("cpu (") + (amx_active(ops_) ? "amx bf16, " : "") + ops_.isa + ", " +
         std::to_string(pool_.size()) + " threads)";
}

void CpuKernel::forward(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
                        float scale, Tensor& out, Tensor& lse) {
  check_forward_args(q, k, v, mask, out, lse);
  check_host(q, "q");
  check_scale(scale);
  const BlockProblem p = make_block_problem(q, k, mask, scale);
  const detail::ThreadPool::Hold hold(pool_);  // one turn at the cores for the whole call
  if (use_amx(ops_, q, mask) && amx_operands_finite(mask, {&v}) &&
      amx::forward(p, context(), q, k, v, out, lse))
    return;
  run_forward(p, context(), q, k, v, out, lse);
}

bool CpuKernel::forward_accumulate(const Tensor& q, const Tensor& k, const Tensor& v,
                                   const BlockMask& mask, float scale, Tensor& out, Tensor& lse) {
  check_forward_args(q, k, v, mask, out, lse);
  check_host(q, "q");
  check_scale(scale);
  USP_CHECK_ARG(out.dtype() == DType::f32, "forward_accumulate: out ", out.describe(),
                " must be fp32 (the accumulator)");
  BlockProblem p = make_block_problem(q, k, mask, scale);
  p.fold = true;
  const detail::ThreadPool::Hold hold(pool_);
  if (use_amx(ops_, q, mask) && amx_operands_finite(mask, {&v}) &&
      amx::forward(p, context(), q, k, v, out, lse))
    return true;
  run_forward(p, context(), q, k, v, out, lse);
  return true;
}

void CpuKernel::backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                         const Tensor& lse, const Tensor& dout, const BlockMask& mask, float scale,
                         Tensor& dq, Tensor& dk, Tensor& dv, bool accumulate) {
  check_backward_args(q, k, v, out, lse, dout, mask, dq, dk, dv);
  check_host(q, "q");
  check_scale(scale);
  const BlockProblem p = make_block_problem(q, k, mask, scale);
  const detail::ThreadPool::Hold hold(pool_);
  if (use_amx(ops_, q, mask) && amx_operands_finite(mask, {&q, &k, &v, &out, &dout}) &&
      lse_usable(mask, lse) &&
      amx::backward(p, context(), q, k, v, out, lse, dout, dq, dk, dv, accumulate))
    return;
  run_backward(p, context(), q, k, v, out, lse, dout, dq, dk, dv, accumulate);
}

}  // namespace cpu

std::size_t cpu_kernel_scratch_bytes(bool backward, std::int64_t b, std::int64_t sq,
                                     std::int64_t sk, std::int64_t h, std::int64_t hkv,
                                     std::int64_t d, int threads) {
  USP_CHECK_ARG(b >= 0 && sq >= 0 && sk >= 0 && d >= 1 && d <= cpu::kMaxD && h >= 1 && hkv >= 1 &&
                    h % hkv == 0,
                "cpu_kernel_scratch_bytes: need b, sq, sk >= 0, 1 <= d <= ", cpu::kMaxD,
                " and h a positive multiple of hkv; got b ", b, ", sq ", sq, ", sk ", sk, ", h ", h,
                ", hkv ", hkv, ", d ", d);
  USP_CHECK_ARG(threads >= 0, "cpu_kernel_scratch_bytes: threads must be >= 0, got ", threads);
  cpu::BlockProblem p{};
  p.b = b;
  p.sq = sq;
  p.sk = sk;
  p.h = h;
  p.hkv = hkv;
  p.d = d;
  p.dpad = cpu::pad_vec(static_cast<int>(d));
  // The pool's size for `threads` (thread_pool.cpp).
  const int workers =
      threads > 0 ? threads : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  return sizeof(float) *
         cpu::workspace_floats(backward ? cpu::Pass::backward : cpu::Pass::forward, p, workers);
}

std::unique_ptr<AttentionKernel> make_cpu_kernel(int threads, Allocator* scratch) {
  USP_CHECK_ARG(threads >= 0, "threads must be >= 0 (0 = hardware concurrency), got ", threads);
  USP_CHECK_ARG(scratch == nullptr || scratch->device() == Device::host,
                "make_cpu_kernel: scratch allocator is on device ",
                device_name(scratch != nullptr ? scratch->device() : Device::host),
                ", the CPU kernel needs a host allocator");
  return std::make_unique<cpu::CpuKernel>(threads, cpu::best_tile_ops(),
                                          scratch != nullptr ? *scratch : default_host_allocator());
}

}  // namespace usp
