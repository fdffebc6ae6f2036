#include "report.hpp"

#include <algorithm>
#include <cstdio>
#include <sstream>

namespace kbench {
namespace {

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

std::string opt(const std::optional<double>& v, int digits) {
  return v ? fixed(*v, digits) : std::string("n/a");
}

// A rate with one decimal, or three significant digits below 10 (a tiny case on a slow or loaded
// CPU never prints as 0.0).
std::string rate(double v) {
  int digits = 1;
  for (double x = v; x > 0 && x < 10 && digits < 6; x *= 10) ++digits;
  return fixed(v, digits);
}

const char* mask_label(usp::MaskMode m) {
  return m == usp::MaskMode::none ? "full" : usp::mask_name(m);
}

}  // namespace

std::optional<double> Row::matmul_gflops() const {
  if (square_gflops && shaped_gflops) return std::max(*square_gflops, *shaped_gflops);
  return square_gflops ? square_gflops : shaped_gflops;
}

std::optional<double> Row::ratio() const {
  const std::optional<double> mm = matmul_gflops();
  if (!mm || *mm <= 0) return std::nullopt;
  return gflops / *mm;
}

double attention_flops(std::int64_t b, std::int64_t s, std::int64_t h, int d, usp::MaskMode mask,
                       Pass pass) {
  double f = 4.0 * static_cast<double>(b) * static_cast<double>(s) * static_cast<double>(s) *
             static_cast<double>(h) * d;
  if (mask != usp::MaskMode::none) f /= 2;
  if (pass == Pass::bwd) f *= 2.5;
  return f;
}

std::string markdown_header() {
  return "| d | dtype | mask | pass | attention GFLOPS | matmul GFLOPS | ratio |\n"
         "|--:|:--|:--|:--|--:|--:|--:|\n";
}

std::string markdown_row(const Row& r) {
  std::ostringstream os;
  std::string mm = opt(r.matmul_gflops(), 1);
  if (r.matmul_substituted && r.matmul_gflops())
    mm += std::string(" (") + usp::dtype_name(r.matmul_dtype) + ")";
  os << "| " << r.d << " | " << usp::dtype_name(r.dtype) << " | " << mask_label(r.mask) << " | "
     << pass_name(r.pass) << " | " << rate(r.gflops) << " | " << mm << " | " << opt(r.ratio(), 3)
     << " |\n";
  return os.str();
}

std::string matmul_header(std::int64_t square, std::int64_t shaped_n) {
  std::ostringstream os;
  os << "| d | dtype | mask | pass | matmul dtype | " << square
     << "³ GFLOPS | M=s K=d N=" << shaped_n << " GFLOPS |\n|--:|:--|:--|:--|:--|--:|--:|\n";
  return os.str();
}

std::string matmul_row(const Row& r) {
  std::ostringstream os;
  os << "| " << r.d << " | " << usp::dtype_name(r.dtype) << " | " << mask_label(r.mask) << " | "
     << pass_name(r.pass) << " | " << usp::dtype_name(r.matmul_dtype) << " | "
     << opt(r.square_gflops, 1) << " | " << opt(r.shaped_gflops, 1) << " |\n";
  return os.str();
}

std::string csv_header() {
  return "d,dtype,mask,pass,b,s,h,threads,seconds,attention_gflops,matmul_square_gflops,"
         "matmul_shaped_gflops,matmul_gflops,matmul_dtype,ratio,kernel\n";
}

std::string csv_row(const Row& r, const std::string& kernel_name) {
  std::ostringstream os;
  os << r.d << ',' << usp::dtype_name(r.dtype) << ',' << mask_label(r.mask) << ','
     << pass_name(r.pass) << ',' << r.b << ',' << r.s << ',' << r.h << ',' << r.threads << ','
     << fixed(r.seconds, 6) << ',' << rate(r.gflops) << ',' << opt(r.square_gflops, 2) << ','
     << opt(r.shaped_gflops, 2) << ',' << opt(r.matmul_gflops(), 2) << ','
     << usp::dtype_name(r.matmul_dtype) << ',' << opt(r.ratio(), 4) << ",\"" << kernel_name
     << "\"\n";
  return os.str();
}

}  // namespace kbench
