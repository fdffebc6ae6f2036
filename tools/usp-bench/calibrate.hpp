// The default run's short calibration: the CPU kernel's rate on this machine, and the lengths
// the rule picks from it (see lengths.hpp).
#pragma once

#include "lengths.hpp"
#include "machine.hpp"
#include "options.hpp"

namespace usp::bench {

// Times the CPU kernel's forward for the run's head size, dtype and mask at b 2, 16 heads, 512
// tokens: `threads` single-threaded kernels computing at once (as a row's ranks do when they are
// at least as many as the cores), each one untimed call, then calls until 0.25 s have passed (at
// most 8). The rate is the sum over threads of the seed's flop count of one call over the
// thread's median call. About 0.3 s with AVX-512, under a second on the portable path.
Calibration calibrate_cpu(const BenchProblem& p, int threads);

// Sets every section's lengths to the shortest the rule allows for the run's rows, which
// make_plan validates (layouts, heads, paths, memory) before the calibration runs.
void set_shortest_lengths(Options& o, const LengthRule& rule = {});

// Every section's lengths for the rate `cal` measured: choose_lengths over the run's rows with
// the run's iterations, repeats, --check and --vs-single-rank, and the memory make_plan allows.
// Records both in `o` (calibration, length_choice) for the report.
void apply_length_choice(Options& o, const Machine& m, const Calibration& cal,
                         const LengthRule& rule = {});

}  // namespace usp::bench
