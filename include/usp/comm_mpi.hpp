// The MPI backend: one rank per process, launched with mpirun. Built when CMake finds MPI
// (option USP_WITH_MPI); without it every entry point throws Error(unsupported).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "usp/comm.hpp"

namespace usp {

// True when this build of usp contains the MPI backend.
bool mpi_built();

// Owns MPI for this process: the constructor calls MPI_Init_thread (asking for
// MPI_THREAD_MULTIPLE; MPI_THREAD_SERIALIZED is the least accepted, with calls then serialized
// internally) unless MPI is already initialized, and sets MPI_ERRORS_RETURN so that MPI failures
// become usp::Error. The destructor calls MPI_Finalize; when it runs during stack unwinding it
// calls MPI_Abort instead, so no other rank is left waiting for this one.
class MpiSession {
 public:
  MpiSession(int* argc, char*** argv);
  ~MpiSession();
  MpiSession(const MpiSession&) = delete;
  MpiSession& operator=(const MpiSession&) = delete;

  // A duplicate of MPI_COMM_WORLD named "world".
  Communicator& world() { return *world_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  // "MPI_THREAD_MULTIPLE" or "MPI_THREAD_SERIALIZED": what the library provided.
  const std::string& thread_level() const { return thread_level_; }

  // Prints "usp: rank R: <message>" (the prefix once) to stderr and ends every rank of the job with
  // exit_code (MPI_Abort). For failures the other ranks may not see (a dead peer, an exception).
  [[noreturn]] void abort(int exit_code, const std::string& message);

 private:
  std::unique_ptr<Communicator> world_;
  int rank_ = 0;
  int size_ = 1;
  bool finalize_ = false;
  std::string thread_level_;
};

// A new communicator over a duplicate of MPI_COMM_WORLD; MPI must be initialized (MpiSession).
std::unique_ptr<Communicator> make_mpi_communicator();

// True when this process was started by an MPI launcher (mpirun, mpiexec, srun with PMI): tools
// check it before MpiSession to tell a user who forgot mpirun what to run instead.
bool mpi_launched();

// The exit code every rank of a job returns once it is done, from each rank's `status` (0 ok, 1
// failed, 2 invalid argument): the ranks all-gather their status on `control` (a communicator
// that carries nothing else at this point); every rank gets 2 if any rank has 2, else 1 if any
// has 1, else 0. A failed rank waits at most a few seconds for the others (they may be blocked
// waiting for it), then ends the whole job with MPI_Abort, so no rank is left waiting. A rank
// that succeeded waits as long as control's timeout.
int agree_exit_code(MpiSession& session, Communicator& control, int status);

// Runs fn(world) as this process's rank of an MPI job and ends MPI; returns the exit code.
// A rank whose fn throws prints "usp: rank R: <message>" to stderr. The ranks then compare
// outcomes: when all of them arrive (failed ranks wait at most a few seconds), every rank returns
// 0 if all succeeded, 2 if any failed with ErrorKind::invalid_argument (e.g. the same bad
// configuration everywhere), else 1. When some rank does not arrive (dead, or blocked waiting for
// the failed one), the failed rank ends the whole job with MPI_Abort (exit 2 or 1), so no rank is
// left waiting. `timeout` becomes the world communicator's timeout.
int run_mpi(int* argc, char*** argv, const std::function<void(Communicator&)>& fn,
            std::chrono::milliseconds timeout = std::chrono::seconds(300));

}  // namespace usp
