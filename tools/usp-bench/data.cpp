#include "data.hpp"

#include <vector>

namespace usp::bench {

double element_value(std::uint64_t seed, TensorId id, std::int64_t batch, std::int64_t token,
                     std::int64_t head, std::int64_t dim, std::int64_t seq_len, std::int64_t heads,
                     std::int64_t head_size) {
  const std::uint64_t stream = splitmix64(seed * 8 + static_cast<std::uint64_t>(id));
  const std::uint64_t counter =
      static_cast<std::uint64_t>(((batch * seq_len + token) * heads + head) * head_size + dim);
  const std::uint64_t bits = splitmix64(stream ^ splitmix64(counter));
  return static_cast<double>(bits >> 11) * 0x1.0p-52 - 1.0;  // 53 bits → [0, 2) → [-1, 1)
}

Tensor make_shard(const Layout& layout, int ring_rank, int ulysses_rank, TensorId id,
                  std::uint64_t seed, std::int64_t batch, std::int64_t heads,
                  std::int64_t head_size, DType dtype, Allocator& alloc) {
  const std::int64_t s_local = layout.shard_len();
  Tensor t = Tensor::empty({batch, s_local, heads, head_size}, dtype, alloc);
  const std::int64_t row = heads * head_size;
  std::vector<float> buf(static_cast<std::size_t>(row));
  auto* base = static_cast<unsigned char*>(t.data());
  const std::size_t row_bytes = static_cast<std::size_t>(row) * dtype_size(dtype);
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t i = 0; i < s_local; ++i) {
      const std::int64_t g = layout.global(ring_rank, ulysses_rank, i);
      for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t d = 0; d < head_size; ++d)
          buf[static_cast<std::size_t>(h * head_size + d)] = static_cast<float>(
              element_value(seed, id, b, g, h, d, layout.seq_len, heads, head_size));
      convert(buf.data(), DType::f32, base + static_cast<std::size_t>(b * s_local + i) * row_bytes,
              dtype, static_cast<std::size_t>(row));
    }
  }
  return t;
}

}  // namespace usp::bench
