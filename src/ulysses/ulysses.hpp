// The Ulysses all-to-all over one ulysses group of u ranks: from the shard side (my s_local tokens,
// all heads) to the ring side (the u·s_local ring-local tokens of my ring rank, my head split) and
// back. Rank i's tokens come i-th on the ring side: the layout cuts each ring rank's tokens into u
// contiguous parts by ulysses rank (layout.hpp).
//
// Several tensors travel in one all-to-all: block j of the send buffer holds, for each tensor, its
// part for rank j, packed contiguously (and converted to the tensor's wire dtype).
#pragma once

#include <vector>

#include "ulysses/head_split.hpp"
#include "usp/comm.hpp"
#include "usp/kernel.hpp"
#include "usp/tensor.hpp"
#include "usp/timings.hpp"

namespace usp::detail {

struct HeadExchange {
  Tensor shard;      // sequence dim s_local, head dim split->total()
  Tensor ring;       // sequence dim u·s_local, head dim split->per_rank()
  int seq_dim = 1;   // 1 for [b, s, h, d]; 2 for lse [b, h, s]
  int head_dim = 2;  // 2 for [b, s, h, d]; 1 for lse [b, h, s]
  const HeadSplit* split = nullptr;
  DType wire = DType::f32;  // element type on the wire
};

// Shard side → ring side: every `ring` tensor is overwritten.
void scatter_heads(Communicator& comm, AttentionKernel& kernel, Allocator& alloc,
                   const std::vector<HeadExchange>& items, UspTimings& timings);

// Ring side → shard side. A tensor whose split replicates heads must have an fp32 shard side: it
// is zeroed and the replicas' values are summed into it (gradients); otherwise it is overwritten.
void gather_heads(Communicator& comm, AttentionKernel& kernel, Allocator& alloc,
                  const std::vector<HeadExchange>& items, UspTimings& timings);

}  // namespace usp::detail
