#include "plan.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>

#include "memory_estimate.hpp"
#include "usp/backend.hpp"
#include "usp/error.hpp"
#include "usp/mask.hpp"

namespace usp::bench {
namespace {

std::string gib(std::uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GiB", static_cast<double>(bytes) / (1u << 30));
  return buf;
}

}  // namespace

void validate_row(const Options& o, const RowConfig& c) {
  const BenchProblem& p = o.problem;
  const int u = c.ulysses, r = c.ring;
  std::ostringstream deg;
  deg << u << 'x' << r;
  const bool processes = o.backend == "mpi" || o.backend == "nccl";
  if (processes && o.world > 0 && c.world() != o.world)
    throw UsageError("--degrees: " + deg.str() + " needs " + std::to_string(c.world()) +
                     " ranks but mpirun started " + std::to_string(o.world) + " process" +
                     (o.world == 1 ? "" : "es") + " (--backend " + o.backend +
                     " runs one process per rank: ulysses_degree × ring_degree must equal the "
                     "world size; start it with mpirun -np " +
                     std::to_string(c.world()) + ")");
  if (o.world > 0 && c.world() != o.world)
    throw UsageError("--degrees: " + deg.str() + " needs " + std::to_string(c.world()) +
                     " ranks but this run has " + std::to_string(o.world) +
                     " (ulysses_degree × ring_degree must equal the world size)");
  const std::int64_t div =
      static_cast<std::int64_t>(u) * r * (two_chunks_per_rank(c.ring_type) ? 2 : 1);
  if (c.seq_len % div != 0)
    throw UsageError("--seq-len: " + std::to_string(c.seq_len) + " cannot be split by " +
                     ring_type_name(c.ring_type) + " over " + deg.str() + " (" +
                     ring_type_name(c.ring_type) + " needs seq_len divisible by " +
                     (two_chunks_per_rank(c.ring_type) ? "2·u·r = " : "u·r = ") +
                     std::to_string(div) + ")");
  if (c.double_ring > 0 && (r % c.double_ring != 0 || c.ring_type == RingType::allgather))
    throw UsageError(
        "--double-ring: " + std::to_string(c.double_ring) + " cannot run " +
        ring_type_name(c.ring_type) + " over " + deg.str() +
        (c.ring_type == RingType::allgather
             ? " (allgather gathers K/V in one step and has no inner ring)"
             : " (the inner ring size must divide the ring degree " + std::to_string(r) + ")"));
  if (p.nheads % u != 0)
    throw UsageError("--nheads: " + std::to_string(p.nheads) +
                     " heads cannot be split over ulysses degree " + std::to_string(u) +
                     " (nheads must be divisible by u)");
  if (p.nheads % p.kv_heads != 0)
    throw UsageError("--kv-heads: " + std::to_string(p.kv_heads) + " does not divide --nheads " +
                     std::to_string(p.nheads));
  if (p.masked()) {
    const char* flag = !p.cu_seqlens.empty() ? "--cu-seqlens"
                       : p.doc_len > 0       ? "--doc-lengths"
                                             : "--window";
    try {
      AttentionMask{p.causal, p.window, p.documents(c.seq_len)}.validate(c.seq_len, p.batch);
    } catch (const Error& e) {
      throw UsageError(std::string(flag) + ": " + e.what() + " (row " + c.describe() + ")");
    }
    if (o.backend == "cuda-local" || o.backend == "nccl")
      throw UsageError(std::string(flag) +
                       ": documents and windows run on the CPU kernel; --backend " + o.backend +
                       " takes none of them");
  }
  if (o.backend == "cuda-local" || o.backend == "nccl") {
    if (p.dtype == DType::f32)
      throw UsageError("--dtype: fp32 is not supported by the CUDA kernel of --backend " +
                       o.backend + " (use fp16 or bf16)");
    if (p.head_size != 16 && p.head_size != 32 && p.head_size != 64 && p.head_size != 128)
      throw UsageError("--head-size: " + std::to_string(p.head_size) +
                       " is not supported by the CUDA kernel of --backend " + o.backend +
                       " (16, 32, 64 or 128)");
  }
  if (p.kv_heads % u != 0 && u % p.kv_heads != 0)
    throw UsageError("--kv-heads: " + std::to_string(p.kv_heads) +
                     " KV heads cannot be split or replicated over ulysses degree " +
                     std::to_string(u) + " (kv_heads must divide or be divisible by u)");
}

namespace {

void check_memory(const Options& o, const Machine& m, const RowConfig& c, int threads,
                  std::uint64_t available) {
  const MemoryNeed n = memory_need(o, m, c, threads);
  if (available == 0 || n.bytes <= available) return;
  throw UsageError("not enough memory for " + c.describe() + ": it needs about " + gib(n.bytes) +
                   " (" + gib(n.per_rank) + " per rank, " + gib(n.scratch) +
                   " of it kernel scratch, × " + std::to_string(n.ranks) + " ranks" +
                   (o.check ? ", plus the --check reference" : "") + ") but only " +
                   gib(available) + " is available; use shorter --seq-len");
}

bool on_path(const char* program) {
  const char* path = std::getenv("PATH");
  if (!path) return false;
  std::string p = path;
  std::size_t start = 0;
  while (start <= p.size()) {
    auto colon = p.find(':', start);
    if (colon == std::string::npos) colon = p.size();
    const std::string dir = p.substr(start, colon - start);
    if (!dir.empty() && access((dir + "/" + program).c_str(), X_OK) == 0) return true;
    start = colon + 1;
  }
  return false;
}

void check_writable(const char* flag, const std::string& path) {
  if (path.empty()) return;
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  if (access(dir.c_str(), W_OK) != 0)
    throw UsageError(std::string(flag) + ": cannot write '" + path + "' (directory '" + dir +
                     "' does not exist or is not writable)");
}

}  // namespace

MemoryNeed memory_need(const Options& o, const Machine& m, const RowConfig& c, int threads) {
  MemoryNeed n;
  if (o.backend == "cuda-local" || o.backend == "nccl") return n;
  n.scratch = kernel_scratch_bytes(o.problem, c, threads);
  n.per_rank = memory_model(o.problem, c).estimate + n.scratch;
  n.ranks = m.host_ranks > 0 ? m.host_ranks : c.world();  // ranks sharing this memory
  n.bytes = n.per_rank * static_cast<std::uint64_t>(n.ranks);
  if (o.check) {
    RowConfig single = c;
    single.ulysses = single.ring = 1;
    single.double_ring = 0;
    const BenchProblem& p = o.problem;
    const auto s = static_cast<std::uint64_t>(c.seq_len), b = static_cast<std::uint64_t>(p.batch);
    const auto d = static_cast<std::uint64_t>(p.head_size);
    const std::uint64_t q = b * s * static_cast<std::uint64_t>(p.nheads) * d;
    const std::uint64_t kv = b * s * static_cast<std::uint64_t>(p.kv_heads) * d;
    // The single-rank run (with the row's total threads) plus its results kept as doubles (out,
    // lse, and dq, dk, dv).
    n.bytes +=
        memory_model(p, single).estimate + kernel_scratch_bytes(p, single, threads * n.ranks) +
        8 * (q + b * s * static_cast<std::uint64_t>(p.nheads) + (c.fwd_only ? 0 : q + 2 * kv)) +
        n.bytes / 2;  // the distributed results converted for comparison
  }
  return n;
}

int threads_per_rank(const Options& o, const RowConfig& c, const Machine& m) {
  if (o.threads > 0) return o.threads;
  return default_threads(m.host_ranks > 0 ? m.host_ranks : c.world(), m.cores);
}

Plan make_plan(const Options& o, const Machine& m) {
  check_writable("--csv", o.csv_path);
  check_writable("--json", o.json_path);
  check_writable("--plot", o.plot_path);
  if (o.plot_path.size() > 4 && o.plot_path.compare(o.plot_path.size() - 4, 4, ".png") == 0 &&
      !on_path("rsvg-convert"))
    throw UsageError(
        "--plot: PNG output needs rsvg-convert (apt-get install librsvg2-bin); "
        "write an .svg instead");

  Plan plan;
  for (const Section& s : o.sections) {
    std::vector<std::size_t> idx;
    for (const RowConfig& c : s.rows()) {
      auto it = std::find(plan.rows.begin(), plan.rows.end(), c);
      if (it == plan.rows.end()) {
        plan.rows.push_back(c);
        it = plan.rows.end() - 1;
      }
      idx.push_back(static_cast<std::size_t>(it - plan.rows.begin()));
    }
    plan.sections.push_back(std::move(idx));
  }
  const std::uint64_t available = mem_available_bytes();
  for (const RowConfig& c : plan.rows) {
    validate_row(o, c);
    const int threads = threads_per_rank(o, c, m);
    check_memory(o, m, c, threads, available);
    plan.threads.push_back(threads);
  }
  return plan;
}

}  // namespace usp::bench
