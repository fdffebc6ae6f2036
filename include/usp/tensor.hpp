// A strided view over typed memory. Attention tensors are [b, s, h, d] (sequence-major, as
// flash-attn) and LSE is [b, h, s]. The last dimension of every tensor a kernel sees is contiguous
// (stride 1); other strides are free, so slices along the sequence are views, not copies.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "usp/dtype.hpp"
#include "usp/memory.hpp"

namespace usp {

class Tensor {
 public:
  static constexpr int kMaxDims = 4;
  using Dims = std::vector<std::int64_t>;

  Tensor() = default;

  // Owned, contiguous, uninitialised.
  static Tensor empty(const Dims& shape, DType dtype, Allocator& alloc = default_host_allocator());
  // Owned, contiguous, zero-filled (host: memset; device allocators zero on device).
  static Tensor zeros(const Dims& shape, DType dtype, Allocator& alloc = default_host_allocator());
  // Non-owning view over caller memory, contiguous strides.
  static Tensor wrap(void* data, const Dims& shape, DType dtype, Device device = Device::host);

  bool defined() const { return !shape_.empty(); }
  int dim() const { return static_cast<int>(shape_.size()); }
  const Dims& shape() const { return shape_; }
  const Dims& strides() const { return strides_; }  // in elements
  std::int64_t size(int d) const { return shape_.at(static_cast<std::size_t>(d)); }
  std::int64_t stride(int d) const { return strides_.at(static_cast<std::size_t>(d)); }
  std::int64_t numel() const;
  std::size_t nbytes() const { return static_cast<std::size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool is_contiguous() const;

  void* data() const { return data_; }
  template <class T>
  T* data_as() const {
    return static_cast<T*>(data_);
  }
  // Pointer to element (i0, i1, ...) for up to 4 indices.
  void* ptr(std::initializer_list<std::int64_t> idx) const;

  // View of [start, start+len) along dimension d (shares storage).
  Tensor slice(int d, std::int64_t start, std::int64_t len) const;
  // Same storage, new shape; requires a contiguous tensor.
  Tensor reshape(const Dims& shape) const;

  // "[2, 128, 16, 64] fp16 host"
  std::string describe() const;

 private:
  std::shared_ptr<Buffer> storage_;
  void* data_ = nullptr;
  Dims shape_;
  Dims strides_;
  DType dtype_ = DType::f32;
  Device device_ = Device::host;
};

// Host-only helpers (tests and tools).
// Copies src into dst (same shape) converting dtype; works on strided views.
void copy_into(const Tensor& src, Tensor& dst);
// A contiguous copy of src in dtype t, from alloc.
Tensor to_dtype(const Tensor& src, DType t, Allocator& alloc = default_host_allocator());
// All elements as doubles in row-major order of the shape.
std::vector<double> to_doubles(const Tensor& t);
// ‖a − b‖ / ‖b‖ over all elements (b is the reference); 0 when both are zero.
double relative_error(const Tensor& a, const Tensor& b);
double relative_error(const std::vector<double>& a, const std::vector<double>& ref);

}  // namespace usp
