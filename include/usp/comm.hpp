// The communicator: the one interface through which the parallel algorithms exchange data.
// Local threads, MPI, cuda-local and NCCL implement it. Buffers live on the communicator's
// device().
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "usp/memory.hpp"

namespace usp {

// Handle of a non-blocking operation. wait() blocks until done, honouring the communicator's
// timeout (then throws Error(timeout) naming rank, peer and operation). A request that is
// destroyed un-waited is waited on in the destructor (errors swallowed).
class Request {
 public:
  struct Impl {
    virtual ~Impl() = default;
    virtual void wait() = 0;
    virtual bool test() = 0;  // true when complete (does not throw on timeout)
  };
  Request() = default;
  explicit Request(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
  Request(Request&&) noexcept = default;
  Request& operator=(Request&& o) noexcept;
  ~Request();

  void wait();
  bool test();
  bool valid() const { return impl_ != nullptr; }

 private:
  std::unique_ptr<Impl> impl_;
};

// Every backend derives from Communicator and implements the protected do_* calls. The public
// calls are not virtual: they check their arguments once, the same way for every backend (peer in
// range, tag >= 0 and within tag_limit(), no null buffer with bytes, no overlapping collective
// buffers; Error(invalid_argument) naming the call), then forward to do_*. split() names the child
// "<parent>/split" and gives it this communicator's timeout. (The pattern of Allocator.)
class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual Device device() const { return Device::host; }
  virtual std::string backend() const = 0;  // "local", "mpi", "nccl", ...

  // Point-to-point; several may be in flight at once. Messages between a pair with the same tag
  // are matched in order. The buffer must stay valid until the request completes. A rank may send
  // to itself; zero-byte messages match like any other.
  Request isend(const void* buf, std::size_t bytes, int peer, int tag);
  Request irecv(void* buf, std::size_t bytes, int peer, int tag);

  // Collectives (blocking, every rank calls them in the same order).
  // send holds size() blocks of `bytes_per_rank`; block j goes to rank j; recv block i came from i.
  void alltoall(const void* send, void* recv, std::size_t bytes_per_rank);
  // recv holds size() blocks of `bytes`; block i is rank i's send.
  void allgather(const void* send, void* recv, std::size_t bytes);
  void barrier();

  // Ranks with the same color form a new communicator, ordered by (key, old rank). Collective over
  // this communicator. A negative color joins no group: that rank gets nullptr.
  std::unique_ptr<Communicator> split(int color, int key);

  // Every blocking wait gives up after this long (default 300 s).
  void set_timeout(std::chrono::milliseconds t) { timeout_ = t; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // A short label used in error messages ("world", "sp", "ulysses", "ring"). split() names the
  // child "<parent>/split"; make_mesh names its sub-communicators.
  void set_name(std::string n) { name_ = std::move(n); }
  const std::string& name() const { return name_; }

 protected:
  // Called with checked arguments only.
  virtual Request do_isend(const void* buf, std::size_t bytes, int peer, int tag) = 0;
  virtual Request do_irecv(void* buf, std::size_t bytes, int peer, int tag) = 0;
  virtual void do_alltoall(const void* send, void* recv, std::size_t bytes_per_rank) = 0;
  virtual void do_allgather(const void* send, void* recv, std::size_t bytes) = 0;
  virtual void do_barrier() = 0;
  virtual std::unique_ptr<Communicator> do_split(int color, int key) = 0;

  // The largest tag this backend carries, and how its error message names that limit.
  struct TagLimit {
    int max;
    const char* name;
  };
  virtual TagLimit tag_limit() const;

  std::chrono::milliseconds timeout_{std::chrono::seconds(300)};
  std::string name_{"world"};

 private:
  void check_p2p(const char* op, const void* buf, std::size_t bytes, int peer, int tag) const;
  void check_collective(const char* op, const void* send, std::size_t send_bytes, const void* recv,
                        std::size_t bytes) const;
};

// Runs world_size ranks as threads of this process, exchanging through shared memory, and joins
// them. If any rank throws, the others are woken with an error (their pending and future waits
// throw) and the first error is rethrown here. timeout applies to every rank's communicator.
void run_local(int world_size, const std::function<void(Communicator&)>& fn,
               std::chrono::milliseconds timeout = std::chrono::seconds(300));

}  // namespace usp
