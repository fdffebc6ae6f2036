#include "config.hpp"

#include <sstream>

namespace usp::bench {

std::string RowConfig::describe() const {
  std::ostringstream os;
  os << ring_label() << " s=" << seq_len << ' ' << ulysses << 'x' << ring << ' '
     << (fwd_only ? "fwd" : "fwd+bwd");
  return os.str();
}

std::string RowConfig::ring_label() const {
  std::string s = ring_type_name(ring_type);
  if (double_ring > 0) s += "/dr" + std::to_string(double_ring);
  return s;
}

std::vector<std::int64_t> BenchProblem::documents(std::int64_t seq_len) const {
  if (!cu_seqlens.empty()) return cu_seqlens;
  std::vector<std::int64_t> cu;
  if (doc_len <= 0) return cu;
  for (std::int64_t s = 0; s < seq_len; s += doc_len) cu.push_back(s);
  cu.push_back(seq_len);
  return cu;
}

double row_flops(const BenchProblem& p, const RowConfig& c) {
  const double s = static_cast<double>(c.seq_len);
  double f = 4.0 * p.batch * s * s * p.nheads * p.head_size;
  if (p.causal) f /= 2.0;
  if (!c.fwd_only) f *= 3.5;
  return f;
}

double tflops(double flops, double latency_ms) {
  return latency_ms > 0 ? flops / (latency_ms / 1000.0) / 1e12 : 0.0;
}

}  // namespace usp::bench
