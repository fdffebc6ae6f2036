#include "memory_estimate.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

#include "usp/error.hpp"
#include "usp/kernel.hpp"

namespace usp::bench {

MemoryModel memory_model(const BenchProblem& p, const RowConfig& c) {
  using u64 = std::uint64_t;
  const u64 es = dtype_size(p.dtype);
  const u64 b = static_cast<u64>(p.batch), h = static_cast<u64>(p.nheads);
  const u64 hkv = static_cast<u64>(p.kv_heads), d = static_cast<u64>(p.head_size);
  const u64 u = static_cast<u64>(c.ulysses), r = static_cast<u64>(c.ring);
  const u64 s_local = static_cast<u64>(c.seq_len) / (u * r);
  const u64 s_ring = static_cast<u64>(c.seq_len) / r;
  const u64 hkv_ring = std::max<u64>(hkv / u, 1);

  const u64 q = b * s_local * h * d;              // elements of a q-shaped shard
  const u64 kv = b * s_local * hkv * d;           // elements of a k- or v-shaped shard
  const u64 kv_ring = b * s_ring * hkv_ring * d;  // after the Ulysses exchange (ring level)
  const u64 lse = b * h * s_local;                // fp32

  // The K/V blocks a rank holds at once: two on a ring (one computed on, one arriving), four on a
  // double ring (the inner ring's two, the phase's block on its outer hop and the next phase's),
  // all r with allgather. The dK/dV partials (fp32, as gradients accumulate in fp32): two on a
  // ring (one computed into, one in flight), four on a double ring (two more on the outer hop);
  // with allgather my block's sum and one partial in flight.
  const bool allgather = c.ring_type == RingType::allgather;
  const bool outer = !allgather && c.double_ring > 0 && static_cast<u64>(c.double_ring) < r;
  const u64 kv_blocks = allgather ? r : (outer ? 4 : 2);
  const u64 dkv_blocks = outer ? 4 : 2;

  MemoryModel m;
  m.minimum = es * (q + 2 * kv + q) + 4 * lse + kv_blocks * es * (2 * kv_ring);
  if (!c.fwd_only) m.minimum += es * (q + q + 2 * kv) + dkv_blocks * 4 * (2 * kv_ring);

  u64 e = m.minimum;
  e += es * (q + 2 * kv_ring + q);        // exchanged q, k, v, out
  e += 4 * (2 * q + 2 * lse);             // fp32 out accumulator + block partial, their lse
  if (!allgather) e += es * 2 * kv_ring;  // a third K/V buffer
  e += 2 * es * std::max(q, kv_ring);     // all-to-all staging
  if (!c.fwd_only) {
    e += es * (q + q + 2 * kv_ring);  // exchanged dout, dq, dk, dv
    e += 4 * (q + 2 * kv_ring);       // fp32 dq, dk, dv accumulators
    e += 4 * (q + 2 * kv_ring);       // fp32 block dq, dk, dv
    e += 4 * (2 * kv_ring);           // a third fp32 dK/dV ring buffer (two are in the minimum)
    if (allgather && r > 1) e += 4 * (2 * kv_ring) * (2 * r - 3);  // every partial at once
    e += 4 * (q + lse);                 // fp32 D = rowsum(dout ∘ out) and workspace
    e += 2 * 4 * std::max(q, kv_ring);  // fp32 staging
  }
  m.estimate = e;
  return m;
}

std::uint64_t kernel_scratch_bytes(const BenchProblem& p, const RowConfig& c, int threads) {
  const std::int64_t s = c.seq_len / c.ring, h = p.nheads / c.ulysses;
  const std::int64_t hkv = std::max(p.kv_heads / c.ulysses, 1);
  try {
    std::uint64_t bytes =
        cpu_kernel_scratch_bytes(false, p.batch, s, s, h, hkv, p.head_size, threads);
    if (!c.fwd_only)
      bytes = std::max<std::uint64_t>(
          bytes, cpu_kernel_scratch_bytes(true, p.batch, s, s, h, hkv, p.head_size, threads));
    return bytes;
  } catch (const Error&) {  // a head size the CPU kernel refuses: the run reports it itself
    return 0;
  }
}

std::uint64_t mem_available_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("MemAvailable:", 0) == 0) {
      std::istringstream is(line.substr(13));
      std::uint64_t kb = 0;
      is >> kb;
      return kb * 1024;
    }
  }
  return 0;
}

}  // namespace usp::bench
