// Command-line pieces the tools share. Header-only: tools/<name>/ folders build one tool each.
#pragma once

#include <optional>
#include <string>

namespace usp::tools {

// One argument: "--flag=value" → {"--flag", "value"}; anything else → {arg, no value}.
struct FlagArg {
  std::string flag;
  std::optional<std::string> value;
};

inline FlagArg split_flag(const std::string& arg) {
  const auto eq = arg.find('=');
  if (arg.rfind("--", 0) != 0 || eq == std::string::npos) return {arg, std::nullopt};
  return {arg.substr(0, eq), arg.substr(eq + 1)};
}

}  // namespace usp::tools
