// ref/feature_map.h: the parameter-free feature maps phi of the RLA branch (spec §2.4).
//
//   sm2      phi(x) = [softmax(x), softmax(-x)]   Dp = 2D   (Hedgehog-style, the paper's default)
//   relu2    phi(x) = [relu(x), relu(-x)]         Dp = 2D   (paper Table 4, "w. ReLU")
//   identity phi(x) = x                           Dp = D    (paper Table 4, "w. Identity")
//
// phi acts on one head's D-vector at a time (each softmax runs over the head dimension, with max
// subtraction), applied to the RAW q and k: no RoPE, no 1/sqrt(D), no qk-norm (spec §1.3, §2.4).
// With sm2 every phi(k) is non-negative and sums to 2, so phi(q) . phi(k) is in (0, 2].
//
// The work is done by two row kernels (detail::phi_row, detail::phi_row_backward) on raw pointers;
// the public functions loop over rows, or over (row, head) blocks for the (T, n*D) layout of q/k.
// The backward kernel reads the forward output phi(x) rather than x (every map's derivative is a
// function of its output), so callers that keep phi(x), like the RLA backward, skip the exps.
#pragma once
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "ref/tensor.h"

namespace ref {

enum class FeatureMap { sm2, relu2, identity };

inline FeatureMap parse_feature_map(const std::string& s) {
  if (s == "sm2") return FeatureMap::sm2;
  if (s == "relu2") return FeatureMap::relu2;
  if (s == "identity") return FeatureMap::identity;
  throw std::invalid_argument("unknown feature map '" + s + "' (expected sm2, relu2 or identity)");
}

inline const char* to_string(FeatureMap fm) {
  switch (fm) {
    case FeatureMap::sm2: return "sm2";
    case FeatureMap::relu2: return "relu2";
    case FeatureMap::identity: return "identity";
  }
  return "?";
}

// Width Dp of phi(x) for a head dimension D: 2D for sm2 and relu2, D for identity.
inline int feature_dim(FeatureMap fm, int D) { return fm == FeatureMap::identity ? D : 2 * D; }

namespace detail {

// phi of one head vector. x: (D) -> y: (Dp)
template <class Real>
void phi_row(FeatureMap fm, const Real* x, Real* y, int D) {
  switch (fm) {
    case FeatureMap::sm2: {
      // y1 = softmax(x), y2 = softmax(-x); max subtraction: max(x) for the first, -min(x) for the second.
      // Whole-array expressions, so Eigen evaluates exp on SIMD packets (one libm call per entry
      // was the largest single cost of a rattn layer's training step).
      using Arr = Eigen::Array<Real, Eigen::Dynamic, 1>;
      const Eigen::Map<const Arr> xv(x, D);
      Eigen::Map<Arr> y1(y, D), y2(y + D, D);
      y1 = (xv - xv.maxCoeff()).exp();
      y2 = (xv.minCoeff() - xv).exp();
      y1 /= y1.sum();
      y2 /= y2.sum();
      return;
    }
    case FeatureMap::relu2:
      for (int i = 0; i < D; ++i) {
        y[i] = std::max(x[i], Real(0));
        y[D + i] = std::max(-x[i], Real(0));
      }
      return;
    case FeatureMap::identity:
      for (int i = 0; i < D; ++i) y[i] = x[i];
      return;
  }
}

// Backward of phi_row, written in terms of the forward OUTPUT y = phi(x), which the RLA code has
// at hand (Q~, K~), so no exp is recomputed. y, dy: (Dp) -> dx: (D)   (dx assigned)
template <class Real>
void phi_row_backward(FeatureMap fm, const Real* y, const Real* dy, Real* dx, int D) {
  switch (fm) {
    case FeatureMap::sm2: {
      // In the forward pass this was:  y1 = softmax(x),  y2 = softmax(-x),  phi = [y1, y2]
      // so now (softmax backward, the second half with the sign of -x):
      //   dx = y1 * (g1 - <g1, y1>) - y2 * (g2 - <g2, y2>),   [g1, g2] = dy   (spec §2.4)
      const Real* y1 = y;
      const Real* y2 = y + D;
      Real dot1 = 0, dot2 = 0;
      for (int i = 0; i < D; ++i) dot1 += dy[i] * y1[i], dot2 += dy[D + i] * y2[i];
      for (int i = 0; i < D; ++i) dx[i] = y1[i] * (dy[i] - dot1) - y2[i] * (dy[D + i] - dot2);
      return;
    }
    case FeatureMap::relu2:
      // In the forward pass this was:  phi = [max(x, 0), max(-x, 0)]
      // so now:  dx = dy1 * [x > 0] - dy2 * [x < 0]   (0 at x = 0, a subgradient);
      // x > 0 iff y1 > 0 and x < 0 iff y2 > 0.
      for (int i = 0; i < D; ++i)
        dx[i] = (y[i] > Real(0) ? dy[i] : Real(0)) - (y[D + i] > Real(0) ? dy[D + i] : Real(0));
      return;
    case FeatureMap::identity:
      // In the forward pass this was:  phi = x,  so now:  dx = dy
      for (int i = 0; i < D; ++i) dx[i] = dy[i];
      return;
  }
}

}  // namespace detail

// phi of every head of every row.
// x: (N, n_heads*D) -> (N, n_heads*Dp); head h of row t maps columns [h*D,(h+1)*D) to [h*Dp,(h+1)*Dp).
// This is the layout the RLA code uses: phi_forward_heads(q, H) is Q~ = phi(Q) of spec §2.8.
template <class Real>
Mat<Real> phi_forward_heads(FeatureMap fm, const Mat<Real>& x, int n_heads) {
  if (n_heads <= 0 || x.cols() == 0 || x.cols() % n_heads != 0)
    throw std::invalid_argument("phi_forward_heads: columns not divisible by the number of heads");
  const int D = int(x.cols() / n_heads), Dp = feature_dim(fm, D);
  Mat<Real> y(x.rows(), long(n_heads) * Dp);
  for (long t = 0; t < x.rows(); ++t)
    for (int h = 0; h < n_heads; ++h)
      detail::phi_row(fm, x.data() + t * x.cols() + long(h) * D, y.data() + t * y.cols() + long(h) * Dp, D);
  return y;
}

// Backward from the saved forward output phi = phi_forward_heads(fm, x, n_heads) (the cheap path:
// no exp). phi, dphi: (N, n_heads*Dp) -> dx: (N, n_heads*D)
// In the forward pass this was: phi = phi_forward_heads(fm, x, n_heads)  (see detail::phi_row_backward).
template <class Real>
Mat<Real> phi_backward_heads_from_phi(FeatureMap fm, const Mat<Real>& phi, const Mat<Real>& dphi, int n_heads) {
  const int Dp = n_heads > 0 ? int(phi.cols() / n_heads) : 0;
  if (n_heads <= 0 || phi.cols() == 0 || phi.cols() % n_heads != 0 || (fm != FeatureMap::identity && Dp % 2))
    throw std::invalid_argument("phi_backward_heads_from_phi: phi width is not n_heads*Dp");
  const int D = fm == FeatureMap::identity ? Dp : Dp / 2;
  expect_shape("phi_backward dphi", dphi, phi.rows(), phi.cols());
  Mat<Real> dx(phi.rows(), long(n_heads) * D);
  for (long t = 0; t < phi.rows(); ++t)
    for (int h = 0; h < n_heads; ++h)
      detail::phi_row_backward(fm, phi.data() + t * phi.cols() + long(h) * Dp,
                               dphi.data() + t * dphi.cols() + long(h) * Dp,
                               dx.data() + t * dx.cols() + long(h) * D, D);
  return dx;
}

// x: (N, n_heads*D), dphi: (N, n_heads*Dp) -> dx: (N, n_heads*D)   (recomputes phi(x) first)
// In the forward pass this was: phi = phi_forward_heads(fm, x, n_heads)
template <class Real>
Mat<Real> phi_backward_heads(FeatureMap fm, const Mat<Real>& x, const Mat<Real>& dphi, int n_heads) {
  if (n_heads <= 0 || x.cols() == 0 || x.cols() % n_heads != 0)
    throw std::invalid_argument("phi_backward_heads: columns not divisible by the number of heads");
  const int D = int(x.cols() / n_heads), Dp = feature_dim(fm, D);
  expect_shape("phi_backward dphi", dphi, x.rows(), long(n_heads) * Dp);
  return phi_backward_heads_from_phi(fm, phi_forward_heads(fm, x, n_heads), dphi, n_heads);
}

// phi row-wise over a single head. x: (N, D) -> (N, Dp)
template <class Real>
Mat<Real> phi_forward(FeatureMap fm, const Mat<Real>& x) {
  return phi_forward_heads(fm, x, 1);
}

// x: (N, D), dphi: (N, Dp) -> dx: (N, D)
// In the forward pass this was: phi = phi_forward(fm, x)
template <class Real>
Mat<Real> phi_backward(FeatureMap fm, const Mat<Real>& x, const Mat<Real>& dphi) {
  return phi_backward_heads(fm, x, dphi, 1);
}

}  // namespace ref
