// Command line of usp-attn.
#pragma once

#include <string>

#include "usp/dtype.hpp"
#include "usp/layout.hpp"

namespace usp::attn_tool {

struct Options {
  std::string q, k, v, dout, out_dir;
  int ulysses = 1;
  int ring = 1;
  RingType ring_type = RingType::basic;
  bool causal = false;
  DType dtype = DType::f32;
  float scale = 0.0f;  // 0: 1/sqrt(head size)
  std::string backend = "local";
  int threads = 0;  // kernel threads per rank; 0: hardware threads / ranks
  bool help = false;
};

// Throws Error(invalid_argument) with a one-line message naming the option and the rule.
Options parse_options(int argc, const char* const* argv);
const char* usage();

}  // namespace usp::attn_tool
