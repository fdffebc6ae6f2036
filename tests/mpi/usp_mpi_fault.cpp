// Fault injection under mpirun: ranks pass blocks around a ring (as the ring attention does) and
// one of them fails in the way named by argv[1]. fault_test.sh checks what the job does.
//   ok        nobody fails
//   kill      rank 2 is SIGKILLed at step 20
//   stop      rank 2 stops (SIGSTOP) at step 20: the others must time out naming it
//   throw     rank 1 throws at step 20
//   mismatch  rank 3 has a different configuration: every rank must exit 2 naming it
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "usp/comm.hpp"
#include "usp/comm_mpi.hpp"
#include "usp/error.hpp"

namespace {

struct Config {
  int seq_len = 1024;
  int heads = 8;
};

void check_same_config(usp::Communicator& c, const Config& mine) {
  std::vector<Config> all(static_cast<std::size_t>(c.size()));
  c.allgather(&mine, all.data(), sizeof mine);
  for (int r = 0; r < c.size(); ++r) {
    const Config& o = all[static_cast<std::size_t>(r)];
    if (o.seq_len != all[0].seq_len)
      USP_FAIL(invalid_argument, "configuration differs across ranks: rank ", r, " has seq_len ",
               o.seq_len, ", rank 0 has ", all[0].seq_len);
  }
}

void ring(usp::Communicator& c, const std::string& mode) {
  const int me = c.rank(), p = c.size();
  const int next = (me + 1) % p, prev = (me - 1 + p) % p;
  std::vector<char> a(1 << 20, static_cast<char>(me)), b(a.size());
  for (int step = 0; step < 60; ++step) {
    if (step == 20) {
      if (mode == "kill" && me == 2) std::raise(SIGKILL);
      if (mode == "stop" && me == 2) std::raise(SIGSTOP);
      if (mode == "throw" && me == 1) throw std::runtime_error("injected failure at step 20");
    }
    usp::Request r = c.irecv(b.data(), b.size(), prev, step);
    usp::Request s = c.isend(a.data(), a.size(), next, step);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // "compute"
    r.wait();
    s.wait();
    if (b[0] != static_cast<char>((me - 1 - step % p + 2 * p) % p))
      USP_FAIL(internal, "step ", step, ": wrong block");
    a.swap(b);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "ok";
  return usp::run_mpi(
      &argc, &argv,
      [&](usp::Communicator& world) {
        Config cfg;
        if (mode == "mismatch" && world.rank() == 3) cfg.seq_len = 1000;
        check_same_config(world, cfg);
        ring(world, mode);
        if (world.rank() == 0) std::printf("usp_mpi_fault: %s finished\n", mode.c_str());
      },
      std::chrono::seconds(3));
}
