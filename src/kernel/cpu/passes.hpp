// The CPU kernel's forward and backward passes (forward.cpp, backward.cpp; the AMX ones in amx/)
// and what they run on.
#pragma once

#include <atomic>
#include <cstdint>

#include <cstdint>

#include "kernel/cpu/block_problem.hpp"
#include "kernel/cpu/tensor_view.hpp"
#include "kernel/cpu/tile_ops.hpp"
#include "usp/memory.hpp"
#include "usp/tensor.hpp"
#include "util/thread_pool.hpp"

namespace usp::cpu {

// What the passes run on: the inner loops, the pool and the allocator of their workspace.
struct Context {
  const TileOps& ops;
  detail::ThreadPool& pool;
  Allocator& scratch;
  // Score tiles (query tile × key tile) the forward computed, for tests that check that the
  // work follows the mask (null: not counted).
  std::atomic<std::int64_t>* score_tiles = nullptr;
};

void run_forward(const BlockProblem& p, const Context& cx, const Tensor& q, const Tensor& k,
                 const Tensor& v, Tensor& out, Tensor& lse);
void run_backward(const BlockProblem& p, const Context& cx, const Tensor& q, const Tensor& k,
                  const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& dout,
                  Tensor& dq, Tensor& dk, Tensor& dv, bool accumulate);

// Forward prologue of `rows` query rows starting at i0 of (batch bi, head hi), padded to
// rows_pad, shared by the fp32 and AMX forwards: the running max m (base-2 units), sum l and
// accumulator acc (pitch dp) start empty (-inf, 0, 0), or with p.fold from the partial result in
// out (fp32) and lse: m = lse·log2 e, l = 1, acc = out row (an lse of -inf starts empty).
void start_forward_rows(const BlockProblem& p, float* acc, int dp, int d, float* m, float* l,
                        int rows, int rows_pad, const View& vo, const View& vl, std::int64_t bi,
                        std::int64_t hi, std::int64_t i0);
// Forward epilogue of `rows` query rows starting at i0 of (batch bi, head hi), shared by the fp32
// and AMX forwards: each acc row (pitch dp) is divided by its softmax sum l and stored to out
// (its dtype); lse = (m + log2 l)·ln 2 with the running max m in base-2 units. A row with l = 0
// saw no key: zeros and lse = -inf. acc is modified.
void finish_forward_rows(float* acc, int dp, int d, const float* m, const float* l, int rows,
                         const View& vo, const View& vl, std::int64_t bi, std::int64_t hi,
                         std::int64_t i0);

}  // namespace usp::cpu
