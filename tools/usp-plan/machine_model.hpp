// Described machines: the built-in seed (8 × RTX 4090D over PCIe) and machine files (the format
// is in docs/usp-plan.md; --calibrate writes one for this machine).
#pragma once

#include <string>

#include "model.hpp"

namespace usp::plan {

// 8 × RTX 4090D, one node, PCIe 4.0 x16 without peer-to-peer: every transfer goes through host
// memory. Kernel peak and link rates fitted to the seed's table (docs/usp-plan.md).
MachineModel seed_machine();

// "seed" or the path of a machine file; throws bench::UsageError naming --machine, the file, the
// line and the rule.
MachineModel load_machine(const std::string& name);
MachineModel parse_machine(const std::string& text, const std::string& where);
// The machine-file text of m (what --write-machine writes); parse_machine reads it back.
std::string machine_text(const MachineModel& m);

}  // namespace usp::plan
