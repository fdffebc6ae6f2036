#include "usp/memory.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <iterator>

#include "usp/error.hpp"
#include "util/enum_names.hpp"
#include "util/sanitizers.hpp"

namespace usp {

const char* device_name(Device d) {
  static constexpr std::array<const char*, 2> kNames{"host", "cuda"};  // Device order
  return detail::enum_name(d, kNames);
}

namespace {
// mark = max(mark, value), atomically.
void raise_to(std::atomic<std::size_t>& mark, std::size_t value) {
  std::size_t seen = mark.load(std::memory_order_relaxed);
  while (value > seen && !mark.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}
}  // namespace

void* Allocator::allocate(std::size_t bytes) {
  void* p = do_allocate(bytes);
  const std::size_t now = current_.fetch_add(bytes, std::memory_order_relaxed) + bytes;
  raise_to(peak_, now);
  raise_to(high_water_, now);
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

namespace {
constexpr std::size_t kAlign = 64;
// aligned_alloc needs a size that is a multiple of the alignment; a zero-byte request still
// gets a real (unique) block so that data() is never null for an owned buffer.
std::size_t rounded_size(std::size_t bytes) {
  return bytes == 0 ? kAlign : (bytes + kAlign - 1) / kAlign * kAlign;
}
}  // namespace

bool HostAllocator::caching() {
  return !detail::kAddressSanitizer;
}

HostAllocator::~HostAllocator() {
  release_cached();
}

std::size_t HostAllocator::cached_bytes() const {
  std::lock_guard g(cache_m_);
  return cached_;
}

void HostAllocator::release_cached() {
  std::lock_guard g(cache_m_);
  for (const auto& [size, block] : cache_) std::free(block);
  cache_.clear();
  cached_ = 0;
}

void* HostAllocator::do_allocate(std::size_t bytes) {
  const std::size_t rounded = rounded_size(bytes);
  if (rounded < bytes) USP_FAIL(invalid_argument, "HostAllocator: size ", bytes, " overflows");
  if (rounded >= kCacheMinBytes) {
    std::lock_guard g(cache_m_);
    for (auto it = cache_.rbegin(); it != cache_.rend(); ++it) {  // the most recent first
      if (it->first != rounded) continue;
      void* p = it->second;
      cached_ -= rounded;
      cache_.erase(std::next(it).base());
      return p;
    }
  }
  void* p = std::aligned_alloc(kAlign, rounded);
  if (p == nullptr && cached_bytes() > 0) {  // what the cache holds may make room
    release_cached();
    p = std::aligned_alloc(kAlign, rounded);
  }
  if (p == nullptr) {
    USP_FAIL(internal, "HostAllocator: out of host memory allocating ", bytes, " bytes");
  }
  return p;
}

void HostAllocator::do_deallocate(void* p, std::size_t bytes) noexcept {
  const std::size_t rounded = rounded_size(bytes);
  if (caching() && rounded >= kCacheMinBytes) {
    // Twice the high-water mark: the blocks one iteration of a ring frees add up to more than the
    // peak (different phases free different buffers), and a smaller cache evicts what comes back.
    const std::size_t cap = std::min(kCacheMaxBytes, 2 * high_water());
    std::lock_guard g(cache_m_);
    if (rounded <= cap) {
      // Room for it: the blocks cached longest ago go back to the system first.
      std::size_t drop = 0, freed = 0;
      while (drop < cache_.size() && cached_ - freed + rounded > cap) freed += cache_[drop++].first;
      try {
        cache_.emplace_back(rounded, p);
        for (std::size_t i = 0; i < drop; ++i) std::free(cache_[i].second);
        cache_.erase(cache_.begin(), cache_.begin() + static_cast<std::ptrdiff_t>(drop));
        cached_ = cached_ - freed + rounded;
        return;
      } catch (...) {  // no room to remember it: give it back
      }
    }
  }
  std::free(p);
}

Allocator& default_host_allocator() {
  // Never destroyed: a static tensor that outlives it may still give its block back at exit.
  static HostAllocator* alloc = new HostAllocator;
  return *alloc;
}

Buffer::Buffer(Allocator& alloc, std::size_t bytes)
    : alloc_(&alloc), data_(alloc.allocate(bytes)), bytes_(bytes) {}

Buffer::~Buffer() {
  alloc_->deallocate(data_, bytes_);
}

}  // namespace usp
