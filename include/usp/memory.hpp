// Allocators with per-rank accounting: every byte a rank owns comes from its own Allocator, which
// keeps current and peak bytes (the benchmark's "peak memory (MB/device)" column).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

namespace usp {

enum class Device : std::uint8_t { host, cuda };
const char* device_name(Device d);

struct MemoryStats {
  std::size_t current = 0;  // bytes live now
  std::size_t peak = 0;     // most bytes live at once since construction or reset_peak()
  std::size_t allocations = 0;
};

class Allocator {
 public:
  virtual ~Allocator() = default;
  virtual Device device() const = 0;
  // Returns memory aligned to at least 64 bytes; throws Error on failure. bytes == 0 is allowed.
  void* allocate(std::size_t bytes);
  void deallocate(void* p, std::size_t bytes) noexcept;

  MemoryStats stats() const;
  // Peak becomes the current live bytes.
  void reset_peak();

 protected:
  virtual void* do_allocate(std::size_t bytes) = 0;
  virtual void do_deallocate(void* p, std::size_t bytes) noexcept = 0;
  // The most bytes ever live at once (reset_peak() leaves it alone).
  std::size_t high_water() const { return high_water_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::size_t> current_{0};
  std::atomic<std::size_t> peak_{0};
  std::atomic<std::size_t> high_water_{0};
  std::atomic<std::size_t> count_{0};
};

// Host memory, 64-byte aligned. One instance per rank.
//
// Freed blocks of at least kCacheMinBytes are kept for a later request of the same rounded size
// (a ring step allocates the same buffers every iteration; fresh large blocks come from the OS
// and cost a page fault per 4 KiB on first touch). The cache holds at most twice the most bytes
// the allocator ever held live (not the peak since reset_peak(): a benchmark that resets it
// between warm-up and timing would otherwise shrink the cache and drop the blocks its next
// iteration needs) and at most kCacheMaxBytes, dropping the blocks cached longest ago first; it is
// emptied before an allocation fails. stats() count live bytes only, never cached ones, so the
// process may hold up to cached_bytes() more than the peak says (release_cached() returns them). No
// cache in builds with AddressSanitizer (caching() is false), so that use after free stays visible.
class HostAllocator final : public Allocator {
 public:
  static constexpr std::size_t kCacheMinBytes = std::size_t{256} << 10;
  static constexpr std::size_t kCacheMaxBytes = std::size_t{1} << 30;
  HostAllocator() = default;
  ~HostAllocator() override;
  Device device() const override { return Device::host; }
  // Whether freed blocks are kept at all in this build.
  static bool caching();
  // Bytes held in freed blocks kept for reuse.
  std::size_t cached_bytes() const;
  // Returns every cached block to the system.
  void release_cached();

 protected:
  void* do_allocate(std::size_t bytes) override;
  void do_deallocate(void* p, std::size_t bytes) noexcept override;

 private:
  mutable std::mutex cache_m_;
  std::vector<std::pair<std::size_t, void*>> cache_;  // (rounded size, block)
  std::size_t cached_ = 0;
};

// A process-wide host allocator for code that has no rank (tests, tools' global tensors).
Allocator& default_host_allocator();

// An owned block of bytes; returns itself to its allocator when the last reference goes.
class Buffer {
 public:
  Buffer(Allocator& alloc, std::size_t bytes);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  void* data() const { return data_; }
  std::size_t bytes() const { return bytes_; }
  Allocator& allocator() const { return *alloc_; }

 private:
  Allocator* alloc_;
  void* data_;
  std::size_t bytes_;
};

}  // namespace usp
