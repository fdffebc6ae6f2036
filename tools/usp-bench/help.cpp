#include "options.hpp"

namespace usp::bench {

std::string help_text() {
  return R"(usp-bench — benchmark USP attention (Ulysses all-to-all × ring attention) the way the
seed measured it on 8 × RTX 4090D, on this machine's ranks.

Usage: usp-bench [options]

With no options it runs the seed's three tables (seq_len and ring attention type, seq_len and
degree, seq_len and backward) at global lengths scaled to this machine (three lengths L, 2L, 4L
from its measured rate, see "Lengths" below, instead of the seed's 4096 … 128000), fp16, causal,
batch size 2, 16 heads, head size 128, world 8.

What to run (lists are comma-separated; every combination is one row):
  --preset NAME        seed            the seed's three tables, its exact rows (world 8)
                       seed-ring-type  3 ring types × 6 lengths, 2x4, fwd
                       seed-degree     zigzag × 6 lengths × {2x4, 4x2}, fwd
                       seed-backward   zigzag 2x4 × 6 lengths × fwd_only {True, False}
                       scaled          the three tables at 1024, 2048, 4096 (no calibration)
                       Any flag below overrides the preset's value in every table.
  --ring-type LIST     basic,stripe,zigzag,allgather              (default zigzag); allgather:
                       K/V all-gathered over the ring group (r − 1 concurrent transfers, each
                       block computed as it arrives; zigzag's layout), dK/dV reduce-scattered
                       in fp32
  --double-ring INNER  every row's ring group as r/INNER inner rings of INNER consecutive ring
                       ranks: K/V go around the inner ring, then one hop on the outer ring,
                       overlapped (INNER must divide r; not with allgather). Default: the
                       single ring
  --seq-len LIST       global sequence lengths, e.g. 4096,8192    (default: see "Lengths")
  --degrees LIST       ULYSSESxRING pairs, e.g. 2x4,4x2; a row runs u·r ranks (default 2x4)
  --fwd-only V         true | false | both (or a list): forward only, or forward + backward
  --world W            require u·r = W for every row (presets set 8)
BenchProblem:
  --batch-size N       (default 2)        --nheads N     query heads (default 16)
  --kv-heads N         KV heads, must divide nheads and divide or be divisible by u
                       (default = nheads)
  --head-size N        at most 256 (default 128)
  --dtype T            fp16 | bf16 | fp32 (default fp16, as the seed)
  --head-chunks N      the forward in N calls over shares of the kv heads (less memory, the same
                       bits; UspConfig::head_chunks). 0 (default): 2 where the ring has more
                       than one rank and the kv heads split into 2 shares that u divides; 1: one
                       call
  --causal, --no-causal                   (default causal)
  --window L,R         sliding window: query i sees keys i-L .. i+R (-1 unbounded; causal keeps
                       keys after i hidden)
  --doc-lengths N      packed documents of N tokens each (the last one shorter), batch size 1
  --cu-seqlens LIST    packed documents by their starts 0,l1,...,s (one --seq-len; batch 1)
                       With a window or documents the work follows the mask (ring steps and
                       tiles with no visible pair are skipped); speed(TFLOPS) keeps the seed's
                       formula, so it counts the causal work of the whole length
  --seed N             seed of the generated data (default 1234)
Measurement:
  --warmup N           untimed iterations per row before the timed loop (default 1)
  --iters N            timed iterations per row (default 2)
  --backend NAME       where the ranks run (default local):
                       local       threads of this process, CPU kernel, host memory
                       mpi         one process per rank, CPU kernel: start it with
                                   mpirun -np W usp-bench --backend mpi ... (W = u·r of every
                                   row); each process reports its own peak memory and the
                                   table shows the max; only rank 0 prints and writes files
                       cuda-local  threads of this process sharing ONE GPU, each rank with
                                   its own stream (the seed's 8-device tables on one GPU)
                       nccl        one process per GPU under mpirun (a machine with one GPU
                                   runs world size 1 only)
                       A backend this build or machine lacks (no MPI, no CUDA, no GPU) exits 2
                       saying what is missing. The GPU kernel takes fp16/bf16 and head sizes
                       16, 32, 64, 128.
  --threads N          kernel threads per rank. Default max(1, cores / ranks on this host), so
                       that ranks × threads ≤ cores; with --threads the product may exceed the
                       cores. When it does (or when there are more ranks than cores, e.g. 8
                       ranks on 2 cores: 1 thread each), the threads that compute at once are
                       still capped at the cores: each kernel call takes running slots from a
                       process-wide pool (USP_CPU_SLOTS, default the cores; 0 = no cap) and
                       ranks that find none queue, least slot-time used first. With several
                       local ranks each slot also has a CPU of its own, and the thread holding
                       it is pinned there for the call (USP_CPU_PIN=0: never pin; 1: always).
  --check              before timing, run every row once and compare each rank's shard with a
                       single-rank run (u = r = 1, same kernel and memory, in rank 0's process)
                       of the same data; print the max relative error
                       ‖ours − single‖/‖single‖ over out, lse (and dq, dk, dv); exit 1 if above
                       the tolerance (fp32: 1e-5 out/lse, 1e-4 gradients; fp16/bf16: 2e-2)
  --vs-single-rank     also time each row's global problem on a single rank (u = r = 1, same
                       data, kernel and memory) with the same total thread count — ranks ×
                       threads per rank, e.g. 8 × 1 = 8 for 2x4 on 2 cores; the running-slot
                       cap applies to both, so both compute on at most the cores — alternately
                       with the row in this process (row, single, row, ...), and print both
                       medians and ratio = row / single (local and cuda-local backends)
  --repeats N          timed runs per row (default 1; 3 with --vs-single-rank); the tables
                       show the run of median latency
  --breakdown          per rank: compute time, communication wait, total communication time and
                       the fraction of communication hidden behind compute (1 − wait/total)
Output (stdout: a markdown report; the tables have the seed's columns, then these):
  --gflops             add a speed(GFLOPS) column (2 decimals); on by default with the CPU
                       backends (local, mpi), whose speeds show as 0.0 TFLOPS at the seed's
                       1 decimal
  --no-gflops          leave it out
  --compare-seed       add the seed's latency and ours/seed for rows that exist in the seed
  --csv FILE           every row with all fields and the configuration
  --json FILE          the configuration, the machine, every row and per-rank statistics
  --plot FILE          throughput vs seq_len (log scales), one line per ring type / degrees /
                       fwd mode; FILE.svg (no dependencies) or FILE.png (needs rsvg-convert)
  --progress           progress line on stderr (row i of N, elapsed, time left); on by default
                       when stderr is a terminal
  -h, --help           this text

What the columns mean:
  An iteration is one forward (fwd_only True) or forward + backward (False). Every rank builds
  only its own shard of q, k, v (and dout), generated from (seed, tensor, global token, head,
  dim) by a counter-based hash, so the data is the same for every layout and degree.
  throughput(iters/s)    timed iterations / wall time of the timed loop, taken between barriers
                         on all ranks
  latency(ms/iter)       1000 / throughput
  peak memory(MB/device) max over ranks of the bytes the library allocated for the rank during
                         the timed iterations (peak reset after warm-up; includes the rank's
                         inputs) / 2^20
  speed(TFLOPS)          F / latency / 1e12 with F = 4·b·s²·h·d, halved when causal, ×1 for
                         fwd_only and ×3.5 for fwd + bwd (the seed's formula; aggregated over all
                         ranks, s = global seq_len, h = query heads)
  Under each table: the analytic minimum memory per rank — its shard of q, k, v, out (dtype) and
  lse (fp32), plus 2 K/V ring buffers in flight (k and v, [b, s/r, max(hkv/u,1), d] each; 4 on a
  double ring, all r with allgather), plus with backward its shard of dout, dq, dk, dv and the 2
  dK/dV buffers in flight on the second ring (fp32, shaped like the K/V buffers; 4 on a double
  ring) — and measured/minimum (target ≤ 1.2×).

Lengths: without --seq-len and --preset, on the CPU backends (local, mpi), a calibration first
times the CPU kernel's forward (the run's dtype, head size and mask; batch size 2, 16 heads,
512 tokens), one single-threaded kernel per core all computing at once, as the ranks do (under a
second), and takes the machine's rate R (the seed's flop count of a call / its median time,
summed over the kernels). The rows then run at L, 2L, 4L, where L is the granularity of the
rows' layouts (the least common multiple of u·r, 2·u·r for zigzag and allgather: 16 for 2x4
and 4x2) times a
power of two, L ≥ 512 and 4L ≤ 8192, every row fitting in memory: the largest such L for which
the whole run's flops (F of every row × (warm-up + timed iterations) × repeats, twice with
--vs-single-rank, + 2 F with --check) / R ≤ 40 s, or the smallest L when none fits the budget.
The report says which lengths, the rate, the predicted time and what stopped a longer L. Under
mpirun rank 0 measures and every rank uses its rate. The GPU backends run 1024, 2048, 4096.

Errors: an unknown flag, a malformed value, an impossible row (u·r ≠ --world, a length the layout
cannot split — basic/stripe need seq_len divisible by u·r, zigzag and allgather by 2·u·r —, a
--double-ring that does not divide r, heads not divisible
by u) or a run whose estimated memory exceeds MemAvailable exits 2 with one line
"usp-bench: error: ..." before anything runs. A failure while running exits 1.
Under mpirun every rank exits 2 when a rank's command line is invalid, differs from the others'
(rank 0 names the ranks and values) or when the world size is not u·r of every row; a rank that
fails alone ends the whole job within seconds instead of leaving the others waiting.
)";
}

}  // namespace usp::bench
