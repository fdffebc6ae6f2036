// Command line of usp-plan.
#pragma once

#include <string>
#include <vector>

#include "enumerate.hpp"

namespace usp::plan {

struct PlanOptions {
  std::string machine;        // --machine: "seed" or a file; empty = calibrate this machine
  std::string write_machine;  // --write-machine FILE: the calibrated rates
  bool preset_seed = false;   // --preset seed: the seed's 30 rows instead of the ranking
  Space space;
  BenchProblem problem;
  int top = 5;  // best configurations printed (and run by --check: 3 by default)
  bool csv = false;
  bool check = false;
  int warmup = 1, iters = 2;  // --check's runs
  int repeats = 3;            // --check's round-robin repeats (median)
  double memory_gib = 0;      // --memory-gib: overrides the machine's memory (0 = the machine's)
  bool fit_seed = false;      // --fit-seed: refit the seed machine, print it as a machine file
  bool help = false;
};

// Parses argv[1..]; throws bench::UsageError naming the flag, its value and the rule.
PlanOptions parse_plan_options(const std::vector<std::string>& args);
std::string plan_help_text();

}  // namespace usp::plan
