// Result rows of usp-kernel-bench and their markdown / CSV forms.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "options.hpp"

namespace kbench {

struct Row {
  int d = 0;
  usp::DType dtype = usp::DType::f32;
  usp::MaskMode mask = usp::MaskMode::none;
  Pass pass = Pass::fwd;
  std::int64_t b = 0, s = 0, h = 0;
  int threads = 0;
  double seconds = 0;                                  // median time of one kernel call
  double gflops = 0;                                   // attention rate
  std::optional<double> square_gflops, shaped_gflops;  // the two reference matmuls (medians)
  usp::DType matmul_dtype = usp::DType::f32;  // dtype of the reference (differs for fp16 w/o f16)
  bool matmul_substituted = false;

  std::optional<double> matmul_gflops() const;  // the larger of the two
  std::optional<double> ratio() const;
};

// Attention FLOPs of one call: 4·b·s²·h·d, halved for causal, ×2.5 for backward.
double attention_flops(std::int64_t b, std::int64_t s, std::int64_t h, int d, usp::MaskMode mask,
                       Pass pass);

std::string markdown_header();
std::string markdown_row(const Row& r);
// The second table: both reference matmuls of every row.
std::string matmul_header(std::int64_t square, std::int64_t shaped_n);
std::string matmul_row(const Row& r);
std::string csv_header();
std::string csv_row(const Row& r, const std::string& kernel_name);

}  // namespace kbench
