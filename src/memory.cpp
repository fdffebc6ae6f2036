#include "usp/memory.hpp"

#include <cstdlib>

#include "usp/error.hpp"

namespace usp {

const char* device_name(Device d) {
  switch (d) {
    case Device::host:
      return "host";
    case Device::cuda:
      return "cuda";
  }
  return "unknown";
}

void* Allocator::allocate(std::size_t bytes) {
  void* p = do_allocate(bytes);
  const std::size_t now = current_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  std::size_t peak = peak_.load(std::memory_order_relaxed);
  while (now > peak && !peak_.compare_exchange_weak(peak, now, std::memory_order_relaxed)) {
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  return p;
}

void Allocator::deallocate(void* p, std::size_t bytes) noexcept {
  if (p == nullptr) return;
  do_deallocate(p, bytes);
  current_.fetch_sub(bytes, std::memory_order_relaxed);
}

MemoryStats Allocator::stats() const {
  MemoryStats s;
  s.current = current_.load(std::memory_order_relaxed);
  s.peak = peak_.load(std::memory_order_relaxed);
  s.allocations = count_.load(std::memory_order_relaxed);
  return s;
}

void Allocator::reset_peak() {
  peak_.store(current_.load(std::memory_order_relaxed));
}

void* HostAllocator::do_allocate(std::size_t bytes) {
  constexpr std::size_t kAlign = 64;
  // aligned_alloc needs a size that is a multiple of the alignment; a zero-byte request still
  // gets a real (unique) block so that data() is never null for an owned buffer.
  const std::size_t rounded = bytes == 0 ? kAlign : (bytes + kAlign - 1) / kAlign * kAlign;
  if (rounded < bytes) USP_FAIL(invalid_argument, "HostAllocator: size ", bytes, " overflows");
  void* p = std::aligned_alloc(kAlign, rounded);
  if (p == nullptr) {
    USP_FAIL(internal, "HostAllocator: out of host memory allocating ", bytes, " bytes");
  }
  return p;
}

void HostAllocator::do_deallocate(void* p, std::size_t) noexcept {
  std::free(p);
}

Allocator& default_host_allocator() {
  static HostAllocator alloc;
  return alloc;
}

Buffer::Buffer(Allocator& alloc, std::size_t bytes)
    : alloc_(&alloc), data_(alloc.allocate(bytes)), bytes_(bytes) {}

Buffer::~Buffer() {
  alloc_->deallocate(data_, bytes_);
}

}  // namespace usp
