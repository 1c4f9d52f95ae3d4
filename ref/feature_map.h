// ref/feature_map.h: the parameter-free feature maps phi of the RLA branch (spec section 2.4).
//
//   sm2      phi(x) = [softmax(x), softmax(-x)]   Dp = 2D   (Hedgehog-style, the paper's default)
//   relu2    phi(x) = [relu(x), relu(-x)]         Dp = 2D   (paper Table 4, "w. ReLU")
//   identity phi(x) = x                           Dp = D    (paper Table 4, "w. Identity")
//
// phi acts on one head's D-vector at a time (each softmax runs over the head dimension, with max
// subtraction), applied to the RAW q and k: no RoPE, no 1/sqrt(D), no qk-norm (spec 1.3, 2.4).
// With sm2 every phi(k) is non-negative and sums to 2, so phi(q) . phi(k) is in (0, 2].
//
// The work is done by two row kernels (detail::phi_row, detail::phi_row_backward) on raw pointers;
// the public functions loop over rows, or over (row, head) blocks for the (T, n*D) layout of q/k.
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
template <class S>
void phi_row(FeatureMap fm, const S* x, S* y, int D) {
  switch (fm) {
    case FeatureMap::sm2: {
      // y1 = softmax(x), y2 = softmax(-x); max subtraction: max(x) for the first, -min(x) for the second.
      S mx = x[0], mn = x[0];
      for (int i = 1; i < D; ++i) mx = std::max(mx, x[i]), mn = std::min(mn, x[i]);
      S z1 = 0, z2 = 0;
      for (int i = 0; i < D; ++i) {
        y[i] = std::exp(x[i] - mx);
        y[D + i] = std::exp(mn - x[i]);
        z1 += y[i];
        z2 += y[D + i];
      }
      for (int i = 0; i < D; ++i) y[i] /= z1, y[D + i] /= z2;
      return;
    }
    case FeatureMap::relu2:
      for (int i = 0; i < D; ++i) {
        y[i] = std::max(x[i], S(0));
        y[D + i] = std::max(-x[i], S(0));
      }
      return;
    case FeatureMap::identity:
      for (int i = 0; i < D; ++i) y[i] = x[i];
      return;
  }
}

// Backward of phi_row. x: (D), dy: (Dp) -> dx: (D)   (dx assigned)
template <class S>
void phi_row_backward(FeatureMap fm, const S* x, const S* dy, S* dx, int D) {
  switch (fm) {
    case FeatureMap::sm2: {
      // In the forward pass this was:  y1 = softmax(x),  y2 = softmax(-x),  phi = [y1, y2]
      // so now (softmax backward, the second half with the sign of -x):
      //   dx = y1 * (g1 - <g1, y1>) - y2 * (g2 - <g2, y2>),   [g1, g2] = dy   (spec 2.4)
      // y1, y2 are recomputed here from x rather than stored.
      S mx = x[0], mn = x[0];
      for (int i = 1; i < D; ++i) mx = std::max(mx, x[i]), mn = std::min(mn, x[i]);
      S z1 = 0, z2 = 0, dot1 = 0, dot2 = 0;
      for (int i = 0; i < D; ++i) {
        const S e1 = std::exp(x[i] - mx), e2 = std::exp(mn - x[i]);
        z1 += e1;
        z2 += e2;
        dot1 += dy[i] * e1;
        dot2 += dy[D + i] * e2;
      }
      dot1 /= z1;
      dot2 /= z2;
      for (int i = 0; i < D; ++i) {
        const S y1 = std::exp(x[i] - mx) / z1, y2 = std::exp(mn - x[i]) / z2;
        dx[i] = y1 * (dy[i] - dot1) - y2 * (dy[D + i] - dot2);
      }
      return;
    }
    case FeatureMap::relu2:
      // In the forward pass this was:  phi = [max(x, 0), max(-x, 0)]
      // so now:  dx = dy1 * [x > 0] - dy2 * [x < 0]   (0 at x = 0, a subgradient)
      for (int i = 0; i < D; ++i)
        dx[i] = (x[i] > S(0) ? dy[i] : S(0)) - (x[i] < S(0) ? dy[D + i] : S(0));
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
// This is the layout the RLA code uses: phi_forward_heads(q, H) is Q~ = phi(Q) of spec 2.8.
template <class S>
Mat<S> phi_forward_heads(FeatureMap fm, const Mat<S>& x, int n_heads) {
  if (n_heads <= 0 || x.cols() == 0 || x.cols() % n_heads != 0)
    throw std::invalid_argument("phi_forward_heads: columns not divisible by the number of heads");
  const int D = int(x.cols() / n_heads), Dp = feature_dim(fm, D);
  Mat<S> y(x.rows(), long(n_heads) * Dp);
  for (long t = 0; t < x.rows(); ++t)
    for (int h = 0; h < n_heads; ++h)
      detail::phi_row(fm, x.data() + t * x.cols() + long(h) * D, y.data() + t * y.cols() + long(h) * Dp, D);
  return y;
}

// x: (N, n_heads*D), dphi: (N, n_heads*Dp) -> dx: (N, n_heads*D)
// In the forward pass this was: phi = phi_forward_heads(fm, x, n_heads)  (see detail::phi_row_backward).
template <class S>
Mat<S> phi_backward_heads(FeatureMap fm, const Mat<S>& x, const Mat<S>& dphi, int n_heads) {
  if (n_heads <= 0 || x.cols() == 0 || x.cols() % n_heads != 0)
    throw std::invalid_argument("phi_backward_heads: columns not divisible by the number of heads");
  const int D = int(x.cols() / n_heads), Dp = feature_dim(fm, D);
  expect_shape("phi_backward dphi", dphi, x.rows(), long(n_heads) * Dp);
  Mat<S> dx(x.rows(), x.cols());
  for (long t = 0; t < x.rows(); ++t)
    for (int h = 0; h < n_heads; ++h)
      detail::phi_row_backward(fm, x.data() + t * x.cols() + long(h) * D,
                               dphi.data() + t * dphi.cols() + long(h) * Dp,
                               dx.data() + t * dx.cols() + long(h) * D, D);
  return dx;
}

// phi row-wise over a single head. x: (N, D) -> (N, Dp)
template <class S>
Mat<S> phi_forward(FeatureMap fm, const Mat<S>& x) {
  return phi_forward_heads(fm, x, 1);
}

// x: (N, D), dphi: (N, Dp) -> dx: (N, D)
// In the forward pass this was: phi = phi_forward(fm, x)
template <class S>
Mat<S> phi_backward(FeatureMap fm, const Mat<S>& x, const Mat<S>& dphi) {
  return phi_backward_heads(fm, x, dphi, 1);
}

}  // namespace ref
