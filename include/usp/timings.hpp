// Per-rank time and traffic counters of the attention layers (Ulysses all-to-all, ring steps,
// kernel calls). Its own header so that the algorithm layers do not depend on the API header.
#pragma once

#include <cstdint>

namespace usp {

// Time one rank spent, accumulated over calls since construction or reset_timings().
struct UspTimings {
  double compute_s = 0;     // inside kernel calls (forward/backward/merge)
  double comm_wait_s = 0;   // blocked in Request::wait and collectives
  double comm_total_s = 0;  // from posting each transfer to its completion (overlapped or not)
  std::int64_t bytes_sent = 0;
};

}  // namespace usp
