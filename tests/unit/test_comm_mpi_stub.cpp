// The MPI entry points as seen from a plain (non-mpirun) process.
#include <gtest/gtest.h>

#include <string>

#include "usp/comm_mpi.hpp"
#include "usp/error.hpp"

namespace {

#ifndef USP_HAVE_MPI
TEST(CommMpiStub, SaysHowToEnableMpi) {
  EXPECT_FALSE(usp::mpi_built());
  try {
    int argc = 0;
    char** argv = nullptr;
    usp::MpiSession s(&argc, &argv);
    FAIL() << "MpiSession constructed without MPI";
  } catch (const usp::Error& e) {
    EXPECT_EQ(e.kind(), usp::ErrorKind::unsupported);
    EXPECT_NE(std::string(e.what()).find("-DUSP_WITH_MPI=ON"), std::string::npos) << e.what();
  }
  EXPECT_THROW(usp::make_mpi_communicator(), usp::Error);
}
#else
TEST(CommMpiStub, CommunicatorNeedsSession) {
  EXPECT_TRUE(usp::mpi_built());
  try {
    usp::make_mpi_communicator();
    FAIL() << "made an MPI communicator before MPI_Init";
  } catch (const usp::Error& e) {
    EXPECT_EQ(e.kind(), usp::ErrorKind::comm);
    EXPECT_NE(std::string(e.what()).find("create a usp::MpiSession first"), std::string::npos)
        << e.what();
  }
}
#endif

}  // namespace
