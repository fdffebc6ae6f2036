// CommBuffer in GPU memory, for the conformance worlds whose buffers live on a device (cuda-local,
// NCCL): an f16 tensor holding the bytes (padded to whole elements). Compiles in every build; in
// one without CUDA, making one throws Error(unsupported).
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "conformance/comm_conformance.hpp"
#include "usp/cuda.hpp"
#include "usp/tensor.hpp"

namespace usp::test {

class DeviceCommBuffer final : public CommBuffer {
 public:
  DeviceCommBuffer(std::size_t bytes, int device)
      : alloc_(usp::cuda::make_allocator(device)),
        t_(Tensor::empty({static_cast<std::int64_t>(bytes / 2 + 1)}, DType::f16, *alloc_)) {}
  void* data() override { return t_.data(); }
  void write(const std::vector<std::uint8_t>& v) override {
    std::vector<std::uint8_t> host(t_.nbytes(), 0);
    std::copy(v.begin(), v.end(), host.begin());
    auto h = Tensor::wrap(host.data(), t_.shape(), DType::f16);
    t_ = usp::cuda::to_device(h, *alloc_);
  }
  std::vector<std::uint8_t> read(std::size_t bytes) override {
    Tensor h = usp::cuda::to_host(t_);
    const auto* p = static_cast<const std::uint8_t*>(h.data());
    return {p, p + bytes};
  }

 private:
  std::unique_ptr<Allocator> alloc_;
  Tensor t_;
};

}  // namespace usp::test
