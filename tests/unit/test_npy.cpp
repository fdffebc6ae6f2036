// .npy reader/writer: round trips, the exact bytes written, hand-made headers of every version,
// and one test per malformed input.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "support/support.hpp"
#include "usp/error.hpp"
#include "usp/npy.hpp"
#include "usp/tensor.hpp"

namespace usp {
namespace {

namespace fs = std::filesystem;

class NpyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    static int counter = 0;
    dir_ = fs::temp_directory_path() /
           ("usp_npy_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  static std::string slurp(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  static void spit(const std::string& p, const std::string& bytes) {
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  fs::path dir_;
};

// Builds a .npy file by hand: magic, version, header length, header (as given, no padding added
// unless pad), data bytes.
std::string npy_bytes(int major, int minor, std::string header, const std::string& data,
                      bool pad = true) {
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  if (pad) {
    const std::size_t prefix = 8 + len_bytes;
    while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
    header += '\n';
  }
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += static_cast<char>(minor);
  const std::size_t n = header.size();
  for (std::size_t i = 0; i < len_bytes; ++i) out += static_cast<char>((n >> (8 * i)) & 0xff);
  return out + header + data;
}

std::string float_bytes(const std::vector<float>& v) {
  std::string s(v.size() * 4, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}
std::string double_bytes(const std::vector<double>& v) {
  std::string s(v.size() * 8, '\0');
  std::memcpy(s.data(), v.data(), s.size());
  return s;
}

std::vector<float> random_floats(std::size_t n, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 3.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

TEST_F(NpyTest, Fp32RoundTripAllRanks) {
  USP_TEST_RNG(rng);
  const std::vector<Tensor::Dims> shapes = {{7}, {3, 5}, {2, 3, 4}, {2, 17, 3, 5}, {1, 1, 1, 1}};
  for (const auto& shape : shapes) {
    Tensor t = Tensor::empty(shape, DType::f32);
    const auto v = random_floats(static_cast<std::size_t>(t.numel()), rng);
    std::memcpy(t.data(), v.data(), v.size() * 4);
    write_npy(path("a.npy"), t);
    const Tensor back = read_npy(path("a.npy"));
    ASSERT_EQ(back.shape(), shape);
    ASSERT_EQ(back.dtype(), DType::f32);
    ASSERT_EQ(std::memcmp(back.data(), v.data(), v.size() * 4), 0);
    const NpyArray a = read_npy_f64(path("a.npy"));
    ASSERT_EQ(a.shape, shape);
    ASSERT_EQ(a.descr, "<f4");
    for (std::size_t i = 0; i < v.size(); ++i) ASSERT_EQ(a.data[i], static_cast<double>(v[i]));
  }
}

TEST_F(NpyTest, HalfTensorIsWrittenAsExactFloat32) {
  std::mt19937 rng(3);
  Tensor f = Tensor::empty({4, 6}, DType::f32);
  const auto v = random_floats(24, rng);
  std::memcpy(f.data(), v.data(), 96);
  const Tensor h = to_dtype(f, DType::f16);
  write_npy(path("h.npy"), h);
  const Tensor back = read_npy(path("h.npy"));
  const auto want = to_doubles(h);
  const auto got = to_doubles(back);
  ASSERT_EQ(got, want);
  // Values were actually rounded (the test is not vacuous).
  EXPECT_NE(got, to_doubles(f));
}

TEST_F(NpyTest, StridedViewIsWrittenInLogicalOrder) {
  Tensor t = Tensor::empty({3, 4}, DType::f32);
  for (int i = 0; i < 12; ++i) t.data_as<float>()[i] = static_cast<float>(i) + 0.5f;
  write_npy(path("v.npy"), t.slice(1, 1, 2));
  const NpyArray a = read_npy_f64(path("v.npy"));
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{3, 2}));
  EXPECT_EQ(a.data, (std::vector<double>{1.5, 2.5, 5.5, 6.5, 9.5, 10.5}));
}

TEST_F(NpyTest, Float64RoundTripAndRounding) {
  const std::vector<double> v = {1.0 / 3.0, -2.5e-30, 1e10, 0.1, -0.0, 7.0};
  write_npy_f64(path("d.npy"), {2, 3}, v);
  const NpyArray a = read_npy_f64(path("d.npy"));
  EXPECT_EQ(a.descr, "<f8");
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{2, 3}));
  ASSERT_EQ(a.data.size(), v.size());
  for (std::size_t i = 0; i < v.size(); ++i) EXPECT_EQ(a.data[i], v[i]);
  const Tensor t = read_npy(path("d.npy"));
  ASSERT_EQ(t.shape(), (Tensor::Dims{2, 3}));
  for (std::size_t i = 0; i < v.size(); ++i) {
    EXPECT_EQ(t.data_as<float>()[i], static_cast<float>(v[i]));
  }
  EXPECT_TRUE(std::signbit(t.data_as<float>()[4]));
  EXPECT_THROW(write_npy_f64(path("e.npy"), {2, 2}, v), Error);
}

TEST_F(NpyTest, WrittenBytesAreVersion1WithAlignedHeader) {
  Tensor t = Tensor::empty({2, 3}, DType::f32);
  for (int i = 0; i < 6; ++i) t.data_as<float>()[i] = static_cast<float>(i);
  write_npy(path("w.npy"), t);
  const std::string b = slurp(path("w.npy"));
  ASSERT_GE(b.size(), 10u);
  EXPECT_EQ(b.substr(0, 6), "\x93NUMPY");
  EXPECT_EQ(b[6], 1);
  EXPECT_EQ(b[7], 0);
  const std::size_t hlen = static_cast<unsigned char>(b[8]) |
                           (static_cast<std::size_t>(static_cast<unsigned char>(b[9])) << 8);
  EXPECT_EQ((10 + hlen) % 64, 0u);
  ASSERT_EQ(b.size(), 10 + hlen + 24);
  const std::string header = b.substr(10, hlen);
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }";
  EXPECT_EQ(header.substr(0, dict.size()), dict);
  EXPECT_EQ(header.back(), '\n');
  EXPECT_EQ(header.find_first_not_of(' ', dict.size()), hlen - 1);
  EXPECT_EQ(b.substr(10 + hlen), float_bytes({0, 1, 2, 3, 4, 5}));

  Tensor one = Tensor::empty({5}, DType::f32);
  std::memset(one.data(), 0, 20);
  write_npy(path("one.npy"), one);
  EXPECT_NE(slurp(path("one.npy")).find("'shape': (5,), }"), std::string::npos);
}

TEST_F(NpyTest, HandMadeHeadersOfEveryVersion) {
  const std::vector<float> v = {1.5f, -2.0f, 3.25f, 4.0f, 5.0f, 6.0f};
  const std::string hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }";
  for (int major : {1, 2, 3}) {
    spit(path("v.npy"), npy_bytes(major, 0, hdr, float_bytes(v)));
    const NpyArray a = read_npy_f64(path("v.npy"));
    EXPECT_EQ(a.shape, (std::vector<std::int64_t>{3, 2})) << "version " << major;
    EXPECT_EQ(a.data, std::vector<double>(v.begin(), v.end())) << "version " << major;
  }
  // Other key order, double quotes, no trailing comma, tight spacing, Python-2 long suffix.
  spit(path("o.npy"),
       npy_bytes(1, 0, "{\"shape\":(3L,2L),\"fortran_order\":False,\"descr\":\"<f4\"}",
                 float_bytes(v)));
  EXPECT_EQ(read_npy_f64(path("o.npy")).shape, (std::vector<std::int64_t>{3, 2}));
  // Unpadded header is fine as long as it ends with a newline.
  spit(path("u.npy"), npy_bytes(1, 0, hdr + "\n", float_bytes(v), false));
  EXPECT_EQ(read_npy(path("u.npy")).shape(), (Tensor::Dims{3, 2}));
  // 1-D with "(n,)" and 0-d with "()".
  spit(path("one.npy"), npy_bytes(1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
                                  double_bytes({0.25, 8.0})));
  EXPECT_EQ(read_npy_f64(path("one.npy")).data, (std::vector<double>{0.25, 8.0}));
  spit(path("zero.npy"), npy_bytes(1, 0, "{'descr': '<f8', 'fortran_order': False, 'shape': (), }",
                                   double_bytes({42.0})));
  const NpyArray z = read_npy_f64(path("zero.npy"));
  EXPECT_TRUE(z.shape.empty());
  EXPECT_EQ(z.data, (std::vector<double>{42.0}));
}

// Writes `bytes` to a file and asserts that reading it throws Error(io) whose message names the
// file and contains `fragment`.
void expect_io_error(const std::string& p, const std::string& fragment, bool as_tensor = false) {
  try {
    if (as_tensor) {
      read_npy(p);
    } else {
      read_npy_f64(p);
    }
    ADD_FAILURE() << "no error for " << p << " (expected '" << fragment << "')";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::io) << e.what();
    const std::string m = e.what();
    EXPECT_NE(m.find(p), std::string::npos) << m;
    EXPECT_NE(m.find(fragment), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
}

const std::string kGood = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
const std::string kData = float_bytes({1, 2, 3, 4});

TEST_F(NpyTest, MissingAndEmptyFiles) {
  expect_io_error(path("nope.npy"), "cannot open");
  spit(path("empty.npy"), "");
  expect_io_error(path("empty.npy"), "too short");
  spit(path("text.npy"), "hello world, not numpy");
  expect_io_error(path("text.npy"), "magic");
}

TEST_F(NpyTest, UnsupportedVersion) {
  spit(path("v4.npy"), npy_bytes(4, 0, kGood, kData));
  expect_io_error(path("v4.npy"), "version 4.0");
  spit(path("v11.npy"), npy_bytes(1, 1, kGood, kData));
  expect_io_error(path("v11.npy"), "version 1.1");
}

TEST_F(NpyTest, TruncatedHeader) {
  const std::string full = npy_bytes(1, 0, kGood, kData);
  spit(path("t1.npy"), full.substr(0, 9));
  expect_io_error(path("t1.npy"), "truncated header length");
  spit(path("t2.npy"), full.substr(0, 40));
  expect_io_error(path("t2.npy"), "truncated header");
  spit(path("t3.npy"), npy_bytes(1, 0, kGood, kData, false));
  expect_io_error(path("t3.npy"), "no final newline");
}

TEST_F(NpyTest, MalformedDict) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"['descr', '<f4']", "expected '{'"},
      {"{'descr': '<f4', 'fortran_order': False}", "'shape' is missing"},
      {"{'fortran_order': False, 'shape': (2, 2)}", "'descr' is missing"},
      {"{'descr': '<f4', 'shape': (2, 2)}", "'fortran_order' is missing"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), 'extra': 1}", "'extra'"},
      {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)}", "twice"},
      {"{'descr': '<f4', 'fortran_order': false, 'shape': (2, 2)}", "True or False"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, -2)}", "non-negative integer"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (4)}", "(n,)"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': [2, 2]}", "expected '('"},
      {"{'descr': '<f4' 'fortran_order': False, 'shape': (2, 2)}", "expected ',' or '}'"},
      {"{'descr': '<f4, 'fortran_order': False, 'shape': (2, 2)}", "expected ',' or '}'"},
      {"{'descr' '<f4', 'fortran_order': False, 'shape': (2, 2)}", "expected ':'"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2)} x", "after the closing"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), } \x01", "control byte"},
      {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999, 2)}", "too large"},
  };
  for (const auto& [header, fragment] : cases) {
    SCOPED_TRACE(header);
    spit(path("m.npy"), npy_bytes(1, 0, header, kData));
    expect_io_error(path("m.npy"), fragment);
  }
}

TEST_F(NpyTest, FortranOrderRejected) {
  spit(path("f.npy"),
       npy_bytes(1, 0, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", kData));
  expect_io_error(path("f.npy"), "Fortran-order");
}

TEST_F(NpyTest, UnsupportedDtypes) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {">f4", "big-endian dtype '>f4'"},       {">f8", "big-endian dtype '>f8'"},
      {"<i8", "dtype '<i8' is not supported"}, {"|u1", "dtype '|u1' is not supported"},
      {"<f2", "dtype '<f2' is not supported"}, {"<c8", "dtype '<c8' is not supported"}};
  for (const auto& [descr, fragment] : cases) {
    SCOPED_TRACE(descr);
    spit(path("d.npy"),
         npy_bytes(1, 0, "{'descr': '" + descr + "', 'fortran_order': False, 'shape': (2, 2), }",
                   kData + kData));
    expect_io_error(path("d.npy"), fragment);
  }
}

TEST_F(NpyTest, DataSizeMustMatchShape) {
  spit(path("short.npy"), npy_bytes(1, 0, kGood, kData.substr(0, 13)));
  expect_io_error(path("short.npy"), "truncated data: shape needs 16 bytes, file has 13");
  spit(path("long.npy"), npy_bytes(2, 0, kGood, kData + "xyz"));
  expect_io_error(path("long.npy"), "3 unexpected bytes after the data");
}

// An empty array's other dimensions are bounded as well: their products are the strides of the
// tensor read_npy makes, and (0, 2^40, 2^40) overflowed them (found by tests/fuzz/fuzz_npy).
TEST_F(NpyTest, EmptyArrayDimensionsAreBounded) {
  spit(path("ok.npy"),
       npy_bytes(1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 1099511627776), }",
                 ""));
  const Tensor t = read_npy(path("ok.npy"));
  EXPECT_EQ(t.numel(), 0);
  EXPECT_EQ(t.shape(), (Tensor::Dims{0, std::int64_t{1} << 40}));
  for (const char* shape :
       {"(0, 1099511627776, 1099511627776)", "(1099511627776, 0, 2)", "(2, 1099511627776, 0)"}) {
    SCOPED_TRACE(shape);
    spit(
        path("big.npy"),
        npy_bytes(1, 0,
                  std::string("{'descr': '<f4', 'fortran_order': False, 'shape': ") + shape + ", }",
                  ""));
    expect_io_error(path("big.npy"), "too many elements");
    expect_io_error(path("big.npy"), "too many elements", true);
  }
}

TEST_F(NpyTest, TensorReadNeedsOneToFourDims) {
  spit(path("zero.npy"), npy_bytes(1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }",
                                   float_bytes({1})));
  expect_io_error(path("zero.npy"), "0 dimensions", true);
  spit(path("five.npy"),
       npy_bytes(1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 2, 1), }",
                 float_bytes({1, 2})));
  expect_io_error(path("five.npy"), "5 dimensions", true);
}

TEST_F(NpyTest, UnwritablePathNamesTheFile) {
  Tensor t = Tensor::zeros({2}, DType::f32);
  const std::string p = path("no/such/dir/x.npy");
  USP_EXPECT_ERROR(write_npy(p, t), io, p);
}

}  // namespace
}  // namespace usp
