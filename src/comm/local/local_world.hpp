// The one in-process matcher: shared state of the ranks that are threads of this process (the local
// backend, and cuda-local on top of it): one mailbox per rank thread, message matching, and the
// abort flag that wakes every waiter when a rank fails.
//
// Host messages (no CopyEngine) are eager: a send completes without waiting for its receive.
// Messages with a CopyEngine (device buffers) rendezvous: the thread whose posting completes the
// match starts the copy through its engine at once, so any order of wait() calls works, and the
// send completes when the copy has finished.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "comm/base/wait_info.hpp"
#include "usp/comm.hpp"

namespace usp::detail {

// Internal tags: negative, so they never meet a user's message.
enum InternalTag : int {
  kTagAlltoall = -1,
  kTagAllgather = -2,
  kTagBarrier = -3,
  kTagSplit = -4,
  kTagDeviceCollective = -5,  // cuda-local's alltoall/allgather
};

// A copy started by a CopyEngine.
struct CopyDone {
  virtual ~CopyDone() = default;
  virtual void wait() = 0;  // blocks until the data is in place
  virtual bool test() = 0;
};

// Moves the payload of matched messages whose buffers a plain memcpy cannot reach (cuda-local:
// device-to-device on a stream). Called, outside any lock, by the thread whose posting completed
// the match, with the tokens both sides posted (e.g. events after which each buffer is ready).
class CopyEngine {
 public:
  virtual ~CopyEngine() = default;
  virtual std::shared_ptr<CopyDone> start(void* dst, const void* src, std::size_t bytes,
                                          const std::shared_ptr<void>& send_token,
                                          const std::shared_ptr<void>& recv_token) = 0;
};

// Messages match on (communicator id, sender's world rank, tag), in order of sending.
struct MatchKey {
  std::uint64_t comm = 0;
  int src = 0;
  int tag = 0;
  bool operator==(const MatchKey&) const = default;
};

// A message sent before its receive was posted. It first points at the sender's buffer, so a
// receive posted before the send completes copies the payload once, straight from the sender;
// when the sender completes its send first, the payload is copied into a buffer of the slot.
// State transitions happen under the destination's mailbox mutex; copies run outside it.
struct Slot {
  enum class State {
    pending,    // in the mailbox, payload still in the sender's buffer (src)
    claimed,    // a receive took it and is copying from src
    filling,    // the sender is copying src into data
    ready,      // data holds the payload
    delivered,  // the sender's buffer is no longer needed (copied out, or the message dropped)
  };
  MatchKey key;
  const void* src = nullptr;
  std::unique_ptr<char[]> data{};
  std::size_t bytes = 0;
  State state = State::pending;
  CopyEngine* engine = nullptr;  // set: a rendezvous message (never filling/ready)
  std::shared_ptr<void> token{};
  std::shared_ptr<CopyDone> done{};  // the engine's copy, once matched
};

// A receive. State transitions happen under the owner's mailbox mutex.
struct RecvOp {
  enum class State { posted, claimed, awaiting_slot, done, failed, cancelled };
  MatchKey key;
  int owner = 0;  // world rank whose mailbox holds it
  void* buf = nullptr;
  std::size_t bytes = 0;
  State state = State::posted;
  std::size_t message_bytes = 0;     // set when failed on a size mismatch
  std::shared_ptr<Slot> slot{};      // awaiting_slot: the message still being filled
  std::shared_ptr<void> token{};     // the receiver's engine token
  std::shared_ptr<CopyDone> done{};  // the engine's copy, once matched
};

class LocalWorld {
 public:
  explicit LocalWorld(int size);
  int size() const { return static_cast<int>(boxes_.size()); }

  // Send from `self` to `dst`. Into a posted matching receive it copies at once and returns null
  // (with an engine: a delivered slot holding the copy's CopyDone); otherwise it leaves a pending
  // slot in dst's mailbox that points at `buf` (which must stay unchanged until complete_send /
  // wait_send) and returns it. Throws the abort error once the world is aborted.
  std::shared_ptr<Slot> post_send(int self, int dst, const MatchKey& key, const void* buf,
                                  std::size_t bytes, CopyEngine* engine = nullptr,
                                  std::shared_ptr<void> token = {});
  // Ends a send: if no receive has taken the slot yet, copies the payload into it (the receive
  // copies it from there later). Never waits for the receiver, only for a copy in progress.
  void complete_send(int dst, Slot& slot);
  // Ends a rendezvous send (one with an engine): blocks until a receive matched it and the copy
  // finished, or `deadline` (Error(timeout)), abort or the receiver returning (Error(comm)).
  void wait_send(Slot& slot, std::chrono::steady_clock::time_point deadline, const OpInfo& info);
  bool test_send(Slot& slot, const OpInfo& info);
  // Posts a receive in `self`'s mailbox; takes a waiting message if one matches (copying it through
  // `engine` when the message is a rendezvous one).
  std::shared_ptr<RecvOp> post_recv(int self, const MatchKey& key, void* buf, std::size_t bytes,
                                    CopyEngine* engine = nullptr, std::shared_ptr<void> token = {});
  // Blocks until the receive completes or `deadline`; throws Error(timeout) / Error(comm).
  void wait(RecvOp& op, std::chrono::steady_clock::time_point deadline, const OpInfo& info);
  // True when wait() would return at once; throws the abort error if aborted first.
  bool test(RecvOp& op, int self);
  // Withdraws an unfinished receive so its buffer is no longer written (waits out a copy in
  // progress). No-op for a completed one.
  void cancel(RecvOp& op);

  // Marks the world failed by `rank` and wakes every waiter. The first call wins.
  void abort(int rank, const std::string& message);
  bool aborted() const { return aborted_.load(std::memory_order_acquire); }
  // Marks `rank`'s function as returned and wakes every waiter: a receive from a returned rank
  // that has not arrived never will (sends complete before they return), so it fails at once.
  void finish(int rank);
  bool finished(int rank) const {
    return finished_[static_cast<std::size_t>(rank)].load(std::memory_order_acquire);
  }
  [[noreturn]] void throw_aborted(int self) const;

  // The id of the child communicator for (parent, split number, color); the same for every rank.
  std::uint64_t child_id(std::uint64_t parent, std::uint64_t seq, int color);

 private:
  struct Mailbox {
    std::mutex m;
    std::condition_variable cv;
    std::deque<std::shared_ptr<Slot>> unexpected;
    std::deque<std::shared_ptr<RecvOp>> posted;
  };
  void copy_slot(RecvOp& op);
  // Locks `mb`; throws the abort error (for rank `self`) once the world is aborted.
  std::unique_lock<std::mutex> lock_unless_aborted(Mailbox& mb, int self) const;
  // What a wait that gave up throws: the abort error, the peer returned, or the timeout.
  [[noreturn]] void give_up(const OpInfo& info, const char* missing) const;
  // Payload buffers of unexpected messages, reused: a ring sends blocks of the same size over and
  // over, and a fresh buffer per message costs page faults on every byte. Up to kSpareBytes are
  // kept (the oldest dropped first); a buffer of another size is taken fresh. None under ASan.
  std::unique_ptr<char[]> take_buffer(std::size_t bytes);
  void give_buffer(std::unique_ptr<char[]> buf, std::size_t bytes);
  static constexpr std::size_t kSpareBytes = std::size_t{64} << 20;
  Mailbox& box(int rank) { return *boxes_[static_cast<std::size_t>(rank)]; }

  std::vector<std::unique_ptr<Mailbox>> boxes_;
  void wake_all();

  std::atomic<bool> aborted_{false};
  std::unique_ptr<std::atomic<bool>[]> finished_;
  mutable std::mutex abort_m_;
  int abort_rank_ = -1;
  std::string abort_msg_;
  std::mutex spare_m_;
  std::vector<std::pair<std::size_t, std::unique_ptr<char[]>>> spare_;
  std::size_t spare_bytes_ = 0;
  std::mutex ids_m_;
  std::map<std::tuple<std::uint64_t, std::uint64_t, int>, std::uint64_t> ids_;
  std::uint64_t next_id_ = 1;  // 0 is the world
};

// The request of a send that post_send returned (null: already complete): an eager one completes
// at once (complete_send), a rendezvous one waits for its receive (wait_send).
Request send_request(std::shared_ptr<LocalWorld> world, std::shared_ptr<Slot> slot, OpInfo info);
Request recv_request(std::shared_ptr<LocalWorld> world, std::shared_ptr<RecvOp> op, OpInfo info);

}  // namespace usp::detail
