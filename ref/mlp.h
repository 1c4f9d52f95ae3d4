// ref/mlp.h: the SwiGLU feed-forward block (spec §1.1, §1.4: the paper's text says
// SwiGLU and its size table GeGLU; we use SwiGLU):
//
//   a = x W1,  b = x W3,  g = silu(a) * b,  y = g W2,     silu(z) = z * sigmoid(z)
//
// No biases. The backward recomputes a, b and g from x (nothing is cached between the passes).
#pragma once
#include <cmath>

#include "ref/tensor.h"

namespace ref {

template <class S>
struct SwiGLUParams {
  Mat<S> W1, W3;  // (C, F): gate and up projections
  Mat<S> W2;      // (F, C): down projection
};

namespace detail {
template <class S>
S sigmoid(S z) {
  return S(1) / (S(1) + std::exp(-z));  // exp(-z) -> inf for very negative z gives 0, not NaN
}
// sigmoid of every entry, as one whole-array expression (so Eigen evaluates exp on SIMD packets
// instead of one libm call per entry). z: (N, F) -> (N, F)
template <class S>
Mat<S> sigmoid_all(const Mat<S>& z) {
  return (S(1) + (-z.array()).exp()).inverse().matrix();  // exp(-z) -> inf gives 0, not NaN
}
template <class S>
void expect_swiglu_shapes(const SwiGLUParams<S>& p, long C) {
  const long F = p.W1.cols();
  expect_shape("swiglu W1", p.W1, C, F);
  expect_shape("swiglu W3", p.W3, C, F);
  expect_shape("swiglu W2", p.W2, F, C);
}
}  // namespace detail

// x: (N, C), W1, W3: (C, F), W2: (F, C) -> y: (N, C)
template <class S>
Mat<S> swiglu_forward(const Mat<S>& x, const SwiGLUParams<S>& p) {
  detail::expect_swiglu_shapes(p, x.cols());
  Mat<S> a(x.rows(), p.W1.cols()), b(x.rows(), p.W3.cols());
  a.noalias() = x * p.W1;
  b.noalias() = x * p.W3;
  // g = silu(a) * b = a * sigmoid(a) * b, in place in a
  a.array() *= detail::sigmoid_all(a).array() * b.array();
  Mat<S> y(x.rows(), p.W2.cols());
  y.noalias() = a * p.W2;
  return y;
}

// x: (N, C), dy: (N, C) -> dx: (N, C); dp.W1, dp.W3: (C, F), dp.W2: (F, C), accumulated (+=).
template <class S>
Mat<S> swiglu_backward(const Mat<S>& x, const SwiGLUParams<S>& p, const Mat<S>& dy,
                       SwiGLUParams<S>& dp) {
  detail::expect_swiglu_shapes(p, x.cols());
  const long N = x.rows(), C = x.cols(), F = p.W1.cols();
  expect_shape("swiglu dy", dy, N, C);
  expect_shape("swiglu dW1", dp.W1, C, F);
  expect_shape("swiglu dW3", dp.W3, C, F);
  expect_shape("swiglu dW2", dp.W2, F, C);
  // recompute the forward: a = x W1, b = x W3, s = sigmoid(a), g = silu(a) * b = a * s * b
  Mat<S> a(N, F), b(N, F), g(N, F);
  a.noalias() = x * p.W1;
  b.noalias() = x * p.W3;
  const Mat<S> s = detail::sigmoid_all(a);
  g.array() = a.array() * s.array() * b.array();
  // forward: y = g W2, so dW2 += g^T dy, dg = dy W2^T
  dp.W2.noalias() += g.transpose() * dy;
  Mat<S> dg(N, F);
  dg.noalias() = dy * p.W2.transpose();
  // forward: g = silu(a) * b, so db = dg * silu(a), da = dg * b * silu'(a),
  //   silu'(z) = sigmoid(z) * (1 + z * (1 - sigmoid(z)));  da then overwrites a in place.
  const Mat<S> db = (dg.array() * a.array() * s.array()).matrix();
  a.array() = dg.array() * b.array() * s.array() * (S(1) + a.array() * (S(1) - s.array()));
  const Mat<S>& da = a;
  // forward: a = x W1, b = x W3, so dW1 += x^T da, dW3 += x^T db, dx = da W1^T + db W3^T
  dp.W1.noalias() += x.transpose() * da;
  dp.W3.noalias() += x.transpose() * db;
  Mat<S> dx(N, C);
  dx.noalias() = da * p.W1.transpose();
  dx.noalias() += db * p.W3.transpose();
  return dx;
}

}  // namespace ref
