// ref/attention_blocked.h: the same windowed causal attention as ref/attention.h, computed a block of
// queries at a time with matrix products: the fast path the training step uses.
//
// ref/attention.h is the reference: one query row at a time, one key at a time, the formula as
// written. Here the n queries of a block [t0, t1) and the keys they can see, [window_start(t0), t1),
// go through two Eigen products per head (FlashAttention-2 order: one Q block, its K/V tile):
//     S = scale * Q_blk K_tile^T            (n, m)     entries outside each row's window -> p = 0
//     P = softmax of each row over its window [max(0, t-w), t]
//     O_blk = P V_tile                      (n, D)
// For a window w the tile holds m = n + w keys, so the cost stays linear in T (blocks of about
// w+1 queries waste at most about half of each tile on masked entries; the products more than pay
// for it). w < 0 (global causal) uses the same code with tiles [0, t1).
// tests/test_perf_paths.cpp holds both functions equal to swa_forward / swa_backward
// (float and double, every window edge case, GQA, block sizes from 1 to past T).
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>

#include "ref/attention.h"
#include "ref/tensor.h"

namespace ref {

// Queries per block: about one window (so a tile is at most about twice the useful keys), at least
// 16 and at most 64 rows (small enough to stay in cache, large enough for the products to pay).
inline int swa_default_block(int w) { return w < 0 ? 64 : std::clamp(w + 1, 16, 64); }

namespace detail {

// Row-softmax of the score tile of one query block, in place, over each row's window only.
// A: (n, m) scores of queries t0..t0+n-1 against keys j0..j0+m-1; on return the probabilities p,
// exactly 0 outside [window_start(t, w), t].
template <class Real>
void window_softmax_block(Mat<Real>& A, long t0, long j0, int w) {
  for (long i = 0; i < A.rows(); ++i) {
    const long t = t0 + i, lo = window_start(t, w) - j0, hi = t - j0;  // valid columns [lo, hi]
    auto row = A.row(i);
    auto valid = row.segment(lo, hi - lo + 1);
    const Real mx = valid.maxCoeff();  // max subtracted: exp never overflows
    valid = (valid.array() - mx).exp().matrix();
    valid /= valid.sum();
    row.head(lo).setZero();
    row.tail(A.cols() - hi - 1).setZero();
  }
}

}  // namespace detail

// Windowed causal attention forward, blocked. Same contract as swa_forward.
// q: (T, H*D), k: (T, G*D), v: (T, G*D) -> o: (T, H*D); block: queries per block (0 = automatic)
template <class Real>
Mat<Real> swa_forward_blocked(const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, int H, int G, int w,
                              Real scale, int block = 0) {
  detail::check_attention_shapes("swa_forward_blocked", q.rows(), q.cols(), q.rows(), k.cols(), v.rows(),
                                 v.cols(), H, G);
  expect_shape("k", k, q.rows(), k.cols());
  const long T = q.rows(), D = q.cols() / H;
  const int r = H / G, Bq = block > 0 ? block : swa_default_block(w);
  Mat<Real> o(T, q.cols());
  Mat<Real> A;  // (n, m) score / probability tile, reused
  for (long t0 = 0; t0 < T; t0 += Bq) {
    const long t1 = std::min(T, t0 + Bq), n = t1 - t0;
    const long j0 = window_start(t0, w), m = t1 - j0;  // keys [j0, t1) cover every window of the block
    for (int h = 0; h < H; ++h) {
      const int g = h / r;
      auto Qb = q.block(t0, h * D, n, D);
      auto Kt = k.block(j0, g * D, m, D);
      auto Vt = v.block(j0, g * D, m, D);
      A.noalias() = Qb * Kt.transpose();  // s = q[t,h] . k[j,g]
      A *= scale;
      detail::window_softmax_block(A, t0, j0, w);  // p = softmax over [max(0,t-w), t]
      o.block(t0, h * D, n, D).noalias() = A * Vt;  // o[t,h] = sum_j p_j v[j,g]
    }
  }
  return o;
}

// Windowed causal attention backward, blocked (recomputes each tile's probabilities).
// Same contract as swa_backward: q: (T, H*D), k, v: (T, G*D), dout: (T, H*D)
//   -> dq: (T, H*D), dk, dv: (T, G*D)   (assigned)
// In the forward pass this was, per block and head:
//     S = scale Q K^T;  P = softmax_rows(S) (window only);  O = P V
// so now:
//     dV += P^T dO                                   (from O = P V)
//     dP  = dO V^T                                   (from O = P V)
//     dS  = P ⊙ (dP - rowsum(P ⊙ dP))               (softmax backward; 0 outside the window, as P)
//     dQ  = scale dS K;   dK += scale dS^T Q         (from S = scale Q K^T)
// GQA: the r = H/G query heads of a group all add into their kv head's dk, dv.
template <class Real>
void swa_backward_blocked(const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, const Mat<Real>& dout, int H,
                          int G, int w, Real scale, Mat<Real>& dq, Mat<Real>& dk, Mat<Real>& dv, int block = 0) {
  detail::check_attention_shapes("swa_backward_blocked", q.rows(), q.cols(), q.rows(), k.cols(), v.rows(),
                                 v.cols(), H, G);
  expect_shape("k", k, q.rows(), k.cols());
  expect_shape("dout", dout, q.rows(), q.cols());
  const long T = q.rows(), D = q.cols() / H;
  const int r = H / G, Bq = block > 0 ? block : swa_default_block(w);
  dq = Mat<Real>::Zero(T, q.cols());
  dk = Mat<Real>::Zero(T, k.cols());
  dv = Mat<Real>::Zero(T, v.cols());
  Mat<Real> P, dP;  // (n, m) tiles, reused
  for (long t0 = 0; t0 < T; t0 += Bq) {
    const long t1 = std::min(T, t0 + Bq), n = t1 - t0;
    const long j0 = window_start(t0, w), m = t1 - j0;
    for (int h = 0; h < H; ++h) {
      const int g = h / r;
      auto Qb = q.block(t0, h * D, n, D);
      auto dOb = dout.block(t0, h * D, n, D);
      auto Kt = k.block(j0, g * D, m, D);
      auto Vt = v.block(j0, g * D, m, D);
      P.noalias() = Qb * Kt.transpose();
      P *= scale;
      detail::window_softmax_block(P, t0, j0, w);
      dv.block(j0, g * D, m, D).noalias() += P.transpose() * dOb;
      dP.noalias() = dOb * Vt.transpose();
      // dS = P ⊙ (dP - rowsum(P ⊙ dP)), in place in dP
      const Vec<Real> rowdot = (P.array() * dP.array()).rowwise().sum().matrix();
      dP = (P.array() * (dP.colwise() - rowdot).array()).matrix();
      dP *= scale;
      dq.block(t0, h * D, n, D).noalias() = dP * Kt;
      dk.block(j0, g * D, m, D).noalias() += dP.transpose() * Qb;
    }
  }
}

}  // namespace ref
