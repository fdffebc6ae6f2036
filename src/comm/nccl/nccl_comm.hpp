// The NCCL communicator: made by connect() (nccl_world.cpp) over a host MPI communicator of the
// same ranks and a Channel already holding its NCCL communicator.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "comm/nccl/nccl_channel.hpp"
#include "usp/comm.hpp"

namespace usp::cuda::detail {

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> host,
                                                     std::shared_ptr<Channel> ch,
                                                     const std::string& name,
                                                     std::chrono::milliseconds timeout);

// Creates a NCCL communicator over the ranks of `host` (collective over host): rank 0 makes the
// unique id, MPI hands it to the others. check_gpus: refuse two ranks on one GPU first.
std::unique_ptr<Communicator> connect(std::unique_ptr<Communicator> host, int device,
                                      int world_rank, const std::string& name,
                                      std::chrono::milliseconds timeout, bool check_gpus);

}  // namespace usp::cuda::detail
