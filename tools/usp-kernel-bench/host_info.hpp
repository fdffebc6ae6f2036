// What the header of the report says about the machine.
#pragma once

#include <string>

namespace kbench {

// "model name" from /proc/cpuinfo ("unknown CPU" elsewhere).
std::string cpu_model();
// The 1/5/15-minute load averages from /proc/loadavg ("n/a" elsewhere): how shared the machine is.
std::string load_average();

}  // namespace kbench
