// The local backend's communicator: one rank thread's view of a group of the LocalWorld.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "comm/local/local_world.hpp"
#include "usp/comm.hpp"

namespace usp::detail {

class LocalCommunicator final : public Communicator {
 public:
  // members[i] is the world rank of group rank i; `rank` is this thread's group rank.
  LocalCommunicator(std::shared_ptr<LocalWorld> world, std::uint64_t id, std::vector<int> members,
                    int rank, std::string name, std::chrono::milliseconds timeout);

  int rank() const override { return rank_; }
  int size() const override { return static_cast<int>(members_.size()); }
  std::string backend() const override { return "local"; }

  // The world this communicator matches its messages in, and its id there (for backends that
  // move their data through the same matcher, e.g. cuda-local).
  const std::shared_ptr<LocalWorld>& world() const { return world_; }
  std::uint64_t id() const { return id_; }
  int world_rank() const { return members_[static_cast<std::size_t>(rank_)]; }
  int world_of(int r) const { return members_[static_cast<std::size_t>(r)]; }
  OpInfo info(const char* op, int peer, int tag) const;

 protected:
  Request do_isend(const void* buf, std::size_t bytes, int peer, int tag) override;
  Request do_irecv(void* buf, std::size_t bytes, int peer, int tag) override;
  void do_alltoall(const void* send, void* recv, std::size_t bytes_per_rank) override;
  void do_allgather(const void* send, void* recv, std::size_t bytes) override;
  void do_barrier() override;
  std::unique_ptr<Communicator> do_split(int color, int key) override;

 private:
  // Every rank sends block (stride ? j : 0) of `send` to rank j and receives block i from rank i.
  void exchange(const char* op, int tag, const void* send, bool strided, void* recv,
                std::size_t bytes);

  std::shared_ptr<LocalWorld> world_;
  std::uint64_t id_;
  std::vector<int> members_;
  int rank_;
  std::uint64_t splits_ = 0;  // how many splits this communicator has done (same on all ranks)
};

}  // namespace usp::detail
