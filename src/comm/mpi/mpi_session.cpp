// MPI's lifetime in this process and the public entry points of the MPI backend.
#include "comm/mpi/mpi_include.hpp"

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>

#include "comm/mpi/mpi_comm.hpp"
#include "usp/comm_mpi.hpp"
#include "usp/error.hpp"

namespace usp {
namespace {

const char* level_name(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE:
      return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
      return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
      return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE:
      return "MPI_THREAD_MULTIPLE";
  }
  return "an unknown thread level";
}

}  // namespace

bool mpi_built() {
  return true;
}

MpiSession::MpiSession(int* argc, char*** argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  int provided = MPI_THREAD_SINGLE;
  if (!initialized) {
    if (MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
      USP_FAIL(comm, "MPI_Init_thread failed (is the MPI installation complete?)");
    finalize_ = true;
  } else {
    MPI_Query_thread(&provided);
  }
  if (provided < MPI_THREAD_SERIALIZED) {
    if (finalize_) MPI_Finalize();
    USP_FAIL(unsupported, "MPI provides only ", level_name(provided),
             "; usp needs MPI_THREAD_SERIALIZED or MPI_THREAD_MULTIPLE (use an MPI built with "
             "thread support)");
  }
  thread_level_ = level_name(provided);
  detail::mpi_process().serialize = provided < MPI_THREAD_MULTIPLE;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
  world_ = make_mpi_communicator();
}

MpiSession::~MpiSession() {
  world_.reset();
  if (std::uncaught_exceptions() > 0 && size_ > 1) {
    std::fprintf(stderr, "usp: rank %d: an error is propagating; aborting every rank\n", rank_);
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalize_ && !finalized) MPI_Finalize();
}

void MpiSession::abort(int exit_code, const std::string& message) {
  // Communicator errors already start with "rank R: "; others get the prefix here.
  const std::string prefix = "rank " + std::to_string(rank_) + ": ";
  const bool named = message.compare(0, prefix.size(), prefix) == 0;
  std::fprintf(stderr, "usp: %s%s\n", named ? "" : prefix.c_str(), message.c_str());
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, exit_code);
  std::_Exit(exit_code);  // MPI_Abort does not return; this is in case it does
}

std::unique_ptr<Communicator> make_mpi_communicator() {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (!initialized || finalized)
    USP_FAIL(comm,
             "make_mpi_communicator: MPI is not initialized (create a usp::MpiSession "
             "first, in a program started by mpirun)");
  MPI_Comm dup = MPI_COMM_NULL;
  {
    auto lk = detail::mpi_lock();
    if (MPI_Comm_dup(MPI_COMM_WORLD, &dup) != MPI_SUCCESS)
      USP_FAIL(comm, "make_mpi_communicator: MPI_Comm_dup(MPI_COMM_WORLD) failed");
  }
  return std::make_unique<detail::MpiCommunicator>(dup, "world", std::chrono::seconds(300));
}

}  // namespace usp
