// ref/rope.h: rotary position embedding (RoPE), interleaved-pair form (RoFormer, axlearn).
//
// Spec section 1.3 and "Project decisions": local layers only, SWA branch only (the RLA branch
// reads raw q/k), theta = 5e5 by default. Pair i of a head is the dims (2i, 2i+1); it is rotated by
//     angle(pos, i) = pos * theta^(-2i/D),      i = 0 .. D/2 - 1
//     y[2i]   = x[2i] cos(angle) - x[2i+1] sin(angle)
//     y[2i+1] = x[2i] sin(angle) + x[2i+1] cos(angle)
// i.e. y = x cos + rotate_half(x) sin with rotate_half(x) = [-x1, x0, -x3, x2, ...] (axlearn).
// Row r of the input is the token at position pos = pos0 + r; decode passes pos0 = t for one row.
// The angle and its cos/sin are computed in double for both float and double inputs, so the two
// precisions rotate by the same angle.
#pragma once
#include <cmath>
#include <stdexcept>

#include "ref/tensor.h"

namespace ref {

inline constexpr double kDefaultRopeTheta = 5e5;

namespace detail {
// x: (T, n_heads*D) -> (T, n_heads*D). sign = +1 rotates by +angle (R), -1 by -angle (R^T = R^-1).
template <class S>
Mat<S> rope_rotate(const Mat<S>& x, int n_heads, double theta, int pos0, int sign) {
  if (n_heads <= 0 || x.cols() % n_heads != 0)
    throw std::invalid_argument("rope: columns " + std::to_string(x.cols()) +
                                " not divisible by n_heads " + std::to_string(n_heads));
  const long D = x.cols() / n_heads;
  if (D % 2 != 0) throw std::invalid_argument("rope: head dim D must be even, got " + std::to_string(D));
  Mat<S> y(x.rows(), x.cols());
  for (long r = 0; r < x.rows(); ++r) {
    const double pos = double(pos0 + r);
    for (long i = 0; i < D / 2; ++i) {
      const double angle = pos * std::pow(theta, -2.0 * double(i) / double(D));
      const S c = S(std::cos(angle)), s = S(sign * std::sin(angle));
      for (int h = 0; h < n_heads; ++h) {
        const long c0 = h * D + 2 * i, c1 = c0 + 1;
        const S x0 = x(r, c0), x1 = x(r, c1);
        y(r, c0) = x0 * c - x1 * s;
        y(r, c1) = x0 * s + x1 * c;
      }
    }
  }
  return y;
}
}  // namespace detail

// RoPE forward.
// x: (T, n_heads*D), row r at position pos0 + r  ->  y: (T, n_heads*D)
template <class S>
Mat<S> rope_forward(const Mat<S>& x, int n_heads, double theta = kDefaultRopeTheta, int pos0 = 0) {
  return detail::rope_rotate(x, n_heads, theta, pos0, +1);
}

// RoPE backward: the rotation is orthogonal, so dx = R^T dy (rotation by -angle).
// In the forward pass this was:  y[2i] = x[2i] c - x[2i+1] s,  y[2i+1] = x[2i] s + x[2i+1] c
// so now:                        dx[2i] = dy[2i] c + dy[2i+1] s,  dx[2i+1] = -dy[2i] s + dy[2i+1] c
// dy: (T, n_heads*D) -> dx: (T, n_heads*D)
template <class S>
Mat<S> rope_backward(const Mat<S>& dy, int n_heads, double theta = kDefaultRopeTheta, int pos0 = 0) {
  return detail::rope_rotate(dy, n_heads, theta, pos0, -1);
}

}  // namespace ref
