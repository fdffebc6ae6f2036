// What a tool does as one process of an mpirun job besides its work: agree with the other ranks
// on the command line before starting, and on the exit code at the end, so that bad input ends
// every rank with exit 2 and one message, and a failure on one rank never leaves the others
// waiting (the exit code itself: usp::agree_exit_code). Header-only: shared by usp-bench and
// usp-attn.
#pragma once

#include <cstdlib>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "rank_exchange.hpp"
#include "usp/comm.hpp"

namespace usp::tools {

// Ranks of this job on this host, from the launcher's environment (Open MPI, MPICH); `world`
// when it does not say.
inline int host_ranks(int world) {
  for (const char* v :
       {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE"})
    if (const char* s = std::getenv(v)) {
      const int n = std::atoi(s);
      if (n > 0) return n;
    }
  return world;
}

using Fields = std::vector<std::pair<std::string, std::string>>;

// "" when every rank has the same fields (rank order), else one line naming the ranks that differ
// from rank 0 and their values, e.g. "the command line differs across ranks: rank 7 has
// seq_len=128; rank 0 has seq_len=64".
inline std::string disagreement(const std::vector<Fields>& per_rank, const std::string& what) {
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
  msg << what << " differs across ranks: ";
  const std::size_t shown = std::min<std::size_t>(odd.size(), 4);
  for (std::size_t i = 0; i < shown; ++i) {
    describe(odd[i]);
    msg << "; ";
  }
  if (shown < odd.size()) msg << "(" << odd.size() - shown << " more ranks differ); ";
  describe(0);
  msg << " (start every rank with the same options)";
  return msg.str();
}

// Every rank's fields, all-gathered on a host communicator.
inline std::vector<Fields> allgather_fields(Communicator& control, const Fields& mine) {
  std::string text;
  for (const auto& [k, v] : mine) text += k + '\t' + v + '\n';
  std::vector<Fields> out;
  for (const std::string& t : allgather_strings(control, "mpi", text)) {
    Fields f;
    std::istringstream is(t);
    for (std::string line; std::getline(is, line);) {
      const auto tab = line.find('\t');
      f.emplace_back(line.substr(0, tab), tab == std::string::npos ? "" : line.substr(tab + 1));
    }
    out.push_back(std::move(f));
  }
  return out;
}

// The errors of the ranks (empty string: none) as the lines rank 0 prints: one line when every
// failing rank has the same message, else one per distinct message naming its ranks.
inline std::vector<std::string> error_lines(const std::vector<std::string>& per_rank) {
  std::map<std::string, std::vector<std::size_t>> by_message;
  std::size_t failing = 0;
  for (std::size_t r = 0; r < per_rank.size(); ++r)
    if (!per_rank[r].empty()) {
      by_message[per_rank[r]].push_back(r);
      ++failing;
    }
  std::vector<std::string> lines;
  if (by_message.size() == 1 && failing == per_rank.size()) {
    lines.push_back(by_message.begin()->first);
    return lines;
  }
  for (const auto& [message, ranks] : by_message) {
    std::string who = ranks.size() == 1 ? "rank " : "ranks ";
    for (std::size_t i = 0; i < ranks.size(); ++i) {
      if (i > 0) who += ',';
      who += std::to_string(ranks[i]);
    }
    lines.push_back(who + ": " + message);
  }
  return lines;
}

}  // namespace usp::tools
