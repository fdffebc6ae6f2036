// When a backend that launches point-to-point transfers in groups (NCCL) may launch the transfers
// posted so far. NCCL point-to-point needs both sides of a transfer inside launched groups, and the
// groups of one rank run one after another on its communication stream; a send launched on its own
// while the matching peer waits inside a group that also holds a receive can deadlock the ring.
//
// The rule (every rank applies it to its own posting sequence):
//   - isend/irecv are deferred;
//   - the pending set is launched as ONE group as soon as it is exactly one receive from
//     rank − k and one send to rank + k (mod size), in either order: one hop of a ring shifted
//     by k (k = 0: a send to and a receive from oneself). Every rank of a ring posts the same hop
//     at the same point of its program, so each rank's group meets its neighbours' groups and the
//     transfer starts at once, overlapping the computation that follows the post;
//   - anything else stays pending until the rank waits on or tests one of its requests or calls a
//     collective, barrier or split, which first launches everything pending as one group.
#pragma once

#include <vector>

namespace usp::detail {

struct P2PPosting {
  bool send = false;
  int peer = 0;
};

// True when `pending` is one hop of a ring on the rank `rank` of `size` ranks (see above).
bool is_ring_hop(const std::vector<P2PPosting>& pending, int rank, int size);

}  // namespace usp::detail
