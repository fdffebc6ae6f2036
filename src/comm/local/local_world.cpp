// Message matching for the local backend. Payloads are copied outside the mailbox lock: a
// receive or slot is claimed under the lock, filled without it, then marked complete under it.
#include "comm/local/local_world.hpp"

#include <algorithm>
#include <cstring>
#include <utility>

#include "usp/error.hpp"
#include "util/sanitizers.hpp"

namespace usp::detail {
namespace {

// Copies a matched message: memcpy on the host, else through the engine (returns its copy).
std::shared_ptr<CopyDone> move_payload(CopyEngine* engine, void* dst, const void* src,
                                       std::size_t bytes, const std::shared_ptr<void>& send_token,
                                       const std::shared_ptr<void>& recv_token) {
  if (engine != nullptr) return engine->start(dst, src, bytes, send_token, recv_token);
  if (bytes) std::memcpy(dst, src, bytes);
  return nullptr;
}

}  // namespace

LocalWorld::LocalWorld(int size)
    : finished_(new std::atomic<bool>[static_cast<std::size_t>(size)]) {
  for (int i = 0; i < size; ++i) finished_[static_cast<std::size_t>(i)].store(false);
  boxes_.reserve(static_cast<std::size_t>(size));
  for (int i = 0; i < size; ++i) boxes_.push_back(std::make_unique<Mailbox>());
}

std::unique_lock<std::mutex> LocalWorld::lock_unless_aborted(Mailbox& mb, int self) const {
  std::unique_lock lk(mb.m);
  if (aborted()) {
    lk.unlock();
    throw_aborted(self);
  }
  return lk;
}

std::shared_ptr<Slot> LocalWorld::post_send(int self, int dst, const MatchKey& key, const void* buf,
                                            std::size_t bytes, CopyEngine* engine,
                                            std::shared_ptr<void> token) {
  Mailbox& mb = box(dst);
  std::unique_lock lk = lock_unless_aborted(mb, self);
  auto it = std::find_if(mb.posted.begin(), mb.posted.end(),
                         [&](const std::shared_ptr<RecvOp>& op) { return op->key == key; });
  if (it != mb.posted.end()) {
    std::shared_ptr<RecvOp> op = *it;
    mb.posted.erase(it);
    if (op->bytes != bytes) {
      op->state = RecvOp::State::failed;
      op->message_bytes = bytes;
      mb.cv.notify_all();
      return nullptr;
    }
    op->state = RecvOp::State::claimed;
    lk.unlock();
    std::shared_ptr<CopyDone> done;
    try {
      done = move_payload(engine, op->buf, buf, bytes, token, op->token);
    } catch (...) {
      lk.lock();
      op->state = RecvOp::State::cancelled;
      mb.cv.notify_all();
      throw;
    }
    lk.lock();
    op->done = done;
    op->state = RecvOp::State::done;
    mb.cv.notify_all();
    if (engine == nullptr) return nullptr;
    // Only carries the copy to the send's wait.
    return std::make_shared<Slot>(Slot{
        .key = key, .state = Slot::State::delivered, .engine = engine, .done = std::move(done)});
  }
  auto slot = std::make_shared<Slot>(
      Slot{.key = key, .src = buf, .bytes = bytes, .engine = engine, .token = std::move(token)});
  mb.unexpected.push_back(slot);
  return slot;
}

void LocalWorld::complete_send(int dst, Slot& slot) {
  using State = Slot::State;
  Mailbox& mb = box(dst);
  std::unique_lock lk(mb.m);
  if (slot.state == State::claimed) mb.cv.wait(lk, [&] { return slot.state == State::delivered; });
  if (slot.state != State::pending) return;
  slot.state = State::filling;  // a receive matched from now on waits for ready
  const void* src = slot.src;
  slot.src = nullptr;
  lk.unlock();
  if (slot.bytes) {
    slot.data = take_buffer(slot.bytes);
    std::memcpy(slot.data.get(), src, slot.bytes);
  }
  lk.lock();
  slot.state = State::ready;
  mb.cv.notify_all();
}

void LocalWorld::wait_send(Slot& slot, std::chrono::steady_clock::time_point deadline,
                           const OpInfo& info) {
  using State = Slot::State;
  Mailbox& mb = box(info.peer_world);
  std::unique_lock lk(mb.m);
  auto peer_gone = [&] { return finished(info.peer_world); };
  mb.cv.wait_until(lk, deadline,
                   [&] { return slot.state == State::delivered || aborted() || peer_gone(); });
  if (slot.state == State::claimed) mb.cv.wait(lk, [&] { return slot.state == State::delivered; });
  if (slot.state == State::delivered) {
    std::shared_ptr<CopyDone> done = slot.done;
    lk.unlock();
    if (done) done->wait();
    return;
  }
  // Not matched: withdraw it so that no receive reads the buffer after we return.
  auto it = std::find_if(mb.unexpected.begin(), mb.unexpected.end(),
                         [&](const std::shared_ptr<Slot>& p) { return p.get() == &slot; });
  if (it != mb.unexpected.end()) mb.unexpected.erase(it);
  slot.state = State::delivered;
  lk.unlock();
  give_up(info, "receiving");
}

bool LocalWorld::test_send(Slot& slot, const OpInfo& info) {
  Mailbox& mb = box(info.peer_world);
  std::unique_lock lk(mb.m);
  if (slot.state == Slot::State::delivered) {
    std::shared_ptr<CopyDone> done = slot.done;
    lk.unlock();
    return !done || done->test();
  }
  lk.unlock();
  if (aborted()) throw_aborted(info.self_world);
  return false;
}

void LocalWorld::give_up(const OpInfo& info, const char* missing) const {
  if (aborted()) throw_aborted(info.self_world);
  if (info.peer >= 0 && finished(info.peer_world))
    USP_FAIL(comm, "rank ", info.self_world, ": waiting for ", describe(info), ", but world rank ",
             info.peer_world, " has already returned without ", missing,
             " it (did a rank skip this operation?)");
  throw Error(ErrorKind::timeout, timeout_message(info));
}

std::unique_ptr<char[]> LocalWorld::take_buffer(std::size_t bytes) {
  {
    std::lock_guard g(spare_m_);
    for (auto it = spare_.begin(); it != spare_.end(); ++it) {
      if (it->first != bytes) continue;
      std::unique_ptr<char[]> buf = std::move(it->second);
      spare_.erase(it);
      spare_bytes_ -= bytes;
      return buf;
    }
  }
  return std::unique_ptr<char[]>(new char[bytes]);
}

void LocalWorld::give_buffer(std::unique_ptr<char[]> buf, std::size_t bytes) {
  if (!buf || kAddressSanitizer || bytes > kSpareBytes) return;  // freed here
  std::lock_guard g(spare_m_);
  // Room for it: the buffers kept longest go first (sizes a run no longer sends).
  std::size_t drop = 0;
  while (spare_bytes_ + bytes > kSpareBytes) spare_bytes_ -= spare_[drop++].first;
  spare_.erase(spare_.begin(), spare_.begin() + static_cast<std::ptrdiff_t>(drop));
  spare_.emplace_back(bytes, std::move(buf));
  spare_bytes_ += bytes;
}

void LocalWorld::copy_slot(RecvOp& op) {
  if (op.bytes) std::memcpy(op.buf, op.slot->data.get(), op.bytes);
  give_buffer(std::move(op.slot->data), op.bytes);  // the sender finished with it (ready)
  op.slot.reset();
  op.state = RecvOp::State::done;
}

std::shared_ptr<RecvOp> LocalWorld::post_recv(int self, const MatchKey& key, void* buf,
                                              std::size_t bytes, CopyEngine* engine,
                                              std::shared_ptr<void> token) {
  auto op = std::make_shared<RecvOp>(
      RecvOp{.key = key, .owner = self, .buf = buf, .bytes = bytes, .token = std::move(token)});
  Mailbox& mb = box(self);
  std::unique_lock lk = lock_unless_aborted(mb, self);
  auto it = std::find_if(mb.unexpected.begin(), mb.unexpected.end(),
                         [&](const std::shared_ptr<Slot>& s) { return s->key == key; });
  if (it == mb.unexpected.end()) {
    mb.posted.push_back(op);
    return op;
  }
  std::shared_ptr<Slot> slot = *it;
  mb.unexpected.erase(it);
  if (slot->bytes != bytes) {
    op->state = RecvOp::State::failed;
    op->message_bytes = slot->bytes;
    if (slot->state == Slot::State::pending) {  // dropped: the sender need not copy it
      slot->state = Slot::State::delivered;
      mb.cv.notify_all();
    }
    return op;
  }
  if (slot->state == Slot::State::pending) {  // one copy, straight from the sender's buffer
    slot->state = Slot::State::claimed;
    lk.unlock();
    std::shared_ptr<CopyDone> done;
    try {
      done = move_payload(engine != nullptr ? engine : slot->engine, buf, slot->src, bytes,
                          slot->token, op->token);
    } catch (...) {
      lk.lock();
      slot->state = Slot::State::pending;  // still the sender's to complete
      mb.unexpected.push_front(slot);
      mb.cv.notify_all();
      throw;
    }
    lk.lock();
    slot->done = done;
    op->done = std::move(done);
    slot->state = Slot::State::delivered;
    op->state = RecvOp::State::done;
    mb.cv.notify_all();
    return op;
  }
  op->slot = std::move(slot);
  op->state = RecvOp::State::awaiting_slot;
  if (op->slot->state == Slot::State::ready) {
    lk.unlock();
    copy_slot(*op);  // the op is not shared with any sender any more
  }
  return op;
}

void LocalWorld::wait(RecvOp& op, std::chrono::steady_clock::time_point deadline,
                      const OpInfo& info) {
  using State = RecvOp::State;
  Mailbox& mb = box(op.owner);
  std::unique_lock lk(mb.m);
  auto complete = [&] {
    return op.state == State::done || op.state == State::failed ||
           (op.state == State::awaiting_slot && op.slot->state == Slot::State::ready);
  };
  auto peer_gone = [&] { return info.peer >= 0 && finished(info.peer_world); };
  mb.cv.wait_until(lk, deadline, [&] { return complete() || aborted() || peer_gone(); });
  if (op.state == State::claimed)  // a sender is copying into the buffer: let it finish
    mb.cv.wait(lk, [&] { return op.state == State::done; });
  if (op.state == State::awaiting_slot && op.slot->state == Slot::State::ready) {
    lk.unlock();
    copy_slot(op);
    return;
  }
  if (op.state == State::done) {
    std::shared_ptr<CopyDone> done = op.done;
    lk.unlock();
    if (done) done->wait();
    return;
  }
  if (op.state == State::failed)
    USP_FAIL(comm, "rank ", info.self_world, ": ", describe(info), ": the receive expects ",
             op.bytes, " bytes but the message has ", op.message_bytes, " (sizes must match)");
  if (op.state == State::cancelled)
    USP_FAIL(internal, "rank ", info.self_world, ": ", describe(info), " was cancelled");
  // Not complete: withdraw the receive so its buffer is never written after we return.
  if (op.state == State::posted) {
    auto it = std::find_if(mb.posted.begin(), mb.posted.end(),
                           [&](const std::shared_ptr<RecvOp>& p) { return p.get() == &op; });
    if (it != mb.posted.end()) mb.posted.erase(it);
  }
  op.state = State::cancelled;
  op.slot.reset();
  lk.unlock();
  give_up(info, "sending");
}

bool LocalWorld::test(RecvOp& op, int self) {
  using State = RecvOp::State;
  Mailbox& mb = box(op.owner);
  std::unique_lock lk(mb.m);
  bool complete = op.state == State::done || op.state == State::failed ||
                  op.state == State::cancelled ||
                  (op.state == State::awaiting_slot && op.slot->state == Slot::State::ready);
  if (!complete && aborted()) {
    lk.unlock();
    throw_aborted(self);
  }
  if (complete && op.state == State::done && op.done) {
    std::shared_ptr<CopyDone> done = op.done;
    lk.unlock();
    return done->test();
  }
  return complete;
}

void LocalWorld::cancel(RecvOp& op) {
  using State = RecvOp::State;
  Mailbox& mb = box(op.owner);
  std::unique_lock lk(mb.m);
  if (op.state == State::claimed) mb.cv.wait(lk, [&] { return op.state == State::done; });
  if (op.state == State::posted) {
    auto it = std::find_if(mb.posted.begin(), mb.posted.end(),
                           [&](const std::shared_ptr<RecvOp>& p) { return p.get() == &op; });
    if (it != mb.posted.end()) mb.posted.erase(it);
  }
  if (op.state != State::done && op.state != State::failed) {
    op.state = State::cancelled;
    op.slot.reset();
  }
}

void LocalWorld::abort(int rank, const std::string& message) {
  {
    std::lock_guard g(abort_m_);
    if (aborted()) return;
    abort_rank_ = rank;
    abort_msg_ = message;
    aborted_.store(true, std::memory_order_release);
  }
  wake_all();
}

void LocalWorld::finish(int rank) {
  finished_[static_cast<std::size_t>(rank)].store(true, std::memory_order_release);
  wake_all();
}

void LocalWorld::wake_all() {
  // Taking each lock orders the flag before any waiter's next predicate check.
  for (auto& b : boxes_) {
    std::lock_guard g(b->m);
    b->cv.notify_all();
  }
}

void LocalWorld::throw_aborted(int self) const {
  std::lock_guard g(abort_m_);
  USP_FAIL(comm, "rank ", self, ": aborted because rank ", abort_rank_, " failed: ", abort_msg_);
}

std::uint64_t LocalWorld::child_id(std::uint64_t parent, std::uint64_t seq, int color) {
  std::lock_guard g(ids_m_);
  auto [it, inserted] = ids_.try_emplace(std::make_tuple(parent, seq, color), next_id_);
  if (inserted) ++next_id_;
  return it->second;
}

namespace {

struct DoneImpl final : Request::Impl {
  void wait() override {}
  bool test() override { return true; }
};

// An eager send whose payload may still be read from the caller's buffer by the receiver: wait()
// copies it into the mailbox if no receive has taken it yet (never waits for the receiver). A
// rendezvous send waits until its receive matched and the engine's copy finished.
class SendImpl final : public Request::Impl {
 public:
  SendImpl(std::shared_ptr<LocalWorld> world, std::shared_ptr<Slot> slot, OpInfo info)
      : world_(std::move(world)), slot_(std::move(slot)), info_(std::move(info)) {}
  void wait() override {
    if (slot_->engine == nullptr) {
      world_->complete_send(info_.peer_world, *slot_);
    } else {
      world_->wait_send(*slot_, std::chrono::steady_clock::now() + info_.timeout, info_);
    }
  }
  bool test() override {
    if (slot_->engine != nullptr) return world_->test_send(*slot_, info_);
    wait();
    return true;
  }

 private:
  std::shared_ptr<LocalWorld> world_;
  std::shared_ptr<Slot> slot_;
  OpInfo info_;
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

}  // namespace

Request send_request(std::shared_ptr<LocalWorld> world, std::shared_ptr<Slot> slot, OpInfo info) {
  if (slot == nullptr) return Request(std::make_unique<DoneImpl>());
  return Request(std::make_unique<SendImpl>(std::move(world), std::move(slot), std::move(info)));
}

Request recv_request(std::shared_ptr<LocalWorld> world, std::shared_ptr<RecvOp> op, OpInfo info) {
  return Request(std::make_unique<RecvImpl>(std::move(world), std::move(op), std::move(info)));
}

}  // namespace usp::detail
