// What the host CPU can do, and which code path the CPU kernels take.
//
// Detection runs once per process (cpuid, the OS's XSAVE state, and on Linux the AMX permission
// request); on other CPUs (aarch64, ...) nothing is detected yet and the kernels take the generic
// path. The path is chosen on every call to cpu_path(): the best the CPU supports, unless the
// environment variable USP_CPU_PATH forces one:
//   USP_CPU_PATH=generic   portable C++ (runs anywhere; what CI uses to test the slow path)
//   USP_CPU_PATH=avx2      AVX2 + FMA + F16C (x86-64 CPUs without AVX-512)
//   USP_CPU_PATH=avx512    AVX-512 F/BW/VL/DQ + FMA
//   USP_CPU_PATH=amx       AMX tiles (bf16) on top of AVX-512
//   USP_CPU_PATH=neon      Advanced SIMD (every aarch64 CPU)
//   unset, empty or auto   the best available
// Forcing a path this CPU cannot run is an error, never a silent fallback.
#pragma once

#include <cstdint>
#include <string>

namespace usp {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;  // the AVX2 path needs all three
  // AVX-512 foundation and the BW/VL/DQ extensions (the AVX-512 path needs all four and fma).
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512_bf16 = false, avx512_fp16 = false;
  // AMX bits are true only when the CPU has them, the OS enables the tile state, and (on Linux)
  // the kernel granted this process permission to use it (arch_prctl ARCH_REQ_XCOMP_PERM).
  bool amx_bf16 = false;
  bool amx_tile = false;
  // The CPU reports AMX in cpuid (whether or not the OS lets this process use it).
  bool amx_in_cpuid = false;
  // aarch64 Advanced SIMD (always there on aarch64, never on x86).
  bool neon = false;
};

// The features of the CPU this process runs on (detected on first call; thread-safe).
const CpuFeatures& cpu_features();

// The names of the features that are present, space-separated ("avx2 fma ... amx_tile").
std::string cpu_features_string(const CpuFeatures& f);

enum class CpuPath : std::uint8_t { generic, avx2, avx512, amx, neon };

// "generic", "avx2", "avx512", "amx", "neon".
const char* cpu_path_name(CpuPath p);

// Whether a CPU with features `f` can run path `p`.
bool cpu_path_supported(CpuPath p, const CpuFeatures& f);

// The fastest path a CPU with features `f` supports: amx, avx512, avx2, neon, generic, the first
// that it can run.
CpuPath best_cpu_path(const CpuFeatures& f);

// The path to use now: best_cpu_path(cpu_features()) unless USP_CPU_PATH forces one (read on every
// call). Throws Error (invalid_argument) for an unknown value and Error (unsupported) when the
// forced path needs features this CPU lacks.
CpuPath cpu_path();

}  // namespace usp
