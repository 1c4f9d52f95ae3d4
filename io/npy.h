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

#include "io/files.h"
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

// Read a .npy file. It must be a regular file (a link to one is fine): a folder, a device or a fifo is
// refused, and so is a file longer than its header says, before its data is read (NpyError; a failure
// of the environment, e.g. permission denied, is io::FileFailed).
NpyArray read_npy(const std::string& path);
// Parse the bytes of a .npy file held in memory; `what` names it in error messages.
NpyArray parse_npy(const std::string& bytes, const std::string& what);

// Serialize to .npy bytes (format 1.0, or 2.0 when the header needs more than 65535 bytes) in
// a.dtype; float32 rounds each double to nearest.
std::string format_npy(const NpyArray& a);
// Write a .npy file at path (through a temporary and a rename, as write_files_atomically does).
void write_npy(const std::string& path, const NpyArray& a);

// Convenience: an array of the given shape and dtype from a flat C-order buffer.
NpyArray make_npy(const std::vector<long>& shape, const float* data);   // dtype float32
NpyArray make_npy(const std::vector<long>& shape, const double* data);  // dtype float64

// Write several files into dir, all or nothing: every file goes to a hidden temporary name in dir
// first, and only when all of them are written are they renamed to their final names. If a write fails
// the temporaries are removed and an NpyError is thrown before any final name has been touched.
// files: (file name inside dir, e.g. "o.npy", its bytes). dir is created if missing.
//
// What may be replaced (checked first, by check_output_files; io::FileRefused naming `flag`, nothing
// touched): dir must be a folder (or absent); an existing file at a final name must be a regular file
// of its own kind: a .npy file for NAME.npy, an earlier export's config.json for config.json; and none
// of `inputs`. Temporaries are created exclusively (io::create_exclusive). `stale` lists more names in
// dir (of the same kinds) that belong to the output set but are not written this time: they are removed.
// A set of several files replaces the earlier set as a whole (all of its files are removed just before
// the renames), so that dir never holds files of two runs side by side.
void check_output_files(const std::string& dir, const std::vector<std::string>& names, const std::string& flag,
                        const std::vector<std::string>& stale = {}, const std::vector<io::NamedInput>& inputs = {});
void write_files_atomically(const std::string& dir, const std::vector<std::pair<std::string, std::string>>& files,
                            const std::string& flag = "--out", const std::vector<std::string>& stale = {},
                            const std::vector<io::NamedInput>& inputs = {});
// The same for arrays: (NAME, array) is written as dir/NAME.npy.
void write_npy_files(const std::string& dir, const std::vector<std::pair<std::string, NpyArray>>& arrays,
                     const std::string& flag = "--out", const std::vector<std::string>& stale = {});

// Export a set of named float tensors, e.g. every parameter of a model, for use from NumPy/PyTorch:
// dir/NAME.npy for each tensor (float32), plus dir/config.json with config_json as its text, all or
// nothing (write_files_atomically; an earlier export in dir is replaced as a whole: the .npy files its
// config.json lists are removed). A Mat is written with shape (rows, cols); use the NpyArray
// overload to give another shape (a vector as (n,), a stack of matrices as (L, rows, cols), ...).
// NAME may contain letters, digits, '.', '_' and '-' only (it becomes a file name).
void write_npy_dir(const std::string& dir, const std::vector<std::pair<std::string, ref::Mat<float>>>& tensors,
                   const std::string& config_json);
void write_npy_dir(const std::string& dir, const std::vector<std::pair<std::string, NpyArray>>& tensors,
                   const std::string& config_json);

}  // namespace io
