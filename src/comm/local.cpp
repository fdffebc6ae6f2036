// The local backend: ranks are threads of this process; see local_world.hpp for matching.
#include "comm/local.hpp"

#include <algorithm>
#include <cstring>
#include <exception>
#include <numeric>
#include <optional>
#include <thread>
#include <utility>

#include "usp/error.hpp"
#include "util/thread_pool_gate.hpp"

namespace usp::detail {
namespace {

// Internal tags: negative, so they never meet a user's message.
constexpr int kTagAlltoall = -1;
constexpr int kTagAllgather = -2;
constexpr int kTagBarrier = -3;
constexpr int kTagSplit = -4;

struct DoneImpl final : Request::Impl {
  void wait() override {}
  bool test() override { return true; }
};

// A send whose payload may still be read from the caller's buffer by the receiver; wait()
// copies it into the mailbox if no receive has taken it yet (never waits for the receiver).
class SendImpl final : public Request::Impl {
 public:
  SendImpl(std::shared_ptr<LocalWorld> world, std::shared_ptr<Slot> slot, int dst)
      : world_(std::move(world)), slot_(std::move(slot)), dst_(dst) {}
  void wait() override { world_->complete_send(dst_, *slot_); }
  bool test() override {
    wait();
    return true;
  }

 private:
  std::shared_ptr<LocalWorld> world_;
  std::shared_ptr<Slot> slot_;
  int dst_;
};

class RecvImpl final : public Request::Impl {
 public:
  RecvImpl(std::shared_ptr<LocalWorld> world, std::shared_ptr<RecvOp> op, OpInfo info)
      : world_(std::move(world)), op_(std::move(op)), info_(std::move(info)) {}
  void wait() override {
    world_->wait(*op_, std::chrono::steady_clock::now() + info_.timeout, info_);
  }
  bool test() override { return world_->test(*op_, info_.self_world); }

 private:
  std::shared_ptr<LocalWorld> world_;
  std::shared_ptr<RecvOp> op_;
  OpInfo info_;
};

bool overlaps(const void* a, std::size_t na, const void* b, std::size_t nb) {
  auto pa = reinterpret_cast<std::uintptr_t>(a);
  auto pb = reinterpret_cast<std::uintptr_t>(b);
  return na && nb && pa < pb + nb && pb < pa + na;
}

}  // namespace

LocalCommunicator::LocalCommunicator(std::shared_ptr<LocalWorld> world, std::uint64_t id,
                                     std::vector<int> members, int rank, std::string name,
                                     std::chrono::milliseconds timeout)
    : world_(std::move(world)), id_(id), members_(std::move(members)), rank_(rank) {
  name_ = std::move(name);
  timeout_ = timeout;
}

OpInfo LocalCommunicator::info(const char* op, int peer, int tag) const {
  return OpInfo{world_rank(), op, peer, world_of(peer), tag, name_, timeout_};
}

void LocalCommunicator::check_p2p(const char* op, const void* buf, std::size_t bytes, int peer,
                                  int tag) const {
  USP_CHECK_ARG(peer >= 0 && peer < size(), op, ": peer ", peer, " is out of range [0, ", size(),
                ") on comm '", name_, "'");
  USP_CHECK_ARG(tag >= 0, op, ": tag ", tag, " must be >= 0 (negative tags are reserved)");
  USP_CHECK_ARG(buf != nullptr || bytes == 0, op, ": buffer is null but bytes = ", bytes);
}

Request LocalCommunicator::isend(const void* buf, std::size_t bytes, int peer, int tag) {
  check_p2p("isend", buf, bytes, peer, tag);
  const int dst = world_of(peer);
  std::shared_ptr<Slot> slot =
      world_->post_send(world_rank(), dst, MatchKey{id_, world_rank(), tag}, buf, bytes);
  if (!slot) return Request(std::make_unique<DoneImpl>());  // copied into the posted receive
  return Request(std::make_unique<SendImpl>(world_, std::move(slot), dst));
}

Request LocalCommunicator::irecv(void* buf, std::size_t bytes, int peer, int tag) {
  check_p2p("irecv", buf, bytes, peer, tag);
  auto op = world_->post_recv(world_rank(), MatchKey{id_, world_of(peer), tag}, buf, bytes);
  return Request(std::make_unique<RecvImpl>(world_, std::move(op), info("recv", peer, tag)));
}

void LocalCommunicator::exchange(const char* op, int tag, const void* send, bool strided,
                                 void* recv, std::size_t bytes) {
  const int p = size();
  const std::size_t total = bytes * static_cast<std::size_t>(p);
  USP_CHECK_ARG((send && recv) || bytes == 0, op, ": null buffer with ", bytes, " bytes per rank");
  USP_CHECK_ARG(!overlaps(send, strided ? total : bytes, recv, total), op,
                ": send and recv buffers overlap (in-place is not supported)");
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  auto* out = static_cast<char*>(recv);
  const auto* in = static_cast<const char*>(send);
  std::vector<std::shared_ptr<RecvOp>> ops(static_cast<std::size_t>(p));
  std::vector<std::shared_ptr<Slot>> sends(static_cast<std::size_t>(p));
  // On the way out, normal or not: withdraws the receives still pending and completes the sends
  // (by then the peers have mostly posted their receives and copied from `send` themselves).
  struct Guard {
    LocalCommunicator& c;
    std::vector<std::shared_ptr<RecvOp>>& ops;
    std::vector<std::shared_ptr<Slot>>& sends;
    ~Guard() {
      for (auto& o : ops)
        if (o) c.world_->cancel(*o);
      for (std::size_t j = 0; j < sends.size(); ++j)
        if (sends[j]) c.world_->complete_send(c.world_of(static_cast<int>(j)), *sends[j]);
    }
  } guard{*this, ops, sends};
  for (int j = 0; j < p; ++j)
    if (j != rank_)
      ops[static_cast<std::size_t>(j)] =
          world_->post_recv(world_rank(), MatchKey{id_, world_of(j), tag},
                            out + static_cast<std::size_t>(j) * bytes, bytes);
  if (bytes)
    std::memcpy(out + static_cast<std::size_t>(rank_) * bytes,
                in + (strided ? static_cast<std::size_t>(rank_) * bytes : 0), bytes);
  for (int s = 1; s < p; ++s) {  // start with the next rank so that senders spread out
    const int j = (rank_ + s) % p;
    sends[static_cast<std::size_t>(j)] =
        world_->post_send(world_rank(), world_of(j), MatchKey{id_, world_rank(), tag},
                          in + (strided ? static_cast<std::size_t>(j) * bytes : 0), bytes);
  }
  for (int s = 1; s < p; ++s) {
    const int j = (rank_ - s + p) % p;
    auto& o = ops[static_cast<std::size_t>(j)];
    world_->wait(*o, deadline, info(op, j, tag));
    o.reset();
  }
}

void LocalCommunicator::alltoall(const void* send, void* recv, std::size_t bytes_per_rank) {
  exchange("alltoall", kTagAlltoall, send, true, recv, bytes_per_rank);
}

void LocalCommunicator::allgather(const void* send, void* recv, std::size_t bytes) {
  exchange("allgather", kTagAllgather, send, false, recv, bytes);
}

void LocalCommunicator::barrier() {
  char none = 0;
  std::vector<char> sink(static_cast<std::size_t>(size()));
  exchange("barrier", kTagBarrier, &none, false, sink.data(), 0);
}

std::unique_ptr<Communicator> LocalCommunicator::split(int color, int key) {
  const int p = size();
  int mine[2] = {color, key};
  std::vector<int> all(2 * static_cast<std::size_t>(p));
  exchange("split", kTagSplit, mine, false, all.data(), sizeof mine);
  const std::uint64_t seq = splits_++;
  if (color < 0) return nullptr;
  std::vector<int> group;  // old ranks with my color
  for (int i = 0; i < p; ++i)
    if (all[2 * static_cast<std::size_t>(i)] == color) group.push_back(i);
  std::stable_sort(group.begin(), group.end(), [&](int a, int b) {
    return all[2 * static_cast<std::size_t>(a) + 1] < all[2 * static_cast<std::size_t>(b) + 1];
  });
  std::vector<int> members;
  int new_rank = 0;
  for (std::size_t i = 0; i < group.size(); ++i) {
    if (group[i] == rank_) new_rank = static_cast<int>(i);
    members.push_back(world_of(group[i]));
  }
  return std::make_unique<LocalCommunicator>(world_, world_->child_id(id_, seq, color),
                                             std::move(members), new_rank, name_ + "/split",
                                             timeout_);
}

namespace {
std::string message_of(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& x) {
    return x.what();
  } catch (...) {
    return "unknown exception";
  }
}
}  // namespace

}  // namespace usp::detail

namespace usp {

void run_local(int world_size, const std::function<void(Communicator&)>& fn,
               std::chrono::milliseconds timeout) {
  USP_CHECK_ARG(world_size >= 1, "run_local: world_size must be >= 1, got ", world_size);
  USP_CHECK_ARG(timeout.count() > 0, "run_local: timeout must be > 0 ms, got ", timeout.count());
  USP_CHECK_ARG(static_cast<bool>(fn), "run_local: the rank function is empty");
  auto world = std::make_shared<detail::LocalWorld>(world_size);
  // Ranks share the cores: the kernel threads that hold running slots get a CPU each.
  std::optional<detail::ThreadPoolGate::LocalRanks> sharing;
  if (world_size > 1) sharing.emplace(detail::ThreadPoolGate::process());
  std::vector<int> members(static_cast<std::size_t>(world_size));
  std::iota(members.begin(), members.end(), 0);

  std::mutex first_m;
  std::exception_ptr first;
  auto fail = [&](int r, std::exception_ptr e) {
    {
      std::lock_guard g(first_m);
      if (!first) first = e;
    }
    world->abort(r, detail::message_of(e));
  };

  std::vector<std::thread> threads;
  threads.reserve(static_cast<std::size_t>(world_size));
  try {
    for (int r = 0; r < world_size; ++r)
      threads.emplace_back([&, r] {
        try {
          detail::LocalCommunicator comm(world, 0, members, r, "world", timeout);
          fn(comm);
          world->finish(r);
        } catch (...) {
          fail(r, std::current_exception());
        }
      });
  } catch (...) {  // could not start every thread: stop the ones running
    world->abort(-1, "run_local could not start all rank threads");
    for (auto& t : threads) t.join();
    throw;
  }
  for (auto& t : threads) t.join();
  if (first) std::rethrow_exception(first);
}

}  // namespace usp
