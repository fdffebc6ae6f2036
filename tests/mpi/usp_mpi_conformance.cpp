// The communicator conformance suite (tests/conformance/comm_conformance.hpp) on the MPI backend,
// run under mpirun (any world size >= 2; CTest uses 4). Every process runs every test; a test of
// fewer ranks runs on the first ranks of the job while the others wait at its end.
#include "conformance/comm_conformance.hpp"

#include <string>

#include "mpi/mpi_gtest_main.hpp"
#include "usp/comm_mpi.hpp"

namespace usp::test {
namespace {

CommWorld mpi_world() {
  CommWorld w;
  w.name = "mpi";
  w.run = [](int ranks, std::chrono::milliseconds timeout,
             const std::function<void(Communicator&)>& fn) {
    return run_on_first_ranks(usp::mpi_test::world(), ranks, timeout, fn);
  };
  w.max_ranks = [] { return usp::mpi_test::world().size(); };
  w.mismatch_says = [](std::size_t) { return std::string("is shorter"); };
  return w;
}

INSTANTIATE_TEST_SUITE_P(Mpi, CommConformance, ::testing::Values(mpi_world()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace usp::test

int main(int argc, char** argv) {
  return usp::mpi_test::run_all(argc, argv, 2, std::chrono::seconds(60));
}
