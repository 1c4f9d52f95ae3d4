// ref/rope.h: rotary position embedding (RoPE), interleaved-pair form (RoFormer, axlearn).
//
// spec §1.3 and §0: local layers only, SWA branch only (the RLA branch
// reads raw q/k), theta = 5e5 by default. Pair i of a head is the dims (2i, 2i+1); it is rotated by
//     angle(pos, i) = pos * theta^(-2i/D),      i = 0 .. D/2 - 1
//     y[2i]   = x[2i] cos(angle) - x[2i+1] sin(angle)
//     y[2i+1] = x[2i] sin(angle) + x[2i+1] cos(angle)
// i.e. y = x cos + rotate_half(x) sin with rotate_half(x) = [-x1, x0, -x3, x2, ...] (axlearn).
// Row r of the input is the token at position pos = pos0 + r; decode passes pos0 = t for one row.
// The angle and its cos/sin are computed in double for both float and double inputs, so the two
// precisions rotate by the same angle.
#pragma once
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "ref/tensor.h"

namespace ref {

inline constexpr double kDefaultRopeTheta = 5e5;

namespace detail {
// cos and sin of angle(pos, i) = pos * theta^(-2i/D), in double.
inline void rope_angle(double theta, long D, long pos, long i, double& c, double& s) {
  const double angle = double(pos) * std::pow(theta, -2.0 * double(i) / double(D));
  c = std::cos(angle);
  s = std::sin(angle);
}

// The cos/sin table of positions [0, n) for one (theta, D), entry (pos, i) at pos * D/2 + i.
// Every call at the same theta and D rotates by the same angles, so each thread keeps the last
// table and grows it (doubling) when a later call reaches further positions, up to
// kRopeTablePositions; the values are the ones rope_angle gives, so the table changes the cost
// (the pow/cos/sin per (row, pair) were most of RoPE's time in training), never the result.
inline constexpr long kRopeTablePositions = 1L << 16;
struct RopeTable {
  double theta = 0;
  long D = 0, n = 0;
  std::vector<double> cos, sin;  // (n, D/2)
};
inline const RopeTable& rope_table(double theta, long D, long n_pos) {
  thread_local RopeTable tab;
  if (tab.theta != theta || tab.D != D || tab.n < n_pos) {
    long n = (tab.theta == theta && tab.D == D) ? std::max(n_pos, 2 * tab.n) : n_pos;
    n = std::min(n, kRopeTablePositions);
    tab.theta = theta;
    tab.D = D;
    tab.n = n;
    tab.cos.resize(size_t(n * (D / 2)));
    tab.sin.resize(size_t(n * (D / 2)));
    for (long pos = 0; pos < n; ++pos)
      for (long i = 0; i < D / 2; ++i)
        rope_angle(theta, D, pos, i, tab.cos[size_t(pos * (D / 2) + i)], tab.sin[size_t(pos * (D / 2) + i)]);
  }
  return tab;
}

// x: (T, n_heads*D) -> (T, n_heads*D). sign = +1 rotates by +angle (R), -1 by -angle (R^T = R^-1).
template <class Real>
Mat<Real> rope_rotate(const Mat<Real>& x, int n_heads, double theta, int pos0, int sign) {
  if (n_heads <= 0 || x.cols() % n_heads != 0)
    throw std::invalid_argument("rope: columns " + std::to_string(x.cols()) +
                                " not divisible by n_heads " + std::to_string(n_heads));
  const long D = x.cols() / n_heads;
  if (D % 2 != 0) throw std::invalid_argument("rope: head dim D must be even, got " + std::to_string(D));
  const long n_pos = long(pos0) + x.rows();
  const bool tabled = pos0 >= 0 && n_pos <= kRopeTablePositions;  // else computed per (row, pair)
  const RopeTable* tab = tabled ? &rope_table(theta, D, n_pos) : nullptr;
  Mat<Real> y(x.rows(), x.cols());
  for (long r = 0; r < x.rows(); ++r) {
    const long pos = pos0 + r;
    for (long i = 0; i < D / 2; ++i) {
      double cd, sd;
      if (tabled) {
        cd = tab->cos[size_t(pos * (D / 2) + i)];
        sd = tab->sin[size_t(pos * (D / 2) + i)];
      } else {
        rope_angle(theta, D, pos, i, cd, sd);
      }
      const Real c = Real(cd), s = Real(sign * sd);
      for (int h = 0; h < n_heads; ++h) {
        const long c0 = h * D + 2 * i, c1 = c0 + 1;
        const Real x0 = x(r, c0), x1 = x(r, c1);
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
template <class Real>
Mat<Real> rope_forward(const Mat<Real>& x, int n_heads, double theta = kDefaultRopeTheta, int pos0 = 0) {
  return detail::rope_rotate(x, n_heads, theta, pos0, +1);
}

// RoPE backward: the rotation is orthogonal, so dx = R^T dy (rotation by -angle).
// In the forward pass this was:  y[2i] = x[2i] c - x[2i+1] s,  y[2i+1] = x[2i] s + x[2i+1] c
// so now:                        dx[2i] = dy[2i] c + dy[2i+1] s,  dx[2i+1] = -dy[2i] s + dy[2i+1] c
// dy: (T, n_heads*D) -> dx: (T, n_heads*D)
template <class Real>
Mat<Real> rope_backward(const Mat<Real>& dy, int n_heads, double theta = kDefaultRopeTheta, int pos0 = 0) {
  return detail::rope_rotate(dy, n_heads, theta, pos0, -1);
}

}  // namespace ref
