// ref/norm.h: RMSNorm, the block pre-norm, and the per-head group RMSNorm, the branch norms.
//
//   RMS(x) = x * rsqrt(mean(x^2) + eps) * gamma               (spec §1.1, pre-norm block)
//   GRMS_h(x) = x[h] * rsqrt(mean_d(x[h]^2) + eps) * gamma[h]  (spec §2.5, one norm per query head)
//
// Both reduce over one contiguous block of a row: the whole row for rmsnorm, the D columns of one
// head for group_rmsnorm. The shared block step is written once (detail::rms_block_*) and both
// public ops are loops over blocks. Arithmetic is in the scalar type Real (fp32 in the float build,
// as spec §4.10 asks for the group norms).
#pragma once
#include <cmath>

#include "ref/tensor.h"

namespace ref {
namespace detail {

// One normalised block.
// x, gamma, y: (1, D) row blocks (Eigen expressions over a row or a segment of a row).
//   r = sqrt(mean(x^2) + eps);  y = x / r * gamma
template <class Real, class X, class Gm, class Y>
void rms_block_forward(const X& x, const Gm& gamma, Real eps, Y&& y) {
  const Real r = std::sqrt(x.squaredNorm() / Real(x.size()) + eps);
  y = (x.array() / r * gamma.array()).matrix();
}

// Backward of one block. x, gamma, dy, dx, dgamma: (1, D).
// In the forward pass this was:  y = x / r * gamma,  r = sqrt(mean(x^2) + eps), so
//   dgamma += (x / r) * dy
//   dx_i = gamma_i dy_i / r + sum_j x_j gamma_j dy_j * d(1/r)/dx_i,  with d(1/r)/dx_i = -x_i / (D r^3)
//        = (gamma * dy) / r - x * mean(x * gamma * dy) / r^3
// (spec §4.5: dx = (γ ⊙ dy)/r − x · mean(x ⊙ γ ⊙ dy)/r³, dγ = Σ (x/r) ⊙ dy).
#ifndef RATTN_EXERCISE_RMS_BACKWARD  // workshop hook: exercises/05_rms_backward.h replaces this (docs/workshop.md)
template <class Real, class X, class Gm, class DY, class DX, class DG>
void rms_block_backward(const X& x, const Gm& gamma, Real eps, const DY& dy, DX&& dx, DG&& dgamma) {
  const Real D = Real(x.size());
  const Real r = std::sqrt(x.squaredNorm() / D + eps);
  const Real mean_xgdy = (x.array() * gamma.array() * dy.array()).sum() / D;
  dgamma += (x.array() / r * dy.array()).matrix();
  dx = (gamma.array() * dy.array() / r - x.array() * (mean_xgdy / (r * r * r))).matrix();
}
#else
#include RATTN_EXERCISE_RMS_BACKWARD
#endif

}  // namespace detail

// RMSNorm over each row (the pre-norm of every block).
// x: (N, C), gamma: (C) -> y: (N, C);  y[n] = x[n] * rsqrt(mean_c(x[n]^2) + eps) * gamma
template <class Real>
Mat<Real> rmsnorm_forward(const Mat<Real>& x, const RowVec<Real>& gamma, Real eps) {
  expect_shape("rmsnorm gamma", gamma, 1, x.cols());
  Mat<Real> y(x.rows(), x.cols());
  for (long n = 0; n < x.rows(); ++n) detail::rms_block_forward(x.row(n), gamma, eps, y.row(n));
  return y;
}

// x: (N, C), gamma: (C), dy: (N, C) -> dx: (N, C); dgamma: (C), accumulated (+=).
// In the forward pass this was: y[n] = x[n] / r[n] * gamma  (see detail::rms_block_backward).
template <class Real>
Mat<Real> rmsnorm_backward(const Mat<Real>& x, const RowVec<Real>& gamma, Real eps, const Mat<Real>& dy,
                           RowVec<Real>& dgamma) {
  expect_shape("rmsnorm gamma", gamma, 1, x.cols());
  expect_shape("rmsnorm dy", dy, x.rows(), x.cols());
  expect_shape("rmsnorm dgamma", dgamma, 1, x.cols());
  Mat<Real> dx(x.rows(), x.cols());
  for (long n = 0; n < x.rows(); ++n)
    detail::rms_block_backward(x.row(n), gamma, eps, dy.row(n), dx.row(n), dgamma);
  return dx;
}

// Group RMSNorm: each (token t, head h) block of D columns is normalised on its own, with its own
// scale row gamma[h] (spec §2.5: GroupRMSNorm with num_groups = H).
// x: (T, H*D), gamma: (H, D) -> y: (T, H*D)
//   y[t, h*D:(h+1)*D] = x[t, h] * rsqrt(mean_d(x[t, h]^2) + eps) * gamma[h]
template <class Real>
Mat<Real> group_rmsnorm_forward(const Mat<Real>& x, const Mat<Real>& gamma, Real eps) {
  const long H = gamma.rows(), D = gamma.cols();
  expect_shape("group_rmsnorm x", x, x.rows(), H * D);
  Mat<Real> y(x.rows(), x.cols());
  for (long t = 0; t < x.rows(); ++t)
    for (long h = 0; h < H; ++h)
      detail::rms_block_forward(x.row(t).segment(h * D, D), gamma.row(h), eps,
                                y.row(t).segment(h * D, D));
  return y;
}

// x: (T, H*D), gamma: (H, D), dy: (T, H*D) -> dx: (T, H*D); dgamma: (H, D), accumulated (+=).
// In the forward pass this was: y[t, h] = x[t, h] / r[t, h] * gamma[h], so each block inverts as
// in rmsnorm_backward, and dgamma[h] sums over the tokens t.
template <class Real>
Mat<Real> group_rmsnorm_backward(const Mat<Real>& x, const Mat<Real>& gamma, Real eps, const Mat<Real>& dy,
                                 Mat<Real>& dgamma) {
  const long H = gamma.rows(), D = gamma.cols();
  expect_shape("group_rmsnorm x", x, x.rows(), H * D);
  expect_shape("group_rmsnorm dy", dy, x.rows(), H * D);
  expect_shape("group_rmsnorm dgamma", dgamma, H, D);
  Mat<Real> dx(x.rows(), x.cols());
  for (long t = 0; t < x.rows(); ++t)
    for (long h = 0; h < H; ++h)
      detail::rms_block_backward(x.row(t).segment(h * D, D), gamma.row(h), eps,
                                 dy.row(t).segment(h * D, D), dx.row(t).segment(h * D, D),
                                 dgamma.row(h));
  return dx;
}

}  // namespace ref
