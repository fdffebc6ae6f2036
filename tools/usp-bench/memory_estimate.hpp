// Per-rank memory: the analytic minimum a sharded implementation must hold, and a generous upper
// estimate used to refuse runs that cannot fit in this machine's memory.
#pragma once

#include <cstdint>

#include "config.hpp"

namespace usp::bench {

struct MemoryModel {
  // Bytes per rank that any sharded implementation must hold during an iteration:
  //   its shard of q, k, v, out (dtype) and lse (fp32, [b, h, s/(u·r)]),
  //   + 2 K/V ring buffers in flight (double-buffered, ring level: k and v each
  //     [b, s/r, max(hkv/u, 1), d] in dtype),
  //   + with backward: its shard of dout, dq, dk, dv (dtype), and the 2 dK/dV buffers in flight on
  //     the second ring (the partial gradients of the K/V block in hand, ring level like the K/V
  //     buffers, fp32 because gradients accumulate in fp32).
  std::uint64_t minimum = 0;
  // Upper estimate: the minimum plus the Ulysses-exchanged copies (q, k, v, out, and dout/dq/dk/dv
  // with backward) in dtype, fp32 accumulators and block partials (out, lse; dq, dk, dv), a third
  // K/V buffer, a third fp32 dK/dV ring buffer with backward, and all-to-all staging of twice the
  // largest tensor.
  std::uint64_t estimate = 0;
};

MemoryModel memory_model(const BenchProblem& p, const RowConfig& c);

// The host scratch of one CPU kernel call at a ring step (the largest block: the rank's whole
// ring-level sequence, [b, s/r, h/u, d]; the backward's when the row has one) for `threads`
// kernel threads, which the tensors of the model above leave out. 0 when the CPU kernel does not
// take the head size.
std::uint64_t kernel_scratch_bytes(const BenchProblem& p, const RowConfig& c, int threads);

// MemAvailable from /proc/meminfo in bytes (0 if unknown).
std::uint64_t mem_available_bytes();

}  // namespace usp::bench
