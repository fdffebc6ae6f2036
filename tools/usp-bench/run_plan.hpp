// Runs the plan's rows on the given ranks and reports them.
#pragma once

#include "machine.hpp"
#include "options.hpp"
#include "plan.hpp"
#include "row.hpp"

namespace usp::bench {

// Runs the plan's rows (the checks first with --check) on `ranks`. Only the root (the process of
// rank 0; always, with threads) prints the report and writes the files. Returns the exit code: 0,
// or 1 when a check or a row failed (the same on every rank unless a rank failed alone).
int run_plan(const Options& o, const Machine& m, const Plan& plan, const Ranks& ranks);

}  // namespace usp::bench
