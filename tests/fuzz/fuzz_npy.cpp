// libFuzzer target: the .npy reader (usp::read_npy_f64 and usp::read_npy) on arbitrary file
// contents. The only acceptable rejection is usp::Error of kind io; an accepted file must hold
// exactly product(shape) values of a supported dtype, and both readers must agree on it.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "usp/error.hpp"
#include "usp/npy.hpp"

namespace {

// The reader takes a path, so every input goes through a file: in /dev/shm where there is one (on
// a disk-backed /tmp the writes cut the rate by ~50x), else in $TMPDIR or /tmp.
const std::string& scratch_path() {
  static const std::string path = [] {
    const char* tmpdir = std::getenv("TMPDIR");
    const std::string dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                            : tmpdir && *tmpdir           ? tmpdir
                                                          : "/tmp";
    std::string tmpl = dir + "/usp-fuzz-npy.XXXXXX";
    const int fd = mkstemp(tmpl.data());
    if (fd < 0) {
      std::perror("fuzz_npy: mkstemp");
      std::abort();
    }
    close(fd);
    return tmpl;
  }();
  return path;
}

void remove_scratch() {
  std::remove(scratch_path().c_str());
}

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_npy: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  scratch_path();
  std::atexit(remove_scratch);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = scratch_path();
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) finding("cannot write the scratch file");
  if (size && std::fwrite(data, 1, size, f) != size) finding("short write to the scratch file");
  std::fclose(f);

  usp::NpyArray a;
  bool ok = false;
  try {
    a = usp::read_npy_f64(path);
    ok = true;
  } catch (const usp::Error& e) {
    if (e.kind() != usp::ErrorKind::io) finding("read_npy_f64 threw a usp::Error not of kind io");
  }
  if (ok) {
    if (a.descr != "<f4" && a.descr != "<f8") finding("accepted an unsupported dtype");
    std::int64_t count = 1;
    for (std::int64_t d : a.shape) {
      if (d < 0) finding("negative dimension");
      count *= d;
    }
    if (static_cast<std::uint64_t>(count) != a.data.size()) finding("data size != product(shape)");
    const std::size_t item = a.descr == "<f4" ? 4 : 8;
    if (a.data.size() * item > size) finding("more values than the file holds");
  }

  try {
    const usp::Tensor t = usp::read_npy(path);
    if (!ok) finding("read_npy accepted what read_npy_f64 rejected");
    if (t.shape() != a.shape) finding("read_npy and read_npy_f64 disagree on the shape");
    if (static_cast<std::size_t>(t.numel()) != a.data.size()) finding("numel != values");
  } catch (const usp::Error& e) {
    if (e.kind() != usp::ErrorKind::io) finding("read_npy threw a usp::Error not of kind io");
    // read_npy also rejects 0-d and too many dimensions, which read_npy_f64 accepts.
    if (ok && !a.shape.empty() && a.shape.size() <= static_cast<std::size_t>(usp::Tensor::kMaxDims))
      finding("read_npy rejected what read_npy_f64 accepted");
  }
  return 0;
}
