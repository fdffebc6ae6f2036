// Rows of the whole attention whose visible scores are all -inf (an infinite q or k): their
// softmax is 0/0, NaN in the float64 reference as in PyTorch. The kernels return such a row as a
// partial that contributes nothing (0 and lse -inf), which is right for a block of keys and for
// the merge across the ring, but not for the finished row: every row of the whole attention sees
// at least its own key, so lse = -inf there means "all scores -inf", never "no key".
#pragma once

#include "usp/tensor.hpp"

namespace usp::detail {

// out [b, s, h, d] (any dtype) and lse [b, h, s] fp32, host tensors: every row with lse = -inf
// gets NaN in out and in lse. Device tensors are left as they are.
void mark_indeterminate_rows(Tensor& out, Tensor& lse);

}  // namespace usp::detail
