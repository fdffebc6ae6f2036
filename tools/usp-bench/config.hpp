// What one benchmark row measures: the problem (shared by every row of a run) and the sweep point.
#pragma once

#include <cstdint>
#include <string>

#include <vector>

#include "usp/dtype.hpp"
#include "usp/layout.hpp"
#include "usp/mask.hpp"

namespace usp::bench {

struct BenchProblem {
  int batch = 2;
  int nheads = 16;
  int kv_heads = 16;
  int head_size = 128;
  DType dtype = DType::f16;
  bool causal = true;
  std::uint64_t seed = 1234;
  Window window{};                         // --window
  std::int64_t doc_len = 0;                // --doc-lengths: equal documents (the last shorter)
  std::vector<std::int64_t> cu_seqlens{};  // --cu-seqlens
  int head_chunks = 0;                     // --head-chunks: UspConfig::head_chunks (0: automatic)

  bool masked() const { return !window.unbounded() || doc_len > 0 || !cu_seqlens.empty(); }
  // The document starts of a row of seq_len tokens (empty: one document).
  std::vector<std::int64_t> documents(std::int64_t seq_len) const;
};

struct RowConfig {
  RingType ring_type = RingType::zigzag;
  std::int64_t seq_len = 0;  // global
  int ulysses = 1;
  int ring = 1;
  bool fwd_only = true;
  int double_ring = 0;  // UspConfig::double_ring: inner ring size, 0 = the single ring

  int world() const { return ulysses * ring; }
  bool operator==(const RowConfig&) const = default;
  // "zigzag s=4096 2x4 fwd" ("zigzag/dr2 ..." with a double ring of inner rings of 2)
  std::string describe() const;
  // "zigzag", or "zigzag/dr2" with a double ring
  std::string ring_label() const;
};

// The seed's operation count: F = 4·b·s²·h·d, halved when causal, ×3.5 with the backward pass.
double row_flops(const BenchProblem& p, const RowConfig& c);
// F / latency / 1e12 (aggregated over all ranks, as in the seed).
double tflops(double flops, double latency_ms);

}  // namespace usp::bench
