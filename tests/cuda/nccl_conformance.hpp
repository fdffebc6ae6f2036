// The communicator conformance suite on the "nccl" backend (nccl_conformance.cpp), the part of
// usp_nccl_tests that `usp_nccl_tests --conformance` runs.
#pragma once

#include "usp/comm_mpi.hpp"

namespace usp::test {

// Runs the suite on the NCCL world of this job (one process per GPU; the caller checked that a
// GPU and NCCL are there). GoogleTest flags in argv apply. Returns non-zero when a test failed on
// any rank.
int run_nccl_conformance(MpiSession& mpi, int argc, char** argv);

}  // namespace usp::test
