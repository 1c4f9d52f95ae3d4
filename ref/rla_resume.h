// ref/rla_resume.h: running RLA over a sequence in pieces, carrying the state between calls
// (spec §3.1, §3.2; the forms themselves are in ref/rla.h).
//
// This is the decode/prefill path: prefill a prompt in one or more blocks, then decode token by token,
// or train on a long sequence in windows. The state to carry between two calls is
// RlaCarry = { S, the last min(w+1, n) raw k/v rows not yet folded into S }.
// rla_step (one token, the recurrent form) and rla_forward_chunked_resume (a block of tokens, the
// chunked form) both consume and update an RlaCarry, so any split of a sequence gives the same
// outputs as one call of ref/rla.h (tests/test_rla.cpp checks it).
#pragma once
#include <algorithm>
#include <stdexcept>

#include "ref/feature_map.h"
#include "ref/rla.h"
#include "ref/tensor.h"

namespace ref {

// After a prefix of n tokens has been processed (queries 0..n-1 answered), RLA needs:
//   St        = S_{n-1-(w+1)} = h0 + sum_{j <= n-w-2} phi(k_j)^T v_j   (G x (Dp, D))
//   k_pending = the raw k rows j in [max(0, n-w-1), n-1]: min(w+1, n) rows still inside the window,
//   v_pending   to be folded into S as they leave it, oldest first    ((P, G*D), P <= w+1)
// The pending rows are raw (before phi); for w = -1 there are none. This is what a decode cache
// must hold for the RLA branch (spec §3.1); the SWA branch needs the same w+1 rows anyway.
template <class Real>
struct RlaCarry {
  RlaState<Real> St;
  Mat<Real> k_pending, v_pending;
  long n = 0;  // tokens processed so far (informative: positions are not used by RLA)
};

// Start of a sequence (spec §3.1): St = S_{-1} = h0 (or zeros), nothing pending. -> RlaCarry
template <class Real>
RlaCarry<Real> rla_carry_init(int G, int D, FeatureMap fm, const RlaState<Real>* h0 = nullptr) {
  RlaCarry<Real> c;
  c.St = h0 ? *h0 : rla_zero_state<Real>(G, D, fm);
  c.k_pending.resize(0, long(G) * D);
  c.v_pending.resize(0, long(G) * D);
  return c;
}

// One decode step (spec §3.1) on an RlaCarry: append (k_t, v_t) to the pending rows, fold the
// oldest pending row into S while more than w+1 are pending (that row is token t-w-1, which has
// just left the window), then read o_t = phi(q_t) S.
// q_row: (1, H*D), k_row, v_row: (1, G*D) -> (1, H*D)
template <class Real>
Mat<Real> rla_step(RlaCarry<Real>& c, const Mat<Real>& q_row, const Mat<Real>& k_row, const Mat<Real>& v_row, int H,
                   int G, int w, FeatureMap fm) {
  if (w < -1) throw std::invalid_argument("rla_step: w must be >= -1");
  expect_shape("rla_step k_row", k_row, 1, c.k_pending.cols());
  expect_shape("rla_step v_row", v_row, 1, c.v_pending.cols());
  const long P = c.k_pending.rows();
  Mat<Real> kp(P + 1, k_row.cols()), vp(P + 1, v_row.cols());
  kp << c.k_pending, k_row;
  vp << c.v_pending, v_row;
  long first = 0;  // rows [0, first) are folded
  while (kp.rows() - first > w + 1) {
    rla_fold(c.St, Mat<Real>(kp.row(first)), Mat<Real>(vp.row(first)), G, fm);
    ++first;
  }
  c.k_pending = kp.bottomRows(kp.rows() - first);
  c.v_pending = vp.bottomRows(vp.rows() - first);
  ++c.n;
  return rla_read(c.St, q_row, H, G, fm);
}

// The chunked form (spec §3.2) continuing from an RlaCarry: the carried S plays the role of h0 and the
// carried pending rows are prepended to k and v as keys (never as queries). On return `carry`
// describes the whole sequence so far, ready for the next call or for rla_step.
// q: (T, H*D), k, v: (T, G*D) -> o: (T, H*D), the outputs of these T new tokens
template <class Real>
Mat<Real> rla_forward_chunked_resume(const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, int H, int G,
                                     int w, FeatureMap fm, int C, RlaCarry<Real>& carry) {
  const detail::RlaDims d =
      detail::rla_dims("rla_forward_chunked_resume", q, k, v, H, G, w, fm, &carry.St);
  if (C < 1) throw std::invalid_argument("rla_forward_chunked_resume: chunk size C must be >= 1");
  const int P = int(carry.k_pending.rows());
  expect_shape("rla carry k_pending", carry.k_pending, P, k.cols());
  expect_shape("rla carry v_pending", carry.v_pending, P, v.cols());
  if (P > d.s) throw std::invalid_argument("rla_forward_chunked_resume: more than w+1 pending rows");
  Mat<Real> kk(P + d.T, k.cols()), vv(P + d.T, v.cols());
  kk << carry.k_pending, k;
  vv << carry.v_pending, v;
  Mat<Real> o = detail::rla_chunked_core(q, kk, vv, P, H, G, w, fm, C, carry.St);
  const int keep = std::min(d.s, P + d.T);  // rows still inside the window after the last query
  carry.k_pending = kk.bottomRows(keep);
  carry.v_pending = vv.bottomRows(keep);
  carry.n += d.T;
  return o;
}

}  // namespace ref
