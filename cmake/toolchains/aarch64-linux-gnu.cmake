# Cross-compiling usp for 64-bit Arm Linux with Debian's cross toolchain
# (g++-aarch64-linux-gnu), running the target's binaries under qemu-user:
#
#   cmake -S . -B build-aarch64 -G Ninja \
#     -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake -DUSP_WITH_MPI=OFF \
#     -DUSP_WITH_CUDA=OFF
#
# CMAKE_CROSSCOMPILING_EMULATOR makes ctest (and gtest_discover_tests, which lists the tests by
# running the test binary at build time) run every target binary through qemu-aarch64, with the
# target's C library from the sysroot (-L). GoogleTest is built for the target from Debian's
# sources (tests/CMakeLists.txt). Override the triple, sysroot or emulator with the cache
# variables below.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(USP_CROSS_TRIPLE aarch64-linux-gnu CACHE STRING "Target triple of the cross compilers")
set(USP_CROSS_SYSROOT /usr/${USP_CROSS_TRIPLE} CACHE PATH
    "Target root: its C/C++ libraries (Debian's libc6-dev-arm64-cross installs them here)")

set(CMAKE_C_COMPILER ${USP_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${USP_CROSS_TRIPLE}-g++)

# Look for libraries, headers and packages in the target root only (never the host's x86-64
# ones); programs (ninja, qemu) come from the host.
set(CMAKE_FIND_ROOT_PATH ${USP_CROSS_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

find_program(USP_QEMU_AARCH64 qemu-aarch64)
if(USP_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${USP_QEMU_AARCH64} -L ${USP_CROSS_SYSROOT})
else()
  message(WARNING "qemu-aarch64 not found (Debian: qemu-user): the tests cannot be listed or run")
endif()
