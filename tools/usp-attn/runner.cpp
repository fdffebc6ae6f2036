// usp-attn's work: the ranks' attention and the files it writes.
#include "runner.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "../common/mpi_job.hpp"
#include "../common/rank_exchange.hpp"
#include "usp/attention.hpp"
#include "usp/backend.hpp"
#include "usp/comm.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"
#include "usp/layout.hpp"
#include "usp/memory.hpp"
#include "usp/npy.hpp"

namespace usp::attn_tool {

Results run(const Options& o, const NpyInputs& p, Communicator* world) {
  const int ranks = o.ulysses * o.ring;
  const bool backward = p.dout.defined();
  const AttentionOptions options{.backend = o.backend,
                                 .ulysses = o.ulysses,
                                 .ring = o.ring,
                                 .ring_type = o.ring_type,
                                 .causal = o.causal,
                                 .scale = p.scale,
                                 .check_finite = o.check_finite,
                                 .double_ring = o.double_ring,
                                 .window = o.window,
                                 .cu_seqlens = o.cu_seqlens,
                                 .head_chunks = o.head_chunks,
                                 .threads = o.threads};

  Results r;
  const auto n = static_cast<std::size_t>(ranks);
  for (auto* v : {&r.out, &r.lse, &r.dq, &r.dk, &r.dv}) v->resize(n);
  std::vector<double> fwd_s(n, 0.0), bwd_s(n, 0.0);
  constexpr int kTensors = 5;  // out, lse, dq, dk, dv
  std::vector<Tensor>* slots[kTensors] = {&r.out, &r.lse, &r.dq, &r.dk, &r.dv};
  struct Coord {
    int ring, ulysses;
    double forward_s, backward_s;
  };

  auto rank_fn = [&](Communicator& comm) {
    Attention attn(comm, options);
    Coord me{attn.mesh().coord.ring, attn.mesh().coord.ulysses, 0, 0};
    // This rank's tokens, in its allocator (through host memory for a GPU).
    const Tensor q = attn.shard(p.q), k = attn.shard(p.k), v = attn.shard(p.v);

    Tensor res[kTensors];
    auto t0 = std::chrono::steady_clock::now();
    UspAttention::Output out = attn.forward(q, k, v);
    auto t1 = std::chrono::steady_clock::now();
    me.forward_s = std::chrono::duration<double>(t1 - t0).count();
    if (backward) {
      const Tensor dout = attn.shard(p.dout);
      t0 = std::chrono::steady_clock::now();
      UspAttention::Grads g = attn.backward(q, k, v, out.out, out.lse, dout);
      t1 = std::chrono::steady_clock::now();
      me.backward_s = std::chrono::duration<double>(t1 - t0).count();
      res[2] = std::move(g.dq);
      res[3] = std::move(g.dk);
      res[4] = std::move(g.dv);
    }
    res[0] = std::move(out.out);
    res[1] = std::move(out.lse);
    const int count = backward ? kTensors : 2;

    if (world == nullptr) {  // threads: each rank fills its own slots
      const auto slot = static_cast<std::size_t>(me.ring * o.ulysses + me.ulysses);
      for (int i = 0; i < count; ++i) (*slots[i])[slot] = copy_to(res[i], default_host_allocator());
      fwd_s[slot] = me.forward_s;
      bwd_s[slot] = me.backward_s;
      return;
    }
    const std::vector<Coord> all = tools::allgather_value(comm, o.backend, me);
    for (int i = 0; i < count; ++i) {
      std::vector<Tensor> shards = tools::gather_to_root(comm, res[i], attn.allocator(), 7100 + i);
      res[i] = Tensor();
      for (std::size_t j = 0; j < shards.size(); ++j)
        (*slots[i])[static_cast<std::size_t>(all[j].ring * o.ulysses + all[j].ulysses)] =
            std::move(shards[j]);
    }
    for (std::size_t j = 0; j < all.size(); ++j) {
      fwd_s[j] = all[j].forward_s;
      bwd_s[j] = all[j].backward_s;
    }
  };
  if (world) {
    USP_CHECK_ARG(world->size() == ranks, "--ulysses ", o.ulysses, " x --ring ", o.ring, " = ",
                  ranks, " ranks but mpirun started ", world->size(), " processes");
    rank_fn(*world);
  } else {
    run_ranks(o.backend, ranks, rank_fn);
  }
  r.forward_s = *std::max_element(fwd_s.begin(), fwd_s.end());
  r.backward_s = *std::max_element(bwd_s.begin(), bwd_s.end());
  return r;
}

// Says what is missing when this build or machine cannot run o.backend; the GPU kernel's limits.
void check_backend(const Options& o) {
  const std::string why = backend_unavailable_reason(o.backend);
  if (!why.empty()) throw Error(ErrorKind::unsupported, why);
  if (backend_device(o.backend) == Device::cuda)
    USP_CHECK_ARG(o.dtype != DType::f32,
                  "--dtype fp32 is not supported by the CUDA kernel of "
                  "--backend ",
                  o.backend, " (use --dtype fp16 or bf16)");
}

void make_out_dir(const Options& o) {
  namespace fs = std::filesystem;
  const fs::path dir(o.out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) {
    USP_FAIL(io, "--out-dir '", o.out_dir, "' cannot be created",
             ec ? ": " + ec.message() : std::string(" (a file of that name exists)"));
  }
}

// Writes the results and prints the summary line.
void write_results(const Options& o, const NpyInputs& p, const Results& r) {
  namespace fs = std::filesystem;
  const fs::path dir(o.out_dir);
  const Layout layout = layout_of(o, p.seq);
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
              dtype_name(o.dtype), shape_text(p.q, ",").c_str(), shape_text(p.k, ",").c_str(),
              static_cast<double>(p.scale), r.forward_s * 1e3);
  if (p.dout.defined()) std::printf(", backward %.3f ms", r.backward_s * 1e3);
  std::printf("; wrote %s to %s", written.c_str(), o.out_dir.c_str());
  if (o.backend != "local") std::printf(" (backend %s)", o.backend.c_str());
  std::printf("\n");
}

}  // namespace usp::attn_tool
