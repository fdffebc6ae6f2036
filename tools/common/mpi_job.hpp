// The one MPI job runner of usp-bench and usp-attn: what a tool does as one process of an mpirun
// job besides its work. It agrees with the other ranks on the command line before starting, and
// on the exit code at the end, so that bad input ends every rank with exit 2 and one message, and
// a failure on one rank never leaves the others waiting (the exit code itself:
// usp::agree_exit_code). Header-only: tools/<name>/ folders build one tool each.
#pragma once

#include <algorithm>
#include <cstdio>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rank_exchange.hpp"
#include "usp/agree.hpp"
#include "usp/backend.hpp"
#include "usp/comm.hpp"
#include "usp/comm_mpi.hpp"
#include "usp/memory.hpp"

namespace usp::tools {

using usp::Fields;

// "" when every rank has the same fields (rank order), else one line naming the ranks that differ
// from rank 0 and their values, e.g. "the command line differs across ranks: rank 7 has
// seq_len=128; rank 0 has seq_len=64 (start every rank with the same options)".
inline std::string disagreement(Communicator& control, const Fields& mine,
                                const std::string& what) {
  return usp::disagreement(allgather_fields(control, default_host_allocator(), mine),
                           what + " differs", "start every rank with the same options");
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

// The steps of one tool's MPI job, each run by run_mpi_job at its place in the protocol.
struct MpiJob {
  // Prints one error line ("<tool>: error: <what>") on stderr.
  std::function<void(const std::string&)> report;
  // Exit code when MPI cannot start, and of an abort while the ranks agree.
  int setup_exit = 2;
  // Parses and checks this rank's command line (rank, world size); throws on bad input.
  std::function<void(int rank, int size)> prepare;
  // After every rank prepared without error: the fields every rank must share.
  std::function<Fields()> fields;
  // --help: rank 0 prints it and every rank exits 0 (checked once the ranks agree).
  std::function<bool()> help;
  std::function<void()> print_help;
  // Optional, collective over the control communicator once the ranks agree (a failure aborts
  // the job with setup_exit).
  std::function<void(Communicator& control)> agree_more;
  // This process as one rank of the world; returns its exit status.
  std::function<int(Communicator& world)> run;
  // The exit status of a run that threw (2 when not given).
  std::function<int(const std::exception&)> failure_status;
};

// Starts MPI; every rank prepares, the ranks agree on errors (rank 0 prints them, every rank
// exits 2) and on the fields (a difference: one message from rank 0, exit 2); then each process
// runs its rank of `backend`'s world and the ranks agree on the exit code.
inline int run_mpi_job(int* argc, char*** argv, std::string_view backend, const MpiJob& job) {
  if (const std::string why = backend_unavailable_reason(backend); !why.empty()) {
    job.report(why);
    return 2;
  }
  std::unique_ptr<MpiSession> session;
  std::unique_ptr<Communicator> control;  // the tool's own host messages, never the attention's
  try {
    session = std::make_unique<MpiSession>(argc, argv);
    control = make_mpi_communicator();
    control->set_name("control");
  } catch (const std::exception& e) {
    job.report(e.what());
    return job.setup_exit;
  }
  const int rank = session->rank();
  const bool root = rank == 0;

  // 1. Prepare on every rank; agree on errors, then on the configuration.
  std::string error;
  try {
    job.prepare(rank, session->size());
  } catch (const std::exception& e) {
    error = e.what();
  }
  try {
    const std::vector<std::string> errors = allgather_strings(*control, "mpi", error);
    if (std::any_of(errors.begin(), errors.end(),
                    [](const std::string& e) { return !e.empty(); })) {
      if (root)
        for (const std::string& line : error_lines(errors)) job.report(line);
      return 2;
    }
    const std::string mismatch = disagreement(*control, job.fields(), "the command line");
    if (!mismatch.empty()) {
      if (root) job.report(mismatch);
      return 2;
    }
  } catch (const std::exception& e) {
    session->abort(job.setup_exit, e.what());
  }
  if (job.help()) {
    if (root) job.print_help();
    return 0;
  }
  if (job.agree_more) {
    try {
      job.agree_more(*control);
    } catch (const std::exception& e) {
      session->abort(job.setup_exit, e.what());
    }
  }

  // 2. Run, this process being one rank; agree on the exit code.
  int status = 0;
  std::unique_ptr<Communicator> world;
  try {
    world = make_world(backend);
    status = job.run(*world);
  } catch (const std::exception& e) {
    job.report("rank " + std::to_string(rank) + ": " + e.what());
    status = job.failure_status ? job.failure_status(e) : 2;
  }
  std::fflush(stdout);
  return agree_exit_code(*session, *control, status);
}

}  // namespace usp::tools
