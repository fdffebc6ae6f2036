#include "comm/nccl/p2p_group.hpp"

namespace usp::detail {

bool is_ring_hop(const std::vector<P2PPosting>& pending, int rank, int size) {
  if (pending.size() != 2 || size < 1 || rank < 0 || rank >= size) return false;
  const P2PPosting& a = pending[0];
  const P2PPosting& b = pending[1];
  if (a.send == b.send) return false;
  const P2PPosting& send = a.send ? a : b;
  const P2PPosting& recv = a.send ? b : a;
  if (send.peer < 0 || send.peer >= size || recv.peer < 0 || recv.peer >= size) return false;
  // send to rank + k, receive from rank − k: (send − rank) + (recv − rank) ≡ 0 (mod size).
  const int k_send = (send.peer - rank + size) % size;
  const int k_recv = (rank - recv.peer + size) % size;
  return k_send == k_recv;
}

}  // namespace usp::detail
