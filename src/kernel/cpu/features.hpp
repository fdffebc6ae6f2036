// Internals of the CPU path selection, separated from the environment so tests can drive them.
#pragma once

#include <optional>
#include <string_view>

#include "usp/cpu.hpp"

namespace usp::detail {

// The name of the environment variable that forces a CPU path.
inline constexpr const char* kCpuPathEnv = "USP_CPU_PATH";

// Every CPU path, in the order the accepted USP_CPU_PATH values are listed. Parsing, the error
// messages and the tests go by this list and by cpu_path_name(), so a new path is a CpuPath
// value, its name, an entry here and its feature rule (missing_for() in features.cpp).
inline constexpr CpuPath kCpuPaths[] = {CpuPath::generic, CpuPath::avx2, CpuPath::avx512,
                                        CpuPath::amx, CpuPath::neon};

// Parses a USP_CPU_PATH value: nullptr, "" and "auto" mean "not forced" (nullopt); the name of a
// path in kCpuPaths (case-sensitive, surrounding blanks ignored) names it. Anything else throws
// Error (invalid_argument) naming the variable, the value and the accepted values.
std::optional<CpuPath> parse_cpu_path(const char* value);

// The path for a CPU with features `f` when USP_CPU_PATH holds `env_value` (nullptr: unset).
// Throws like parse_cpu_path, and Error (unsupported) when the forced path needs a feature `f`
// lacks (the message names the path, the missing features and what the CPU does support).
CpuPath select_cpu_path(const CpuFeatures& f, const char* env_value);

}  // namespace usp::detail
