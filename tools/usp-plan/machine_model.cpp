#include "machine_model.hpp"

#include <fstream>
#include <iomanip>
#include <sstream>
#include <vector>

#include "options.hpp"

namespace usp::plan {

MachineModel seed_machine() {
  MachineModel m;
  m.name = "seed";
  m.description =
      "8 x RTX 4090D (24 GB, ~147 TFLOPS fp16 dense with fp32 accumulate), one node, PCIe 4.0 "
      "x16 without peer-to-peer (transfers through host memory); rates fitted to the seed's table";
  m.cores = 0;
  m.ranks_per_node = 8;
  KernelRate k;
  k.head_size = 128;
  // Fitted (usp-plan --fit-seed, rounded): the kernel's peak, half_tokens, causal_eff, bwd_eff
  // and call_us, the link rates and latencies, the overlap. Fixed: one node, 24 GiB.
  k.peak_gflops = 124000;
  k.half_tokens = 12400;
  k.causal_eff = 0.693;
  k.causal_half = 12400;
  k.bwd_eff = 1.0;
  k.bwd_half = 10700;
  k.call_us = 791;
  m.kernels = {k};
  m.p2p = {18.9, 0};
  m.a2a = {5.18, 2333};
  m.p2p_inter = m.p2p;
  m.a2a_inter = m.a2a;
  m.overlap = 0.96;
  m.iteration_us = 0;
  m.memory_bytes = std::uint64_t{24} << 30;
  return m;
}

namespace {

using bench::UsageError;

double number(const std::string& where, int line, const std::string& key, const std::string& s,
              double min) {
  std::size_t used = 0;
  double v = 0;
  try {
    v = std::stod(s, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != s.size() || !(v >= min))
    throw UsageError("--machine: " + where + ":" + std::to_string(line) + ": " + key + " value '" +
                     s + "' is not a number ≥ " + (min == 0 ? "0" : "1e-9") +
                     " (see docs/usp-plan.md)");
  return v;
}

}  // namespace

MachineModel parse_machine(const std::string& text, const std::string& where) {
  MachineModel m;
  m.name = where;
  bool inter_p2p = false, inter_a2a = false, have_p2p = false, have_a2a = false;
  std::istringstream in(text);
  std::string raw;
  int line = 0;
  while (std::getline(in, raw)) {
    ++line;
    const auto hash = raw.find('#');
    std::istringstream ls(raw.substr(0, hash));
    std::string key;
    if (!(ls >> key)) continue;
    if (key == "description") {
      std::getline(ls >> std::ws, m.description);
      continue;
    }
    std::vector<std::string> v;
    for (std::string w; ls >> w;) v.push_back(w);
    const std::size_t want =
        key == "kernel"                                                              ? 8
        : (key == "p2p" || key == "a2a" || key == "p2p_inter" || key == "a2a_inter") ? 2
                                                                                     : 1;
    const bool known = key == "kernel" || key == "p2p" || key == "a2a" || key == "p2p_inter" ||
                       key == "a2a_inter" || key == "cores" || key == "core_share" ||
                       key == "ranks_per_node" || key == "overlap" || key == "iteration_us" ||
                       key == "memory_gib";
    if (!known)
      throw UsageError(
          "--machine: " + where + ":" + std::to_string(line) + ": unknown key '" + key +
          "' (expected description, cores, core_share, ranks_per_node, memory_gib, overlap, "
          "iteration_us, p2p, a2a, p2p_inter, a2a_inter or kernel)");
    if (v.size() != want)
      throw UsageError("--machine: " + where + ":" + std::to_string(line) + ": " + key + " takes " +
                       std::to_string(want) + " value" + (want == 1 ? "" : "s") + ", got " +
                       std::to_string(v.size()));
    auto num = [&](std::size_t i, double min) { return number(where, line, key, v[i], min); };
    const double positive = 1e-9;
    if (key == "kernel") {
      KernelRate k;
      k.head_size = static_cast<int>(num(0, 1));
      k.peak_gflops = num(1, positive);
      k.half_tokens = num(2, 0);
      k.causal_eff = num(3, positive);
      k.causal_half = num(4, 0);
      k.bwd_eff = num(5, positive);
      k.bwd_half = num(6, 0);
      k.call_us = num(7, 0);
      m.kernels.push_back(k);
    } else if (key == "cores") {
      m.cores = static_cast<int>(num(0, 0));
    } else if (key == "core_share") {
      m.core_share = num(0, positive);
      if (m.core_share > 1)
        throw UsageError("--machine: " + where + ":" + std::to_string(line) +
                         ": core_share must be in (0, 1], got " + v[0]);
    } else if (key == "ranks_per_node") {
      m.ranks_per_node = static_cast<int>(num(0, 0));
    } else if (key == "overlap") {
      m.overlap = num(0, 0);
      if (m.overlap > 1)
        throw UsageError("--machine: " + where + ":" + std::to_string(line) +
                         ": overlap must be between 0 and 1, got " + v[0]);
    } else if (key == "iteration_us") {
      m.iteration_us = num(0, 0);
    } else if (key == "memory_gib") {
      m.memory_bytes = static_cast<std::uint64_t>(num(0, 0) * static_cast<double>(1u << 30));
    } else {
      const Link l{num(0, positive), num(1, 0)};
      if (key == "p2p") m.p2p = l, have_p2p = true;
      if (key == "a2a") m.a2a = l, have_a2a = true;
      if (key == "p2p_inter") m.p2p_inter = l, inter_p2p = true;
      if (key == "a2a_inter") m.a2a_inter = l, inter_a2a = true;
    }
  }
  if (m.kernels.empty() || !have_p2p)
    throw UsageError("--machine: " + where +
                     ": needs at least one 'kernel' line and a 'p2p' line " +
                     "(see docs/usp-plan.md)");
  if (!have_a2a) m.a2a = m.p2p;
  if (!inter_p2p) m.p2p_inter = m.p2p;
  if (!inter_a2a) m.a2a_inter = m.a2a;
  return m;
}

MachineModel load_machine(const std::string& name) {
  if (name == "seed") return seed_machine();
  std::ifstream in(name);
  if (!in)
    throw UsageError("--machine: '" + name + "' is neither 'seed' nor a readable machine file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_machine(text.str(), name);
}

std::string machine_text(const MachineModel& m) {
  std::ostringstream os;
  os << std::setprecision(6);
  os << "# usp-plan machine file (docs/usp-plan.md)\n";
  if (!m.description.empty()) os << "description " << m.description << "\n";
  os << "cores " << m.cores << "\ncore_share " << m.core_share << "\nranks_per_node "
     << m.ranks_per_node << "\nmemory_gib "
     << static_cast<double>(m.memory_bytes) / static_cast<double>(1u << 30) << "\noverlap "
     << m.overlap << "\niteration_us " << m.iteration_us << "\n";
  os << "# link  GB/s  latency_us\n";
  os << "p2p " << m.p2p.gbs << ' ' << m.p2p.latency_us << "\n";
  os << "a2a " << m.a2a.gbs << ' ' << m.a2a.latency_us << "\n";
  os << "p2p_inter " << m.p2p_inter.gbs << ' ' << m.p2p_inter.latency_us << "\n";
  os << "a2a_inter " << m.a2a_inter.gbs << ' ' << m.a2a_inter.latency_us << "\n";
  os << "# kernel head_size peak_gflops half_tokens causal_eff causal_half bwd_eff bwd_half "
        "call_us\n";
  for (const KernelRate& k : m.kernels)
    os << "kernel " << k.head_size << ' ' << k.peak_gflops << ' ' << k.half_tokens << ' '
       << k.causal_eff << ' ' << k.causal_half << ' ' << k.bwd_eff << ' ' << k.bwd_half << ' '
       << k.call_us << "\n";
  return os.str();
}

}  // namespace usp::plan
