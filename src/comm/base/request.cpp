// Request: a move-only handle that completes its operation exactly once.
#include <utility>

#include "usp/comm.hpp"

namespace usp {

Request& Request::operator=(Request&& o) noexcept {
  if (this != &o) {
    if (impl_) {
      try {
        impl_->wait();
      } catch (...) {  // noexcept: the error of a request replaced un-waited is dropped
      }
    }
    impl_ = std::move(o.impl_);
  }
  return *this;
}

Request::~Request() {
  if (!impl_) return;
  try {
    impl_->wait();
  } catch (...) {  // destructors must not throw
  }
}

void Request::wait() {
  if (!impl_) return;
  // Released before waiting: a failed wait is not repeated by the destructor.
  std::unique_ptr<Impl> impl = std::move(impl_);
  impl->wait();
}

bool Request::test() {
  if (!impl_) return true;
  if (!impl_->test()) return false;
  wait();  // complete: returns at once, or throws the operation's error
  return true;
}

}  // namespace usp
