// Runs one benchmark row on world = u·r ranks, each holding only its shard: threads of this
// process (backends local, cuda-local) or this process's rank of an mpirun job (mpi, nccl).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "config.hpp"
#include "usp/comm.hpp"

namespace usp::bench {

// Where a row's ranks run.
struct Ranks {
  std::string backend = "local";  // canonical name
  // Process-per-rank backends: this process's world communicator (its size must be the row's
  // u·r). nullptr: the ranks are threads started for each row with run_ranks.
  Communicator* world = nullptr;
  // Rank 0 of the row (the thread that reports, or the process that prints).
  bool root() const { return world == nullptr || world->rank() == 0; }
};

struct RankStats {
  double compute_s = 0;     // inside kernel calls, timed iterations only
  double comm_wait_s = 0;   // blocked on communication
  double comm_total_s = 0;  // from posting each transfer to its completion
  std::int64_t bytes_sent = 0;
  std::uint64_t peak_bytes = 0;  // allocator peak during the timed iterations
};

struct RowResult {
  int threads = 1;  // kernel threads per rank
  int iters = 0;
  double wall_s = 0;      // timed loop, between barriers (slowest rank)
  double cpu_s = 0;       // CPU time the ranks' processes used during the timed loop, all threads
  double throughput = 0;  // iters / wall_s
  double latency_ms = 0;  // 1000 / throughput
  double flops = 0;       // row_flops()
  double tflops = 0;      // flops / latency, aggregated over ranks
  std::uint64_t peak_bytes = 0;  // max over ranks
  double peak_mb = 0;            // peak_bytes / 2^20
  std::vector<RankStats> ranks;
};

// Per rank: build the shards, warm up, reset the allocator peak and the timings, barrier, time
// `iters` iterations (forward, or forward + backward), barrier. Per-rank statistics are
// all-gathered, so with process-per-rank backends every process returns the whole result.
RowResult run_row(const Ranks& ranks, const BenchProblem& p, const RowConfig& c, int threads,
                  int warmup, int iters);

// --vs-single-rank: the row's global problem on a single rank (u = r = 1, same data, kernel and
// memory) with the row's total kernel threads (ranks × threads per rank), timed alternately with
// the row: row, single, row, single, ...
struct SingleRankComparison {
  int threads = 0;                 // kernel threads of the single rank
  std::vector<double> row_ms;      // the row's latency(ms/iter), one per repeat, in run order
  std::vector<double> single_ms;   // the single rank's, likewise
  double row_median_ms = 0;        // median of row_ms
  double single_median_ms = 0;     // median of single_ms
  double ratio = 0;                // row_median_ms / single_median_ms
  std::vector<double> row_cpu_ms;  // CPU time per iteration (every thread), per repeat
  std::vector<double> single_cpu_ms;
  double cpu_ratio = 0;  // median(row_cpu_ms) / median(single_cpu_ms)
};

// The median (the mean of the two middle values for an even count); 0 for none.
double median(std::vector<double> v);

// The single-rank row of the same global problem.
RowConfig single_rank_row(const RowConfig& c);

struct CheckResult {
  double max_rel_err = 0;  // max over out, lse (and dq, dk, dv) of ‖ours − single‖ / ‖single‖
  std::string worst;       // which tensor had it
  bool pass = true;        // every tensor within its tolerance
};

// Tolerance of the comparison against the single-rank run: fp32 1e-5 (out, lse) / 1e-4
// (gradients), fp16 and bf16 2e-2.
double check_tolerance(DType t, bool gradient);

// Runs the row once on a single rank (u = r = 1, same kernel and memory as the backend, on rank 0's
// process) and once on u·r ranks with the same data; rank 0 gathers every rank's shards and
// compares them with the matching rows of the single-rank result. Every rank returns the verdict.
CheckResult check_row(const Ranks& ranks, const BenchProblem& p, const RowConfig& c, int threads,
                      int reference_threads);

}  // namespace usp::bench
