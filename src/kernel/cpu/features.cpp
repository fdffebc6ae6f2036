#include "kernel/cpu/features.hpp"

#include <array>
#include <cstdlib>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "usp/error.hpp"
#include "util/enum_names.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define USP_X86_CPUID 1
#endif

#if defined(USP_X86_CPUID) && defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#define USP_LINUX_AMX_PERM 1
#endif

namespace usp {
namespace {

#ifdef USP_X86_CPUID
bool bit(unsigned reg, int n) {
  return ((reg >> n) & 1u) != 0;
}

// XCR0: which register states the OS saves on context switches (0 without OSXSAVE).
std::uint64_t read_xcr0() {
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<std::uint64_t>(edx) << 32) | eax;
}
#endif

#ifdef USP_LINUX_AMX_PERM
// Asks the kernel for permission to use the AMX tile data state (Linux 5.16+). True when granted
// now or before; false on older kernels or when refused.
bool request_amx_permission() {
  constexpr long kArchGetXcompPerm = 0x1022;
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr int kXfeatureXtiledata = 18;
  if (syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) != 0) return false;
  unsigned long long perm = 0;
  if (syscall(SYS_arch_prctl, kArchGetXcompPerm, &perm) != 0) return false;
  return ((perm >> kXfeatureXtiledata) & 1ull) != 0;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#ifdef USP_X86_CPUID
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(0, &a, &b, &c, &d) == 0) return f;
  const unsigned max_leaf = a;
  unsigned c1 = 0;
  if (__get_cpuid(1, &a, &b, &c1, &d) == 0) return f;
  const bool osxsave = bit(c1, 27);
  const std::uint64_t xcr0 = osxsave ? read_xcr0() : 0;
  const bool os_avx = (xcr0 & 0x6) == 0x6;                 // SSE + AVX state
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask, ZMM upper halves, ZMM16-31
  const bool os_amx = (xcr0 & 0x60000) == 0x60000;         // XTILECFG + XTILEDATA
  f.fma = os_avx && bit(c1, 12);
  f.f16c = os_avx && bit(c1, 29);
  if (max_leaf < 7) return f;
  unsigned b7 = 0, c7 = 0, d7 = 0;
  __cpuid_count(7, 0, a, b7, c7, d7);
  const unsigned max_sub7 = a;
  unsigned a71 = 0;
  if (max_sub7 >= 1) __cpuid_count(7, 1, a71, b, c, d);
  f.avx2 = os_avx && bit(b7, 5);
  f.avx512f = os_avx512 && bit(b7, 16);
  f.avx512dq = f.avx512f && bit(b7, 17);
  f.avx512bw = f.avx512f && bit(b7, 30);
  f.avx512vl = f.avx512f && bit(b7, 31);
  f.avx512_fp16 = f.avx512f && bit(d7, 23);
  f.avx512_bf16 = f.avx512f && bit(a71, 5);
  f.amx_in_cpuid = bit(d7, 24) && bit(d7, 22);
  bool amx_usable = f.amx_in_cpuid && os_amx;
#ifdef USP_LINUX_AMX_PERM
  amx_usable = amx_usable && request_amx_permission();
#endif
  f.amx_tile = amx_usable;
  f.amx_bf16 = amx_usable;
#endif
#if defined(__aarch64__)
  f.neon = true;  // Advanced SIMD is part of the aarch64 base architecture
#endif
  return f;
}

std::vector<std::string> missing_for(CpuPath p, const CpuFeatures& f) {
  std::vector<std::string> miss;
  auto need = [&miss](bool have, const char* name) {
    if (!have) miss.emplace_back(name);
  };
  switch (p) {
    case CpuPath::generic:
      return miss;
    case CpuPath::neon:
      need(f.neon, "neon");
      return miss;
    case CpuPath::avx2:
      need(f.avx2, "avx2");
      need(f.fma, "fma");
      need(f.f16c, "f16c");
      return miss;
    case CpuPath::avx512:
    case CpuPath::amx:
      break;
  }
  need(f.avx512f, "avx512f");
  need(f.avx512bw, "avx512bw");
  need(f.avx512vl, "avx512vl");
  need(f.avx512dq, "avx512dq");
  need(f.fma, "fma");
  if (p == CpuPath::amx) {
    need(f.amx_tile, "amx_tile");
    need(f.amx_bf16, "amx_bf16");
  }
  return miss;
}

// "generic, avx2, avx512, amx, neon": the accepted names, for error messages.
std::string path_names() {
  std::string s;
  for (CpuPath p : detail::kCpuPaths) {
    if (!s.empty()) s += ", ";
    s += cpu_path_name(p);
  }
  return s;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

std::string cpu_features_string(const CpuFeatures& f) {
  const std::pair<bool, const char*> all[] = {{f.avx2, "avx2"},
                                              {f.fma, "fma"},
                                              {f.f16c, "f16c"},
                                              {f.avx512f, "avx512f"},
                                              {f.avx512bw, "avx512bw"},
                                              {f.avx512vl, "avx512vl"},
                                              {f.avx512dq, "avx512dq"},
                                              {f.avx512_bf16, "avx512_bf16"},
                                              {f.avx512_fp16, "avx512_fp16"},
                                              {f.amx_bf16, "amx_bf16"},
                                              {f.amx_tile, "amx_tile"},
                                              {f.neon, "neon"}};
  std::string s;
  for (const auto& [on, name] : all) {
    if (!on) continue;
    if (!s.empty()) s += ' ';
    s += name;
  }
  return s.empty() ? std::string("(none)") : s;
}

const char* cpu_path_name(CpuPath p) {
  static constexpr std::array<const char*, 5> kNames{"generic", "avx2", "avx512", "amx",
                                                     "neon"};  // CpuPath order
  return detail::enum_name(p, kNames);
}

bool cpu_path_supported(CpuPath p, const CpuFeatures& f) {
  return missing_for(p, f).empty();
}

CpuPath best_cpu_path(const CpuFeatures& f) {
  for (CpuPath p : {CpuPath::amx, CpuPath::avx512, CpuPath::avx2, CpuPath::neon})
    if (cpu_path_supported(p, f)) return p;
  return CpuPath::generic;
}

CpuPath cpu_path() {
  return detail::select_cpu_path(cpu_features(), std::getenv(detail::kCpuPathEnv));
}

namespace detail {

std::optional<CpuPath> parse_cpu_path(const char* value) {
  if (value == nullptr) return std::nullopt;
  const std::string_view v = trim(value);
  if (v.empty() || v == "auto") return std::nullopt;
  for (CpuPath p : kCpuPaths)
    if (v == cpu_path_name(p)) return p;
  USP_CHECK_ARG(false, kCpuPathEnv, "='", value, "' names no CPU path; expected ", path_names(),
                " or auto (or leave it unset)");
  return std::nullopt;
}

CpuPath select_cpu_path(const CpuFeatures& f, const char* env_value) {
  const std::optional<CpuPath> forced = parse_cpu_path(env_value);
  if (!forced) return best_cpu_path(f);
  const std::vector<std::string> miss = missing_for(*forced, f);
  if (!miss.empty()) {
    std::string list;
    for (const std::string& m : miss) list += (list.empty() ? "" : ", ") + m;
    USP_FAIL(unsupported, kCpuPathEnv, "=", cpu_path_name(*forced), " forces the ",
             cpu_path_name(*forced), " path, but this CPU lacks ", list,
             (*forced == CpuPath::amx ? " (AMX also needs the OS's permission)" : ""),
             "; the best path here is ", cpu_path_name(best_cpu_path(f)),
             " (features: ", cpu_features_string(f), ")");
  }
  return *forced;
}

}  // namespace detail
}  // namespace usp
