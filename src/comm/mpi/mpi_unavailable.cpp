// Entry points of the MPI backend for builds without MPI: each says how to get it.
#ifndef USP_HAVE_MPI

#include "usp/comm_mpi.hpp"
#include "usp/error.hpp"

namespace usp {
namespace {
[[noreturn]] void unavailable() {
  USP_FAIL(unsupported,
           "this usp was built without MPI: install an MPI (e.g. apt-get install libopenmpi-dev "
           "openmpi-bin) and configure with -DUSP_WITH_MPI=ON");
}
}  // namespace

bool mpi_built() {
  return false;
}
MpiSession::MpiSession(int*, char***) {
  unavailable();
}
MpiSession::~MpiSession() = default;
void MpiSession::abort(int, const std::string&) {
  unavailable();
}
std::unique_ptr<Communicator> make_mpi_communicator() {
  unavailable();
}
int agree_exit_code(MpiSession&, Communicator&, int) {
  unavailable();
}
int run_mpi(int*, char***, const std::function<void(Communicator&)>&, std::chrono::milliseconds) {
  unavailable();
}

}  // namespace usp

#endif  // USP_HAVE_MPI
