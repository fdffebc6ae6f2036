#include "options.hpp"

#include <charconv>
#include <cmath>
#include <set>
#include <string_view>

#include "../common/flags.hpp"
#include "usp/error.hpp"

namespace usp::attn_tool {
namespace {

// Ranks are threads of this process; more than this is a typo, not a configuration.
constexpr int kMaxWorld = 1024;

int parse_int(std::string_view flag, std::string_view s, int min, int max) {
  int v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  USP_CHECK_ARG(ec == std::errc() && end == s.data() + s.size() && !s.empty(), flag, " '", s,
                "' is not an integer");
  USP_CHECK_ARG(v >= min && v <= max, flag, " ", v, " must be in [", min, ", ", max, "]");
  return v;
}

float parse_scale(std::string_view flag, std::string_view s) {
  double v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  USP_CHECK_ARG(ec == std::errc() && end == s.data() + s.size() && !s.empty(), flag, " '", s,
                "' is not a number");
  USP_CHECK_ARG(std::isfinite(v) && v > 0 && std::isfinite(static_cast<float>(v)) &&
                    static_cast<float>(v) > 0,
                flag, " ", s, " must be a finite number > 0");
  return static_cast<float>(v);
}

}  // namespace

const char* usage() {
  return "usage: usp-attn --q Q.npy --k K.npy --v V.npy [--dout DOUT.npy] [--ulysses U] [--ring "
         "R]\n"
         "                [--ring-type basic|stripe|zigzag|allgather] [--double-ring INNER]\n"
         "                [--cu-seqlens 0,L1,...,S] [--window LEFT,RIGHT]\n"
         "                [--causal] [--dtype fp32|bf16|fp16] [--softmax-scale X]\n"
         "                [--check-finite] [--head-chunks N] [--backend B] [--threads N]\n"
         "                --out-dir DIR\n"
         "\n"
         "Runs exact attention of q [b, s, h, d] over k, v [b, s, hkv, d] (float32 or float64\n"
         ".npy, little-endian, C order) on ulysses x ring ranks (see --backend) and\n"
         "writes DIR/out.npy [b, s, h, d] and DIR/lse.npy [b, h, s] (float32); with --dout also\n"
         "DIR/dq.npy, DIR/dk.npy, DIR/dv.npy (float32, shapes of q, k, v).\n"
         "\n"
         "  --q, --k, --v FILE    inputs; h must be a multiple of hkv\n"
         "  --dout FILE           gradient of out (shape of q): also run the backward pass\n"
         "  --ulysses U           Ulysses degree, divides h (default 1)\n"
         "  --ring R              ring degree (default 1)\n"
         "  --ring-type T         sequence layout of the ring: basic (s divisible by U*R),\n"
         "                        stripe (s divisible by U*R), zigzag (s divisible by 2*U*R);\n"
         "                        allgather: zigzag's layout, K/V all-gathered over the ring\n"
         "                        group instead of passed around it; default basic\n"
         "  --double-ring INNER   the ring as R/INNER inner rings of INNER consecutive ring\n"
         "                        ranks (K/V go around the inner ring, then one hop on the\n"
         "                        outer ring); INNER divides R, not with allgather\n"
         "  --causal              causal mask (query i sees keys j <= i)\n"
         "  --cu-seqlens LIST     packed documents: their starts 0,l1,l1+l2,...,s (batch 1); a\n"
         "                        query sees keys of its own document only\n"
         "  --window L,R          sliding window: query i sees keys i-L .. i+R (-1: unbounded;\n"
         "                        with --causal keys after i stay hidden)\n"
         "  --dtype T             round inputs to this storage type first (default fp32)\n"
         "  --softmax-scale X     scale of q.k (default 1/sqrt(d))\n"
         "  --check-finite        refuse inputs holding NaN or +-inf (the error names the\n"
         "                        tensor, the rank and the first index); without it they\n"
         "                        propagate as in plain attention\n"
         "  --head-chunks N       the forward in N calls over equal shares of the kv heads (less\n"
         "                        memory, the same bits); N divides hkv into shares U divides.\n"
         "                        0 (default): 2 where R > 1 and the heads allow it; 1: one call\n"
         "  --backend B           where the U*R ranks run (default local):\n"
         "                        local: threads of this process, CPU kernel;\n"
         "                        mpi: one process per rank, CPU kernel, started with\n"
         "                          mpirun -np U*R usp-attn --backend mpi ... (every rank reads\n"
         "                          the inputs, rank 0 writes the results);\n"
         "                        cuda-local: threads sharing one GPU (fp16/bf16 only);\n"
         "                        nccl: one process per GPU under mpirun (fp16/bf16 only)\n"
         "  --threads N           kernel threads per rank (default: hardware threads / ranks)\n"
         "  --out-dir DIR         where the results go (created if missing)\n"
         "  --help                this text\n"
         "\n"
         "Exit status: 0 on success, 2 on any error (one line on stderr).\n";
}

Options parse_options(int argc, const char* const* argv) {
  Options o;
  std::set<std::string> seen;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      o.help = true;
      continue;
    }
    USP_CHECK_ARG(arg.size() > 2 && arg.substr(0, 2) == "--", "unexpected argument '", arg,
                  "' (options start with --; see usp-attn --help)");
    std::string flag(arg);
    std::string value;
    bool has_value = false;
    if (const auto eq = arg.find('='); eq != std::string_view::npos) {
      flag = std::string(arg.substr(0, eq));
      value = std::string(arg.substr(eq + 1));
      has_value = true;
    }
    static const std::set<std::string> kValued = {
        "--q",           "--k",          "--v",       "--dout",          "--ulysses", "--ring",
        "--ring-type",   "--dtype",      "--backend", "--softmax-scale", "--threads", "--out-dir",
        "--double-ring", "--cu-seqlens", "--window",  "--head-chunks"};
    const bool valued = kValued.count(flag) != 0;
    USP_CHECK_ARG(valued || flag == "--causal" || flag == "--check-finite", "unknown option '",
                  flag, "' (see usp-attn --help)");
    USP_CHECK_ARG(seen.insert(flag).second, "option ", flag, " is given more than once");
    if (!valued) {
      USP_CHECK_ARG(!has_value, flag, " takes no value");
      (flag == "--causal" ? o.causal : o.check_finite) = true;
      continue;
    }
    if (!has_value) {
      USP_CHECK_ARG(i + 1 < argc && std::string_view(argv[i + 1]).substr(0, 2) != "--", flag,
                    " needs a value");
      value = argv[++i];
    }
    USP_CHECK_ARG(!value.empty(), flag, " needs a non-empty value");
    if (flag == "--q") {
      o.q = value;
    } else if (flag == "--k") {
      o.k = value;
    } else if (flag == "--v") {
      o.v = value;
    } else if (flag == "--dout") {
      o.dout = value;
    } else if (flag == "--out-dir") {
      o.out_dir = value;
    } else if (flag == "--ulysses") {
      o.ulysses = parse_int(flag, value, 1, kMaxWorld);
    } else if (flag == "--ring") {
      o.ring = parse_int(flag, value, 1, kMaxWorld);
    } else if (flag == "--threads") {
      o.threads = parse_int(flag, value, 0, 1024);
    } else if (flag == "--cu-seqlens") {
      const std::string e = tools::parse_int64_list(flag, value, o.cu_seqlens);
      USP_CHECK_ARG(e.empty(), e);
    } else if (flag == "--window") {
      const std::string e = tools::parse_window(flag, value, o.window);
      USP_CHECK_ARG(e.empty(), e);
    } else if (flag == "--head-chunks") {
      o.head_chunks = parse_int(flag, value, 0, 1 << 16);
    } else if (flag == "--double-ring") {
      o.double_ring = parse_int(flag, value, 1, kMaxWorld);
    } else if (flag == "--softmax-scale") {
      o.scale = parse_scale(flag, value);
    } else if (flag == "--dtype") {
      o.dtype = parse_dtype(value, "--dtype");
    } else if (flag == "--ring-type") {
      USP_CHECK_ARG(
          value == "basic" || value == "stripe" || value == "zigzag" || value == "allgather",
          "--ring-type '", value, "' is unknown (allowed: basic, stripe, zigzag, allgather)");
      o.ring_type = parse_ring_type(value);
    } else if (flag == "--backend") {
      USP_CHECK_ARG(value == "local" || value == "cpu" || value == "mpi" || value == "cuda-local" ||
                        value == "nccl",
                    "--backend '", value, "' is unknown (allowed: local, mpi, cuda-local, nccl)");
      o.backend = value == "cpu" ? "local" : value;
    }
  }
  if (o.help) return o;
  for (const auto& [flag, v] : {std::pair<const char*, const std::string*>{"--q", &o.q},
                                {"--k", &o.k},
                                {"--v", &o.v},
                                {"--out-dir", &o.out_dir}}) {
    USP_CHECK_ARG(!v->empty(), "missing required option ", flag, " (see usp-attn --help)");
  }
  USP_CHECK_ARG(o.double_ring == 0 || o.ring % o.double_ring == 0, "--double-ring ", o.double_ring,
                " must divide --ring ", o.ring, " (inner rings of INNER consecutive ring ranks)");
  USP_CHECK_ARG(o.double_ring == 0 || o.ring_type != RingType::allgather, "--double-ring ",
                o.double_ring,
                " does not apply to --ring-type allgather (K/V are gathered in one "
                "step: there is no inner ring)");
  USP_CHECK_ARG(static_cast<long>(o.ulysses) * o.ring <= kMaxWorld, "--ulysses ", o.ulysses,
                " x --ring ", o.ring, " = ", static_cast<long>(o.ulysses) * o.ring,
                " ranks is more than the ", kMaxWorld, " this tool runs");
  return o;
}

}  // namespace usp::attn_tool
