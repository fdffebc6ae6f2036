// Fuzz input -> command line: arguments are separated by '\n' or NUL (a real argv holds no NUL),
// so a corpus file is one argument per line.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace usp_fuzz {

inline std::vector<std::string> split_args(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> args;
  std::string cur;
  bool any = false;
  for (std::size_t i = 0; i < size; ++i) {
    const char c = static_cast<char>(data[i]);
    any = true;
    if (c == '\n' || c == '\0') {
      args.push_back(cur);
      cur.clear();
      any = false;
    } else {
      cur += c;
    }
  }
  if (any) args.push_back(cur);
  return args;
}

}  // namespace usp_fuzz
