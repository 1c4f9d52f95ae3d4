// ref/mlp.h: the SwiGLU feed-forward block (spec §1.1, §1.4: the paper's text says
// SwiGLU and its size table GeGLU; we use SwiGLU):
//
//   a = x W1,  b = x W3,  g = silu(a) * b,  y = g W2,     silu(z) = z * sigmoid(z)
//
// No biases. The backward needs a and b: the forward keeps them in a SwiGLUCache when given one (the
// training step does), else the backward recomputes them from x; s and g are recomputed (cheap,
// entry by entry).
#pragma once
#include <cmath>

#include "ref/tensor.h"

namespace ref {

template <class Real>
struct SwiGLUParams {
  Mat<Real> W1, W3;  // (C, F): gate and up projections
  Mat<Real> W2;      // (F, C): down projection
};

namespace detail {
template <class Real>
Real sigmoid(Real z) {
  return Real(1) / (Real(1) + std::exp(-z));  // exp(-z) -> inf for very negative z gives 0, not NaN
}
// sigmoid of every entry, as one whole-array expression (so Eigen evaluates exp on SIMD packets
// instead of one libm call per entry). z: (N, F) -> (N, F)
template <class Real>
Mat<Real> sigmoid_all(const Mat<Real>& z) {
  return (Real(1) + (-z.array()).exp()).inverse().matrix();  // exp(-z) -> inf gives 0, not NaN
}
template <class Real>
void expect_swiglu_shapes(const SwiGLUParams<Real>& p, long C) {
  const long F = p.W1.cols();
  expect_shape("swiglu W1", p.W1, C, F);
  expect_shape("swiglu W3", p.W3, C, F);
  expect_shape("swiglu W2", p.W2, F, C);
}
}  // namespace detail

// What swiglu_forward keeps for swiglu_backward.
template <class Real>
struct SwiGLUCache {
  Mat<Real> a, b;  // (N, F): x W1, x W3
};

// x: (N, C), W1, W3: (C, F), W2: (F, C) -> y: (N, C); with keep, a and b are kept there
template <class Real>
Mat<Real> swiglu_forward(const Mat<Real>& x, const SwiGLUParams<Real>& p, SwiGLUCache<Real>* keep = nullptr) {
  detail::expect_swiglu_shapes(p, x.cols());
  SwiGLUCache<Real> local;
  SwiGLUCache<Real>& k = keep ? *keep : local;
  k.a.resize(x.rows(), p.W1.cols());
  k.b.resize(x.rows(), p.W3.cols());
  k.a.noalias() = x * p.W1;
  k.b.noalias() = x * p.W3;
  // g = silu(a) * b = a * (sigmoid(a) * b)
  const Mat<Real> g = (k.a.array() * (detail::sigmoid_all(k.a).array() * k.b.array())).matrix();
  Mat<Real> y(x.rows(), p.W2.cols());
  y.noalias() = g * p.W2;
  return y;
}

// x: (N, C), dy: (N, C) -> dx: (N, C); dp.W1, dp.W3: (C, F), dp.W2: (F, C), accumulated (+=).
// kept: the forward's cache for this x (null: a and b are recomputed).
template <class Real>
Mat<Real> swiglu_backward(const Mat<Real>& x, const SwiGLUParams<Real>& p, const Mat<Real>& dy,
                          SwiGLUParams<Real>& dp, const SwiGLUCache<Real>* kept = nullptr) {
  detail::expect_swiglu_shapes(p, x.cols());
  const long N = x.rows(), C = x.cols(), F = p.W1.cols();
  expect_shape("swiglu dy", dy, N, C);
  expect_shape("swiglu dW1", dp.W1, C, F);
  expect_shape("swiglu dW3", dp.W3, C, F);
  expect_shape("swiglu dW2", dp.W2, F, C);
  // the forward's a = x W1, b = x W3 (kept, or recomputed); s = sigmoid(a), g = silu(a) * b = a * s * b
  Mat<Real> a(N, F), b(N, F), g(N, F);
  if (kept) {
    expect_shape("swiglu kept a", kept->a, N, F);
    a = kept->a;
    b = kept->b;
  } else {
    a.noalias() = x * p.W1;
    b.noalias() = x * p.W3;
  }
  const Mat<Real> s = detail::sigmoid_all(a);
  g.array() = a.array() * s.array() * b.array();
  // forward: y = g W2, so dW2 += g^T dy, dg = dy W2^T
  dp.W2.noalias() += g.transpose() * dy;
  Mat<Real> dg(N, F);
  dg.noalias() = dy * p.W2.transpose();
  // forward: g = silu(a) * b, so db = dg * silu(a), da = dg * b * silu'(a),
  //   silu'(z) = sigmoid(z) * (1 + z * (1 - sigmoid(z)));  da then overwrites a in place.
  const Mat<Real> db = (dg.array() * a.array() * s.array()).matrix();
  a.array() = dg.array() * b.array() * s.array() * (Real(1) + a.array() * (Real(1) - s.array()));
  const Mat<Real>& da = a;
  // forward: a = x W1, b = x W3, so dW1 += x^T da, dW3 += x^T db, dx = da W1^T + db W3^T
  dp.W1.noalias() += x.transpose() * da;
  dp.W3.noalias() += x.transpose() * db;
  Mat<Real> dx(N, C);
  dx.noalias() = da * p.W1.transpose();
  dx.noalias() += db * p.W3.transpose();
  return dx;
}

}  // namespace ref
