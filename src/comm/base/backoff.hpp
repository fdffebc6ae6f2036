// Pacing for polling waits, shared by the communicator backends that poll for completion.
#pragma once

#include <chrono>
#include <thread>

namespace usp::detail {

// Sleeps a little more the longer a wait lasts: fast completion for short waits, little CPU
// burnt by waiters that wait long (ranks or processes often outnumber cores).
class Backoff {
 public:
  void pause() {
    ++n_;
    if (n_ < 64) return;
    if (n_ < 1024) {
      std::this_thread::yield();
      return;
    }
    std::this_thread::sleep_for(std::chrono::microseconds(n_ < 4096 ? 20 : 200));
  }

 private:
  unsigned n_ = 0;
};

}  // namespace usp::detail
