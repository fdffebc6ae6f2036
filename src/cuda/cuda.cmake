# CUDA-specific build pieces, included at the end of the top-level CMakeLists.txt (after the usp,
# usp_cuda, tool and test targets exist).
#   - closes the usp ↔ usp_cuda static link cycle (the CUDA host code uses usp's Tensor/checks);
#   - NCCL communicator (src/cuda/nccl/) when nccl.h, libnccl and MPI are found (USP_WITH_NCCL);
#   - usp_cuda_compile_check: builds every .cu for CMAKE_CUDA_ARCHITECTURES (CI, no GPU needed);
#   - tests/cuda (usp_cuda_tests, CTest "CudaKernelCorrectness", skipped without a GPU);
#   - tells the CUDA-less stubs whether nvcc exists, for their error messages.

if(NOT USP_HAVE_CUDA)
  if(CMAKE_CUDA_COMPILER OR EXISTS /usr/local/cuda/bin/nvcc)
    target_compile_definitions(usp PRIVATE USP_NVCC_FOUND=1)
  endif()
  add_custom_target(usp_cuda_compile_check
    COMMAND ${CMAKE_COMMAND} -E echo "usp_cuda_compile_check: this build has no CUDA (USP_WITH_CUDA=OFF or nvcc not found)"
    COMMAND ${CMAKE_COMMAND} -E false
    VERBATIM)
  return()
endif()

if(NOT BUILD_SHARED_LIBS)
  target_link_libraries(usp_cuda PRIVATE usp)
endif()

# --- NCCL ---------------------------------------------------------------------------------------
find_path(USP_NCCL_INCLUDE_DIR nccl.h HINTS ENV NCCL_HOME PATH_SUFFIXES include)
find_library(USP_NCCL_LIBRARY nccl HINTS ENV NCCL_HOME PATH_SUFFIXES lib lib64)
set(_usp_nccl_src ${PROJECT_SOURCE_DIR}/src/cuda/nccl/nccl_comm.cpp)
if(USP_NCCL_INCLUDE_DIR AND USP_NCCL_LIBRARY AND USP_HAVE_MPI AND EXISTS ${_usp_nccl_src})
  set(_usp_nccl_default ON)
else()
  set(_usp_nccl_default OFF)
endif()
option(USP_WITH_NCCL "Build the NCCL communicator (needs nccl.h, libnccl and MPI)" ${_usp_nccl_default})
set(USP_HAVE_NCCL OFF)
if(USP_WITH_NCCL)
  if(USP_NCCL_INCLUDE_DIR AND USP_NCCL_LIBRARY AND USP_HAVE_MPI AND EXISTS ${_usp_nccl_src})
    set(USP_HAVE_NCCL ON)
    target_sources(usp_cuda PRIVATE ${_usp_nccl_src})
    target_include_directories(usp_cuda PRIVATE ${USP_NCCL_INCLUDE_DIR})
    target_link_libraries(usp_cuda PRIVATE ${USP_NCCL_LIBRARY} MPI::MPI_CXX)
    target_compile_definitions(usp_cuda PRIVATE USP_HAVE_NCCL=1)
  else()
    message(WARNING "usp: USP_WITH_NCCL=ON but nccl.h / libnccl / MPI not all found "
                    "(nccl.h: ${USP_NCCL_INCLUDE_DIR}, libnccl: ${USP_NCCL_LIBRARY}, "
                    "MPI: ${USP_HAVE_MPI}); building without NCCL")
  endif()
endif()
message(STATUS "usp: CUDA architectures ${CMAKE_CUDA_ARCHITECTURES}, NCCL=${USP_HAVE_NCCL}")

# --- compile-only check (CI has nvcc but no GPU) -------------------------------------------------
string(REPLACE ";" "," _usp_archs "${CMAKE_CUDA_ARCHITECTURES}")
add_custom_target(usp_cuda_compile_check
  COMMAND ${CMAKE_COMMAND} -E echo "usp_cuda_compile_check: all CUDA sources compiled for sm ${_usp_archs}"
  VERBATIM)
add_dependencies(usp_cuda_compile_check usp_cuda)

# --- GPU correctness test -----------------------------------------------------------------------
if(USP_BUILD_TESTS AND EXISTS ${PROJECT_SOURCE_DIR}/tests/cuda/main.cpp)
  add_executable(usp_cuda_tests ${PROJECT_SOURCE_DIR}/tests/cuda/main.cpp)
  target_link_libraries(usp_cuda_tests PRIVATE usp::usp)
  usp_enable_warnings(usp_cuda_tests)
  add_dependencies(usp_cuda_compile_check usp_cuda_tests)
  # Exit code 77 = no GPU: CTest lists the test as skipped (and the output says "skipped: no GPU").
  add_test(NAME CudaKernelCorrectness COMMAND usp_cuda_tests)
  set_tests_properties(CudaKernelCorrectness PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)
  add_test(NAME CudaLocalComm COMMAND usp_cuda_tests --comm)
  set_tests_properties(CudaLocalComm PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300)
endif()
