#include "plot.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <tuple>

#include "usp/error.hpp"

namespace usp::bench {
namespace {

struct Series {
  std::string label;
  bool dashed = false;
  std::vector<std::pair<double, double>> points;  // (seq_len, throughput)
};

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<')
      o += "&lt;";
    else if (c == '>')
      o += "&gt;";
    else if (c == '&')
      o += "&amp;";
    else if (c == '"')
      o += "&quot;";
    else
      o += c;
  }
  return o;
}

std::string g(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string tick_label(double v) {
  char buf[32];
  if (v >= 1000 && std::fmod(v, 1000) == 0 && v < 1e6)
    std::snprintf(buf, sizeof buf, "%gk", v / 1000);
  else
    std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

const char* const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                               "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

}  // namespace

std::string plot_svg(const RunData& d) {
  // Group the distinct rows into series.
  std::map<std::tuple<int, int, int, int>, Series> by_key;
  std::vector<std::tuple<int, int, int, int>> order;
  for (std::size_t i = 0; i < d.plan.rows.size(); ++i) {
    const RowConfig& c = d.plan.rows[i];
    const auto key =
        std::make_tuple(static_cast<int>(c.ring_type), c.ulysses, c.ring, c.fwd_only ? 0 : 1);
    auto [it, inserted] = by_key.try_emplace(key);
    if (inserted) {
      order.push_back(key);
      it->second.label = c.ring_label() + " " + std::to_string(c.ulysses) + "×" +
                         std::to_string(c.ring) + (c.fwd_only ? " fwd" : " fwd+bwd");
      it->second.dashed = !c.fwd_only;
    }
    if (d.results[i].throughput > 0)
      it->second.points.emplace_back(static_cast<double>(c.seq_len), d.results[i].throughput);
  }

  double xmin = 1e300, xmax = 0, ymin = 1e300, ymax = 0;
  for (auto& [k, s] : by_key) {
    std::sort(s.points.begin(), s.points.end());
    for (auto [x, y] : s.points) {
      xmin = std::min(xmin, x), xmax = std::max(xmax, x);
      ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
  }
  if (xmax <= 0) xmin = 1, xmax = 2, ymin = 1, ymax = 10;
  double lx0 = std::log2(xmin), lx1 = std::log2(xmax);
  lx0 -= 0.25, lx1 += 0.25;
  double ly0 = std::floor(std::log10(ymin)), ly1 = std::ceil(std::log10(ymax));
  if (ly1 <= ly0) ly1 = ly0 + 1;

  const double W = 960, H = 560, left = 90, right = 230, top = 60, bottom = 70;
  const double pw = W - left - right, ph = H - top - bottom;
  auto X = [&](double x) { return left + (std::log2(x) - lx0) / (lx1 - lx0) * pw; };
  auto Y = [&](double y) { return top + ph - (std::log10(y) - ly0) / (ly1 - ly0) * ph; };

  std::ostringstream os;
  os << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H
     << "\" viewBox=\"0 0 " << W << ' ' << H << "\" font-family=\"sans-serif\" font-size=\"13\">\n";
  os << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  const BenchProblem& p = d.options.problem;
  std::ostringstream title;
  title << "usp-bench: throughput vs global seq_len (" << dtype_name(p.dtype) << ", b=" << p.batch
        << ", h=" << p.nheads << ", d=" << p.head_size << (p.causal ? ", causal" : "") << ")";
  os << "<text x=\"" << g(left + pw / 2) << "\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">"
     << xml_escape(title.str()) << "</text>\n";
  os << "<text x=\"" << g(left + pw / 2) << "\" y=\"46\" text-anchor=\"middle\" fill=\"#555\">"
     << xml_escape(d.machine.cpu_model + ", " + std::to_string(d.machine.cores) + " cores, " +
                   d.options.backend + " backend")
     << "</text>\n";

  // Grid and ticks.
  os << "<g stroke=\"#ddd\" stroke-width=\"1\">\n";
  std::vector<double> yticks;
  for (int e = static_cast<int>(ly0); e <= static_cast<int>(ly1); ++e)
    for (double m : {1.0, 2.0, 5.0}) {
      const double v = m * std::pow(10.0, e);
      if (std::log10(v) >= ly0 - 1e-9 && std::log10(v) <= ly1 + 1e-9) yticks.push_back(v);
    }
  for (double v : yticks)
    os << "<line x1=\"" << g(left) << "\" x2=\"" << g(left + pw) << "\" y1=\"" << g(Y(v))
       << "\" y2=\"" << g(Y(v)) << "\"/>\n";
  std::vector<double> xticks;
  for (const auto& [k, s] : by_key)
    for (auto [x, y] : s.points)
      if (std::find(xticks.begin(), xticks.end(), x) == xticks.end()) xticks.push_back(x);
  std::sort(xticks.begin(), xticks.end());
  for (double v : xticks)
    os << "<line x1=\"" << g(X(v)) << "\" x2=\"" << g(X(v)) << "\" y1=\"" << g(top) << "\" y2=\""
       << g(top + ph) << "\"/>\n";
  os << "</g>\n";
  os << "<rect x=\"" << g(left) << "\" y=\"" << g(top) << "\" width=\"" << g(pw) << "\" height=\""
     << g(ph) << "\" fill=\"none\" stroke=\"#333\"/>\n";
  for (double v : yticks)
    os << "<text x=\"" << g(left - 8) << "\" y=\"" << g(Y(v) + 4) << "\" text-anchor=\"end\">"
       << tick_label(v) << "</text>\n";
  for (double v : xticks)
    os << "<text x=\"" << g(X(v)) << "\" y=\"" << g(top + ph + 18) << "\" text-anchor=\"middle\">"
       << tick_label(v) << "</text>\n";
  os << "<text x=\"" << g(left + pw / 2) << "\" y=\"" << g(H - 22)
     << "\" text-anchor=\"middle\">seq_len (global tokens, log scale)</text>\n";
  os << "<text transform=\"translate(24," << g(top + ph / 2)
     << ") rotate(-90)\" text-anchor=\"middle\">throughput (iters/s, log scale)</text>\n";

  // Lines, markers, legend.
  std::size_t n = 0;
  for (const auto& key : order) {
    const Series& s = by_key[key];
    const char* color = kColors[n % (sizeof kColors / sizeof kColors[0])];
    if (!s.points.empty()) {
      os << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\""
         << (s.dashed ? " stroke-dasharray=\"7,4\"" : "") << " points=\"";
      for (auto [x, y] : s.points) os << g(X(x)) << ',' << g(Y(y)) << ' ';
      os << "\"/>\n";
      for (auto [x, y] : s.points)
        os << "<circle cx=\"" << g(X(x)) << "\" cy=\"" << g(Y(y)) << "\" r=\"3.5\" fill=\"" << color
           << "\"/>\n";
    }
    const double ly = top + 10 + 22.0 * static_cast<double>(n);
    const double lx = left + pw + 20;
    os << "<line x1=\"" << g(lx) << "\" x2=\"" << g(lx + 30) << "\" y1=\"" << g(ly) << "\" y2=\""
       << g(ly) << "\" stroke=\"" << color << "\" stroke-width=\"2\""
       << (s.dashed ? " stroke-dasharray=\"7,4\"" : "") << "/>\n";
    os << "<circle cx=\"" << g(lx + 15) << "\" cy=\"" << g(ly) << "\" r=\"3.5\" fill=\"" << color
       << "\"/>\n";
    os << "<text x=\"" << g(lx + 38) << "\" y=\"" << g(ly + 4) << "\">" << xml_escape(s.label)
       << "</text>\n";
    ++n;
  }
  os << "<text x=\"" << g(left + pw + 20) << "\" y=\"" << g(top + 10 + 22.0 * n + 8)
     << "\" fill=\"#555\" font-size=\"11\">ulysses×ring; dashed: fwd+bwd</text>\n";
  os << "</svg>\n";
  return os.str();
}

void write_plot(const RunData& d, const std::string& path) {
  const std::string svg = plot_svg(d);
  const bool png = path.size() > 4 && path.compare(path.size() - 4, 4, ".png") == 0;
  const std::string svg_path = png ? path + ".tmp.svg" : path;
  {
    std::ofstream out(svg_path, std::ios::binary);
    out << svg;
    if (!out) USP_FAIL(io, "--plot: cannot write '", svg_path, "'");
  }
  if (png) {
    auto quote = [](const std::string& s) {
      std::string q = "'";
      for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
      return q + "'";
    };
    const std::string cmd = "rsvg-convert -o " + quote(path) + " " + quote(svg_path);
    const int rc = std::system(cmd.c_str());
    std::remove(svg_path.c_str());
    if (rc != 0) USP_FAIL(io, "--plot: rsvg-convert failed to write '", path, "'");
  }
}

}  // namespace usp::bench
