// usp-attn: runs USP attention on .npy inputs and writes the results as .npy, so that any
// framework can check its numbers against this library (and the other way round).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "options.hpp"
#include "problem.hpp"
#include "usp/attention.hpp"
#include "usp/comm.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"
#include "usp/layout.hpp"
#include "usp/memory.hpp"
#include "usp/npy.hpp"

namespace usp::attn_tool {
namespace {

struct Results {
  // Declared first, destroyed last: the tensors below live in these per-rank allocators.
  std::vector<std::unique_ptr<HostAllocator>> allocs;
  std::vector<Tensor> out, lse, dq, dk, dv;  // index ring_rank * ulysses + ulysses_rank
  double forward_s = 0, backward_s = 0;      // slowest rank
};

Results run(const Options& o, const Problem& p) {
  const int world = o.ulysses * o.ring;
  const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
  const int threads = o.threads > 0 ? o.threads : std::max(1, static_cast<int>(hw) / world);
  const bool backward = p.dout.defined();

  UspConfig cfg;
  cfg.ring_type = o.ring_type;
  cfg.ulysses = o.ulysses;
  cfg.ring = o.ring;
  cfg.causal = o.causal;
  cfg.scale = p.scale;

  Layout layout;
  layout.type = o.ring_type;
  layout.seq_len = p.seq;
  layout.ulysses = o.ulysses;
  layout.ring = o.ring;

  Results r;
  for (int i = 0; i < world; ++i) r.allocs.push_back(std::make_unique<HostAllocator>());
  const auto n = static_cast<std::size_t>(world);
  r.out.resize(n);
  r.lse.resize(n);
  if (backward) {
    r.dq.resize(n);
    r.dk.resize(n);
    r.dv.resize(n);
  }
  std::vector<double> fwd_s(n, 0.0), bwd_s(n, 0.0);

  run_local(world, [&](Communicator& comm) {
    Allocator& alloc = *r.allocs[static_cast<std::size_t>(comm.rank())];
    auto kernel = make_cpu_kernel(threads);
    UspAttention attn(comm, *kernel, alloc, cfg);
    const int rr = attn.mesh().coord.ring;
    const int ur = attn.mesh().coord.ulysses;
    const auto slot = static_cast<std::size_t>(rr) * static_cast<std::size_t>(o.ulysses) +
                      static_cast<std::size_t>(ur);
    const Tensor q = shard(layout, p.q, rr, ur, 1, alloc);
    const Tensor k = shard(layout, p.k, rr, ur, 1, alloc);
    const Tensor v = shard(layout, p.v, rr, ur, 1, alloc);

    auto t0 = std::chrono::steady_clock::now();
    UspAttention::Output out = attn.forward(q, k, v);
    auto t1 = std::chrono::steady_clock::now();
    fwd_s[slot] = std::chrono::duration<double>(t1 - t0).count();
    if (backward) {
      const Tensor dout = shard(layout, p.dout, rr, ur, 1, alloc);
      t0 = std::chrono::steady_clock::now();
      UspAttention::Grads g = attn.backward(q, k, v, out.out, out.lse, dout);
      t1 = std::chrono::steady_clock::now();
      bwd_s[slot] = std::chrono::duration<double>(t1 - t0).count();
      r.dq[slot] = std::move(g.dq);
      r.dk[slot] = std::move(g.dk);
      r.dv[slot] = std::move(g.dv);
    }
    r.out[slot] = std::move(out.out);
    r.lse[slot] = std::move(out.lse);
  });
  r.forward_s = *std::max_element(fwd_s.begin(), fwd_s.end());
  r.backward_s = *std::max_element(bwd_s.begin(), bwd_s.end());
  return r;
}

std::string shape_text(const Tensor& t) {
  std::string s = "[";
  for (int d = 0; d < t.dim(); ++d) {
    if (d > 0) s += ",";
    s += std::to_string(t.size(d));
  }
  return s + "]";
}

int main_impl(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  if (o.help) {
    std::fputs(usage(), stdout);
    return 0;
  }
  const Problem p = load_problem(o);

  namespace fs = std::filesystem;
  const fs::path dir(o.out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    USP_FAIL(io, "--out-dir '", o.out_dir, "' cannot be created",
             ec ? ": " + ec.message() : std::string(" (a file of that name exists)"));
  }

  const Results r = run(o, p);
  Layout layout;
  layout.type = o.ring_type;
  layout.seq_len = p.seq;
  layout.ulysses = o.ulysses;
  layout.ring = o.ring;
  std::string written = "out.npy lse.npy";
  write_npy((dir / "out.npy").string(), unshard(layout, r.out, 1));
  write_npy((dir / "lse.npy").string(), unshard(layout, r.lse, 2));
  if (p.dout.defined()) {
    write_npy((dir / "dq.npy").string(), unshard(layout, r.dq, 1));
    write_npy((dir / "dk.npy").string(), unshard(layout, r.dk, 1));
    write_npy((dir / "dv.npy").string(), unshard(layout, r.dv, 1));
    written += " dq.npy dk.npy dv.npy";
  }

  std::printf("usp-attn: %s ulysses=%d ring=%d %s %s q%s kv%s scale=%g: forward %.3f ms",
              ring_type_name(o.ring_type), o.ulysses, o.ring, o.causal ? "causal" : "non-causal",
              dtype_name(o.dtype), shape_text(p.q).c_str(), shape_text(p.k).c_str(),
              static_cast<double>(p.scale), r.forward_s * 1e3);
  if (p.dout.defined()) std::printf(", backward %.3f ms", r.backward_s * 1e3);
  std::printf("; wrote %s to %s\n", written.c_str(), o.out_dir.c_str());
  return 0;
}

// One line: newlines in a message would break the "one line on stderr" promise.
void report(const char* what) {
  std::string m = what;
  std::replace(m.begin(), m.end(), '\n', ' ');
  std::fprintf(stderr, "usp-attn: error: %s\n", m.c_str());
}

}  // namespace
}  // namespace usp::attn_tool

int main(int argc, char** argv) {
  try {
    return usp::attn_tool::main_impl(argc, argv);
  } catch (const std::exception& e) {
    usp::attn_tool::report(e.what());
  } catch (...) {
    usp::attn_tool::report("unknown failure");
  }
  return 2;
}
