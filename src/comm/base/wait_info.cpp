#include "comm/base/wait_info.hpp"

#include <cstdio>
#include <cstring>

#include "usp/error.hpp"

namespace usp::detail {

std::string format_duration(std::chrono::milliseconds t) {
  char buf[64];
  if (t.count() >= 1000)
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(t.count()) / 1000.0);
  else
    std::snprintf(buf, sizeof buf, "%lld ms", static_cast<long long>(t.count()));
  return buf;
}

std::string describe(const OpInfo& info) {
  std::string s = info.op;
  if (info.peer >= 0) {
    s += concat(std::strcmp(info.op, "send") == 0 ? " to rank " : " from rank ", info.peer);
    if (info.peer_world != info.peer) s += concat(" (world rank ", info.peer_world, ")");
  }
  if (info.tag >= 0) s += concat(" (tag ", info.tag, ")");
  s += concat(" on comm '", info.comm_name, "'");
  return s;
}

std::string timeout_message(const OpInfo& info) {
  return concat("rank ", info.self_world, ": timed out after ", format_duration(info.timeout),
                " waiting for ", describe(info));
}

}  // namespace usp::detail
