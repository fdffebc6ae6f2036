// Command line of usp-attn.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "usp/dtype.hpp"
#include "usp/layout.hpp"

namespace usp::attn_tool {

struct Options {
  std::string q, k, v, dout, out_dir;
  int ulysses = 1;
  int ring = 1;
  RingType ring_type = RingType::basic;
  int double_ring = 0;  // inner ring size (UspConfig::double_ring); 0: the single ring
  Window window{};      // UspConfig::window
  std::vector<std::int64_t> cu_seqlens{};  // UspConfig::cu_seqlens
  int head_chunks = 0;                     // UspConfig::head_chunks; 0: automatic
  bool causal = false;
  bool check_finite = false;  // refuse NaN/±Inf inputs (UspConfig::check_finite)
  DType dtype = DType::f32;
  float scale = 0.0f;  // 0: 1/sqrt(head size)
  std::string backend = "local";
  int threads = 0;  // kernel threads per rank; 0: hardware threads / ranks
  bool help = false;
};

// Throws Error(invalid_argument) with a one-line message naming the option and the rule.
Options parse_options(int argc, const char* const* argv);
const char* usage();

// How a global sequence of seq_len tokens is sharded over the options' mesh.
inline Layout layout_of(const Options& o, std::int64_t seq_len) {
  return {.type = o.ring_type, .seq_len = seq_len, .ulysses = o.ulysses, .ring = o.ring};
}

}  // namespace usp::attn_tool
