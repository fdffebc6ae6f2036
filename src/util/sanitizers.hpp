// Whether this translation unit is built with AddressSanitizer. Memory caches step aside under it,
// so that a stale pointer into a freed block is reported instead of reading a reused one.
#pragma once

namespace usp::detail {

#if defined(__SANITIZE_ADDRESS__)
inline constexpr bool kAddressSanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
inline constexpr bool kAddressSanitizer = true;
#else
inline constexpr bool kAddressSanitizer = false;
#endif
#else
inline constexpr bool kAddressSanitizer = false;
#endif

}  // namespace usp::detail
