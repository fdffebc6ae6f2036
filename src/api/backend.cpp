#include "usp/backend.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <thread>

#include "usp/comm_mpi.hpp"
#include "usp/cuda.hpp"
#include "usp/error.hpp"

namespace usp {
namespace {

struct Known {
  const char* name;
  const char* canonical;
};
constexpr std::array<Known, 5> kKnown{{
    {"local", "local"},
    {"cpu", "local"},
    {"mpi", "mpi"},
    {"cuda-local", "cuda-local"},
    {"nccl", "nccl"},
}};

bool is_gpu(const std::string& c) {
  return c == "cuda-local" || c == "nccl";
}

}  // namespace

std::vector<std::string> backend_names() {
  std::vector<std::string> names;
  for (const auto& k : kKnown) names.emplace_back(k.name);
  return names;
}

std::string canonical_backend(std::string_view backend) {
  for (const auto& k : kKnown)
    if (backend == k.name) return k.canonical;
  std::string list;
  for (const auto& k : kKnown) list += std::string(list.empty() ? "" : ", ") + k.name;
  USP_FAIL(invalid_argument, "backend '", backend, "' is unknown; known backends: ", list);
}

std::string backend_unavailable_reason(std::string_view backend) {
  const std::string c = canonical_backend(backend);
  if (c == "local") return "";
  if (c == "mpi") {
#ifdef USP_HAVE_MPI
    return "";
#else
    return detail::concat("backend '", backend,
                          "' needs a build with MPI (MPI found: no); install an MPI "
                          "implementation and reconfigure with -DUSP_WITH_MPI=ON");
#endif
  }
  // GPU backends.
  if (!cuda::compiled() || cuda::device_count() == 0) {
    return detail::concat("backend '", backend, "' ", cuda::unavailable_reason());
  }
  if (c == "nccl" && !cuda::nccl_compiled()) {
    return detail::concat(
        "backend 'nccl' needs a build with NCCL and MPI (nccl.h and MPI found "
        "at configure time); this build has CUDA but no NCCL");
  }
  return "";
}

bool backend_available(std::string_view backend) {
  return backend_unavailable_reason(backend).empty();
}

Device backend_device(std::string_view backend) {
  return is_gpu(canonical_backend(backend)) ? Device::cuda : Device::host;
}

namespace {
// cuda-local ranks share GPU 0; an nccl rank uses the GPU its world communicator selected.
int gpu_of_this_rank(const std::string& canonical) {
  return canonical == "nccl" ? cuda::current_device() : 0;
}

void require(std::string_view backend) {
  std::string why = backend_unavailable_reason(backend);
  if (!why.empty()) throw Error(ErrorKind::unsupported, why);
}
}  // namespace

int host_ranks(std::string_view backend, int world_size) {
  const std::string c = canonical_backend(backend);
  if (c == "mpi" || c == "nccl") {
    for (const char* v :
         {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "MV2_COMM_WORLD_LOCAL_SIZE"})
      if (const char* s = std::getenv(v)) {
        const int n = std::atoi(s);
        if (n > 0) return n;
      }
  }
  return world_size;
}

int default_threads(int ranks_on_host, int cores) {
  if (cores <= 0) cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, ranks_on_host));
}

std::unique_ptr<AttentionKernel> make_kernel(std::string_view backend, int threads,
                                             Allocator* scratch) {
  USP_CHECK_ARG(threads >= 0, "make_kernel: threads = ", threads, " must be >= 0 (0 = all cores)");
  const std::string c = canonical_backend(backend);
  require(backend);
  const Device want = is_gpu(c) ? Device::cuda : Device::host;
  USP_CHECK_ARG(scratch == nullptr || scratch->device() == want, "make_kernel: scratch allocator ",
                "is on device ", device_name(scratch != nullptr ? scratch->device() : want),
                ", backend '", backend, "' needs one on device ", device_name(want));
  if (is_gpu(c)) return cuda::make_kernel(gpu_of_this_rank(c), scratch);
  return make_cpu_kernel(threads, scratch);
}

std::unique_ptr<Allocator> make_allocator(std::string_view backend) {
  const std::string c = canonical_backend(backend);
  require(backend);
  if (is_gpu(c)) return cuda::make_allocator(gpu_of_this_rank(c));
  return std::make_unique<HostAllocator>();
}

void run_ranks(std::string_view backend, int world_size,
               const std::function<void(Communicator&)>& fn, std::chrono::milliseconds timeout) {
  const std::string c = canonical_backend(backend);
  USP_CHECK_ARG(c == "local" || c == "cuda-local", "run_ranks: backend '", backend,
                "' runs one process per rank; launch it with mpirun and create its world "
                "communicator in main (run_ranks supports 'local' and 'cuda-local')");
  require(backend);
  if (c == "cuda-local") {
    cuda::run_local(world_size, fn, timeout, 0);
  } else {
    run_local(world_size, fn, timeout);
  }
}

std::unique_ptr<Communicator> make_world(std::string_view backend) {
  const std::string c = canonical_backend(backend);
  USP_CHECK_ARG(c == "mpi" || c == "nccl", "make_world: backend '", backend,
                "' runs its ranks as threads of one process; use run_ranks (make_world supports "
                "the process-per-rank backends 'mpi' and 'nccl', launched with mpirun)");
  require(backend);
  if (c == "nccl") return cuda::nccl_world();
  return make_mpi_communicator();
}

Tensor copy_to(const Tensor& src, Allocator& alloc) {
  USP_CHECK_ARG(src.defined(), "copy_to: src is an undefined tensor");
  if (src.device() == Device::host && alloc.device() == Device::host) {
    Tensor dst = Tensor::empty(src.shape(), src.dtype(), alloc);
    copy_into(src, dst);
    return dst;
  }
  if (src.device() == Device::host) return cuda::to_device(src, alloc);
  if (alloc.device() == Device::host) return cuda::to_host(src, alloc);
  // device → device: through the host (rare: tests and tools only).
  Tensor h = cuda::to_host(src);
  return cuda::to_device(h, alloc);
}

}  // namespace usp
