// What usp-plan prints: the ranking as markdown tables or CSV, the seed's rows against the seed.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "enumerate.hpp"
#include "seed_table.hpp"

namespace usp::plan {

// v with `decimals` decimals ("%.*f").
std::string fmt(double v, int decimals);

// "ring type,seq_len,ulysses_degree,ring_degree,fwd_only,latency(ms/iter),..." (the seed's first
// six columns, fwd_only True / False), then placement, double ring, the parts of the latency,
// memory, the refusal and, with `seed`, the seed's latency and predicted / seed.
void write_csv(std::ostream& os, const std::vector<Candidate>& rows,
               const std::vector<const bench::SeedRow*>& seed = {});

// Per (seq_len, fwd_only): the best `top` feasible configurations as a markdown table, and how
// many were refused (the first refusal named).
void write_ranking(std::ostream& os, const MachineModel& m, const BenchProblem& p, int world,
                   const std::vector<Candidate>& ranked, int top);

// The seed's rows: predicted, the seed's measured latency and predicted / seed, with the median
// and worst ratios.
void write_seed_comparison(std::ostream& os, const MachineModel& m,
                           const std::vector<Candidate>& rows,
                           const std::vector<const bench::SeedRow*>& seed);

// The seed's 30 rows as candidates (predicted on m) and the seed rows they come from.
std::vector<Candidate> seed_candidates(const MachineModel& m,
                                       std::vector<const bench::SeedRow*>& seed);
BenchProblem seed_problem();

}  // namespace usp::plan
