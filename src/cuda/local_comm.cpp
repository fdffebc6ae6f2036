// "cuda-local": ranks as threads sharing one GPU. A host local communicator (usp::run_local)
// provides the threads, barrier and split; data moves device-to-device: each posting records an
// event on the poster's compute stream, and the rank that completes a send/receive match enqueues
// cudaMemcpyAsync on its own communication stream after both events, so transfers overlap the
// kernels in flight. wait() returns once the copy is done.
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "backend/p2p_matcher.hpp"
#include "kernel/cuda/check.hpp"
#include "kernel/cuda/event.hpp"
#include "usp/cuda.hpp"

namespace usp::cuda {
namespace {

using usp::detail::AbortFlag;
using usp::detail::CopyDone;
using usp::detail::CopyEngine;
using usp::detail::P2PMatcher;
using usp::detail::Posting;

using usp::cuda::detail::Event;

// An event recorded on the calling thread's compute stream: the buffer is ready after it.
std::shared_ptr<void> ready_token() {
  auto ev = std::make_shared<Event>();
  USP_CUDA_CHECK(cudaEventRecord(ev->e, detail::compute_stream()));
  return ev;
}

struct DeviceCopyDone final : CopyDone {
  Event done;
  void wait() override { USP_CUDA_CHECK(cudaEventSynchronize(done.e)); }
  bool test() override {
    cudaError_t e = cudaEventQuery(done.e);
    if (e == cudaErrorNotReady) return false;
    USP_CUDA_CHECK(e);
    return true;
  }
};

class DeviceCopyEngine final : public CopyEngine {
 public:
  DeviceCopyEngine(int size, int device) : device_(device) {
    detail::set_device(device);
    streams_.resize(static_cast<std::size_t>(size), nullptr);
    for (auto& s : streams_) USP_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  }
  ~DeviceCopyEngine() override {
    for (auto s : streams_) {
      (void)cudaStreamSynchronize(s);
      (void)cudaStreamDestroy(s);
    }
  }
  std::shared_ptr<CopyDone> start(const Posting& send, const Posting& recv, int by_rank) override {
    detail::set_device(device_);
    cudaStream_t st = streams_.at(static_cast<std::size_t>(by_rank));
    auto done = std::make_shared<DeviceCopyDone>();
    for (const Posting* p : {&send, &recv})
      if (p->token)
        USP_CUDA_CHECK(cudaStreamWaitEvent(st, static_cast<Event*>(p->token.get())->e, 0));
    if (send.bytes > 0)
      USP_CUDA_CHECK(cudaMemcpyAsync(recv.buf, send.buf, send.bytes, cudaMemcpyDeviceToDevice, st));
    USP_CUDA_CHECK(cudaEventRecord(done->done.e, st));
    return done;
  }

 private:
  int device_;
  std::vector<cudaStream_t> streams_;
};

// What the ranks of one communicator share.
struct Group {
  Group(int size, int device, std::shared_ptr<AbortFlag> abort)
      : engine(size, device), matcher(engine, std::move(abort)) {}
  DeviceCopyEngine engine;
  P2PMatcher matcher;
};

constexpr int kP2P = 0, kCollective = 1;

class LocalRequest final : public Request::Impl {
 public:
  LocalRequest(std::shared_ptr<Group> g, P2PMatcher::Handle h, std::chrono::milliseconds t)
      : g_(std::move(g)), h_(std::move(h)), timeout_(t) {}
  void wait() override { g_->matcher.wait(h_, timeout_); }
  bool test() override { return g_->matcher.test(h_); }

 private:
  std::shared_ptr<Group> g_;
  P2PMatcher::Handle h_;
  std::chrono::milliseconds timeout_;
};

class CudaLocalCommunicator final : public Communicator {
 public:
  CudaLocalCommunicator(std::unique_ptr<Communicator> owned, Communicator& host,
                        std::shared_ptr<Group> group, std::shared_ptr<AbortFlag> abort, int device)
      : owned_(std::move(owned)),
        host_(host),
        group_(std::move(group)),
        abort_(std::move(abort)),
        device_(device) {}

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  Device device() const override { return Device::cuda; }
  std::string backend() const override { return "cuda-local"; }

  Request isend(const void* buf, std::size_t bytes, int peer, int tag) override {
    check_peer(peer, "isend");
    return post(kP2P, true, const_cast<void*>(buf), bytes, peer, tag);
  }
  Request irecv(void* buf, std::size_t bytes, int peer, int tag) override {
    check_peer(peer, "irecv");
    return post(kP2P, false, buf, bytes, peer, tag);
  }

  void alltoall(const void* send, void* recv, std::size_t bytes_per_rank) override {
    exchange(send, recv, bytes_per_rank, false);
  }
  void allgather(const void* send, void* recv, std::size_t bytes) override {
    exchange(send, recv, bytes, true);
  }
  void barrier() override {
    USP_CUDA_CHECK(cudaStreamSynchronize(detail::compute_stream()));
    host_.barrier();
  }

  std::unique_ptr<Communicator> split(int color, int key) override {
    std::unique_ptr<Communicator> sub = host_.split(color, key);
    if (sub == nullptr) return nullptr;  // negative color: this rank joins no group
    // Rank 0 of the new group creates its shared state and publishes its address; the others
    // copy the shared_ptr; a barrier later rank 0 drops the publication holder.
    std::shared_ptr<Group>* holder = nullptr;
    if (sub->rank() == 0)
      holder = new std::shared_ptr<Group>(std::make_shared<Group>(sub->size(), device_, abort_));
    std::vector<std::uintptr_t> addrs(static_cast<std::size_t>(sub->size()));
    const std::uintptr_t mine = reinterpret_cast<std::uintptr_t>(holder);
    sub->allgather(&mine, addrs.data(), sizeof mine);
    std::shared_ptr<Group> g = *reinterpret_cast<std::shared_ptr<Group>*>(addrs[0]);
    sub->barrier();
    delete holder;
    Communicator& host = *sub;
    auto c = std::make_unique<CudaLocalCommunicator>(std::move(sub), host, std::move(g), abort_,
                                                     device_);
    c->set_timeout(timeout());
    return c;
  }

 private:
  void check_peer(int peer, const char* op) const {
    USP_CHECK_ARG(peer >= 0 && peer < size() && peer != rank(), "cuda-local rank ", rank(), ": ",
                  op, " peer = ", peer, " must be another rank in [0, ", size(), ")");
  }

  Request post(int channel, bool is_send, void* buf, std::size_t bytes, int peer, int tag) {
    detail::set_device(device_);
    Posting p;
    p.buf = buf;
    p.bytes = bytes;
    p.rank = rank();
    p.token = ready_token();
    auto h = is_send ? group_->matcher.post_send(channel, rank(), peer, tag, std::move(p))
                     : group_->matcher.post_recv(channel, peer, rank(), tag, std::move(p));
    return Request(std::make_unique<LocalRequest>(group_, std::move(h), timeout()));
  }

  void exchange(const void* send, void* recv, std::size_t bytes, bool gather) {
    detail::set_device(device_);
    const int n = size(), me = rank();
    const auto* s = static_cast<const unsigned char*>(send);
    auto* r = static_cast<unsigned char*>(recv);
    std::vector<Request> reqs;
    reqs.reserve(static_cast<std::size_t>(2 * n));
    for (int j = 0; j < n; ++j) {
      if (j == me) continue;
      const unsigned char* src = gather ? s : s + j * bytes;
      reqs.push_back(post(kCollective, true, const_cast<unsigned char*>(src), bytes, j, 0));
      reqs.push_back(post(kCollective, false, r + j * bytes, bytes, j, 0));
    }
    cudaStream_t st = detail::compute_stream();
    if (bytes > 0)
      USP_CUDA_CHECK(cudaMemcpyAsync(r + me * bytes, gather ? s : s + me * bytes, bytes,
                                     cudaMemcpyDeviceToDevice, st));
    for (auto& q : reqs) q.wait();
    USP_CUDA_CHECK(cudaStreamSynchronize(st));
  }

  std::unique_ptr<Communicator> owned_;  // the host sub-communicator of a split (null for world)
  Communicator& host_;
  std::shared_ptr<Group> group_;
  std::shared_ptr<AbortFlag> abort_;
  int device_;
};

}  // namespace

void run_local(int world_size, const std::function<void(Communicator&)>& fn,
               std::chrono::milliseconds timeout, int device) {
  USP_CHECK_ARG(world_size >= 1, "cuda::run_local: world_size = ", world_size, " must be >= 1");
  const int n = device_count();
  if (n == 0) throw Error(ErrorKind::unsupported, "backend 'cuda-local' " + unavailable_reason());
  USP_CHECK_ARG(device >= 0 && device < n, "cuda::run_local: device = ", device, " must be in [0, ",
                n, ")");
  auto abort = std::make_shared<AbortFlag>();
  auto world = std::make_shared<Group>(world_size, device, abort);
  usp::run_local(
      world_size,
      [&](Communicator& host) {
        detail::set_device(device);
        CudaLocalCommunicator c(nullptr, host, world, abort, device);
        c.set_timeout(timeout);
        try {
          fn(c);
          USP_CUDA_CHECK(cudaStreamSynchronize(detail::compute_stream()));
        } catch (const std::exception& e) {
          abort->raise(usp::detail::concat("rank ", host.rank(), " failed: ", e.what()));
          throw;
        }
      },
      timeout);
}

}  // namespace usp::cuda
