// Fault injection under mpirun: ranks pass blocks around a ring (as the ring attention does) and
// one of them fails in the way named by argv[1]. fault_test.sh checks what the job does.
//   ok        nobody fails
//   kill      rank 2 is SIGKILLed at step 20
//   stop      rank 2 stops (SIGSTOP) at step 20: the others must time out naming it
//   throw     rank 1 throws at step 20
//   mismatch  rank 3 has a different configuration: every rank must exit 2 naming it
// and the same with USP attention itself (ring of 4, forward + backward):
//   usp-ok        nobody fails
//   usp-kill      rank 2 is SIGKILLed at its third send, in the middle of the forward ring
//   usp-mismatch  rank 3 constructs UspAttention non-causal, the others causal
//   usp-badworld  ulysses 3 x ring 1 on 4 ranks: every rank must exit 2 with the rule
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "usp/comm.hpp"
#include "usp/comm_mpi.hpp"
#include "usp/error.hpp"
#include "usp/usp.hpp"

namespace {

struct Config {
  int seq_len = 1024;
  int heads = 8;
};

void check_same_config(usp::Communicator& c, const Config& mine) {
  std::vector<Config> all(static_cast<std::size_t>(c.size()));
  c.allgather(&mine, all.data(), sizeof mine);
  for (int r = 0; r < c.size(); ++r) {
    const Config& o = all[static_cast<std::size_t>(r)];
    if (o.seq_len != all[0].seq_len)
      USP_FAIL(invalid_argument, "configuration differs across ranks: rank ", r, " has seq_len ",
               o.seq_len, ", rank 0 has ", all[0].seq_len);
  }
}

void ring(usp::Communicator& c, const std::string& mode) {
  const int me = c.rank(), p = c.size();
  const int next = (me + 1) % p, prev = (me - 1 + p) % p;
  std::vector<char> a(1 << 20, static_cast<char>(me)), b(a.size());
  for (int step = 0; step < 60; ++step) {
    if (step == 20) {
      if (mode == "kill" && me == 2) std::raise(SIGKILL);
      if (mode == "stop" && me == 2) std::raise(SIGSTOP);
      if (mode == "throw" && me == 1) throw std::runtime_error("injected failure at step 20");
    }
    usp::Request r = c.irecv(b.data(), b.size(), prev, step);
    usp::Request s = c.isend(a.data(), a.size(), next, step);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // "compute"
    r.wait();
    s.wait();
    if (b[0] != static_cast<char>((me - 1 - step % p + 2 * p) % p))
      USP_FAIL(internal, "step ", step, ": wrong block");
    a.swap(b);
  }
}

// Forwards to a real communicator and kills this process at its kill_at-th send (counted over
// the communicator and every one split from it).
class KillAtSend final : public usp::Communicator {
 public:
  KillAtSend(std::unique_ptr<usp::Communicator> inner, std::shared_ptr<int> sends, int kill_at)
      : inner_(std::move(inner)), sends_(std::move(sends)), kill_at_(kill_at) {
    name_ = inner_->name();
    timeout_ = inner_->timeout();
  }
  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string backend() const override { return inner_->backend(); }

 protected:
  usp::Request do_isend(const void* buf, std::size_t bytes, int peer, int tag) override {
    if (++*sends_ == kill_at_) std::raise(SIGKILL);
    return inner_->isend(buf, bytes, peer, tag);
  }
  usp::Request do_irecv(void* buf, std::size_t bytes, int peer, int tag) override {
    return inner_->irecv(buf, bytes, peer, tag);
  }
  void do_alltoall(const void* send, void* recv, std::size_t bytes) override {
    inner_->alltoall(send, recv, bytes);
  }
  void do_allgather(const void* send, void* recv, std::size_t bytes) override {
    inner_->allgather(send, recv, bytes);
  }
  void do_barrier() override { inner_->barrier(); }
  std::unique_ptr<usp::Communicator> do_split(int color, int key) override {
    auto child = inner_->split(color, key);
    if (!child) return nullptr;
    return std::make_unique<KillAtSend>(std::move(child), sends_, kill_at_);
  }

 private:
  std::unique_ptr<usp::Communicator> inner_;
  std::shared_ptr<int> sends_;
  int kill_at_;
};

void usp_attention(usp::Communicator& world, const std::string& mode) {
  const int kill_at = mode == "usp-kill" && world.rank() == 2 ? 3 : -1;
  auto dup = world.split(0, world.rank());
  KillAtSend comm(std::move(dup), std::make_shared<int>(0), kill_at);
  usp::UspConfig cfg;
  cfg.ring_type = usp::RingType::zigzag;
  cfg.ring = world.size();
  if (mode == "usp-badworld") {
    cfg.ulysses = 3;
    cfg.ring = 1;
  }
  cfg.causal = !(mode == "usp-mismatch" && world.rank() == 3);
  usp::HostAllocator alloc;
  auto kernel = usp::make_cpu_kernel(1, &alloc);
  usp::UspAttention att(comm, *kernel, alloc, cfg);
  const std::int64_t s_local = 256, h = 4, d = 32;
  auto filled = [&](float base) {
    usp::Tensor t = usp::Tensor::empty({1, s_local, h, d}, usp::DType::f32, alloc);
    float* p = t.data_as<float>();
    for (std::int64_t i = 0; i < t.numel(); ++i)
      p[i] = base + 0.001f * static_cast<float>((i * 7919 + world.rank() * 31) % 1000);
    return t;
  };
  const usp::Tensor q = filled(0.1f), k = filled(-0.2f), v = filled(0.3f), dout = filled(0.05f);
  const usp::UspAttention::Output o = att.forward(q, k, v);
  att.backward(q, k, v, o.out, o.lse, dout);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "ok";
  return usp::run_mpi(
      &argc, &argv,
      [&](usp::Communicator& world) {
        if (mode.rfind("usp-", 0) == 0) {
          usp_attention(world, mode);
          if (world.rank() == 0) std::printf("usp_mpi_fault: %s finished\n", mode.c_str());
          return;
        }
        Config cfg;
        if (mode == "mismatch" && world.rank() == 3) cfg.seq_len = 1000;
        check_same_config(world, cfg);
        ring(world, mode);
        if (world.rank() == 0) std::printf("usp_mpi_fault: %s finished\n", mode.c_str());
      },
      std::chrono::seconds(3));
}
