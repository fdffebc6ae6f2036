// What usp-bench prints and writes: the markdown report (the seed's table format), CSV and JSON.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "machine.hpp"
#include "options.hpp"
#include "plan.hpp"
#include "row.hpp"

namespace usp::bench {

struct RunData {
  const Options& options;
  const Machine& machine;
  const Plan& plan;
  std::vector<RowResult> results;                  // per plan row
  std::vector<std::optional<CheckResult>> checks;  // per plan row, with --check
  // per plan row, with --vs-single-rank (rows of more than one rank)
  std::vector<std::optional<SingleRankComparison>> singles;
};

// The seed's header and alignment row.
extern const char* const kSeedHeader;
extern const char* const kSeedAlign;

std::string markdown_report(const RunData& d);
std::string csv_report(const RunData& d);
std::string json_report(const RunData& d);
// The check results alone (printed when a check fails, before exiting 1).
std::string check_report(const RunData& d);

}  // namespace usp::bench
