// NumPy .npy reader and writer (format: numpy/lib/format.py, versions 1.0-3.0).
#include "usp/npy.hpp"

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <sstream>
#include <string_view>

#include "usp/error.hpp"

namespace usp {
namespace {

constexpr char kMagic[] = "\x93NUMPY";
constexpr std::size_t kMagicLen = 6;
// Shapes larger than this many elements are rejected as malformed (2^40 values).
constexpr std::int64_t kMaxElements = std::int64_t{1} << 40;

[[noreturn]] void fail(const std::string& path, const std::string& problem) {
  USP_FAIL(io, "npy file '", path, "': ", problem);
}

template <class T>
T load_le(const unsigned char* p) {
  unsigned char b[sizeof(T)];
  std::memcpy(b, p, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) std::reverse(b, b + sizeof(T));
  T v;
  std::memcpy(&v, b, sizeof(T));
  return v;
}

template <class T>
void store_le(T v, unsigned char* p) {
  std::memcpy(p, &v, sizeof(T));
  if constexpr (std::endian::native == std::endian::big) std::reverse(p, p + sizeof(T));
}

// Printable, single-line, at most ~100 characters.
std::string quoted(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) {
      out += '?';
    } else {
      out += c;
    }
    if (out.size() > 100) {
      out += "...";
      break;
    }
  }
  return out + "'";
}

// A strict parser for the header dict numpy writes:
//   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
class HeaderParser {
 public:
  HeaderParser(std::string_view text, const std::string& path) : s_(text), path_(path) {}

  struct Result {
    std::string descr;
    bool fortran_order = false;
    std::vector<std::int64_t> shape;
  };

  Result parse() {
    Result r;
    bool have_descr = false, have_order = false, have_shape = false;
    skip_ws();
    expect('{');
    skip_ws();
    while (!at('}')) {
      const std::string key = parse_string();
      skip_ws();
      expect(':');
      skip_ws();
      if (key == "descr") {
        if (have_descr) bad("key 'descr' appears twice");
        have_descr = true;
        r.descr = parse_string();
      } else if (key == "fortran_order") {
        if (have_order) bad("key 'fortran_order' appears twice");
        have_order = true;
        r.fortran_order = parse_bool();
      } else if (key == "shape") {
        if (have_shape) bad("key 'shape' appears twice");
        have_shape = true;
        r.shape = parse_shape();
      } else {
        bad("unexpected key " + quoted(key) + " (allowed: descr, fortran_order, shape)");
      }
      skip_ws();
      if (at(',')) {
        ++i_;
        skip_ws();
      } else if (!at('}')) {
        bad("expected ',' or '}'");
      }
    }
    ++i_;
    skip_ws();
    if (i_ != s_.size()) bad("unexpected text after the closing '}'");
    if (!have_descr) bad("key 'descr' is missing");
    if (!have_order) bad("key 'fortran_order' is missing");
    if (!have_shape) bad("key 'shape' is missing");
    return r;
  }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    fail(path_,
         "malformed header: " + what + " at offset " + std::to_string(i_) + " of " + quoted(s_));
  }
  bool at(char c) const { return i_ < s_.size() && s_[i_] == c; }
  void expect(char c) {
    if (!at(c)) bad(std::string("expected '") + c + "'");
    ++i_;
  }
  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n')) ++i_;
  }
  std::string parse_string() {
    if (!at('\'') && !at('"')) bad("expected a quoted string");
    const char q = s_[i_++];
    std::string out;
    while (i_ < s_.size() && s_[i_] != q) {
      if (s_[i_] == '\\') bad("escapes in strings are not supported");
      out += s_[i_++];
    }
    if (i_ >= s_.size()) bad("unterminated string");
    ++i_;
    return out;
  }
  bool parse_bool() {
    if (s_.substr(i_, 4) == "True") {
      i_ += 4;
      return true;
    }
    if (s_.substr(i_, 5) == "False") {
      i_ += 5;
      return false;
    }
    bad("expected True or False");
  }
  std::int64_t parse_int() {
    if (i_ >= s_.size() || s_[i_] < '0' || s_[i_] > '9') bad("expected a non-negative integer");
    std::int64_t v = 0;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      if (v > (kMaxElements - (s_[i_] - '0')) / 10) bad("dimension too large");
      v = v * 10 + (s_[i_++] - '0');
    }
    if (at('L')) ++i_;  // Python 2 long suffix
    return v;
  }
  std::vector<std::int64_t> parse_shape() {
    std::vector<std::int64_t> shape;
    expect('(');
    skip_ws();
    bool comma_after_last = false;
    while (!at(')')) {
      shape.push_back(parse_int());
      skip_ws();
      comma_after_last = false;
      if (at(',')) {
        ++i_;
        comma_after_last = true;
        skip_ws();
      } else if (!at(')')) {
        bad("expected ',' or ')' in shape");
      }
    }
    // A one-element tuple must be written "(n,)".
    if (shape.size() == 1 && !comma_after_last) bad("shape (n) must be written (n,)");
    ++i_;
    return shape;
  }

  std::string_view s_;
  const std::string& path_;
  std::size_t i_ = 0;
};

struct RawFile {
  std::string descr;
  std::vector<std::int64_t> shape;
  std::int64_t count = 0;
  std::string bytes;  // the whole file
  std::size_t data_offset = 0;
};

RawFile read_raw(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, std::string("cannot open for reading: ") + std::strerror(errno));
  RawFile f;
  f.bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) fail(path, "read error");
  const auto* b = reinterpret_cast<const unsigned char*>(f.bytes.data());
  const std::size_t n = f.bytes.size();

  if (n < kMagicLen + 2 || std::memcmp(b, kMagic, kMagicLen) != 0) {
    fail(path, n < kMagicLen + 2 ? "file too short to be .npy (" + std::to_string(n) + " bytes)"
                                 : "not a .npy file (missing the \\x93NUMPY magic)");
  }
  const int major = b[6], minor = b[7];
  if (major < 1 || major > 3 || minor != 0) {
    fail(path, "unsupported format version " + std::to_string(major) + "." + std::to_string(minor) +
                   " (supported: 1.0, 2.0, 3.0)");
  }
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  if (n < kMagicLen + 2 + len_bytes) fail(path, "truncated header length");
  const std::size_t header_len =
      major == 1 ? load_le<std::uint16_t>(b + 8) : load_le<std::uint32_t>(b + 8);
  const std::size_t header_start = kMagicLen + 2 + len_bytes;
  if (n - header_start < header_len) {
    fail(path, "truncated header: " + std::to_string(header_len) + " bytes announced, " +
                   std::to_string(n - header_start) + " present");
  }
  std::string_view header(f.bytes.data() + header_start, header_len);
  if (header.empty() || header.back() != '\n') fail(path, "malformed header: no final newline");
  for (char c : header) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x80 || (u < 0x20 && c != '\n' && c != '\t')) {
      fail(path, "malformed header: non-ASCII or control byte");
    }
  }
  const auto h = HeaderParser(header, path).parse();
  if (h.fortran_order) {
    fail(path, "Fortran-order arrays are not supported (save with np.ascontiguousarray)");
  }
  if (h.descr == ">f4" || h.descr == ">f8") {
    fail(path, "big-endian dtype " + quoted(h.descr) +
                   " is not supported (convert with arr.astype('<" + h.descr.substr(1) + "'))");
  }
  if (h.descr != "<f4" && h.descr != "<f8") {
    fail(path, "dtype " + quoted(h.descr) + " is not supported (allowed: '<f4', '<f8')");
  }
  // The bound is on the product of the non-zero dimensions, so that an empty array cannot carry
  // dimensions whose products (a tensor's strides) overflow: (0, 2^40, 2^40) is rejected too.
  std::int64_t nonzero = 1;
  bool empty = false;
  for (std::int64_t d : h.shape) {
    if (d == 0) {
      empty = true;
      continue;
    }
    if (nonzero > kMaxElements / d) fail(path, "shape has too many elements");
    nonzero *= d;
  }
  const std::int64_t count = empty ? 0 : nonzero;
  const std::size_t item = h.descr == "<f4" ? 4 : 8;
  f.data_offset = header_start + header_len;
  const std::size_t want = static_cast<std::size_t>(count) * item;
  const std::size_t have = n - f.data_offset;
  if (have < want) {
    fail(path, "truncated data: shape needs " + std::to_string(want) + " bytes, file has " +
                   std::to_string(have));
  }
  if (have > want) {
    fail(path, std::to_string(have - want) + " unexpected bytes after the data (shape needs " +
                   std::to_string(want) + ")");
  }
  f.descr = h.descr;
  f.shape = h.shape;
  f.count = count;
  return f;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    s += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) s += ",";
    if (i + 1 < shape.size()) s += " ";
  }
  return s + ")";
}

void write_file(const std::string& path, const std::string& descr,
                const std::vector<std::int64_t>& shape, const unsigned char* data,
                std::size_t bytes) {
  std::string header =
      "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape_text(shape) + ", }";
  // Pad with spaces so that magic + version + length + header is a multiple of 64, then '\n'.
  const std::size_t prefix = kMagicLen + 2 + 2;
  const std::size_t total = (prefix + header.size() + 1 + 63) / 64 * 64;
  header.append(total - prefix - header.size() - 1, ' ');
  header += '\n';
  if (header.size() > std::numeric_limits<std::uint16_t>::max()) {
    fail(path, "header too long for format 1.0");
  }
  std::string out(kMagic, kMagicLen);
  out += '\x01';
  out += '\x00';
  unsigned char len[2];
  store_le<std::uint16_t>(static_cast<std::uint16_t>(header.size()), len);
  out.append(reinterpret_cast<const char*>(len), 2);
  out += header;
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) fail(path, std::string("cannot open for writing: ") + std::strerror(errno));
  f.write(out.data(), static_cast<std::streamsize>(out.size()));
  f.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(bytes));
  f.close();
  if (!f) fail(path, "write failed");
}

}  // namespace

NpyArray read_npy_f64(const std::string& path) {
  RawFile f = read_raw(path);
  NpyArray a;
  a.shape = f.shape;
  a.descr = f.descr;
  a.data.resize(static_cast<std::size_t>(f.count));
  const auto* p = reinterpret_cast<const unsigned char*>(f.bytes.data()) + f.data_offset;
  if (f.descr == "<f4") {
    for (std::size_t i = 0; i < a.data.size(); ++i) a.data[i] = load_le<float>(p + 4 * i);
  } else {
    for (std::size_t i = 0; i < a.data.size(); ++i) a.data[i] = load_le<double>(p + 8 * i);
  }
  return a;
}

Tensor read_npy(const std::string& path, Allocator& alloc) {
  RawFile f = read_raw(path);
  if (f.shape.empty() || f.shape.size() > static_cast<std::size_t>(Tensor::kMaxDims)) {
    fail(path, "array has " + std::to_string(f.shape.size()) + " dimensions " +
                   shape_text(f.shape) + ", expected 1 to " + std::to_string(Tensor::kMaxDims));
  }
  Tensor t = Tensor::empty(f.shape, DType::f32, alloc);
  auto* out = t.data_as<float>();
  const auto* p = reinterpret_cast<const unsigned char*>(f.bytes.data()) + f.data_offset;
  const auto n = static_cast<std::size_t>(f.count);
  if (f.descr == "<f4") {
    for (std::size_t i = 0; i < n; ++i) out[i] = load_le<float>(p + 4 * i);
  } else {
    for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<float>(load_le<double>(p + 8 * i));
  }
  return t;
}

void write_npy(const std::string& path, const Tensor& t) {
  USP_CHECK_ARG(t.defined(), "write_npy('", path, "'): tensor is undefined");
  USP_CHECK_ARG(t.device() == Device::host, "write_npy('", path,
                "'): tensor must be on the host, got ", t.describe());
  const Tensor f = to_dtype(t, DType::f32);
  const auto n = static_cast<std::size_t>(f.numel());
  std::vector<unsigned char> bytes(n * 4);
  const float* src = f.data_as<float>();
  for (std::size_t i = 0; i < n; ++i) store_le<float>(src[i], bytes.data() + 4 * i);
  write_file(path, "<f4", f.shape(), bytes.data(), bytes.size());
}

void write_npy_f64(const std::string& path, const std::vector<std::int64_t>& shape,
                   const std::vector<double>& data) {
  std::int64_t count = 1;
  for (std::int64_t d : shape) {
    USP_CHECK_ARG(d >= 0, "write_npy_f64('", path, "'): negative dimension ", d);
    count *= d;
  }
  USP_CHECK_ARG(static_cast<std::size_t>(count) == data.size(), "write_npy_f64('", path,
                "'): shape ", shape_text(shape), " holds ", count, " values, data has ",
                data.size());
  std::vector<unsigned char> bytes(data.size() * 8);
  for (std::size_t i = 0; i < data.size(); ++i) store_le<double>(data[i], bytes.data() + 8 * i);
  write_file(path, "<f8", shape, bytes.data(), bytes.size());
}

}  // namespace usp
