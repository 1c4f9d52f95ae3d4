// ref/tensor.h: the few types every reference op uses.
//
// Layout convention (used by every function in ref/ and by the CUDA host API):
//   one sequence at a time; a batch is a loop over sequences in the caller.
//   activations are row-major matrices with one row per token:
//     x: (T, d_model)      q: (T, H*D)      k, v: (T, G*D)
//   head h of q is the column block [h*D, (h+1)*D); kv head g of k/v likewise.
//   GQA: query head h uses kv head g = h / (H/G)   (spec §2.6).
#pragma once
// GCC 12's AVX-512 intrinsics header initialises a variable with itself ("__m512 __Y = __Y;", GCC bug
// 105593), which -march=native turns into hundreds of false -Wmaybe-uninitialized warnings inside Eigen.
// Silenced for the Eigen headers only: the pragma applies by source location, so our code keeps them.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#include <Eigen/Dense>
#pragma GCC diagnostic pop
#include <stdexcept>
#include <string>
#include <vector>

namespace ref {

template <class Real>
using Mat = Eigen::Matrix<Real, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class Real>
using Vec = Eigen::Matrix<Real, Eigen::Dynamic, 1>;
template <class Real>
using RowVec = Eigen::Matrix<Real, 1, Eigen::Dynamic>;

// A shape mismatch is a programming or user error: say which tensor and both shapes.
inline void expect_shape(const char* name, long rows, long cols, long want_rows, long want_cols) {
  if (rows != want_rows || cols != want_cols)
    throw std::invalid_argument(std::string(name) + ": shape (" + std::to_string(rows) + ", " +
                                std::to_string(cols) + "), expected (" + std::to_string(want_rows) +
                                ", " + std::to_string(want_cols) + ")");
}
template <class M>
void expect_shape(const char* name, const M& m, long want_rows, long want_cols) {
  expect_shape(name, m.rows(), m.cols(), want_rows, want_cols);
}

}  // namespace ref
