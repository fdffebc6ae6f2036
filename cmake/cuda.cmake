# CUDA-specific build pieces, included from the top-level CMakeLists.txt once the library targets
# (usp_core ... usp_cuda, usp) exist and before tools/ and tests/:
#   - NCCL communicator (USP_NCCL_SOURCES) when nccl.h, libnccl >= 2.14 and MPI are found
#     (USP_WITH_NCCL), else usp_nccl_compile_check compiles it against a stub nccl.h;
#   - usp_cuda_compile_check: builds every .cu for CMAKE_CUDA_ARCHITECTURES (CI, no GPU needed);
#     tests/cuda/CMakeLists.txt adds the CUDA test programs to it;
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

# --- NCCL ---------------------------------------------------------------------------------------
# The NCCL communicator (src/comm/nccl/nccl_*.cpp; its stub nccl_unavailable.cpp is always in
# usp_cuda) needs nccl.h and libnccl of NCCL >= 2.14 (non-blocking communicators) and MPI (the
# unique id travels through MPI).
find_path(USP_NCCL_INCLUDE_DIR nccl.h HINTS ENV NCCL_HOME PATH_SUFFIXES include)
find_library(USP_NCCL_LIBRARY nccl HINTS ENV NCCL_HOME PATH_SUFFIXES lib lib64)
set(_usp_nccl_src ${USP_NCCL_SOURCES})
set(_usp_nccl_version "")
if(USP_NCCL_INCLUDE_DIR)
  file(STRINGS ${USP_NCCL_INCLUDE_DIR}/nccl.h _usp_nccl_defs REGEX "^#define NCCL_(MAJOR|MINOR) ")
  string(REGEX MATCH "NCCL_MAJOR ([0-9]+)" _m "${_usp_nccl_defs}")
  set(_usp_nccl_major "${CMAKE_MATCH_1}")
  string(REGEX MATCH "NCCL_MINOR ([0-9]+)" _m "${_usp_nccl_defs}")
  set(_usp_nccl_minor "${CMAKE_MATCH_1}")
  if(_usp_nccl_major AND NOT _usp_nccl_minor STREQUAL "")
    set(_usp_nccl_version "${_usp_nccl_major}.${_usp_nccl_minor}")
  endif()
endif()
set(_usp_nccl_usable OFF)
if(USP_NCCL_INCLUDE_DIR AND USP_NCCL_LIBRARY AND USP_HAVE_MPI AND _usp_nccl_src
   AND _usp_nccl_version AND _usp_nccl_version VERSION_GREATER_EQUAL 2.14)
  set(_usp_nccl_usable ON)
endif()
set(_usp_nccl_missing "nccl.h / libnccl >= 2.14 / MPI not all found (nccl.h: ")
string(APPEND _usp_nccl_missing "${USP_NCCL_INCLUDE_DIR}, version: '${_usp_nccl_version}', "
                                "libnccl: ${USP_NCCL_LIBRARY}, MPI: ${USP_HAVE_MPI})")
usp_feature(NCCL "Build the NCCL communicator (needs nccl.h and libnccl >= 2.14, and MPI)"
            ${_usp_nccl_usable} "${_usp_nccl_missing}")
if(USP_HAVE_NCCL)
  target_sources(usp_cuda PRIVATE ${_usp_nccl_src})
  target_include_directories(usp_cuda SYSTEM PRIVATE ${USP_NCCL_INCLUDE_DIR})
  target_link_libraries(usp_cuda PRIVATE ${USP_NCCL_LIBRARY} MPI::MPI_CXX)
  target_compile_definitions(usp_cuda PRIVATE USP_HAVE_NCCL=1)
endif()
message(STATUS "usp: CUDA architectures ${CMAKE_CUDA_ARCHITECTURES}, NCCL=${USP_HAVE_NCCL}"
               " (nccl.h: ${USP_NCCL_INCLUDE_DIR}, version '${_usp_nccl_version}')")

# Without a usable NCCL (CI: nvcc and MPI, no nccl.h) the NCCL communicator is still compiled,
# against a declarations-only stub of nccl.h (tests/stubs/nccl/nccl.h), so that its code is
# type-checked in every CUDA+MPI build. An OBJECT library: nothing is linked from it.
if(NOT USP_HAVE_NCCL AND USP_HAVE_MPI AND _usp_nccl_src)
  add_library(usp_nccl_compile_check OBJECT ${_usp_nccl_src})
  target_include_directories(usp_nccl_compile_check PRIVATE
    ${PROJECT_SOURCE_DIR}/tests/stubs/nccl ${PROJECT_SOURCE_DIR}/include ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(usp_nccl_compile_check PRIVATE CUDA::cudart_static)
  target_compile_definitions(usp_nccl_compile_check PRIVATE USP_HAVE_CUDA=1 USP_HAVE_NCCL=1)
  target_compile_features(usp_nccl_compile_check PRIVATE cxx_std_20)
  usp_enable_warnings(usp_nccl_compile_check)
  set(_usp_nccl_checked ON)
endif()

# --- compile-only check (CI has nvcc but no GPU) -------------------------------------------------
string(REPLACE ";" "," _usp_archs "${CMAKE_CUDA_ARCHITECTURES}")
add_custom_target(usp_cuda_compile_check
  COMMAND ${CMAKE_COMMAND} -E echo "usp_cuda_compile_check: all CUDA sources compiled for sm ${_usp_archs}"
  VERBATIM)
add_dependencies(usp_cuda_compile_check usp_cuda)
if(_usp_nccl_checked)
  add_dependencies(usp_cuda_compile_check usp_nccl_compile_check)
endif()
