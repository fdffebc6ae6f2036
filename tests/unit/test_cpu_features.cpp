#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "kernel/cpu/features.hpp"
#include "usp/cpu.hpp"
#include "usp/error.hpp"

#include "support/support.hpp"

namespace {

using usp::CpuFeatures;
using usp::CpuPath;
using usp::detail::parse_cpu_path;
using usp::detail::select_cpu_path;

CpuFeatures no_simd() {
  return CpuFeatures{};
}

CpuFeatures avx2_only() {
  CpuFeatures f;
  f.avx2 = f.fma = f.f16c = true;
  return f;
}

CpuFeatures aarch64() {
  CpuFeatures f;
  f.neon = true;
  return f;
}

CpuFeatures avx512_only() {
  CpuFeatures f = avx2_only();
  f.avx512f = f.avx512bw = f.avx512vl = f.avx512dq = f.avx512_bf16 = true;
  f.amx_in_cpuid = true;  // the CPU has AMX but the OS refused it
  return f;
}

CpuFeatures with_amx() {
  CpuFeatures f = avx512_only();
  f.amx_tile = f.amx_bf16 = true;
  return f;
}

using usp::test::ScopedCpuPath;

std::string error_of(const CpuFeatures& f, const char* env, usp::ErrorKind* kind) {
  try {
    select_cpu_path(f, env);
  } catch (const usp::Error& e) {
    *kind = e.kind();
    return e.what();
  }
  return "";
}

TEST(CpuPathParse, UnsetEmptyAndAutoMeanNotForced) {
  EXPECT_EQ(parse_cpu_path(nullptr), std::nullopt);
  EXPECT_EQ(parse_cpu_path(""), std::nullopt);
  EXPECT_EQ(parse_cpu_path("auto"), std::nullopt);
  EXPECT_EQ(parse_cpu_path("  "), std::nullopt);
}

TEST(CpuPathParse, NamesEveryPath) {
  EXPECT_EQ(parse_cpu_path("generic"), CpuPath::generic);
  EXPECT_EQ(parse_cpu_path("avx2"), CpuPath::avx2);
  EXPECT_EQ(parse_cpu_path("avx512"), CpuPath::avx512);
  EXPECT_EQ(parse_cpu_path("amx"), CpuPath::amx);
  EXPECT_EQ(parse_cpu_path("neon"), CpuPath::neon);
  EXPECT_EQ(parse_cpu_path(" amx\n"), CpuPath::amx);
  for (CpuPath p : usp::detail::kCpuPaths) EXPECT_EQ(parse_cpu_path(usp::cpu_path_name(p)), p);
}

TEST(CpuPathParse, UnknownValueNamesVariableValueAndChoices) {
  for (const char* bad : {"AVX512", "sse", "generic,amx", "avx-512", "AVX2", "sve"}) {
    USP_EXPECT_ERROR(parse_cpu_path(bad), invalid_argument, "USP_CPU_PATH",
                     std::string("'") + bad + "'", "generic, avx2, avx512, amx, neon");
    const std::string msg = usp::test::error_message([&] { parse_cpu_path(bad); });
    for (CpuPath p : usp::detail::kCpuPaths)  // every accepted name is listed
      EXPECT_NE(msg.find(usp::cpu_path_name(p)), std::string::npos) << msg;
  }
}

TEST(CpuPathSelect, BestPathFollowsFeatures) {
  EXPECT_EQ(select_cpu_path(no_simd(), nullptr), CpuPath::generic);
  EXPECT_EQ(select_cpu_path(avx2_only(), nullptr), CpuPath::avx2);
  EXPECT_EQ(select_cpu_path(aarch64(), nullptr), CpuPath::neon);
  EXPECT_EQ(select_cpu_path(avx512_only(), nullptr), CpuPath::avx512);
  EXPECT_EQ(select_cpu_path(with_amx(), nullptr), CpuPath::amx);
  EXPECT_EQ(select_cpu_path(with_amx(), "auto"), CpuPath::amx);
  CpuFeatures partial = avx512_only();
  partial.avx512vl = false;  // AVX-512 without VL is not enough for the avx512 path
  EXPECT_EQ(select_cpu_path(partial, nullptr), CpuPath::avx2);
  EXPECT_FALSE(usp::cpu_path_supported(CpuPath::avx512, partial));
  EXPECT_TRUE(usp::cpu_path_supported(CpuPath::generic, partial));
  CpuFeatures no_f16c = avx2_only();
  no_f16c.f16c = false;  // the avx2 path converts fp16 with F16C
  EXPECT_EQ(select_cpu_path(no_f16c, nullptr), CpuPath::generic);
}

TEST(CpuPathSelect, ForcingGenericWorksEverywhere) {
  for (const CpuFeatures& f : {no_simd(), avx2_only(), aarch64(), avx512_only(), with_amx()})
    EXPECT_EQ(select_cpu_path(f, "generic"), CpuPath::generic);
  EXPECT_EQ(select_cpu_path(with_amx(), "avx512"), CpuPath::avx512);
  EXPECT_EQ(select_cpu_path(with_amx(), "avx2"), CpuPath::avx2);
  EXPECT_EQ(select_cpu_path(avx512_only(), "avx2"), CpuPath::avx2);
}

TEST(CpuPathSelect, ForcingAnUnavailablePathErrors) {
  struct Case {
    CpuFeatures cpu;
    const char* forced;
    const char* lacks;  // the missing features, in the message's order
    const char* best;
  };
  for (const Case& c :
       {Case{no_simd(), "avx512", "avx512f, avx512bw, avx512vl, avx512dq, fma", "generic"},
        Case{avx512_only(), "amx", "amx_tile, amx_bf16", "avx512"},
        Case{aarch64(), "avx2", "avx2, fma, f16c", "neon"},
        Case{with_amx(), "neon", "neon", "amx"}}) {
    usp::ErrorKind kind = usp::ErrorKind::internal;
    const std::string msg = error_of(c.cpu, c.forced, &kind);
    EXPECT_EQ(kind, usp::ErrorKind::unsupported) << msg;
    EXPECT_NE(msg.find(std::string("USP_CPU_PATH=") + c.forced), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::string("lacks ") + c.lacks), std::string::npos) << msg;
    EXPECT_NE(msg.find(std::string("best path here is ") + c.best), std::string::npos) << msg;
  }
}

TEST(CpuPathNames, AreDistinct) {
  EXPECT_STREQ(usp::cpu_path_name(CpuPath::generic), "generic");
  EXPECT_STREQ(usp::cpu_path_name(CpuPath::avx2), "avx2");
  EXPECT_STREQ(usp::cpu_path_name(CpuPath::avx512), "avx512");
  EXPECT_STREQ(usp::cpu_path_name(CpuPath::amx), "amx");
  EXPECT_STREQ(usp::cpu_path_name(CpuPath::neon), "neon");
  EXPECT_EQ(usp::cpu_features_string(aarch64()), "neon");
  EXPECT_EQ(usp::cpu_features_string(no_simd()), "(none)");
  EXPECT_EQ(usp::cpu_features_string(with_amx()),
            "avx2 fma f16c avx512f avx512bw avx512vl avx512dq avx512_bf16 amx_bf16 amx_tile");
}

// The real process: the environment variable is honoured on every call.
TEST(CpuPathEnv, ForcingGenericThroughTheEnvironment) {
  const CpuPath best = usp::best_cpu_path(usp::cpu_features());
  {
    ScopedCpuPath env(nullptr);
    EXPECT_EQ(usp::cpu_path(), best);
  }
  {
    ScopedCpuPath env("generic");
    EXPECT_EQ(usp::cpu_path(), CpuPath::generic);
  }
  {
    ScopedCpuPath env("bogus");
    EXPECT_THROW(usp::cpu_path(), usp::Error);
  }
}

TEST(CpuPathEnv, DetectedFeaturesAreConsistent) {
  const CpuFeatures& f = usp::cpu_features();
  EXPECT_EQ(&f, &usp::cpu_features());  // detected once
  // Implications that hold on every CPU (sub-features need the base feature and OS support).
  if (f.avx512bw || f.avx512vl || f.avx512dq || f.avx512_bf16 || f.avx512_fp16) {
    EXPECT_TRUE(f.avx512f);
  }
  if (f.amx_tile || f.amx_bf16) {
    EXPECT_TRUE(f.amx_in_cpuid);
  }
  EXPECT_EQ(f.amx_tile, f.amx_bf16);
  // Each path this CPU supports can be forced; one it lacks cannot.
  for (CpuPath p : usp::detail::kCpuPaths) {
    ScopedCpuPath env(usp::cpu_path_name(p));
    if (usp::cpu_path_supported(p, f)) {
      EXPECT_EQ(usp::cpu_path(), p);
    } else {
      EXPECT_THROW(usp::cpu_path(), usp::Error);
    }
  }
}

}  // namespace
