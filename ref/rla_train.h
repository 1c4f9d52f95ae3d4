// ref/rla_train.h: the chunked RLA as the training step runs it: a forward that keeps what its
// backward needs, and a backward in ONE reverse sweep over the chunks.
//
// ref/rla.h's rla_forward_chunked / rla_backward_chunked are the reference (spec §3.2, §3.3): the
// backward there is self-contained, so it recomputes phi(q), phi(k) and every chunk state S_[i] in a
// forward sweep before its reverse sweep, and computes each masked score block twice. In training the
// forward has just computed all of that. Here the forward keeps it (RlaSaved):
//     Q~ = phi(Q), K~ = phi(K)                     (T, H*Dp), (T, G*Dp)
//     S_[i], the state at the start of chunk i     G x n_chunks, (Dp, D) each
//     A_[i] = (Q~_[i] K'_[i]^T) ⊙ tril             per query head and chunk, (n, m)
// and the backward is the reference's two sweeps folded into one reverse sweep, per kv head g, carrying
// dS = dL/dS_[i+1]:
//     dK'_[i] = V'_[i] dS^T + B^T Q~_[i],   B = (dO_[i] V'_[i]^T) ⊙ tril      (B computed once, not twice)
//     dV'_[i] = K'_[i] dS   + A_[i]^T dO_[i]                                   (A_[i] as the forward made it)
//     dQ~_[i] = dO_[i] S_[i]^T + B K'_[i]                                      (S_[i] as the forward made it)
//     dS     += Q~_[i]^T dO_[i]
// The same products as the reference, accumulated in the same order, minus the recomputation: the
// results equal rla_backward_chunked's (tests/test_perf_paths.cpp, double 1e-12, float 2e-6).
// Also skipped, because their results are exactly zero or never read:
//   Q~_[i] S_[i] and dO_[i] S_[i]^T while S_[i] = 0 (no key has left the window before chunk i);
//   the last chunk's state update S_[n] (no query reads it) and, in the backward, V' dS^T and K' dS
//   while dS = 0 (the last chunk's);
//   dS += Q~_[0]^T dO_[0] of the first chunk, which gives only dL/dS_[0] = dh0.
// No initial state h0 (training starts every sequence from S = 0), so no dh0 either (RlaGrads::dh0
// is left empty). At T = 128, C = 32 the skips are about a tenth of the products. Memory kept per
// sequence and layer: Q~, K~, G * n_chunks states and about T * C scores per query head.
#pragma once
#include <algorithm>
#include <stdexcept>
#include <vector>

#include "ref/feature_map.h"
#include "ref/rla.h"
#include "ref/tensor.h"

namespace ref {

template <class Real>
struct RlaSaved {
  int T = 0, H = 0, G = 0, w = 0, C = 0;
  FeatureMap fm = FeatureMap::sm2;
  Mat<Real> Qf, Kf;         // phi(q) (T, H*Dp), phi(k) (T, G*Dp)
  std::vector<Mat<Real>> S; // [g * n_chunks + i]: S_[i] of kv head g, (Dp, D)
  std::vector<Mat<Real>> A; // [h * n_chunks + i]: the masked score block of query head h, chunk i, (n, m)
  std::vector<char> S_zero; // [g * n_chunks + i]: S_[i] is exactly zero (nothing folded yet)
  int n_chunks() const { return (T + C - 1) / C; }
};

// The chunked forward of ref/rla.h (zero initial state), keeping `saved` for rla_backward_saved.
// q: (T, H*D), k, v: (T, G*D), C >= 1 -> o: (T, H*D)
template <class Real>
Mat<Real> rla_forward_saved(const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, int H, int G, int w,
                            FeatureMap fm, int C, RlaSaved<Real>& saved) {
  const detail::RlaDims d = detail::rla_dims<Real>("rla_forward_saved", q, k, v, H, G, w, fm, nullptr);
  if (C < 1) throw std::invalid_argument("rla_forward_saved: chunk size C must be >= 1");
  const int T = d.T, D = d.D, Dp = d.Dp, s = d.s;
  RlaSaved<Real>& sv = saved;
  sv.T = T, sv.H = H, sv.G = G, sv.w = w, sv.C = C, sv.fm = fm;
  sv.Qf = phi_forward_heads(fm, q, H);  // Q~ = phi(Q)
  sv.Kf = phi_forward_heads(fm, k, G);  // K~ = phi(K)
  const int nc = sv.n_chunks();
  sv.S.resize(size_t(G) * nc);
  sv.S_zero.assign(size_t(G) * nc, 1);
  sv.A.resize(size_t(H) * nc);
  Mat<Real> o(T, q.cols());
  Mat<Real> Sg(Dp, D);
  for (int g = 0; g < G; ++g) {
    Sg.setZero();
    bool zero = true;  // Sg is exactly zero: no key folded yet
    for (int i = 0; i < nc; ++i) {
      const int c0 = i * C, n = std::min(C, T - c0);
      const auto [a, m, j0] = detail::chunk_keys(c0, n, s);  // K'_[i], V'_[i] = phi(K), v rows [j0, j0+m)
      sv.S[size_t(g) * nc + i] = Sg;                         // keep S_[i]
      sv.S_zero[size_t(g) * nc + i] = zero;
      for (int h = g * d.r; h < (g + 1) * d.r; ++h) {
        auto Qc = sv.Qf.block(c0, h * Dp, n, Dp);
        auto Oc = o.block(c0, h * D, n, D);
        if (zero) Oc.setZero(); else Oc.noalias() = Qc * Sg;  // inter-chunk: Q~_[i] S_[i]
        Mat<Real>& Ah = sv.A[size_t(h) * nc + i];
        if (m > 0) {  // intra-chunk: A_[i] V'_[i], A_[i] = (Q~_[i] K'_[i]^T) ⊙ tril
          Ah.noalias() = Qc * sv.Kf.block(j0, g * Dp, m, Dp).transpose();
          detail::keep_causal(Ah, a - c0);
          Oc.noalias() += Ah * v.block(j0, g * D, m, D);
        } else {
          Ah.resize(0, 0);
        }
      }
      if (m > 0 && i + 1 < nc) {  // S_[i+1] = S_[i] + K'_[i]^T V'_[i]  (S_[n] is never read)
        Sg.noalias() += sv.Kf.block(j0, g * Dp, m, Dp).transpose() * v.block(j0, g * D, m, D);
        zero = false;
      }
    }
  }
  return o;
}

// Backward of rla_forward_saved, one reverse sweep (see the header comment).
// v: (T, G*D) (the forward's), dout: (T, H*D), saved: the forward's -> RlaGrads (dq, dk, dv; no dh0)
template <class Real>
RlaGrads<Real> rla_backward_saved(const Mat<Real>& v, const Mat<Real>& dout, const RlaSaved<Real>& saved) {
  const RlaSaved<Real>& sv = saved;
  const int T = sv.T, H = sv.H, G = sv.G, C = sv.C, r = H / G, s = sv.w + 1;
  const int D = int(v.cols() / G), Dp = feature_dim(sv.fm, D), nc = sv.n_chunks();
  expect_shape("rla_backward_saved v", v, T, long(G) * D);
  expect_shape("rla_backward_saved dout", dout, T, long(H) * D);
  Mat<Real> dQf(T, long(H) * Dp);
  Mat<Real> dKf = Mat<Real>::Zero(T, long(G) * Dp);
  RlaGrads<Real> grads;
  grads.dv = Mat<Real>::Zero(T, v.cols());
  Mat<Real> B;  // (n, m) masked dO V'^T block, reused
  Mat<Real> dS(Dp, D);
  for (int g = 0; g < G; ++g) {
    dS.setZero();  // dL/dS_[n_chunks]: nothing reads the final state
    bool dS_zero = true;
    for (int i = nc - 1; i >= 0; --i) {
      const int c0 = i * C, n = std::min(C, T - c0);
      const auto [a, m, j0] = detail::chunk_keys(c0, n, s);
      const Mat<Real>& Si = sv.S[size_t(g) * nc + i];
      const bool Si_zero = sv.S_zero[size_t(g) * nc + i];
      auto Kc = sv.Kf.block(j0, g * Dp, std::max(m, 0), Dp);
      auto Vc = v.block(j0, g * D, std::max(m, 0), D);
      auto dKc = dKf.block(j0, g * Dp, std::max(m, 0), Dp);
      auto dVc = grads.dv.block(j0, g * D, std::max(m, 0), D);
      if (m > 0 && !dS_zero) {
        // In the forward pass this was: S_[i+1] = S_[i] + K'_[i]^T V'_[i]
        dKc.noalias() += Vc * dS.transpose();
        dVc.noalias() += Kc * dS;
      }
      for (int h = g * r; h < (g + 1) * r; ++h) {
        auto Qc = sv.Qf.block(c0, h * Dp, n, Dp);
        auto dOc = dout.block(c0, h * D, n, D);
        auto dQc = dQf.block(c0, h * Dp, n, Dp);
        // In the forward pass this was: O_[i] = Q~_[i] S_[i] + A_[i] V'_[i]
        if (Si_zero) dQc.setZero(); else dQc.noalias() = dOc * Si.transpose();
        if (m > 0) {
          B.noalias() = dOc * Vc.transpose();  // dA_[i], masked as A_[i] was
          detail::keep_causal(B, a - c0);
          dQc.noalias() += B * Kc;
          dKc.noalias() += B.transpose() * Qc;
          dVc.noalias() += sv.A[size_t(h) * nc + i].transpose() * dOc;
        }
      }
      if (i == 0) break;  // dL/dS_[0] would be dh0
      for (int h = g * r; h < (g + 1) * r; ++h)  // dS becomes dL/dS_[i]
        dS.noalias() += sv.Qf.block(c0, h * Dp, n, Dp).transpose() * dout.block(c0, h * D, n, D);
      dS_zero = false;
    }
  }
  // In the forward pass this was: Q~ = phi(Q), K~ = phi(K)
  grads.dq = phi_backward_heads_from_phi(sv.fm, sv.Qf, dQf, H);
  grads.dk = phi_backward_heads_from_phi(sv.fm, sv.Kf, dKf, G);
  return grads;
}

}  // namespace ref
