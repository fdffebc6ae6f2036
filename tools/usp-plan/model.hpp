// The cost model of one iteration (forward, or forward + backward) of one configuration on one
// described machine: kernel time per block from a rate curve, all-to-all and ring transfers per
// link level, their overlap with compute, and the peak memory per rank. Pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config.hpp"

namespace usp::plan {

using bench::BenchProblem;

// The ring types the planner models: usp-bench's three and the all-gather of K/V over the ring
// group (zigzag layout, r − 1 concurrent transfers posted at the start).
enum class Strategy : std::uint8_t { basic, stripe, zigzag, allgather };
const char* strategy_name(Strategy s);  // "basic", "stripe", "zigzag", "allgather"
std::optional<Strategy> parse_strategy(std::string_view s);

// Rank placement on the mesh: ulysses_inner (ring rank = rank / u, ulysses rank = rank % u, the
// seed's and usp-bench's) or ring_inner (ring rank = rank % r, ulysses rank = rank / r).
enum class Placement : std::uint8_t { ulysses_inner, ring_inner };
const char* placement_name(Placement p);

struct PlanConfig;
// The usp-bench row with c's ring type, length, degrees and mode (allgather as zigzag, whose
// layout and blocks it shares; the double ring and placement left out).
bench::RowConfig row_shape(const PlanConfig& c);
// The planner's configuration of a usp-bench row (ulysses_inner, a single ring).
PlanConfig plan_config(const bench::RowConfig& row);

struct PlanConfig {
  Strategy type = Strategy::zigzag;
  std::int64_t seq_len = 0;  // global
  int ulysses = 1;
  int ring = 1;
  bool fwd_only = true;
  Placement placement = Placement::ulysses_inner;
  int double_ring = 0;  // INNER ring ranks per inner ring; 0 = a single ring

  int world() const { return ulysses * ring; }
  bool operator==(const PlanConfig&) const = default;
  // "zigzag s=4096 2x4 fwd", with " ring_inner" and " double-ring 2" when they apply.
  std::string describe() const;
};

// One link level: time of a transfer of B bytes = latency + B / bandwidth.
struct Link {
  double gbs = 1;  // GB/s (1e9 bytes/s) per rank
  double latency_us = 0;
  double seconds(double bytes) const { return latency_us * 1e-6 + bytes / (gbs * 1e9); }
};

// The kernel's rate for one head size: a block of sq × sk tokens (m = min(sq, sk)) computes at
// peak · m / (m + half_tokens), a causal (diagonal) block at causal_eff · peak · m / (m +
// causal_half); the backward (2.5 × the forward's flops) at bwd_eff × the same with bwd_half in
// place of half_tokens or causal_half; plus call_us per call.
struct KernelRate {
  int head_size = 128;
  double peak_gflops = 1;  // per device, or per core for CPU ranks
  double half_tokens = 0;
  double causal_eff = 1;
  double causal_half = 0;
  double bwd_eff = 1;
  double bwd_half = 0;
  double call_us = 0;
};

struct MachineModel {
  std::string name;         // "seed", the file's path, "this machine (calibrated)"
  std::string description;  // one line
  // > 0: ranks are CPU threads sharing this many cores; a transfer is a copy made by a rank's
  // thread, so it is compute, not overlapped. 0: one device per rank, transfers overlap.
  int cores = 0;
  // The fraction of the cores' time the ranks get (others' work on a shared machine), as the
  // calibration saw it: the ranks compute on cores × core_share.
  double core_share = 1;
  int ranks_per_node = 0;  // ranks sharing the intra-node links; 0 = one node for every world
  std::vector<KernelRate> kernels;  // at least one; the nearest head size is used
  Link p2p, a2a;                    // within a node
  Link p2p_inter, a2a_inter;        // across nodes
  double overlap = 1;               // fraction of a concurrent transfer hidden behind compute
  double iteration_us = 0;          // a fixed cost per iteration
  // Memory: per rank for devices; for CPU ranks (cores > 0) what all ranks share. 0 = unlimited.
  std::uint64_t memory_bytes = 0;

  const KernelRate& kernel(int head_size) const;
  // Whether a world of this size spans more than one node (placement then matters).
  bool multi_node(int world) const { return ranks_per_node > 0 && world > ranks_per_node; }
};

struct Prediction {
  double latency_ms = 0;  // one iteration
  double compute_ms = 0;  // the critical rank's kernel time (all steps, forward + backward)
  double a2a_ms = 0;      // the Ulysses all-to-alls (blocking)
  double exposed_ms = 0;  // ring transfer time not hidden behind compute
  std::uint64_t memory_bytes = 0;  // peak per rank
};

// Kernel threads per rank on CPU ranks: max(1, cores / world) (usp-bench's default); 1 on devices.
int rank_threads(const MachineModel& m, int world);

// The peak bytes one rank holds: usp-bench's upper estimate (memory_model) with the CPU kernel's
// scratch on CPU ranks, plus r − 3 more K/V (and fp32 dK/dV) chunks for allgather and one more of
// each for the double ring.
std::uint64_t rank_memory(const MachineModel& m, const BenchProblem& p, const PlanConfig& c);

Prediction predict(const MachineModel& m, const BenchProblem& p, const PlanConfig& c);

}  // namespace usp::plan
