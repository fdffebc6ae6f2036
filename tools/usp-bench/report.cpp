#include "report.hpp"

#include <algorithm>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <initializer_list>
#include <sstream>

#include "memory_estimate.hpp"
#include "seed_table.hpp"
#include "usp/usp.hpp"

namespace usp::bench {

const char* const kSeedHeader =
    "| ring type | seq_len | ulysses_degree | ring_degree | fwd_only | throughput(iters/s) | "
    "latency(ms/iter) | peak memory(MB/device) | speed(TFLOPS) |";
const char* const kSeedAlign =
    "| :----: | :----: | :----: | :----: | :----: | :----: | :----: | :----: | :----: |";

namespace {

// A markdown table's title row and centred alignment row: the columns that name a row (ring type
// … fwd_only, as in the seed's tables), then `more`.
std::string row_table_head(std::initializer_list<const char*> more) {
  std::string head = "| ring type | seq_len | ulysses_degree | ring_degree | fwd_only |";
  std::string align = "| :----: | :----: | :----: | :----: | :----: |";
  for (const char* c : more) {
    head = head + " " + c + " |";
    align += " :----: |";
  }
  return head + "\n" + align + "\n";
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[256];
  va_list ap, again;
  va_start(ap, f);
  va_copy(again, ap);
  const int n = std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  std::string s =
      n < 0 ? std::string() : std::string(buf, std::min<std::size_t>(n, sizeof buf - 1));
  if (n >= static_cast<int>(sizeof buf)) {  // longer than the buffer: format it again in place
    s.resize(static_cast<std::size_t>(n));
    std::vsnprintf(s.data(), s.size() + 1, f, again);
  }
  va_end(again);
  return s;
}

const char* py_bool(bool b) {
  return b ? "True" : "False";
}

std::string row_key(const RowConfig& c) {
  return fmt("| %s | %lld | %d | %d | %s |", c.ring_label().c_str(),
             static_cast<long long>(c.seq_len), c.ulysses, c.ring, py_bool(c.fwd_only));
}

std::string join_lengths(const std::vector<std::int64_t>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
  return s;
}

std::vector<std::int64_t> lengths_used(const Options& o) {
  std::vector<std::int64_t> out;
  for (const Section& s : o.sections)
    for (auto l : s.seq_lens)
      if (std::find(out.begin(), out.end(), l) == out.end()) out.push_back(l);
  return out;
}

std::string threads_text(const RunData& d) {
  bool same = true;
  for (int t : d.plan.threads) same = same && t == d.plan.threads.front();
  if (d.plan.threads.empty()) return "";
  if (same)
    return fmt("%d kernel thread%s per rank", d.plan.threads.front(),
               d.plan.threads.front() == 1 ? "" : "s");
  return "kernel threads per rank = max(1, cores / ranks)";
}

// The "backend:" line: how the ranks ran (threads or processes, and on which device).
std::string backend_text(const RunData& d) {
  const Options& o = d.options;
  int world = 0;  // the rows' common world size, 0 when they differ
  for (const RowConfig& c : d.plan.rows)
    world = (world == 0 || world == c.world()) ? c.world() : -1;
  const std::string ranks = world > 0 ? std::to_string(world) + " rank" + (world == 1 ? "" : "s")
                                      : std::string("ulysses_degree × ring_degree ranks");
  if (o.backend == "cuda-local")
    return "cuda-local (" + ranks + " sharing one GPU: " + d.machine.gpu +
           "; the ranks are threads of this process, each with its own stream)";
  if (o.backend == "mpi")
    return "mpi (" + std::to_string(o.world) + " process" + (o.world == 1 ? "" : "es") +
           " under mpirun, one per rank; " + threads_text(d) + "; peak memory is the max over " +
           "the processes)";
  if (o.backend == "nccl")
    return "nccl (" + std::to_string(o.world) + " process" + (o.world == 1 ? "" : "es") +
           " under mpirun, one per rank and GPU: " + d.machine.gpu + ")";
  return o.backend + " (each row runs ulysses_degree × ring_degree ranks as threads of this " +
         "process; " + threads_text(d) + ")";
}

// How many distinct rows, and what each runs, for the length-choice line.
std::string run_text(const RunData& d) {
  const Options& o = d.options;
  std::string t =
      fmt("%zu row%s × (%d warm-up + %d timed iteration%s)", d.plan.rows.size(),
          d.plan.rows.size() == 1 ? "" : "s", o.warmup, o.iters, o.iters == 1 ? "" : "s");
  if (o.repeats > 1) t += fmt(" × %d repeats", o.repeats);
  if (o.vs_single_rank) t += ", with the single-rank runs";
  if (o.check) t += ", with the checks";
  return t;
}

// Why the default run has the lengths it has: the calibration and the rule.
std::string length_choice_text(const RunData& d) {
  const Options& o = d.options;
  const Calibration& cal = *o.calibration;
  const LengthChoice& ch = *o.length_choice;
  const LengthRule& rule = ch.rule;
  const std::int64_t l = ch.lengths.front();
  std::string t = fmt(
      "lengths chosen from this machine's rate: %d single-threaded CPU kernel%s computing at "
      "once ran the forward (%s, batch size %lld, %lld heads, head size %d, %lld tokens, causal: "
      "%s) at %.1f GFLOPS in all (%d timed calls, %.2f s with the data); at that rate the %s "
      "compute %.3g TFLOP at %s ≈ %.1f s",
      cal.threads, cal.threads == 1 ? "" : "s", dtype_name(o.problem.dtype),
      static_cast<long long>(cal.batch), static_cast<long long>(cal.heads), o.problem.head_size,
      static_cast<long long>(cal.seq_len), py_bool(o.problem.causal), cal.rate / 1e9, cal.calls,
      cal.total_s, run_text(d).c_str(), ch.flops / 1e12, join_lengths(ch.lengths).c_str(),
      ch.predicted_s);
  const std::string next = join_lengths({2 * l, 4 * l, 8 * l});
  switch (ch.limit) {
    case LengthChoice::Limit::budget:
      t += fmt("; %s would take ≈ %.1f s, over the %.0f s budget", next.c_str(), ch.next_s,
               rule.budget_s);
      break;
    case LengthChoice::Limit::longest:
      t += fmt(" (budget %.0f s); %s would exceed the longest length, %lld", rule.budget_s,
               next.c_str(), static_cast<long long>(rule.longest));
      break;
    case LengthChoice::Limit::memory:
      t += fmt(" (budget %.0f s); %s would not fit in memory", rule.budget_s, next.c_str());
      break;
    case LengthChoice::Limit::shortest:
      t += fmt(", over the %.0f s budget, but the lengths go no shorter than %lld", rule.budget_s,
               static_cast<long long>(rule.shortest));
      break;
  }
  return t + fmt(" (rule: L, 2L, 4L with L = %lld × a power of two, L ≥ %lld, 4L ≤ %lld, the "
                 "longest whose predicted compute fits the budget)",
                 static_cast<long long>(ch.granularity), static_cast<long long>(rule.shortest),
                 static_cast<long long>(rule.longest));
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (unsigned char ch : s) {
    if (ch == '"' || ch == '\\') {
      o += '\\';
      o += static_cast<char>(ch);
    } else if (ch < 0x20) {
      o += fmt("\\u%04x", ch);
    } else {
      o += static_cast<char>(ch);
    }
  }
  return o;
}

std::string num(double v) {
  if (!std::isfinite(v)) return "null";
  return fmt("%.9g", v);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string o = "\"";
  for (char c : s) o += c == '"' ? std::string("\"\"") : std::string(1, c);
  return o + "\"";
}

double hidden_fraction(const RankStats& s) {
  return s.comm_total_s > 0 ? 1.0 - s.comm_wait_s / s.comm_total_s : NAN;
}

std::string ms_list(const std::vector<double>& v) {
  std::string s;
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + fmt("%.1f", v[i]);
  return s;
}

std::string json_list(const std::vector<double>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + num(v[i]);
  return s + "]";
}

std::string single_rank_section(const RunData& d) {
  std::ostringstream os;
  os << "\n## Against a single rank\n\nThe same global problem (same data, kernel and memory) on "
        "one rank (ulysses_degree = ring_degree = 1) with the row's total kernel threads (ranks × "
        "threads per rank), timed in this process alternately with the row (row, single rank, "
        "row, …). Running threads are capped at the cores in both (USP_CPU_SLOTS). ratio = "
        "median row latency / median single-rank latency. cpu ratio = the same for the CPU time "
        "the process used per iteration (every thread; less sensitive to other load on the "
        "machine than wall time).\n\n";
  os << row_table_head({"ranks × threads", "single-rank threads", "latency(ms/iter)",
                        "single-rank latency(ms/iter)", "ratio", "runs row / single (ms/iter)",
                        "cpu ratio"});
  for (std::size_t i = 0; i < d.plan.rows.size(); ++i) {
    const RowConfig& c = d.plan.rows[i];
    const auto& s = d.singles[i];
    if (!s) continue;
    os << row_key(c)
       << fmt(" %d × %d | %d | %.1f | %.1f | %.3f |", c.world(), d.plan.threads[i], s->threads,
              s->row_median_ms, s->single_median_ms, s->ratio)
       << " " << ms_list(s->row_ms) << " / " << ms_list(s->single_ms) << " |"
       << fmt(" %.3f |", s->cpu_ratio) << "\n";
  }
  return os.str();
}

}  // namespace

std::string markdown_report(const RunData& d) {
  const Options& o = d.options;
  const BenchProblem& p = o.problem;
  std::ostringstream os;
  os << "# usp-bench\n\n";
  os << "- machine: " << d.machine.cpu_model << ", " << d.machine.cores << " cores\n";
  os << "- backend: " << backend_text(d) << "\n";
  os << "- dtype: " << dtype_name(p.dtype) << " · batch size " << p.batch << " · heads " << p.nheads
     << " (KV heads " << p.kv_heads << ") · head size " << p.head_size
     << " · causal: " << py_bool(p.causal);
  if (!p.window.unbounded()) os << " · window " << p.window.left << "," << p.window.right;
  if (p.doc_len > 0) os << " · documents of " << p.doc_len << " tokens";
  if (!p.cu_seqlens.empty()) os << " · " << p.cu_seqlens.size() - 1 << " documents (--cu-seqlens)";
  os << "\n";
  os << "- warm-up iterations: " << o.warmup << " · timed iterations: " << o.iters
     << " · data seed: " << p.seed << "\n";
  if (o.repeats > 1)
    os << "- every row timed " << o.repeats
       << " times (warm-up included each time); the tables show the run of median latency\n";
  if (o.scaled_lengths)
    os << "- lengths scaled to this machine: " << join_lengths(lengths_used(o))
       << " (the seed: " << join_lengths(seed_lengths()) << " on 8 × RTX 4090D)\n";
  else
    os << "- lengths: " << join_lengths(lengths_used(o)) << "\n";
  if (o.length_choice) os << "- " << length_choice_text(d) << "\n";
  os << "- speed(TFLOPS) = 4·b·s²·h·d (halved when causal, ×3.5 with backward) / latency, "
        "aggregated over all ranks"
     << (o.gflops ? " (speed(GFLOPS): the same in GFLOPS)" : "")
     << "; peak memory(MB/device) = max over ranks of bytes allocated "
        "during the timed iterations / 2^20\n";
  if (d.plan.rows.size() < [&] {
        std::size_t n = 0;
        for (const auto& s : d.plan.sections) n += s.size();
        return n;
      }())
    os << "- rows that appear in several tables are measured once\n";

  for (std::size_t si = 0; si < o.sections.size(); ++si) {
    const auto& idx = d.plan.sections[si];
    os << "\n";
    if (!o.sections[si].title.empty()) os << "## " << o.sections[si].title << "\n\n";
    std::string header = kSeedHeader, align = kSeedAlign;
    if (o.gflops) header += " speed(GFLOPS) |", align += " :----: |";
    if (o.check) header += " check(max rel err) |", align += " :----: |";
    if (o.compare_seed)
      header += " seed latency(ms/iter) | ours/seed |", align += " :----: | :----: |";
    os << header << "\n" << align << "\n";
    for (std::size_t i : idx) {
      const RowConfig& c = d.plan.rows[i];
      const RowResult& r = d.results[i];
      os << row_key(c)
         << fmt(" %.3f | %.3f | %.1f | %.1f |", r.throughput, r.latency_ms, r.peak_mb, r.tflops);
      if (o.gflops) os << fmt(" %.2f |", r.tflops * 1000.0);
      if (o.check) {
        const auto& ch = d.checks[i];
        os << (ch ? fmt(" %.2e (%s) |", ch->max_rel_err, ch->worst.c_str()) : std::string(" - |"));
      }
      if (o.compare_seed) {
        const auto s = find_seed_row(p, c);
        os << (s ? fmt(" %.3f | %.2f |", s->latency_ms, r.latency_ms / s->latency_ms)
                 : std::string(" - | - |"));
      }
      os << "\n";
    }

    os << "\nMemory per rank against the analytic minimum (its shard of q, k, v, out ("
       << dtype_name(p.dtype)
       << ") and lse (fp32), plus 2 K/V ring buffers in flight [b, s/r, max(hkv/u, 1), d]; plus "
          "with backward its shard of dout, dq, dk, dv and 2 fp32 dK/dV buffers in flight on the "
          "second ring; target ≤ 1.2×):\n\n";
    os << row_table_head({"peak memory(MB/device)", "minimum(MB/device)", "measured/minimum"});
    for (std::size_t i : idx) {
      const RowConfig& c = d.plan.rows[i];
      const RowResult& r = d.results[i];
      const double min_mb = static_cast<double>(memory_model(p, c).minimum) / (1 << 20);
      os << row_key(c) << fmt(" %.1f | %.1f | %.2f× |", r.peak_mb, min_mb, r.peak_mb / min_mb)
         << "\n";
    }
  }
  if (o.vs_single_rank) os << single_rank_section(d);
  if (o.breakdown) {
    os << "\n## Breakdown per rank\n\nTimed iterations only. compute: inside kernel calls; comm "
          "wait: blocked on communication; comm total: from posting each transfer to its "
          "completion (overlapped or not); hidden = 1 − wait / total.\n\n";
    os << row_table_head(
        {"rank", "compute(ms/iter)", "comm wait(ms/iter)", "comm total(ms/iter)", "comm hidden"});
    for (std::size_t i = 0; i < d.plan.rows.size(); ++i) {
      const RowConfig& c = d.plan.rows[i];
      const RowResult& r = d.results[i];
      for (std::size_t k = 0; k < r.ranks.size(); ++k) {
        const RankStats& s = r.ranks[k];
        const double per = 1000.0 / r.iters;
        const double h = hidden_fraction(s);
        os << row_key(c)
           << fmt(" %zu | %.3f | %.3f | %.3f | %s |", k, s.compute_s * per, s.comm_wait_s * per,
                  s.comm_total_s * per, std::isnan(h) ? "-" : fmt("%.1f%%", 100.0 * h).c_str())
           << "\n";
      }
    }
  }
  return os.str();
}

std::string check_report(const RunData& d) {
  std::ostringstream os;
  os << row_table_head({"max rel err", "tensor", "result"});
  for (std::size_t i = 0; i < d.plan.rows.size(); ++i) {
    if (!d.checks[i]) continue;
    const CheckResult& c = *d.checks[i];
    os << row_key(d.plan.rows[i])
       << fmt(" %.2e | %s | %s |", c.max_rel_err, c.worst.c_str(), c.pass ? "ok" : "FAIL") << "\n";
  }
  return os.str();
}

std::string csv_report(const RunData& d) {
  const Options& o = d.options;
  const BenchProblem& p = o.problem;
  std::ostringstream os;
  os << "table,ring_type,seq_len,ulysses_degree,ring_degree,fwd_only,world,batch_size,nheads,"
        "kv_heads,head_size,dtype,causal,warmup,iters,threads,backend,throughput_iters_per_s,"
        "latency_ms,peak_memory_mb,speed_tflops,speed_gflops,flops,min_memory_mb,memory_ratio,"
        "check_max_rel_err,seed_latency_ms,single_rank_threads,single_rank_latency_ms,"
        "vs_single_rank,double_ring\n";
  for (std::size_t si = 0; si < o.sections.size(); ++si) {
    for (std::size_t i : d.plan.sections[si]) {
      const RowConfig& c = d.plan.rows[i];
      const RowResult& r = d.results[i];
      const double min_mb = static_cast<double>(memory_model(p, c).minimum) / (1 << 20);
      const auto seed = find_seed_row(p, c);
      os << csv_field(o.sections[si].title) << ',' << ring_type_name(c.ring_type) << ','
         << c.seq_len << ',' << c.ulysses << ',' << c.ring << ',' << py_bool(c.fwd_only) << ','
         << c.world() << ',' << p.batch << ',' << p.nheads << ',' << p.kv_heads << ','
         << p.head_size << ',' << dtype_name(p.dtype) << ',' << py_bool(p.causal) << ',' << o.warmup
         << ',' << o.iters << ',' << r.threads << ',' << o.backend << ',' << num(r.throughput)
         << ',' << num(r.latency_ms) << ',' << num(r.peak_mb) << ',' << num(r.tflops) << ','
         << num(r.tflops * 1000) << ',' << num(r.flops) << ',' << num(min_mb) << ','
         << num(r.peak_mb / min_mb) << ',' << (d.checks[i] ? num(d.checks[i]->max_rel_err) : "")
         << ',' << (seed ? num(seed->latency_ms) : "") << ','
         << (d.singles[i] ? std::to_string(d.singles[i]->threads) : "") << ','
         << (d.singles[i] ? num(d.singles[i]->single_median_ms) : "") << ','
         << (d.singles[i] ? num(d.singles[i]->ratio) : "") << ',' << c.double_ring << '\n';
    }
  }
  return os.str();
}

std::string json_report(const RunData& d) {
  const Options& o = d.options;
  const BenchProblem& p = o.problem;
  std::ostringstream os;
  os << "{\n  \"tool\": \"usp-bench\",\n  \"version\": \"" << version() << "\",\n";
  os << "  \"machine\": {\"cpu_model\": \"" << json_escape(d.machine.cpu_model)
     << "\", \"cores\": " << d.machine.cores << "},\n";
  os << "  \"config\": {\"preset\": \"" << json_escape(o.preset) << "\", \"backend\": \""
     << o.backend << "\", \"dtype\": \"" << dtype_name(p.dtype) << "\", \"batch_size\": " << p.batch
     << ", \"nheads\": " << p.nheads << ", \"kv_heads\": " << p.kv_heads
     << ", \"head_size\": " << p.head_size << ", \"causal\": " << (p.causal ? "true" : "false")
     << ", \"warmup\": " << o.warmup << ", \"iters\": " << o.iters << ", \"threads\": " << o.threads
     << ", \"world\": " << o.world << ", \"repeats\": " << o.repeats
     << ", \"vs_single_rank\": " << (o.vs_single_rank ? "true" : "false")
     << ", \"seed\": " << p.seed
     << ", \"scaled_lengths\": " << (o.scaled_lengths ? "true" : "false") << "},\n";
  if (o.calibration && o.length_choice) {
    const Calibration& c = *o.calibration;
    const LengthChoice& ch = *o.length_choice;
    static const char* const kLimits[] = {"budget", "longest", "memory", "shortest"};
    os << "  \"length_choice\": {\"calibration\": {\"batch_size\": " << c.batch
       << ", \"nheads\": " << c.heads << ", \"seq_len\": " << c.seq_len
       << ", \"threads\": " << c.threads << ", \"calls\": " << c.calls
       << ", \"call_s\": " << num(c.call_s) << ", \"flops\": " << num(c.flops)
       << ", \"rate_gflops\": " << num(c.rate / 1e9) << ", \"total_s\": " << num(c.total_s)
       << "}, \"budget_s\": " << num(ch.rule.budget_s) << ", \"shortest\": " << ch.rule.shortest
       << ", \"longest\": " << ch.rule.longest << ", \"granularity\": " << ch.granularity
       << ", \"lengths\": [" << join_lengths(ch.lengths) << "], \"flops\": " << num(ch.flops)
       << ", \"predicted_s\": " << num(ch.predicted_s)
       << ", \"next_s\": " << (ch.limit == LengthChoice::Limit::budget ? num(ch.next_s) : "null")
       << ", \"limit\": \"" << kLimits[static_cast<int>(ch.limit)] << "\"},\n";
  } else {
    os << "  \"length_choice\": null,\n";
  }
  os << "  \"formula\": \"speed_tflops = 4*b*s^2*h*d (/2 if causal, *3.5 with backward) / "
        "latency_s / 1e12, aggregated over all ranks\",\n";
  os << "  \"tables\": [";
  for (std::size_t si = 0; si < o.sections.size(); ++si) {
    os << (si ? "," : "") << "\n    {\"title\": \"" << json_escape(o.sections[si].title)
       << "\", \"rows\": [";
    bool first = true;
    for (std::size_t i : d.plan.sections[si]) {
      const RowConfig& c = d.plan.rows[i];
      const RowResult& r = d.results[i];
      const MemoryModel mm = memory_model(p, c);
      const auto seed = find_seed_row(p, c);
      os << (first ? "" : ",") << "\n      {\"ring_type\": \"" << ring_type_name(c.ring_type)
         << "\", \"seq_len\": " << c.seq_len << ", \"ulysses_degree\": " << c.ulysses
         << ", \"ring_degree\": " << c.ring << ", \"double_ring\": " << c.double_ring
         << ", \"fwd_only\": " << (c.fwd_only ? "true" : "false") << ", \"world\": " << c.world()
         << ", \"threads\": " << r.threads << ", \"iters\": " << r.iters
         << ", \"wall_s\": " << num(r.wall_s)
         << ", \"throughput_iters_per_s\": " << num(r.throughput)
         << ", \"latency_ms\": " << num(r.latency_ms) << ", \"peak_memory_mb\": " << num(r.peak_mb)
         << ", \"peak_memory_bytes\": " << r.peak_bytes << ", \"speed_tflops\": " << num(r.tflops)
         << ", \"flops\": " << num(r.flops) << ", \"min_memory_bytes\": " << mm.minimum
         << ", \"estimate_memory_bytes\": " << mm.estimate << ", \"memory_ratio\": "
         << num(static_cast<double>(r.peak_bytes) / static_cast<double>(mm.minimum))
         << ", \"check_max_rel_err\": " << (d.checks[i] ? num(d.checks[i]->max_rel_err) : "null")
         << ", \"seed_latency_ms\": " << (seed ? num(seed->latency_ms) : "null");
      if (const auto& sr = d.singles[i]) {
        os << ", \"vs_single_rank\": {\"threads\": " << sr->threads
           << ", \"row_latency_ms\": " << json_list(sr->row_ms)
           << ", \"single_latency_ms\": " << json_list(sr->single_ms)
           << ", \"row_median_ms\": " << num(sr->row_median_ms)
           << ", \"single_median_ms\": " << num(sr->single_median_ms)
           << ", \"ratio\": " << num(sr->ratio) << ", \"row_cpu_ms\": " << json_list(sr->row_cpu_ms)
           << ", \"single_cpu_ms\": " << json_list(sr->single_cpu_ms)
           << ", \"cpu_ratio\": " << num(sr->cpu_ratio) << "}";
      } else {
        os << ", \"vs_single_rank\": null";
      }
      os << ", \"ranks\": [";
      for (std::size_t k = 0; k < r.ranks.size(); ++k) {
        const RankStats& s = r.ranks[k];
        os << (k ? ", " : "") << "{\"rank\": " << k << ", \"compute_s\": " << num(s.compute_s)
           << ", \"comm_wait_s\": " << num(s.comm_wait_s)
           << ", \"comm_total_s\": " << num(s.comm_total_s)
           << ", \"comm_hidden\": " << num(hidden_fraction(s))
           << ", \"bytes_sent\": " << s.bytes_sent << ", \"peak_bytes\": " << s.peak_bytes << "}";
      }
      os << "]}";
      first = false;
    }
    os << "\n    ]}";
  }
  os << "\n  ]\n}\n";
  return os.str();
}

}  // namespace usp::bench
