// usp::Attention: the rank's allocator, kernel and UspAttention from one set of options, and the
// sharding of global tensors to and from the rank.
#include <cstring>
#include <utility>
#include <vector>

#include "usp/agree.hpp"
#include "usp/attention.hpp"
#include "usp/backend.hpp"
#include "usp/error.hpp"

namespace usp {
namespace {

std::string kernel_backend(const std::string& name) {
  return name == "cuda" ? "cuda-local" : name;
}

}  // namespace

struct Attention::Parts {
  int threads;
  std::unique_ptr<Allocator> alloc;  // outlives the kernel (its scratch) and the core
  std::unique_ptr<AttentionKernel> kernel;
  UspAttention core;

  Parts(Communicator& world, const AttentionOptions& o, const std::string& backend, int t)
      : threads(t),
        alloc(make_allocator(backend)),
        kernel(make_kernel(backend, t, alloc.get())),
        core(world, *kernel, *alloc,
             {o.ring_type, o.ulysses, o.ring, o.data, o.placement, o.causal, o.scale,
              o.check_finite, o.double_ring, o.window, o.cu_seqlens, o.head_chunks}) {}
};

Attention::Attention(Communicator& world, const AttentionOptions& options) {
  USP_CHECK_ARG(options.threads >= 0, "Attention: threads = ", options.threads,
                " must be >= 0 (0 = the default policy)");
  const std::string backend = kernel_backend(options.backend);
  const int threads =
      options.threads > 0 ? options.threads : default_threads(host_ranks(backend, world.size()));
  p_ = std::make_unique<Parts>(world, options, backend, threads);
}

Attention::~Attention() = default;

Tensor Attention::shard(const Tensor& global, int seq_dim) const {
  USP_CHECK_ARG(global.defined() && seq_dim >= 0 && seq_dim < global.dim(),
                "Attention::shard: seq_dim ", seq_dim, " is not a dimension of ",
                global.describe());
  const Layout l = layout(global.size(seq_dim));
  const MeshCoord c = mesh().coord;
  if (p_->alloc->device() == Device::host)
    return usp::shard(l, global, c.ring, c.ulysses, seq_dim, *p_->alloc);
  return copy_to(usp::shard(l, global, c.ring, c.ulysses, seq_dim), *p_->alloc);
}

Tensor Attention::gather(const Tensor& local, int seq_dim) {
  USP_CHECK_ARG(local.defined() && seq_dim >= 0 && seq_dim < local.dim(),
                "Attention::gather: seq_dim ", seq_dim, " is not a dimension of ",
                local.describe());
  const Mesh& m = mesh();
  Communicator& sp = *m.sp;
  const Tensor mine = copy_to(local, default_host_allocator());  // contiguous, on the host
  const std::size_t bytes = mine.nbytes();
  std::vector<char> all(bytes * static_cast<std::size_t>(sp.size()));
  allgather_host(sp, *p_->alloc, mine.data(), all.data(), bytes);
  // sp rank j holds the shard of its (ring, ulysses) coordinate; unshard wants them by
  // ring * u + ulysses.
  const MeshShape group{1, m.shape.ulysses, m.shape.ring, m.shape.placement};
  std::vector<Tensor> locals(static_cast<std::size_t>(sp.size()));
  for (int j = 0; j < sp.size(); ++j) {
    const MeshCoord c = mesh_coord(group, j);
    Tensor& t = locals[static_cast<std::size_t>(c.ring * group.ulysses + c.ulysses)];
    t = Tensor::empty(mine.shape(), mine.dtype());
    std::memcpy(t.data(), all.data() + static_cast<std::size_t>(j) * bytes, bytes);
  }
  return unshard(layout(local.size(seq_dim) * sp.size()), locals, seq_dim);
}

UspAttention::Output Attention::forward(const Tensor& q, const Tensor& k, const Tensor& v) {
  return p_->core.forward(q, k, v);
}

UspAttention::Grads Attention::backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                        const Tensor& out, const Tensor& lse, const Tensor& dout) {
  return p_->core.backward(q, k, v, out, lse, dout);
}

Layout Attention::layout(std::int64_t seq_len) const {
  return p_->core.layout(seq_len);
}
const Mesh& Attention::mesh() const {
  return p_->core.mesh();
}
UspTimings Attention::timings() const {
  return p_->core.timings();
}
int Attention::threads() const {
  return p_->threads;
}
Allocator& Attention::allocator() {
  return *p_->alloc;
}
AttentionKernel& Attention::kernel() {
  return *p_->kernel;
}
void Attention::set_documents(std::vector<std::int64_t> cu_seqlens) {
  p_->core.set_documents(std::move(cu_seqlens));
}

UspAttention& Attention::core() {
  return p_->core;
}

}  // namespace usp
