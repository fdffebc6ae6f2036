// What a blocked wait is doing, so that timeouts and failures name rank, peer and operation.
// Shared by every communicator backend.
#pragma once

#include <chrono>
#include <string>

namespace usp::detail {

struct OpInfo {
  int self_world = 0;  // the waiting rank (world)
  const char* op = "recv";
  int peer = 0;        // rank in the communicator; < 0: no single peer (a collective)
  int peer_world = 0;  // the same rank in the world
  int tag = 0;         // negative: internal (not printed)
  std::string comm_name;
  std::chrono::milliseconds timeout{0};
};

// "recv from rank 1 (world rank 5) (tag 7) on comm 'ring'"
std::string describe(const OpInfo& info);
// "rank 3: timed out after 2.0 s waiting for <describe>"
std::string timeout_message(const OpInfo& info);
// "2.0 s" / "150 ms"
std::string format_duration(std::chrono::milliseconds t);

}  // namespace usp::detail
