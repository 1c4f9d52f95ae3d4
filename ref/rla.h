// ref/rla.h: residual linear attention (RLA), the branch of RATTENTION over exactly the tokens
// that have left the sliding window (spec §2.3, §2.6, §3.1, §3.2, §3.3, §4; paper eq. 4, 2-3).
//
//   S_t = S_{t-1} + phi(k_t)^T v_t            S: (Dp, D) per kv head, S_{-1} = 0 or h0
//   o_t = phi(q_t) S_{t-w-1}                  (S_{<0} := S_{-1}; w = -1: o_t = phi(q_t) S_t)
//
// equivalently (masked form)  o_t = phi(q_t) h0 + sum_{j <= t-w-1} (phi(q_t) . phi(k_j)) v_j.
//
// Window: w = number of keys to the left of the query in the SWA window [t-w, t], so RLA at query
// t reads exactly the keys j <= t-w-1 (spec §0). Write s = w+1 for the shift:
// RLA is inclusive causal linear attention over keys shifted right by s. w = -1 (s = 0) is plain
// inclusive linear attention over [0, t], the `linear` local kind. T <= w+1 gives o = phi(q) h0
// (exactly 0 without h0).
//
// GQA (spec §2.6): query head h reads kv head g = h / (H/G). S depends only on k and v, so there is
// ONE state per kv head; the r = H/G query heads of a group share it, and gradients of k, v, h0
// are summed over the group. h0, when given, is one (Dp, D) matrix per kv head.
//
// Three forms, all equal (tests/test_rla.cpp checks them against each other to 1e-12 in double):
//   rla_forward_masked     quadratic: (phi(Q) phi(K)^T ⊙ M) V with M[t,j] = [j <= t-w-1]   (spec §2.3, §4)
//   rla_forward_recurrent  token by token with rla_fold / rla_read, the decode step      (spec §3.1)
//   rla_forward_chunked    chunk size C: inter-chunk state + intra-chunk masked block     (spec §3.2)
// Backward: rla_backward_masked (spec §4) and rla_backward_chunked (spec §3.3), with dh0.
// Chunk notation (the same in cuda/rla.h and cuda/rla.cu): X_[i] is the block of rows of chunk i, and
// S_[i] is the state at the start of chunk i, S_[0] = h0 (or 0); S_t, with a token index, is the state
// after token t.
//
// Running a sequence in pieces with the state carried between calls (prefill, decode): ref/rla_resume.h.
//
// Layout (ref/tensor.h): q: (T, H*D), k, v: (T, G*D), head h = columns [h*D, (h+1)*D).
// Dp = feature_dim(fm, D) (2D for sm2/relu2). All arithmetic in the scalar type Real, so the state is
// fp32 in the float build and fp64 in the double reference (spec §0: state).
#pragma once
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "ref/feature_map.h"
#include "ref/tensor.h"

namespace ref {

// One state per kv head: G matrices, each (Dp, D).
template <class Real>
using RlaState = std::vector<Mat<Real>>;

template <class Real>
struct RlaGrads {
  Mat<Real> dq;          // (T, H*D)
  Mat<Real> dk, dv;      // (T, G*D), summed over the query heads of each group
  RlaState<Real> dh0;    // G x (Dp, D): gradient of the initial state (filled even when h0 was null,
                         // i.e. the gradient with respect to a zero initial state)
};

// All-zero state S_{-1} = 0 (spec §2.3; "initial state zero" in the project decisions). -> G x (Dp, D)
template <class Real>
RlaState<Real> rla_zero_state(int G, int D, FeatureMap fm) {
  return RlaState<Real>(size_t(G), Mat<Real>::Zero(feature_dim(fm, D), D));
}

namespace detail {

// Shapes of one RLA call, validated once. D is read from q's width.
struct RlaDims {
  int T, H, G, D, Dp, r, s;  // r = H/G query heads per kv head, s = w+1 the shift
};

template <class Real>
RlaDims rla_dims(const char* who, const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, int H, int G,
                 int w, FeatureMap fm, const RlaState<Real>* h0) {
  auto fail = [&](const std::string& m) { throw std::invalid_argument(std::string(who) + ": " + m); };
  if (H <= 0 || G <= 0 || H % G != 0) fail("need H > 0, G > 0 and G dividing H");
  if (q.cols() == 0 || q.cols() % H != 0) fail("q width is not H*D");
  if (w < -1) fail("w must be >= -1 (w = -1: no window, inclusive linear attention)");
  RlaDims d;
  d.T = int(q.rows());
  d.H = H;
  d.G = G;
  d.D = int(q.cols() / H);
  d.Dp = feature_dim(fm, d.D);
  d.r = H / G;
  d.s = w + 1;
  expect_shape("rla k", k, q.rows(), long(G) * d.D);
  expect_shape("rla v", v, q.rows(), long(G) * d.D);
  if (h0) {
    if (int(h0->size()) != G) fail("h0 must hold one (Dp, D) state per kv head (G of them)");
    for (const Mat<Real>& m : *h0) expect_shape("rla h0[g]", m, d.Dp, d.D);
  }
  return d;
}

// Zero the entries of a score block that lie to the right of the causal diagonal.
// A: (n, m), row i = query c0+i, column jj = shifted key position a+jj, kept iff a+jj <= c0+i,
// i.e. jj <= i - d with d = a - c0 >= 0 (spec §3.2: M = lower-triangular incl. diagonal).
template <class Real>
void keep_causal(Mat<Real>& A, int d) {
  for (long i = 0; i < A.rows(); ++i)
    for (long jj = std::max(0L, i - d + 1); jj < A.cols(); ++jj) A(i, jj) = Real(0);
}

}  // namespace detail

// The RLA mask of the masked form: M[t, j] = 1 iff key j feeds the RLA output of query t,
// i.e. j <= t-w-1 (spec §2.3; w = -1: j <= t). -> (T, T)
// Its complement inside the causal triangle is the SWA window [max(0,t-w), t] (spec §2.8 identity).
template <class Real>
Mat<Real> rla_mask(int T, int w) {
  Mat<Real> M = Mat<Real>::Zero(T, T);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j <= t - (w + 1); ++j) M(t, j) = Real(1);
  return M;
}

// ---------------------------------------------------------------------------------------------
// Masked (quadratic) form: the definition, written as matrices per query head (spec §4):
//     O_h = ((phi(Q_h) phi(K_g)^T) ⊙ M) V_g + phi(Q_h) h0_g,     M = rla_mask(T, w)
// q: (T, H*D), k, v: (T, G*D), h0: G x (Dp, D) or null -> o: (T, H*D)
template <class Real>
Mat<Real> rla_forward_masked(const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, int H, int G, int w,
                             FeatureMap fm, const RlaState<Real>* h0 = nullptr) {
  const detail::RlaDims d = detail::rla_dims("rla_forward_masked", q, k, v, H, G, w, fm, h0);
  const Mat<Real> Qf = phi_forward_heads(fm, q, H);  // (T, H*Dp)
  const Mat<Real> Kf = phi_forward_heads(fm, k, G);  // (T, G*Dp)
  const Mat<Real> M = rla_mask<Real>(d.T, w);
  Mat<Real> o(d.T, q.cols());
  for (int h = 0; h < H; ++h) {
    const int g = h / d.r;
    auto Qh = Qf.middleCols(h * d.Dp, d.Dp);
    const Mat<Real> P = ((Qh * Kf.middleCols(g * d.Dp, d.Dp).transpose()).array() * M.array()).matrix();
    o.middleCols(h * d.D, d.D).noalias() = P * v.middleCols(g * d.D, d.D);
    if (h0) o.middleCols(h * d.D, d.D).noalias() += Qh * (*h0)[size_t(g)];
  }
  return o;
}

// Backward of the masked form. dout: (T, H*D) -> RlaGrads (dq (T,H*D); dk, dv (T,G*D); dh0 G x (Dp,D)).
// In the forward pass this was:  P = (Q~ K~^T) ⊙ M;  O = P V + Q~ h0,  with Q~ = phi(Q), K~ = phi(K),
// so now (spec §4, per query head h and its kv head g):
//     dP   = (dO V^T) ⊙ M
//     dQ~  = dP K~ + dO h0^T            dK~ += dP^T Q~
//     dV  += P^T dO                     dh0 += Q~^T dO
//     dQ = phi_bwd(Q, dQ~),  dK = phi_bwd(K, dK~)
// The mask M holds the window shift, so no un-shifting is needed here. The += over h sums the GQA group.
template <class Real>
RlaGrads<Real> rla_backward_masked(const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, const Mat<Real>& dout,
                                   int H, int G, int w, FeatureMap fm, const RlaState<Real>* h0 = nullptr) {
  const detail::RlaDims d = detail::rla_dims("rla_backward_masked", q, k, v, H, G, w, fm, h0);
  expect_shape("rla dout", dout, q.rows(), q.cols());
  const Mat<Real> Qf = phi_forward_heads(fm, q, H);
  const Mat<Real> Kf = phi_forward_heads(fm, k, G);
  const Mat<Real> M = rla_mask<Real>(d.T, w);
  Mat<Real> dQf(d.T, long(H) * d.Dp);
  Mat<Real> dKf = Mat<Real>::Zero(d.T, long(G) * d.Dp);
  RlaGrads<Real> grads;
  grads.dv = Mat<Real>::Zero(d.T, k.cols());
  grads.dh0 = rla_zero_state<Real>(G, d.D, fm);
  for (int h = 0; h < H; ++h) {
    const int g = h / d.r;
    auto Qh = Qf.middleCols(h * d.Dp, d.Dp);
    auto Kg = Kf.middleCols(g * d.Dp, d.Dp);
    auto Vg = v.middleCols(g * d.D, d.D);
    auto dOh = dout.middleCols(h * d.D, d.D);
    const Mat<Real> P = ((Qh * Kg.transpose()).array() * M.array()).matrix();
    const Mat<Real> dP = ((dOh * Vg.transpose()).array() * M.array()).matrix();
    dQf.middleCols(h * d.Dp, d.Dp).noalias() = dP * Kg;
    if (h0) dQf.middleCols(h * d.Dp, d.Dp).noalias() += dOh * (*h0)[size_t(g)].transpose();
    dKf.middleCols(g * d.Dp, d.Dp).noalias() += dP.transpose() * Qh;
    grads.dv.middleCols(g * d.D, d.D).noalias() += P.transpose() * dOh;
    grads.dh0[size_t(g)].noalias() += Qh.transpose() * dOh;
  }
  grads.dq = phi_backward_heads_from_phi(fm, Qf, dQf, H);
  grads.dk = phi_backward_heads_from_phi(fm, Kf, dKf, G);
  return grads;
}

// ---------------------------------------------------------------------------------------------
// Recurrent form (spec §3.1), built from the two decode building blocks below.

// Fold one token into the state:  S_g += phi(k_g)^T v_g  for every kv head g   (spec §2.3, S_t update)
// St: G x (Dp, D), updated in place; k_row, v_row: (1, G*D)
template <class Real>
void rla_fold(RlaState<Real>& St, const Mat<Real>& k_row, const Mat<Real>& v_row, int G, FeatureMap fm) {
  if (G <= 0 || int(St.size()) != G) throw std::invalid_argument("rla_fold: St must hold G states");
  const int D = int(k_row.cols() / G);
  expect_shape("rla_fold k_row", k_row, 1, long(G) * D);
  expect_shape("rla_fold v_row", v_row, 1, long(G) * D);
  const Mat<Real> kf = phi_forward_heads(fm, k_row, G);  // (1, G*Dp)
  const int Dp = feature_dim(fm, D);
  for (int g = 0; g < G; ++g) {
    expect_shape("rla_fold St[g]", St[size_t(g)], Dp, D);
    St[size_t(g)].noalias() += kf.middleCols(g * Dp, Dp).transpose() * v_row.middleCols(g * D, D);
  }
}

// Read the state:  o_h = phi(q_h) S_g,  g = h / (H/G)   (spec §2.3, o_t = phi(q_t) S_{t-w-1})
// St: G x (Dp, D); q_row: (1, H*D) -> (1, H*D)
template <class Real>
Mat<Real> rla_read(const RlaState<Real>& St, const Mat<Real>& q_row, int H, int G, FeatureMap fm) {
  if (H <= 0 || G <= 0 || H % G != 0 || int(St.size()) != G)
    throw std::invalid_argument("rla_read: need G dividing H and G states");
  const int D = int(q_row.cols() / H), Dp = feature_dim(fm, D), r = H / G;
  expect_shape("rla_read q_row", q_row, 1, long(H) * D);
  const Mat<Real> qf = phi_forward_heads(fm, q_row, H);  // (1, H*Dp)
  Mat<Real> o(1, q_row.cols());
  for (int h = 0; h < H; ++h) {
    const Mat<Real>& Sg = St[size_t(h / r)];
    expect_shape("rla_read St[g]", Sg, Dp, D);
    o.middleCols(h * D, D).noalias() = qf.middleCols(h * Dp, Dp) * Sg;
  }
  return o;
}

// Recurrent form over a whole sequence (spec §3.1, paper eq. 4): at step t, fold the token
// j = t-w-1 that has just left the window (if j >= 0), then read. For w = -1 that is token t
// itself: inclusive.
// q: (T, H*D), k, v: (T, G*D), h0: G x (Dp, D) or null -> o: (T, H*D)
#ifndef RATTN_EXERCISE_RLA_RECURRENT  // workshop hook: exercises/03_rla_recurrent.h replaces this (docs/workshop.md)
template <class Real>
Mat<Real> rla_forward_recurrent(const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, int H, int G, int w,
                                FeatureMap fm, const RlaState<Real>* h0 = nullptr) {
  const detail::RlaDims d = detail::rla_dims("rla_forward_recurrent", q, k, v, H, G, w, fm, h0);
  RlaState<Real> St = h0 ? *h0 : rla_zero_state<Real>(G, d.D, fm);  // S_{-1}
  Mat<Real> o(d.T, q.cols());
  for (int t = 0; t < d.T; ++t) {
    const int j = t - d.s;  // the token that leaves the window at step t
    if (j >= 0) rla_fold(St, Mat<Real>(k.row(j)), Mat<Real>(v.row(j)), G, fm);  // S_j = S_{j-1} + phi(k_j)^T v_j
    o.row(t) = rla_read(St, Mat<Real>(q.row(t)), H, G, fm);                     // o_t = phi(q_t) S_{t-w-1}
  }
  return o;
}
#else
#include RATTN_EXERCISE_RLA_RECURRENT
#endif

// ---------------------------------------------------------------------------------------------
// Chunked form (spec §3.2, paper eqs. 2-3 corrected), chunk size C, any T (the last chunk may be
// short). With the shifted keys K'_u = phi(k_{u-s}), V'_u = v_{u-s} (zero for u < s), chunk i
// covering query rows [c0, c0+n):
//     O_[i]   = Q~_[i] S_[i]  +  ((Q~_[i] K'_[i]^T) ⊙ tril) V'_[i]        (inter + intra)
//     S_[i+1] = S_[i] + K'_[i]^T V'_[i]                                   S_[0] = h0 or 0
// The shift is done by index (detail::chunk_keys, used by the forward and the backward alike): no
// shifted or zero-padded copies are made; per chunk the only temporary is the (n, m) score block.

namespace detail {

// The shifted keys of one chunk, by index: the one indexing of the chunked forward and backward.
// Shifted row u of the chunk [c0, c0+n) (the row of query u) holds key j = u - s, s = w+1. The key
// array may start with P pending rows of a previous call (ref/rla_resume.h; P = 0 otherwise), so key j
// is its row j + P and exists iff j + P >= 0 (the j >= 0 guard when P = 0). The rows with a key are
// therefore u in [a, c0+n), a = max(c0, s-P): m = c0+n-a of them (m <= 0: none), reading the
// consecutive key rows [j0, j0+m), j0 = a - s + P. So K'_[i] = phi(K) rows [j0, j0+m), V'_[i] likewise.
struct ChunkKeys {
  int a;   // first shifted row of the chunk that has a key
  int m;   // number of such rows (<= 0: none)
  int j0;  // the key-array row of shifted row a
};
// c0, n: the chunk's first row and length; s = w+1; P: pending key rows before row 0 -> ChunkKeys
inline ChunkKeys chunk_keys(int c0, int n, int s, int P = 0) {
  const int a = std::max(c0, s - P);
  return {a, c0 + n - a, a - s + P};
}

// The chunked forward (spec §3.2) over queries q and keys/values kk, vv that start P rows EARLIER than q:
// query row t is token P+t of kk. The first P rows of kk are pending rows of a previous call
// (RlaCarry, ref/rla_resume.h), so query t reads kk rows i <= t + P - s, beyond what St already holds.
// q: (T, H*D), kk, vv: (P+T, G*D), St: G x (Dp, D) = S_[0], updated to the final state
// (all kk rows i < T + P - s folded in). -> o: (T, H*D)
#ifndef RATTN_EXERCISE_RLA_CHUNKED  // workshop hook: exercises/04_rla_chunked.h replaces this (docs/workshop.md)
template <class Real>
Mat<Real> rla_chunked_core(const Mat<Real>& q, const Mat<Real>& kk, const Mat<Real>& vv, int P, int H, int G,
                           int w, FeatureMap fm, int C, RlaState<Real>& St) {
  const int T = int(q.rows()), D = int(q.cols() / H), Dp = feature_dim(fm, D), r = H / G;
  const int s = w + 1;
  const Mat<Real> Qf = phi_forward_heads(fm, q, H);   // (T, H*Dp)
  const Mat<Real> Kf = phi_forward_heads(fm, kk, G);  // (P+T, G*Dp)
  Mat<Real> o(T, q.cols());
  Mat<Real> A;  // (n, m) per-chunk score block, reused
  for (int g = 0; g < G; ++g) {
    Mat<Real>& Sg = St[size_t(g)];
    for (int c0 = 0; c0 < T; c0 += C) {
      const int n = std::min(C, T - c0);
      const auto [a, m, j0] = chunk_keys(c0, n, s, P);  // K'_[i], V'_[i] = kk, vv rows [j0, j0+m)
      for (int h = g * r; h < (g + 1) * r; ++h) {
        auto Qc = Qf.block(c0, h * Dp, n, Dp);
        auto Oc = o.block(c0, h * D, n, D);
        Oc.noalias() = Qc * Sg;  // inter-chunk: Q~_[i] S_[i]
        if (m > 0) {             // intra-chunk: ((Q~_[i] K'_[i]^T) ⊙ tril) V'_[i]
          A.noalias() = Qc * Kf.block(j0, g * Dp, m, Dp).transpose();
          keep_causal(A, a - c0);
          Oc.noalias() += A * vv.block(j0, g * D, m, D);
        }
      }
      if (m > 0)  // S_[i+1] = S_[i] + K'_[i]^T V'_[i]
        Sg.noalias() += Kf.block(j0, g * Dp, m, Dp).transpose() * vv.block(j0, g * D, m, D);
    }
  }
  return o;
}
#else
#include RATTN_EXERCISE_RLA_CHUNKED
#endif

}  // namespace detail

// Chunked forward (spec §3.2, paper eqs. 2-3 corrected), see the block comment above.
// q: (T, H*D), k, v: (T, G*D), h0: G x (Dp, D) or null, C >= 1 -> o: (T, H*D)
template <class Real>
Mat<Real> rla_forward_chunked(const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, int H, int G, int w,
                              FeatureMap fm, int C, const RlaState<Real>* h0 = nullptr) {
  const detail::RlaDims d = detail::rla_dims("rla_forward_chunked", q, k, v, H, G, w, fm, h0);
  if (C < 1) throw std::invalid_argument("rla_forward_chunked: chunk size C must be >= 1");
  RlaState<Real> St = h0 ? *h0 : rla_zero_state<Real>(G, d.D, fm);
  return detail::rla_chunked_core(q, k, v, 0, H, G, w, fm, C, St);
}

// Backward of the chunked form (spec §3.3, the axlearn kernel's two sweeps), per kv head g:
// In the forward pass this was:
//     O_[i] = Q~_[i] S_[i] + ((Q~_[i] K'_[i]^T) ⊙ tril) V'_[i];   S_[i+1] = S_[i] + K'_[i]^T V'_[i]
// so now:
//   forward sweep (recomputes S_[i], gives dq):
//     dQ~_[i] = dO_[i] S_[i]^T + ((dO_[i] V'_[i]^T) ⊙ tril) K'_[i]
//   reverse sweep, carrying dS = dL/dS_[i+1] (zero after the last chunk), gives dk, dv, dh0:
//     dK'_[i] = V'_[i] dS^T + ((dO_[i] V'_[i]^T) ⊙ tril)^T Q~_[i]
//     dV'_[i] = K'_[i] dS   + ((Q~_[i] K'_[i]^T) ⊙ tril)^T dO_[i]
//     dS     += Q~_[i]^T dO_[i]            (now dL/dS_[i]; after chunk 0 it is dh0)
//   un-shift by index: dK~_j = dK'_{j+s}, dV_j = dV'_{j+s} (rows j > T-s-1 get nothing);
//   dq = phi_bwd(q, dQ~), dk = phi_bwd(k, dK~). The r query heads of a group add into one dK~, dV, dS.
// q: (T, H*D), k, v: (T, G*D), dout: (T, H*D) -> RlaGrads
template <class Real>
RlaGrads<Real> rla_backward_chunked(const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, const Mat<Real>& dout,
                                    int H, int G, int w, FeatureMap fm, int C,
                                    const RlaState<Real>* h0 = nullptr) {
  const detail::RlaDims d = detail::rla_dims("rla_backward_chunked", q, k, v, H, G, w, fm, h0);
  if (C < 1) throw std::invalid_argument("rla_backward_chunked: chunk size C must be >= 1");
  expect_shape("rla dout", dout, q.rows(), q.cols());
  const int T = d.T, D = d.D, Dp = d.Dp, s = d.s;
  const Mat<Real> Qf = phi_forward_heads(fm, q, H);  // (T, H*Dp)
  const Mat<Real> Kf = phi_forward_heads(fm, k, G);  // (T, G*Dp)
  Mat<Real> dQf(T, long(H) * Dp);
  Mat<Real> dKf = Mat<Real>::Zero(T, long(G) * Dp);
  RlaGrads<Real> grads;
  grads.dv = Mat<Real>::Zero(T, k.cols());
  grads.dh0.resize(size_t(G));
  Mat<Real> A, B;                 // (n, m) per-chunk score blocks, reused
  Mat<Real> Sg(Dp, D), dS(Dp, D);
  const int n_chunks = (T + C - 1) / C;
  for (int g = 0; g < G; ++g) {
    const int h_begin = g * d.r, h_end = (g + 1) * d.r;
    // Forward sweep: dQ~.
    if (h0) Sg = (*h0)[size_t(g)]; else Sg.setZero();
    for (int i = 0; i < n_chunks; ++i) {
      const int c0 = i * C, n = std::min(C, T - c0);
      const auto [a, m, j0] = detail::chunk_keys(c0, n, s);  // K'_[i], V'_[i] = phi(K), v rows [j0, j0+m)
      for (int h = h_begin; h < h_end; ++h) {
        auto dOc = dout.block(c0, h * D, n, D);
        auto dQc = dQf.block(c0, h * Dp, n, Dp);
        dQc.noalias() = dOc * Sg.transpose();
        if (m > 0) {
          B.noalias() = dOc * v.block(j0, g * D, m, D).transpose();
          detail::keep_causal(B, a - c0);
          dQc.noalias() += B * Kf.block(j0, g * Dp, m, Dp);
        }
      }
      if (m > 0) Sg.noalias() += Kf.block(j0, g * Dp, m, Dp).transpose() * v.block(j0, g * D, m, D);
    }
    // Reverse sweep: dK~, dV, dS.
    dS.setZero();
    for (int i = n_chunks - 1; i >= 0; --i) {
      const int c0 = i * C, n = std::min(C, T - c0);
      const auto [a, m, j0] = detail::chunk_keys(c0, n, s);  // K'_[i], V'_[i] = phi(K), v rows [j0, j0+m)
      if (m > 0) {
        auto Kc = Kf.block(j0, g * Dp, m, Dp);
        auto Vc = v.block(j0, g * D, m, D);
        auto dKc = dKf.block(j0, g * Dp, m, Dp);
        auto dVc = grads.dv.block(j0, g * D, m, D);
        dKc.noalias() += Vc * dS.transpose();  // through S_[i+1] = S_[i] + K'^T V'
        dVc.noalias() += Kc * dS;
        for (int h = h_begin; h < h_end; ++h) {
          auto Qc = Qf.block(c0, h * Dp, n, Dp);
          auto dOc = dout.block(c0, h * D, n, D);
          B.noalias() = dOc * Vc.transpose();
          detail::keep_causal(B, a - c0);
          dKc.noalias() += B.transpose() * Qc;
          A.noalias() = Qc * Kc.transpose();
          detail::keep_causal(A, a - c0);
          dVc.noalias() += A.transpose() * dOc;
        }
      }
      for (int h = h_begin; h < h_end; ++h)
        dS.noalias() += Qf.block(c0, h * Dp, n, Dp).transpose() * dout.block(c0, h * D, n, D);
    }
    grads.dh0[size_t(g)] = dS;
  }
  grads.dq = phi_backward_heads_from_phi(fm, Qf, dQf, H);
  grads.dk = phi_backward_heads_from_phi(fm, Kf, dKf, G);
  return grads;
}

}  // namespace ref
