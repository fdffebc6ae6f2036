// run_mpi: one rank's whole life in an MPI job, ending every rank cleanly or not at all.
#include <cstdio>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "usp/comm_mpi.hpp"
#include "usp/error.hpp"

namespace usp {
namespace {

// How long a failed rank waits for the others to report before ending the job.
constexpr std::chrono::seconds kFailureGrace{3};

std::string with_rank(int rank, const std::string& message) {
  const std::string prefix = "rank " + std::to_string(rank) + ": ";
  return message.compare(0, prefix.size(), prefix) == 0 ? message : prefix + message;
}

}  // namespace

int agree_exit_code(MpiSession& session, Communicator& control, int status) {
  std::vector<int> all(static_cast<std::size_t>(control.size()));
  if (status != 0) control.set_timeout(std::chrono::milliseconds(kFailureGrace));
  try {
    control.allgather(&status, all.data(), sizeof status);
  } catch (const Error& e) {
    if (status != 0)
      session.abort(status, "other ranks did not finish within " +
                                std::to_string(kFailureGrace.count()) +
                                " s of this failure; ending the job");
    session.abort(1, e.what());
  }
  int code = 0;
  for (int s : all) {
    if (s == 2) code = 2;
    if (s != 0 && code == 0) code = 1;
  }
  return code;
}

int run_mpi(int* argc, char*** argv, const std::function<void(Communicator&)>& fn,
            std::chrono::milliseconds timeout) {
  std::unique_ptr<MpiSession> session;
  std::unique_ptr<Communicator> control;  // its own communicator: never mixed with fn's traffic
  try {
    session = std::make_unique<MpiSession>(argc, argv);
    control = make_mpi_communicator();
    control->set_name("control");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "usp: %s\n", e.what());
    return 1;
  }
  int status = 0;  // 0 ok, 1 failed, 2 invalid argument
  try {
    session->world().set_timeout(timeout);
    fn(session->world());
  } catch (const Error& e) {
    status = e.kind() == ErrorKind::invalid_argument ? 2 : 1;
    std::fprintf(stderr, "usp: %s\n", with_rank(session->rank(), e.what()).c_str());
  } catch (const std::exception& e) {
    status = 1;
    std::fprintf(stderr, "usp: %s\n", with_rank(session->rank(), e.what()).c_str());
  } catch (...) {
    status = 1;
    std::fprintf(stderr, "usp: rank %d: unknown exception\n", session->rank());
  }
  std::fflush(stderr);

  if (status == 0) control->set_timeout(timeout);
  const int code = agree_exit_code(*session, *control, status);
  control.reset();
  session.reset();  // MPI_Finalize
  return code;
}

}  // namespace usp
