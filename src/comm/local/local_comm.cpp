// The local backend: ranks are threads of this process; see local_world.hpp for matching.
#include "comm/local/local_comm.hpp"

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

Request LocalCommunicator::do_isend(const void* buf, std::size_t bytes, int peer, int tag) {
  const int dst = world_of(peer);
  std::shared_ptr<Slot> slot =
      world_->post_send(world_rank(), dst, MatchKey{id_, world_rank(), tag}, buf, bytes);
  return send_request(world_, std::move(slot), info("send", peer, tag));
}

Request LocalCommunicator::do_irecv(void* buf, std::size_t bytes, int peer, int tag) {
  auto op = world_->post_recv(world_rank(), MatchKey{id_, world_of(peer), tag}, buf, bytes);
  return recv_request(world_, std::move(op), info("recv", peer, tag));
}

void LocalCommunicator::exchange(const char* op, int tag, const void* send, bool strided,
                                 void* recv, std::size_t bytes) {
  const int p = size();
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

void LocalCommunicator::do_alltoall(const void* send, void* recv, std::size_t bytes_per_rank) {
  exchange("alltoall", kTagAlltoall, send, true, recv, bytes_per_rank);
}

void LocalCommunicator::do_allgather(const void* send, void* recv, std::size_t bytes) {
  exchange("allgather", kTagAllgather, send, false, recv, bytes);
}

void LocalCommunicator::do_barrier() {
  char none = 0;
  std::vector<char> sink(static_cast<std::size_t>(size()));
  exchange("barrier", kTagBarrier, &none, false, sink.data(), 0);
}

std::unique_ptr<Communicator> LocalCommunicator::do_split(int color, int key) {
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
                                             std::move(members), new_rank, name_, timeout_);
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
