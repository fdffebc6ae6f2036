#include "cli.hpp"

namespace usp::plan {

std::string plan_help_text() {
  return R"(usp-plan: the fastest USP configurations for a world, a problem and a machine

Ranks every feasible configuration — (ulysses u, ring r) with u·r = world, ring type, placement
and double ring — by a cost model of one iteration (kernel time per block from a rate curve,
all-to-all and ring transfers per link level, their overlap with compute; peak memory per rank
from usp-bench's estimate) and prints the best few per seq_len and mode. docs/usp-plan.md has the
formulas, the calibration, the machine-file format and where the model is wrong.

usage: usp-plan [--machine seed|FILE | --calibrate] [problem flags] [--top N] [--csv] [--check]
       usp-plan --machine seed --preset seed [--csv]

machine:
  --machine NAME       seed (built in: 8 x RTX 4090D over PCIe without peer-to-peer, fitted to
                       the seed's table) or a machine file (docs/usp-plan.md)
  --calibrate          measure this machine (a few seconds: the CPU kernel's rate against the
                       block shape for the head size and dtype, copy bandwidth, the local
                       communicator's latency); ranks are local threads sharing its cores. The
                       default when --machine is not given
  --write-machine FILE write the calibrated rates as a machine file (not with --machine)
  --memory-gib G       the memory to fit in: per rank on devices, all ranks together on CPU
                       ranks (default: the machine's; MemAvailable when calibrated)

problem (defaults: the seed's):
  --world N            ranks (default 8)
  --seq-len N[,N...]   global sequence lengths (default 2048)
  --batch-size B       (2)   --nheads H (16)   --kv-heads K (= H)   --head-size D (128)
  --dtype fp16|bf16|fp32 (fp16)   --causal (default) | --no-causal
  --fwd-only true|false|both   forward only, forward + backward, or both (default true)

what to consider (default: everything that applies):
  --ring-type LIST     basic, stripe, zigzag, allgather
  --degrees LIST       e.g. 2x4,4x2 (u·r must equal --world)
  --placement LIST     ulysses_inner (ring rank = rank / u), ring_inner (ring rank = rank % r);
                       by default ring_inner only where the world spans nodes of the machine
  --double-ring LIST   inner ring sizes (0 = a single ring); by default 0 and every INNER that
                       divides r with 2 <= INNER < r (not with allgather)

output:
  --top N              the best N per seq_len and mode (default 5; 3 with --check)
  --csv                one CSV row per configuration on stdout, best first per seq_len and mode
                       (refused ones last, with why); header: ring type,seq_len,ulysses_degree,
                       ring_degree,fwd_only,latency(ms/iter),placement,double_ring,compute(ms),
                       all-to-all(ms),exposed comm(ms),peak memory(MB/rank),refused
  --preset seed        the seed's 30 rows (b 2, h 16, d 128, fp16, causal, world 8) instead of
                       the ranking: predicted next to the seed's latency (with --csv: two more
                       columns, seed latency(ms/iter) and predicted/seed)
  --check              run the best --top configurations of each group on this machine (local
                       thread ranks, usp-bench's row runner) and print predicted against measured;
                       a calibrated machine is calibrated again before every round after the
                       first and each round predicted from its own calibration (the medians are
                       printed); ring_inner placements are listed as not run
  --warmup N, --iters N, --repeats N
                       --check's warm-up and timed iterations per run (1, 2) and its runs per
                       configuration (3), round robin over the configurations; the median is
                       printed, with the process's CPU time per iteration / cores beside it
  --fit-seed           refit the built-in seed machine's free parameters to the seed's table
                       (a deterministic random search, a few seconds) and print them as a machine file
  --help, -h           this text

Feasibility is usp-bench's: seq_len divisible by u·r (2·u·r for zigzag and allgather), nheads by
u, kv_heads dividing nheads and dividing or divisible by u, INNER dividing r with INNER < r and
not with allgather, and the estimated memory within the machine's.
Errors: one line "usp-plan: error: ..." naming the flag and the rule, exit 2.
)";
}

}  // namespace usp::plan
