#include "lengths.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace usp::bench {
namespace {

// The rows at base length L: each row's multiple of L.
std::vector<RowConfig> at(const std::vector<RowConfig>& rows, std::int64_t base) {
  std::vector<RowConfig> out = rows;
  for (RowConfig& c : out) c.seq_len *= base;
  return out;
}

double run_flops(const std::vector<RowConfig>& rows,
                 const std::function<double(const RowConfig&)>& flops) {
  double f = 0;
  for (const RowConfig& c : rows) f += flops(c);
  return f;
}

bool all_fit(const std::vector<RowConfig>& rows,
             const std::function<bool(const RowConfig&)>& fits) {
  for (const RowConfig& c : rows)
    if (!fits(c)) return false;
  return true;
}

}  // namespace

std::int64_t length_granularity(const std::vector<RowConfig>& rows) {
  std::int64_t g = 1;
  for (const RowConfig& c : rows)
    g = std::lcm(g, std::int64_t{c.ulysses} * c.ring * (two_chunks_per_rank(c.ring_type) ? 2 : 1));
  return g;
}

std::int64_t shortest_base(const LengthRule& rule, std::int64_t granularity) {
  std::int64_t base = std::max<std::int64_t>(granularity, 1);
  while (base < rule.shortest) base *= 2;
  return base;
}

LengthChoice choose_lengths(double rate, const LengthRule& rule, const std::vector<RowConfig>& rows,
                            const std::function<double(const RowConfig&)>& flops,
                            const std::function<bool(const RowConfig&)>& fits) {
  LengthChoice ch;
  ch.rate = rate;
  ch.rule = rule;
  ch.granularity = length_granularity(rows);
  std::int64_t base = shortest_base(rule, ch.granularity);
  auto predict = [&](std::int64_t b, double& f) {
    f = run_flops(at(rows, b), flops);
    return rate > 0 ? f / rate : INFINITY;
  };
  ch.predicted_s = predict(base, ch.flops);
  if (ch.predicted_s > rule.budget_s) {
    ch.limit = LengthChoice::Limit::shortest;
  } else {
    while (true) {
      const std::int64_t next = 2 * base;
      if (4 * next > rule.longest) {
        ch.limit = LengthChoice::Limit::longest;
        break;
      }
      if (!all_fit(at(rows, next), fits)) {
        ch.limit = LengthChoice::Limit::memory;
        break;
      }
      double f = 0;
      const double s = predict(next, f);
      if (s > rule.budget_s) {
        ch.limit = LengthChoice::Limit::budget;
        ch.next_s = s;
        break;
      }
      base = next;
      ch.flops = f;
      ch.predicted_s = s;
    }
  }
  ch.lengths = {base, 2 * base, 4 * base};
  return ch;
}

}  // namespace usp::bench
