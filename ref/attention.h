// ref/attention.h: causal softmax attention with a left window w (SWA), GQA.
//
// spec §2.2 (paper section 2.1):
//     o[t,h] = sum_{j in [max(0,t-w), t]} softmax_j( scale * q[t,h] . k[j,g] ) v[j,g],   g = h / (H/G)
// w = number of keys to the LEFT of the query: the window holds w+1 keys including the query's own
// (FlashAttention window_size=(w,0), axlearn sliding_window_size=w). w < 0 means no window: global
// causal attention over [0, t]. The RLA branch (ref/rla.h) covers exactly the keys j <= t-w-1 that
// this window leaves out.
//
// The loops visit only the keys inside the window, so forward and backward cost T*(w+1) per head,
// not T^2. The backward recomputes each row's softmax instead of storing the (T, w+1) probabilities.
#pragma once
#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "ref/tensor.h"

namespace ref {

// First key of the window of query t: max(0, t-w), or 0 when w < 0 (global causal).
#ifndef RATTN_EXERCISE_WINDOW_START  // workshop hook: exercises/01_window_start.h replaces this (docs/workshop.md)
inline long window_start(long t, int w) { return w < 0 ? 0 : std::max(0L, t - long(w)); }
#else
#include RATTN_EXERCISE_WINDOW_START
#endif

namespace detail {
inline void check_attention_shapes(const char* who, long Tq, long q_cols, long Tk, long k_cols,
                                   long v_rows, long v_cols, int H, int G) {
  if (H <= 0 || G <= 0 || H % G != 0)
    throw std::invalid_argument(std::string(who) + ": H=" + std::to_string(H) +
                                " must be a positive multiple of G=" + std::to_string(G));
  if (q_cols % H != 0)
    throw std::invalid_argument(std::string(who) + ": q columns not divisible by H");
  const long D = q_cols / H;
  expect_shape("k", Tk, k_cols, Tk, long(G) * D);
  expect_shape("v", v_rows, v_cols, Tk, long(G) * D);
  (void)Tq;
}

// Softmax probabilities of query row t, head h, over keys [j0, j1] of k (kv head g).
// q: (Tq, H*D), k: (Tk, G*D) -> p: (j1-j0+1) entries, normalised (sum 1)
template <class Real>
std::vector<Real> window_softmax(const Mat<Real>& q, long t, const Mat<Real>& k, long j0, long j1, int h,
                                 int g, long D, Real scale) {
  std::vector<Real> p(size_t(j1 - j0 + 1));
  Real m = -std::numeric_limits<Real>::infinity();
  for (long j = j0; j <= j1; ++j) {
    Real s = scale * q.row(t).segment(h * D, D).dot(k.row(j).segment(g * D, D));
    p[size_t(j - j0)] = s;
    m = std::max(m, s);
  }
  Real l = 0;
  for (Real& pj : p) {
    pj = std::exp(pj - m);  // max subtracted: exp never overflows
    l += pj;
  }
  for (Real& pj : p) pj /= l;
  return p;
}
}  // namespace detail

// One query row against the keys [j0, j1] (inclusive) of k and v: the inner loop of swa_forward,
// shared with the decode step (ref/decode.h), which gathers its ring buffer into k, v and calls it.
// q: (Tq, H*D), k, v: (Tk, G*D) -> o: (1, H*D), the output row of query t
template <class Real>
RowVec<Real> attend_row(const Mat<Real>& q, long t, const Mat<Real>& k, const Mat<Real>& v, long j0, long j1,
                        int H, int G, Real scale) {
  const long D = q.cols() / H;
  const int r = H / G;  // query heads per kv head
  RowVec<Real> o = RowVec<Real>::Zero(q.cols());
  for (int h = 0; h < H; ++h) {
    const int g = h / r;
    // p_j = softmax_j(scale * q[t,h] . k[j,g]) over the window
    std::vector<Real> p = detail::window_softmax(q, t, k, j0, j1, h, g, D, scale);
    // o[t,h] = sum_j p_j v[j,g]
    for (long j = j0; j <= j1; ++j) o.segment(h * D, D) += p[size_t(j - j0)] * v.row(j).segment(g * D, D);
  }
  return o;
}

// Windowed causal attention forward.
// q: (T, H*D), k: (T, G*D), v: (T, G*D) -> o: (T, H*D)
// w: keys to the left (window [max(0,t-w), t]); w < 0: global causal. scale: e.g. 1/sqrt(D).
#ifndef RATTN_EXERCISE_SWA_FORWARD  // workshop hook: exercises/02_swa_forward.h replaces this (docs/workshop.md)
template <class Real>
Mat<Real> swa_forward(const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, int H, int G, int w, Real scale) {
  detail::check_attention_shapes("swa_forward", q.rows(), q.cols(), q.rows(), k.cols(), v.rows(),
                                 v.cols(), H, G);
  expect_shape("k", k, q.rows(), k.cols());
  const long T = q.rows();
  Mat<Real> o(T, q.cols());
  for (long t = 0; t < T; ++t) o.row(t) = attend_row(q, t, k, v, window_start(t, w), t, H, G, scale);
  return o;
}
#else
#include RATTN_EXERCISE_SWA_FORWARD
#endif

// Windowed causal attention backward (recomputes each row's softmax).
// q: (T, H*D), k, v: (T, G*D), dout: (T, H*D) -> dq: (T, H*D), dk, dv: (T, G*D)   (assigned)
// In the forward pass this was:
//     s_j = scale * q[t,h] . k[j,g];   p = softmax(s);   o[t,h] = sum_j p_j v[j,g]
// so now, per (t, h):
//     dv[j,g] += p_j dout[t,h]                      (from o = sum_j p_j v_j)
//     dp_j = dout[t,h] . v[j,g]                     (from o = sum_j p_j v_j)
//     ds_j = p_j (dp_j - sum_i p_i dp_i)            (softmax backward)
//     dq[t,h] += scale * sum_j ds_j k[j,g];  dk[j,g] += scale * ds_j q[t,h]   (from s_j)
// GQA: the r = H/G query heads of a group all add into their kv head's dk, dv.
template <class Real>
void swa_backward(const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, const Mat<Real>& dout, int H, int G,
                  int w, Real scale, Mat<Real>& dq, Mat<Real>& dk, Mat<Real>& dv) {
  detail::check_attention_shapes("swa_backward", q.rows(), q.cols(), q.rows(), k.cols(), v.rows(),
                                 v.cols(), H, G);
  expect_shape("k", k, q.rows(), k.cols());
  expect_shape("dout", dout, q.rows(), q.cols());
  const long T = q.rows(), D = q.cols() / H;
  const int r = H / G;
  dq = Mat<Real>::Zero(T, q.cols());
  dk = Mat<Real>::Zero(T, k.cols());
  dv = Mat<Real>::Zero(T, v.cols());
  for (long t = 0; t < T; ++t) {
    const long j0 = window_start(t, w);
    for (int h = 0; h < H; ++h) {
      const int g = h / r;
      std::vector<Real> p = detail::window_softmax(q, t, k, j0, t, h, g, D, scale);
      const auto do_th = dout.row(t).segment(h * D, D);
      std::vector<Real> dp(p.size());
      Real sum_p_dp = 0;
      for (long j = j0; j <= t; ++j) {
        const size_t i = size_t(j - j0);
        dv.row(j).segment(g * D, D) += p[i] * do_th;
        dp[i] = do_th.dot(v.row(j).segment(g * D, D));
        sum_p_dp += p[i] * dp[i];
      }
      for (long j = j0; j <= t; ++j) {
        const size_t i = size_t(j - j0);
        const Real ds = p[i] * (dp[i] - sum_p_dp);
        dq.row(t).segment(h * D, D) += (scale * ds) * k.row(j).segment(g * D, D);
        dk.row(j).segment(g * D, D) += (scale * ds) * q.row(t).segment(h * D, D);
      }
    }
  }
}

}  // namespace ref
