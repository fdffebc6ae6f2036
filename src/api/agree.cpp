// Cross-rank agreement on named fields (usp/agree.hpp).
#include "usp/agree.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <sstream>

#include "usp/backend.hpp"
#include "usp/error.hpp"
#include "usp/tensor.hpp"

namespace usp {
namespace {

std::string encode(const Fields& fields) {
  std::string text;
  for (const auto& [k, v] : fields) text += k + '\t' + v + '\n';
  return text;
}

Fields decode(const std::string& text) {
  Fields f;
  std::istringstream is(text);
  for (std::string line; std::getline(is, line);) {
    const auto tab = line.find('\t');
    f.emplace_back(line.substr(0, tab), tab == std::string::npos ? "" : line.substr(tab + 1));
  }
  return f;
}

}  // namespace

void allgather_host(Communicator& comm, Allocator& device_alloc, const void* send, void* recv,
                    std::size_t bytes) {
  if (comm.device() == Device::host) {
    comm.allgather(send, recv, bytes);
    return;
  }
  USP_CHECK_ARG(device_alloc.device() == comm.device(),
                "allgather_host: device_alloc must be on the communicator's device");
  // As f32 elements (Tensor's smallest element type), a whole number of them per block.
  const std::size_t n = (bytes + sizeof(float) - 1) / sizeof(float);
  const auto world = static_cast<std::int64_t>(comm.size());
  Tensor host_send = Tensor::zeros({static_cast<std::int64_t>(n)}, DType::f32);
  std::memcpy(host_send.data(), send, bytes);
  const Tensor dsend = copy_to(host_send, device_alloc);
  Tensor drecv = Tensor::empty({world, static_cast<std::int64_t>(n)}, DType::f32, device_alloc);
  comm.allgather(dsend.data(), drecv.data(), n * sizeof(float));
  const Tensor host_recv = copy_to(drecv, default_host_allocator());
  for (std::int64_t r = 0; r < world; ++r)
    std::memcpy(static_cast<char*>(recv) + static_cast<std::size_t>(r) * bytes,
                static_cast<const char*>(host_recv.data()) +
                    static_cast<std::size_t>(r) * n * sizeof(float),
                bytes);
}

std::vector<std::string> allgather_strings(Communicator& comm, Allocator& device_alloc,
                                           const std::string& mine) {
  const std::uint64_t len = mine.size();
  std::vector<std::uint64_t> lens(static_cast<std::size_t>(comm.size()));
  allgather_host(comm, device_alloc, &len, lens.data(), sizeof len);
  std::uint64_t longest = 1;
  for (auto l : lens) longest = std::max(longest, l);
  std::string padded = mine;
  padded.resize(longest, '\0');
  std::string all(longest * lens.size(), '\0');
  allgather_host(comm, device_alloc, padded.data(), all.data(), longest);
  std::vector<std::string> out;
  for (std::size_t r = 0; r < lens.size(); ++r) out.push_back(all.substr(r * longest, lens[r]));
  return out;
}

std::vector<Fields> allgather_fields(Communicator& comm, Allocator& device_alloc,
                                     const Fields& mine) {
  std::vector<Fields> out;
  for (const std::string& text : allgather_strings(comm, device_alloc, encode(mine)))
    out.push_back(decode(text));
  return out;
}

std::string disagreement(const std::vector<Fields>& per_rank, std::string_view what,
                         std::string_view hint) {
  const Fields& ref = per_rank.at(0);
  std::vector<bool> differs(ref.size(), false);
  std::vector<std::size_t> odd;
  for (std::size_t r = 1; r < per_rank.size(); ++r) {
    bool any = per_rank[r].size() != ref.size();
    for (std::size_t f = 0; f < ref.size() && f < per_rank[r].size(); ++f)
      if (per_rank[r][f] != ref[f]) differs[f] = any = true;
    if (any) odd.push_back(r);
  }
  if (odd.empty()) return "";
  std::ostringstream msg;
  auto describe = [&](std::size_t r) {
    msg << "rank " << r << " has ";
    const char* sep = "";
    for (std::size_t f = 0; f < ref.size() && f < per_rank[r].size(); ++f) {
      if (!differs[f]) continue;
      std::string value = per_rank[r][f].second;
      if (value.size() > 60) value = value.substr(0, 57) + "...";
      msg << sep << per_rank[r][f].first << "=" << value;
      sep = ", ";
    }
  };
  msg << what << " across ranks: ";
  const std::size_t shown = std::min<std::size_t>(odd.size(), 4);
  for (std::size_t i = 0; i < shown; ++i) {
    describe(odd[i]);
    msg << "; ";
  }
  if (shown < odd.size()) msg << "(" << odd.size() - shown << " more ranks differ); ";
  describe(0);
  msg << " (" << hint << ")";
  return msg.str();
}

void agree_fields(Communicator& comm, Allocator& device_alloc, const Fields& mine,
                  std::string_view what, std::string_view hint) {
  const std::string why = disagreement(allgather_fields(comm, device_alloc, mine), what, hint);
  if (!why.empty()) throw Error(ErrorKind::invalid_argument, why);
}

}  // namespace usp
