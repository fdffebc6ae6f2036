// The global inputs usp-attn reads from .npy files, checked for consistency, and the dimensions
// and softmax scale they resolve to.
#pragma once

#include <cstdint>
#include <string>

#include "options.hpp"
#include "usp/tensor.hpp"

namespace usp::attn_tool {

struct NpyInputs {
  Tensor q, k, v, dout;  // global, rounded to Options::dtype; dout undefined without --dout
  std::int64_t batch = 0, seq = 0, heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 0;  // resolved (never 0)
};

// "[2, 64, 8, 16]" (sep ", ") or "[2,64,8,16]" (sep ",").
std::string shape_text(const Tensor& t, const char* sep = ", ");

// Reads the inputs and checks shapes against each other and against the parallel configuration;
// throws Error (io or invalid_argument) with a one-line message naming the file or option.
NpyInputs load_inputs(const Options& o);

}  // namespace usp::attn_tool
