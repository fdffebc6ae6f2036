// NumPy .npy files: read format versions 1.0, 2.0 and 3.0 holding little-endian float32 ('<f4')
// or float64 ('<f8') in C order; write version 1.0. Every problem (missing file, malformed or
// truncated header, unsupported dtype, big-endian data, Fortran order, wrong data size) throws
// Error(io) with a message naming the file and the problem.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "usp/tensor.hpp"

namespace usp {

// Contents of a .npy file as doubles (any number of dimensions; 0-d arrays have an empty shape).
struct NpyArray {
  std::vector<std::int64_t> shape;
  std::vector<double> data;  // row-major (C order)
  std::string descr;         // the file's dtype: "<f4" or "<f8"
};

// Reads a float32 or float64 .npy file exactly (float32 values widen losslessly).
NpyArray read_npy_f64(const std::string& path);

// Reads a float32 or float64 .npy file with 1 to Tensor::kMaxDims dimensions into a new contiguous
// fp32 host tensor (float64 values are rounded to nearest).
Tensor read_npy(const std::string& path, Allocator& alloc = default_host_allocator());

// Writes a host tensor of any dtype as float32 ('<f4', version 1.0, C order).
void write_npy(const std::string& path, const Tensor& t);
// Writes doubles as float64 ('<f8', version 1.0); data.size() must equal the product of shape.
void write_npy_f64(const std::string& path, const std::vector<std::int64_t>& shape,
                   const std::vector<double>& data);

}  // namespace usp
