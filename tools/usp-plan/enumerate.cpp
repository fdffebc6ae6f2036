#include "enumerate.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

namespace usp::plan {
namespace {

std::string gib(std::uint64_t bytes) {
  std::ostringstream os;
  os.setf(std::ios::fixed);
  os.precision(2);
  os << static_cast<double>(bytes) / static_cast<double>(1u << 30) << " GiB";
  return os.str();
}

bool two_chunks(Strategy t) {
  return t == Strategy::zigzag || t == Strategy::allgather;
}

template <class T>
bool wanted(const std::vector<T>& list, const T& v) {
  return list.empty() || std::find(list.begin(), list.end(), v) != list.end();
}

}  // namespace

std::string refusal(const MachineModel& m, const BenchProblem& p, int world, const PlanConfig& c) {
  const int u = c.ulysses, r = c.ring;
  const std::string deg = std::to_string(u) + "x" + std::to_string(r);
  if (c.world() != world)
    return "--degrees: " + deg + " needs " + std::to_string(c.world()) +
           " ranks but this run has " + std::to_string(world) +
           " (ulysses_degree × ring_degree must equal the world size)";
  const std::int64_t div = static_cast<std::int64_t>(u) * r * (two_chunks(c.type) ? 2 : 1);
  const std::string name = strategy_name(c.type);
  if (c.seq_len % div != 0)
    return "--seq-len: " + std::to_string(c.seq_len) + " cannot be split by " + name + " over " +
           deg + " (" + name + " needs seq_len divisible by " +
           (two_chunks(c.type) ? "2·u·r = " : "u·r = ") + std::to_string(div) + ")";
  if (c.double_ring != 0) {
    const std::string head =
        "--double-ring: " + std::to_string(c.double_ring) + " cannot run " + name + " over " + deg;
    if (c.type == Strategy::allgather)
      return head + " (allgather gathers K/V in one step and has no inner ring)";
    if (c.double_ring < 1 || r % c.double_ring != 0)
      return head + " (the inner ring size must divide the ring degree " + std::to_string(r) + ")";
  }
  if (p.nheads % u != 0)
    return "--nheads: " + std::to_string(p.nheads) + " heads cannot be split over ulysses degree " +
           std::to_string(u) + " (nheads must be divisible by u)";
  if (p.nheads % p.kv_heads != 0)
    return "--kv-heads: " + std::to_string(p.kv_heads) + " does not divide --nheads " +
           std::to_string(p.nheads);
  if (p.kv_heads % u != 0 && u % p.kv_heads != 0)
    return "--kv-heads: " + std::to_string(p.kv_heads) +
           " KV heads cannot be split or replicated over ulysses degree " + std::to_string(u) +
           " (kv_heads must divide or be divisible by u)";
  if (m.memory_bytes > 0) {
    const std::uint64_t per_rank = rank_memory(m, p, c);
    const std::uint64_t ranks = m.cores > 0 ? static_cast<std::uint64_t>(world) : 1;
    if (per_rank * ranks > m.memory_bytes)
      return "not enough memory for " + c.describe() + ": it needs about " + gib(per_rank * ranks) +
             (m.cores > 0
                  ? " (" + gib(per_rank) + " per rank × " + std::to_string(world) + " ranks)"
                  : " per rank") +
             " but the machine has " + gib(m.memory_bytes) + (m.cores > 0 ? "" : " per rank");
  }
  return "";
}

std::string bench_gap(const PlanConfig& c) {
  if (c.placement == Placement::ring_inner) return "usp-bench places ranks ulysses_inner only";
  return "";
}

std::optional<bench::RowConfig> bench_row(const PlanConfig& c) {
  if (!bench_gap(c).empty()) return std::nullopt;
  return row_shape(c);
}

std::vector<Candidate> rank_space(const MachineModel& m, const BenchProblem& p, const Space& s) {
  const std::vector<Strategy> all = {Strategy::basic, Strategy::stripe, Strategy::zigzag,
                                     Strategy::allgather};
  std::vector<Candidate> out;
  for (std::int64_t len : s.seq_lens)
    for (bool fwd : s.fwd_only) {
      std::vector<Candidate> group;
      for (int u = 1; u <= s.world; ++u) {
        if (s.world % u != 0) continue;
        const int r = s.world / u;
        if (!s.degrees.empty() &&
            std::none_of(s.degrees.begin(), s.degrees.end(),
                         [&](const bench::Degrees& d) { return d.ulysses == u && d.ring == r; }))
          continue;
        std::vector<Placement> places = {Placement::ulysses_inner};
        if (u > 1 && r > 1) {
          if (!s.placements.empty())
            places = s.placements;
          else if (m.multi_node(s.world))
            places.push_back(Placement::ring_inner);
        }
        std::vector<int> rings = s.double_rings;
        if (rings.empty()) {
          rings = {0};
          for (int inner = 2; inner < r; ++inner)
            if (r % inner == 0) rings.push_back(inner);
        }
        bool listed = false;  // r = 1: every ring type is the same single block, listed once
        for (Strategy t : all) {
          if (!wanted(s.types, t) || (r == 1 && s.types.empty() && listed)) continue;
          listed = true;
          for (Placement pl : places) {
            for (int dr : rings) {
              if (s.double_rings.empty() && dr > 0 && t == Strategy::allgather) continue;
              Candidate c;
              c.config = {t, len, u, r, fwd, pl, dr};
              c.refused = refusal(m, p, s.world, c.config);
              if (c.refused.empty()) c.prediction = predict(m, p, c.config);
              group.push_back(c);
            }
          }
        }
      }
      // Latencies within 0.1 % of each other (the same bucket of a log scale) are a tie, which
      // the smaller memory wins: a double ring or allgather that buys nothing ranks after the
      // single ring it ties with.
      auto bucket = [](const Candidate& c) {
        return std::llround(std::log(c.prediction.latency_ms) / std::log(1.001));
      };
      std::stable_sort(group.begin(), group.end(), [&](const Candidate& a, const Candidate& b) {
        if (a.refused.empty() != b.refused.empty()) return a.refused.empty();
        if (!a.refused.empty()) return false;
        if (bucket(a) != bucket(b)) return bucket(a) < bucket(b);
        return a.prediction.memory_bytes < b.prediction.memory_bytes;
      });
      out.insert(out.end(), group.begin(), group.end());
    }
  return out;
}

}  // namespace usp::plan
