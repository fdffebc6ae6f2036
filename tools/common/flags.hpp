// Command-line pieces the tools share. Header-only: tools/<name>/ folders build one tool each.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "usp/mask.hpp"

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

// "0,37,101,256" → {0, 37, 101, 256} into out; returns "" or the error naming the flag.
inline std::string parse_int64_list(const std::string& flag, std::string_view s,
                                    std::vector<std::int64_t>& out) {
  out.clear();
  if (s.empty()) return flag + ": empty value";
  std::size_t at = 0;
  while (true) {
    const std::size_t comma = s.find(',', at);
    const std::string_view item =
        s.substr(at, comma == std::string_view::npos ? std::string_view::npos : comma - at);
    std::int64_t v = 0;
    const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || end != item.data() + item.size())
      return flag + ": '" + std::string(item) + "' is not an integer";
    out.push_back(v);
    if (comma == std::string_view::npos) return "";
    at = comma + 1;
  }
}

// "LEFT,RIGHT" (each >= -1, -1 unbounded) into w; returns "" or the error naming the flag.
inline std::string parse_window(const std::string& flag, std::string_view s, Window& w) {
  std::vector<std::int64_t> v;
  if (std::string e = parse_int64_list(flag, s, v); !e.empty()) return e;
  if (v.size() != 2) return flag + ": '" + std::string(s) + "' is not LEFT,RIGHT";
  if (v[0] < -1 || v[1] < -1)
    return flag + ": " + std::string(s) + " must hold values >= -1 (-1: unbounded on that side)";
  w = {v[0], v[1]};
  return "";
}

}  // namespace usp::tools
