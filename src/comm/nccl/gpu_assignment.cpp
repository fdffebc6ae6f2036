#include "comm/nccl/gpu_assignment.hpp"

#include <cstddef>
#include <map>
#include <utility>

#include "usp/error.hpp"

namespace usp::detail {

std::string shared_gpu_message(const std::vector<GpuSlot>& slots) {
  std::map<std::pair<std::string, std::string>, std::size_t> first;
  for (std::size_t i = 0; i < slots.size(); ++i) {
    const GpuSlot& s = slots[i];
    auto [it, fresh] = first.emplace(std::make_pair(s.host, s.bus_id), i);
    if (fresh) continue;
    int on_host = 0;
    for (const GpuSlot& t : slots) on_host += t.host == s.host ? 1 : 0;
    return concat("backend 'nccl' needs one GPU per process, but ranks ", it->second, " and ", i,
                  " both use GPU ", s.device, " (PCI ", s.bus_id, ") on host '", s.host, "'; ",
                  on_host, " ranks run there and it has ", s.device_count,
                  " GPU(s): start at most one rank per GPU (with one GPU only world size 1 runs "
                  "on 'nccl'; use --backend cuda-local for several ranks sharing one GPU)");
  }
  return "";
}

}  // namespace usp::detail
