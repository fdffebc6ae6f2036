// Throughput against seq_len as a dependency-free SVG (log scales), one line per
// (ring type, degrees, fwd mode).
#pragma once

#include <string>

#include "report.hpp"

namespace usp::bench {

std::string plot_svg(const RunData& d);
// Writes the plot to path (.svg, or .png through rsvg-convert); throws Error(io) on failure.
void write_plot(const RunData& d, const std::string& path);

}  // namespace usp::bench
