// io/npy.h: NumPy .npy files, read and written without NumPy.
//
// The format (numpy.lib.format, NEP 1):
//   "\x93NUMPY" major minor             6 + 2 bytes; versions 1.0, 2.0 and 3.0 are read
//   header length                        2 bytes little-endian (1.0) or 4 bytes (2.0, 3.0)
//   header                               a Python dict literal, padded with spaces, ending in '\n':
//                                        {'descr': '<f4', 'fortran_order': False, 'shape': (B, T, H, D), }
//   data                                 prod(shape) items, C order (last index fastest)
//
// Supported: float32 ('<f4') and float64 ('<f8'), little-endian, C order, any rank (shape () is a
// scalar). Everything else is rejected with an NpyError whose message names the file and the problem:
// Fortran order, any other dtype (named: "int64", "float16", ...), big-endian data, a truncated file,
// a header whose shape does not match the number of data bytes, a malformed header dict.
//
// Arrays are held as double in memory whatever their file dtype: widening float32 to double is exact,
// so reading a float32 file and writing it back as float32 reproduces it bit for bit.
#pragma once
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ref/tensor.h"

namespace io {

enum class DType { f32, f64 };
const char* to_string(DType dt);  // "float32" / "float64"
int itemsize(DType dt);           // 4 / 8

// A bad or unsupported .npy file, or a failed read or write; the message says which file and why.
struct NpyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// One array: shape (d0, d1, ...) in C order. data.size() == numel().
struct NpyArray {
  DType dtype = DType::f64;  // the dtype it was read as / will be written as
  std::vector<long> shape;   // empty = a scalar (one element)
  std::vector<double> data;  // C order, widened to double

  long numel() const;
};

// "(2, 3)", "(5,)", "()": the shape as Python prints a tuple.
std::string shape_string(const std::vector<long>& shape);

// Read a .npy file; `what` names it in error messages (default: the path).
NpyArray read_npy(const std::string& path);
// Parse the bytes of a .npy file held in memory; `what` names it in error messages.
NpyArray parse_npy(const std::string& bytes, const std::string& what);

// Serialize to .npy bytes (format 1.0, or 2.0 when the header needs more than 65535 bytes) in
// a.dtype; float32 rounds each double to nearest.
std::string format_npy(const NpyArray& a);
// Write a .npy file (directly at path; see write_npy_files for the all-or-nothing version).
void write_npy(const std::string& path, const NpyArray& a);

// Convenience: an array of the given shape and dtype from a flat C-order buffer.
NpyArray make_npy(const std::vector<long>& shape, const float* data);   // dtype float32
NpyArray make_npy(const std::vector<long>& shape, const double* data);  // dtype float64

// Write several files into dir, all or nothing: every file goes to a hidden temporary name in dir
// first, and only when all of them are written are they renamed to their final names. If a write fails
// the temporaries are removed and an NpyError is thrown before any final name has been touched.
// files: (file name inside dir, e.g. "o.npy", its bytes). dir is created if missing.
void write_files_atomically(const std::string& dir,
                            const std::vector<std::pair<std::string, std::string>>& files);
// The same for arrays: (NAME, array) is written as dir/NAME.npy.
void write_npy_files(const std::string& dir, const std::vector<std::pair<std::string, NpyArray>>& arrays);

// Export a set of named float tensors, e.g. every parameter of a model, for use from NumPy/PyTorch:
// dir/NAME.npy for each tensor (float32), plus dir/config.json with config_json as its text, all or
// nothing (write_files_atomically). A Mat is written with shape (rows, cols); use the NpyArray
// overload to give another shape (a vector as (n,), a stack of matrices as (L, rows, cols), ...).
// NAME may contain letters, digits, '.', '_' and '-' only (it becomes a file name).
void write_npy_dir(const std::string& dir, const std::vector<std::pair<std::string, ref::Mat<float>>>& tensors,
                   const std::string& config_json);
void write_npy_dir(const std::string& dir, const std::vector<std::pair<std::string, NpyArray>>& tensors,
                   const std::string& config_json);

}  // namespace io
