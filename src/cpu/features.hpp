// Internals of the CPU path selection, separated from the environment so tests can drive them.
#pragma once

#include <optional>
#include <string_view>

#include "usp/cpu.hpp"

namespace usp::detail {

// The name of the environment variable that forces a CPU path.
inline constexpr const char* kCpuPathEnv = "USP_CPU_PATH";

// Parses a USP_CPU_PATH value: nullptr, "" and "auto" mean "not forced" (nullopt); "generic",
// "avx2", "avx512", "amx" and "neon" (case-sensitive, surrounding blanks ignored) name a path.
// Anything else throws Error (invalid_argument) naming the variable, the value and the accepted
// values.
std::optional<CpuPath> parse_cpu_path(const char* value);

// The path for a CPU with features `f` when USP_CPU_PATH holds `env_value` (nullptr: unset).
// Throws like parse_cpu_path, and Error (unsupported) when the forced path needs a feature `f`
// lacks (the message names the path, the missing features and what the CPU does support).
CpuPath select_cpu_path(const CpuFeatures& f, const char* env_value);

}  // namespace usp::detail
