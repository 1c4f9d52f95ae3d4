// ref/linear.h: the linear layer, y = x W (no bias; every projection in the model: W_Q, W_K, W_V,
// W_O (spec §2.1), the MLP matrices and the output head).
#pragma once
#include "ref/tensor.h"

namespace ref {

// x: (N, in), W: (in, out) -> y: (N, out);  y = x W
template <class Real>
Mat<Real> linear_forward(const Mat<Real>& x, const Mat<Real>& W) {
  expect_shape("linear x", x, x.rows(), W.rows());
  Mat<Real> y(x.rows(), W.cols());
  y.noalias() = x * W;
  return y;
}

// x: (N, in), W: (in, out), dy: (N, out) -> dx: (N, in); dW: (in, out), accumulated (+=).
// In the forward pass this was: y = x W, so now
//   dW += x^T dy
//   dx  = dy W^T
template <class Real>
Mat<Real> linear_backward(const Mat<Real>& x, const Mat<Real>& W, const Mat<Real>& dy, Mat<Real>& dW) {
  expect_shape("linear x", x, x.rows(), W.rows());
  expect_shape("linear dy", dy, x.rows(), W.cols());
  expect_shape("linear dW", dW, W.rows(), W.cols());
  dW.noalias() += x.transpose() * dy;
  Mat<Real> dx(x.rows(), W.rows());
  dx.noalias() = dy * W.transpose();
  return dx;
}

}  // namespace ref
