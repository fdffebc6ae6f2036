// "cuda-local": ranks as threads sharing one GPU. A host local communicator (usp::run_local)
// provides the threads, barrier and split, and its in-process matcher (comm/local/local_world.hpp)
// matches the messages; data moves device-to-device: each posting records an event on the poster's
// compute stream, and the rank that completes a send/receive match enqueues cudaMemcpyAsync on its
// own communication stream after both events, so transfers overlap the kernels in flight. wait()
// returns once the copy is done.
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "comm/local/local_comm.hpp"
#include "kernel/cuda/check.hpp"
#include "kernel/cuda/event.hpp"
#include "usp/cuda.hpp"
#include "usp/error.hpp"

namespace usp::cuda {
namespace {

using usp::detail::CopyDone;
using usp::detail::CopyEngine;
using usp::detail::LocalCommunicator;
using usp::detail::LocalWorld;
using usp::detail::MatchKey;
using usp::detail::OpInfo;

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

// One rank's copies, on its own communication stream.
class DeviceCopyEngine final : public CopyEngine {
 public:
  explicit DeviceCopyEngine(int device) : device_(device) {
    detail::set_device(device);
    USP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }
  ~DeviceCopyEngine() override {
    (void)cudaStreamSynchronize(stream_);
    (void)cudaStreamDestroy(stream_);
  }
  DeviceCopyEngine(const DeviceCopyEngine&) = delete;
  DeviceCopyEngine& operator=(const DeviceCopyEngine&) = delete;

  std::shared_ptr<CopyDone> start(void* dst, const void* src, std::size_t bytes,
                                  const std::shared_ptr<void>& send_token,
                                  const std::shared_ptr<void>& recv_token) override {
    detail::set_device(device_);
    auto done = std::make_shared<DeviceCopyDone>();
    for (const std::shared_ptr<void>* t : {&send_token, &recv_token})
      if (*t) USP_CUDA_CHECK(cudaStreamWaitEvent(stream_, static_cast<Event*>(t->get())->e, 0));
    if (bytes > 0)
      USP_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_));
    USP_CUDA_CHECK(cudaEventRecord(done->done.e, stream_));
    return done;
  }

 private:
  int device_;
  cudaStream_t stream_ = nullptr;
};

class CudaLocalCommunicator final : public Communicator {
 public:
  // `host` is the host communicator over the same ranks (owned when it came from a split).
  CudaLocalCommunicator(std::unique_ptr<Communicator> owned, Communicator& host, int device)
      : owned_(std::move(owned)), host_(local_of(host)), engine_(device), device_(device) {
    name_ = host.name();
    timeout_ = host.timeout();
  }

  int rank() const override { return host_.rank(); }
  int size() const override { return host_.size(); }
  Device device() const override { return Device::cuda; }
  std::string backend() const override { return "cuda-local"; }

 protected:
  Request do_isend(const void* buf, std::size_t bytes, int peer, int tag) override {
    return send(buf, bytes, peer, tag);
  }
  Request do_irecv(void* buf, std::size_t bytes, int peer, int tag) override {
    return recv(buf, bytes, peer, tag);
  }
  void do_alltoall(const void* send, void* recv, std::size_t bytes_per_rank) override {
    exchange(send, recv, bytes_per_rank, false);
  }
  void do_allgather(const void* send, void* recv, std::size_t bytes) override {
    exchange(send, recv, bytes, true);
  }
  void do_barrier() override {
    USP_CUDA_CHECK(cudaStreamSynchronize(detail::compute_stream()));
    sync_host();
    host_.barrier();
  }
  std::unique_ptr<Communicator> do_split(int color, int key) override {
    sync_host();
    std::unique_ptr<Communicator> sub = host_.split(color, key);
    if (sub == nullptr) return nullptr;  // negative color: this rank joins no group
    Communicator& host = *sub;
    return std::make_unique<CudaLocalCommunicator>(std::move(sub), host, device_);
  }

 private:
  static LocalCommunicator& local_of(Communicator& host) {
    auto* local = dynamic_cast<LocalCommunicator*>(&host);
    if (local == nullptr)
      USP_FAIL(internal, "cuda-local needs a local host communicator, got '", host.backend(), "'");
    return *local;
  }
  OpInfo info(const char* op, int peer, int tag) const {
    return OpInfo{host_.world_rank(), op, peer, host_.world_of(peer), tag, name_, timeout_};
  }
  void sync_host() {
    host_.set_name(name_);
    host_.set_timeout(timeout_);
  }

  Request send(const void* buf, std::size_t bytes, int peer, int tag) {
    detail::set_device(device_);
    const std::shared_ptr<LocalWorld>& w = host_.world();
    auto slot = w->post_send(host_.world_rank(), host_.world_of(peer),
                             MatchKey{host_.id(), host_.world_rank(), tag}, buf, bytes, &engine_,
                             ready_token());
    return usp::detail::send_request(w, std::move(slot), info("send", peer, tag));
  }
  Request recv(void* buf, std::size_t bytes, int peer, int tag) {
    detail::set_device(device_);
    const std::shared_ptr<LocalWorld>& w = host_.world();
    auto op = w->post_recv(host_.world_rank(), MatchKey{host_.id(), host_.world_of(peer), tag}, buf,
                           bytes, &engine_, ready_token());
    return usp::detail::recv_request(w, std::move(op), info("recv", peer, tag));
  }

  void exchange(const void* send_buf, void* recv_buf, std::size_t bytes, bool gather) {
    detail::set_device(device_);
    const int n = size(), me = rank();
    const auto* s = static_cast<const unsigned char*>(send_buf);
    auto* r = static_cast<unsigned char*>(recv_buf);
    const int tag = usp::detail::kTagDeviceCollective;
    std::vector<Request> reqs;
    reqs.reserve(static_cast<std::size_t>(2 * n));
    for (int j = 0; j < n; ++j) {
      if (j == me) continue;
      reqs.push_back(send(gather ? s : s + j * bytes, bytes, j, tag));
      reqs.push_back(recv(r + j * bytes, bytes, j, tag));
    }
    cudaStream_t st = detail::compute_stream();
    if (bytes > 0)
      USP_CUDA_CHECK(cudaMemcpyAsync(r + me * bytes, gather ? s : s + me * bytes, bytes,
                                     cudaMemcpyDeviceToDevice, st));
    for (auto& q : reqs) q.wait();
    USP_CUDA_CHECK(cudaStreamSynchronize(st));
  }

  std::unique_ptr<Communicator> owned_;  // the host sub-communicator of a split (null for world)
  LocalCommunicator& host_;
  DeviceCopyEngine engine_;
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
  usp::run_local(
      world_size,
      [&](Communicator& host) {
        detail::set_device(device);
        CudaLocalCommunicator c(nullptr, host, device);
        c.set_timeout(timeout);
        fn(c);
        USP_CUDA_CHECK(cudaStreamSynchronize(detail::compute_stream()));
      },
      timeout);
}

}  // namespace usp::cuda
