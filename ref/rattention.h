// ref/rattention.h: the RATTENTION attention layer (spec §2, paper sections 2-3).
//
// One attention layer of the local-global stack, on one sequence (rows = tokens):
//
//   q = x W_Q   (T, H*D);   k = x W_K,  v = x W_V   (T, G*D)                  spec §2.1, shared by both branches
//   local layer, kind:
//     swa     c = GRMS_swa( SWA(RoPE(q), RoPE(k), v; w, scale 1/sqrt(D)) )     the baseline
//     rattn   c = GRMS_swa( SWA(...) ) + GRMS_rla( RLA(q, k, v; w) )           the paper (spec §2.5)
//     linear  c = GRMS_rla( RLA(q, k, v; w = -1) )                              the "-SWA" ablation
//   global layer: c = causal softmax attention over [0, t], scale 1/sqrt(D), NO RoPE (NoPE, spec §1.3),
//                 no branch norm
//   qk-norm (optional, cfg.qk_norm, spec §2.9): every softmax attention (the SWA branch of swa/rattn,
//                 the global layer) reads q_hat = QKN(RoPE(q); q_norm), k_hat = QKN(RoPE(k); k_norm)
//                 instead (no RoPE on a global layer), QKN = RMSNorm over the head dim D with one
//                 learned (1, D) scale shared by the heads; the RLA branch never sees it
//   y = c W_O   (T, C)
//
// The window boundary (spec §2.3): for query t, SWA sees keys [max(0,t-w), t] and RLA sees j <= t-w-1;
// the two sets partition the causal prefix [0, t]. RoPE is applied on the SWA branch only; the RLA
// branch reads the raw q, k through phi (ref/feature_map.h). GRMS is the per-head group RMSNorm with
// scales gamma (H, D), eps 1e-8 (ref/norm.h).
//
// The "attention core" (attn_core_*) is everything between the projections: (q, k, v) -> c. The
// "layer" (attention_layer_*) adds W_Q, W_K, W_V and W_O.
#pragma once
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "ref/attention.h"
#include "ref/attention_blocked.h"
#include "ref/feature_map.h"
#include "ref/linear.h"
#include "ref/norm.h"
#include "ref/rla.h"
#include "ref/rla_train.h"
#include "ref/rope.h"
#include "ref/tensor.h"

namespace ref {

// The three local-layer kinds of the project decisions (spec §0).
enum class LocalKind { swa, rattn, linear };

inline LocalKind parse_local_kind(const std::string& s) {
  if (s == "swa") return LocalKind::swa;
  if (s == "rattn") return LocalKind::rattn;
  if (s == "linear") return LocalKind::linear;
  throw std::invalid_argument("unknown local kind '" + s + "' (expected swa, rattn or linear)");
}

inline const char* to_string(LocalKind kind) {
  switch (kind) {
    case LocalKind::swa: return "swa";
    case LocalKind::rattn: return "rattn";
    case LocalKind::linear: return "linear";
  }
  return "?";
}

// One attention layer's configuration.
//   H query heads, G kv heads (GQA, H % G == 0), head dim D (even on RoPE'd layers).
//   w: keys to the left of the query in the SWA window (swa, rattn; rattn needs w >= 0).
//   global: full causal attention, no RoPE, no branch norm (kind, w, fm, chunk are then unused).
//   fm: RLA feature map; chunk: RLA chunk size C of the chunked form used for training.
//   qk_norm: RMSNorm of q and k over D before every softmax attention (spec §2.9), with qk_eps
//   (the model's norm_eps, 1e-5 by default); off by default, and off changes nothing.
struct AttnConfig {
  int H = 1, G = 1, D = 2;
  int w = 0;
  bool global = false;
  LocalKind kind = LocalKind::rattn;
  FeatureMap fm = FeatureMap::sm2;
  int chunk = 16;
  double rope_theta = kDefaultRopeTheta;
  double eps = 1e-8;
  bool qk_norm = false;
  double qk_eps = 1e-5;
};

// Does this layer have the SWA branch (RoPE'd softmax attention + GRMS_swa) / the RLA branch?
inline bool has_swa_branch(const AttnConfig& cfg) { return !cfg.global && cfg.kind != LocalKind::linear; }
inline bool has_rla_branch(const AttnConfig& cfg) { return !cfg.global && cfg.kind != LocalKind::swa; }
// The RLA window: w for rattn, -1 (inclusive, no shift: all of [0, t]) for linear.
inline int rla_window(const AttnConfig& cfg) { return cfg.kind == LocalKind::linear ? -1 : cfg.w; }
// Does this layer apply qk-norm? Only where there is softmax attention: the SWA branch or a global
// layer (spec §2.9); a linear layer has none, and the RLA branch reads the raw q, k in any case.
inline bool has_qk_norm(const AttnConfig& cfg) { return cfg.qk_norm && (cfg.global || has_swa_branch(cfg)); }

inline void validate(const AttnConfig& cfg) {
  if (cfg.H <= 0 || cfg.G <= 0 || cfg.H % cfg.G != 0)
    throw std::invalid_argument("AttnConfig: H=" + std::to_string(cfg.H) + " must be a positive multiple of G=" +
                                std::to_string(cfg.G));
  if (cfg.D <= 0) throw std::invalid_argument("AttnConfig: D must be positive");
  if (has_swa_branch(cfg) && cfg.D % 2 != 0)
    throw std::invalid_argument("AttnConfig: RoPE needs an even head dim D, got " + std::to_string(cfg.D));
  if (has_rla_branch(cfg) && cfg.chunk <= 0) throw std::invalid_argument("AttnConfig: chunk must be positive");
  if (!cfg.global && cfg.kind == LocalKind::rattn && cfg.w < 0)
    throw std::invalid_argument("AttnConfig: rattn needs a window w >= 0 (w = -1, pure linear attention "
                                "over [0, t], is LocalKind::linear)");
  if (cfg.qk_norm && !(cfg.qk_eps >= 0)) throw std::invalid_argument("AttnConfig: qk_eps must be >= 0");
}

// qk-norm (spec §2.9): RMSNorm over the head dim of every (token, head) block of D columns, with one
// scale shared by all heads (axlearn's RMSNorm over the per-head dim in scale_query / scale_key). It is
// ref/norm.h's rmsnorm on the (T*n, D) view of x (row-major: head h of token t is row t*n + h).
// x: (T, n*D), scale: (1, D) -> y: (T, n*D);  y[t, h] = x[t, h] * rsqrt(mean_d(x[t, h]^2) + eps) * scale
template <class Real>
Mat<Real> qk_norm_forward(const Mat<Real>& x, const Mat<Real>& scale, Real eps) {
  const long D = scale.cols();
  expect_shape("qk_norm scale", scale, 1, D);
  if (D <= 0 || x.cols() % D != 0)
    throw std::invalid_argument("qk_norm: " + std::to_string(x.cols()) + " columns are not heads of D = " +
                                std::to_string(D));
  const Mat<Real> rows = Eigen::Map<const Mat<Real>>(x.data(), x.size() / D, D);  // (T*n, D)
  const Mat<Real> y = rmsnorm_forward(rows, RowVec<Real>(scale), eps);
  return Eigen::Map<const Mat<Real>>(y.data(), x.rows(), x.cols());
}

// x: (T, n*D), scale: (1, D), dy: (T, n*D) -> dx: (T, n*D); dscale: (1, D), accumulated (+=).
// In the forward pass this was: y = rmsnorm_forward(x viewed as (T*n, D), scale, eps), so each row
// inverts as in rmsnorm_backward and dscale sums over tokens and heads.
template <class Real>
Mat<Real> qk_norm_backward(const Mat<Real>& x, const Mat<Real>& scale, Real eps, const Mat<Real>& dy,
                           Mat<Real>& dscale) {
  const long D = scale.cols();
  expect_shape("qk_norm scale", scale, 1, D);
  expect_shape("qk_norm dscale", dscale, 1, D);
  expect_shape("qk_norm dy", dy, x.rows(), x.cols());
  const long N = x.size() / D;
  const Mat<Real> rows = Eigen::Map<const Mat<Real>>(x.data(), N, D);
  const Mat<Real> drows = Eigen::Map<const Mat<Real>>(dy.data(), N, D);
  RowVec<Real> ds = RowVec<Real>::Zero(D);
  const Mat<Real> dx = rmsnorm_backward(rows, RowVec<Real>(scale), eps, drows, ds);
  dscale += ds;
  return Eigen::Map<const Mat<Real>>(dx.data(), x.rows(), x.cols());
}

// The qk-norm scales a core call reads (spec §2.9): both null when the layer has no qk-norm.
template <class Real>
struct QkNormScales {
  const Mat<Real>* q_norm = nullptr;  // (1, D)
  const Mat<Real>* k_norm = nullptr;  // (1, D)
};

template <class Real>
void check_qk_scales(const AttnConfig& cfg, const QkNormScales<Real>& qkn) {
  if (!has_qk_norm(cfg)) return;
  if (!qkn.q_norm || !qkn.k_norm) throw std::invalid_argument("attn_core: qk_norm is on but no q_norm/k_norm given");
  expect_shape("q_norm", *qkn.q_norm, 1, cfg.D);
  expect_shape("k_norm", *qkn.k_norm, 1, cfg.D);
}

// What attn_core_forward keeps for the backward: the RoPE'd q, k of the SWA branch, the two
// branch outputs before their norms, and what the RLA backward reads (phi(q), phi(k), the chunk
// states and score blocks: ref/rla_train.h). Fields of absent branches stay empty.
template <class Real>
struct CoreCache {
  Mat<Real> q_rope, k_rope;  // (T, H*D), (T, G*D)   SWA branch inputs (local swa/rattn)
  Mat<Real> q_hat, k_hat;    // (T, H*D), (T, G*D)   the qk-normed softmax inputs (qk-norm only)
  Mat<Real> o_swa;           // (T, H*D)  SWA output (softmax attention output on a global layer)
  Mat<Real> o_rla;           // (T, H*D)  RLA output (rattn, linear)
  RlaSaved<Real> rla;        //           RLA forward state for its backward (rattn, linear)
};

// The attention core: (q, k, v) -> c, everything between the projections.
// q: (T, H*D), k, v: (T, G*D), gamma_swa, gamma_rla: (H, D), qkn: the (1, D) qk-norm scales when
// cfg.qk_norm -> c: (T, H*D)
template <class Real>
Mat<Real> attn_core_forward(const AttnConfig& cfg, const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v,
                            const Mat<Real>& gamma_swa, const Mat<Real>& gamma_rla,
                            std::type_identity_t<CoreCache<Real>>* cache = nullptr,
                            const std::type_identity_t<QkNormScales<Real>>& qkn = {}) {
  validate(cfg);
  check_qk_scales(cfg, qkn);
  const Real qk_eps = Real(cfg.qk_eps);
  const long T = q.rows();
  expect_shape("q", q, T, long(cfg.H) * cfg.D);
  expect_shape("k", k, T, long(cfg.G) * cfg.D);
  expect_shape("v", v, T, long(cfg.G) * cfg.D);
  const Real scale = Real(1.0 / std::sqrt(double(cfg.D)));
  const Real eps = Real(cfg.eps);
  CoreCache<Real> local;
  CoreCache<Real>& cc = cache ? *cache : local;

  if (cfg.global) {
    // global layer: o = softmax(q k^T / sqrt(D) + causal mask) v, no RoPE, no branch norm
    // (swa_*_blocked: ref/attention.h's swa_forward / swa_backward a block of queries at a time,
    //  the same function, held equal to it by tests/test_perf_paths.cpp; the training-speed path)
    if (!cfg.qk_norm) {
      cc.o_swa = swa_forward_blocked(q, k, v, cfg.H, cfg.G, -1, scale);
      return cc.o_swa;
    }
    // with qk-norm (spec §2.9): q_hat = QKN(q; q_norm), k_hat = QKN(k; k_norm), then the same attention
    cc.q_hat = qk_norm_forward(q, *qkn.q_norm, qk_eps);
    cc.k_hat = qk_norm_forward(k, *qkn.k_norm, qk_eps);
    cc.o_swa = swa_forward_blocked(cc.q_hat, cc.k_hat, v, cfg.H, cfg.G, -1, scale);
    return cc.o_swa;
  }
  Mat<Real> c = Mat<Real>::Zero(T, q.cols());
  if (has_swa_branch(cfg)) {
    expect_shape("gamma_swa", gamma_swa, cfg.H, cfg.D);
    // SWA branch: RoPE at positions 0..T-1, scale 1/sqrt(D), window [max(0,t-w), t]  (spec §2.2)
    cc.q_rope = rope_forward(q, cfg.H, cfg.rope_theta);
    cc.k_rope = rope_forward(k, cfg.G, cfg.rope_theta);
    if (!cfg.qk_norm) {
      cc.o_swa = swa_forward_blocked(cc.q_rope, cc.k_rope, v, cfg.H, cfg.G, cfg.w, scale);
    } else {
      // qk-norm after RoPE, before the 1/sqrt(D) scale (spec §2.9, axlearn's scale_query / scale_key)
      cc.q_hat = qk_norm_forward(cc.q_rope, *qkn.q_norm, qk_eps);
      cc.k_hat = qk_norm_forward(cc.k_rope, *qkn.k_norm, qk_eps);
      cc.o_swa = swa_forward_blocked(cc.q_hat, cc.k_hat, v, cfg.H, cfg.G, cfg.w, scale);
    }
    c += group_rmsnorm_forward(cc.o_swa, gamma_swa, eps);
  }
  if (has_rla_branch(cfg)) {
    expect_shape("gamma_rla", gamma_rla, cfg.H, cfg.D);
    // RLA branch on raw q, k: o_rla[t] = phi(q_t) S_{t-w-1}  (spec §2.3), chunked form (spec §3.2)
    // With a cache (training): rla_forward_saved, the same function keeping what the backward reads
    // (ref/rla_train.h, held equal to it by tests/test_perf_paths.cpp); without (evaluation), nothing kept.
    cc.o_rla = cache ? rla_forward_saved(q, k, v, cfg.H, cfg.G, rla_window(cfg), cfg.fm, cfg.chunk, cc.rla)
                     : rla_forward_chunked(q, k, v, cfg.H, cfg.G, rla_window(cfg), cfg.fm, cfg.chunk);
    c += group_rmsnorm_forward(cc.o_rla, gamma_rla, eps);
  }
  return c;
}

template <class Real>
struct CoreGrads {
  Mat<Real> dq, dk, dv;              // (T, H*D), (T, G*D), (T, G*D)
  Mat<Real> dgamma_swa, dgamma_rla;  // (H, D) each; zero for a branch the layer does not have
  Mat<Real> dq_norm, dk_norm;        // (1, D) each; zero without qk-norm
};

// Backward of the attention core. Recomputes the forward unless the forward's cache is passed
// (an addition to the contract's signature, so the layer backward does not run the core twice).
// q: (T, H*D), k, v: (T, G*D), gammas: (H, D), dout: (T, H*D), qkn as in the forward -> CoreGrads
template <class Real>
CoreGrads<Real> attn_core_backward(const AttnConfig& cfg, const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v,
                                   const Mat<Real>& gamma_swa, const Mat<Real>& gamma_rla, const Mat<Real>& dout,
                                   const std::type_identity_t<CoreCache<Real>>* cache = nullptr,
                                   const std::type_identity_t<QkNormScales<Real>>& qkn = {}) {
  CoreCache<Real> local;
  if (!cache) {
    attn_core_forward(cfg, q, k, v, gamma_swa, gamma_rla, &local, qkn);
    cache = &local;
  }
  check_qk_scales(cfg, qkn);
  const Real qk_eps = Real(cfg.qk_eps);
  const long T = q.rows();
  expect_shape("dout", dout, T, long(cfg.H) * cfg.D);
  const Real scale = Real(1.0 / std::sqrt(double(cfg.D)));
  const Real eps = Real(cfg.eps);
  CoreGrads<Real> g;
  g.dq = Mat<Real>::Zero(T, q.cols());
  g.dk = Mat<Real>::Zero(T, k.cols());
  g.dv = Mat<Real>::Zero(T, v.cols());
  g.dgamma_swa = Mat<Real>::Zero(cfg.H, cfg.D);
  g.dgamma_rla = Mat<Real>::Zero(cfg.H, cfg.D);
  g.dq_norm = Mat<Real>::Zero(1, cfg.D);
  g.dk_norm = Mat<Real>::Zero(1, cfg.D);

  if (cfg.global) {
    if (!cfg.qk_norm) {
      // In the forward pass this was: o = swa_forward(q, k, v, H, G, -1, scale); c = o
      swa_backward_blocked(q, k, v, dout, cfg.H, cfg.G, -1, scale, g.dq, g.dk, g.dv);
      return g;
    }
    // In the forward pass this was: o = swa_forward(q_hat, k_hat, v, H, G, -1, scale); c = o
    Mat<Real> dq_hat, dk_hat;
    swa_backward_blocked(cache->q_hat, cache->k_hat, v, dout, cfg.H, cfg.G, -1, scale, dq_hat, dk_hat, g.dv);
    // In the forward pass this was: q_hat = QKN(q; q_norm), k_hat = QKN(k; k_norm)
    g.dq = qk_norm_backward(q, *qkn.q_norm, qk_eps, dq_hat, g.dq_norm);
    g.dk = qk_norm_backward(k, *qkn.k_norm, qk_eps, dk_hat, g.dk_norm);
    return g;
  }
  // In the forward pass this was: c = GRMS_swa(o_swa) + GRMS_rla(o_rla), so dout reaches both
  // branches unchanged.
  if (has_swa_branch(cfg)) {
    // In the forward pass this was: c += group_rmsnorm_forward(o_swa, gamma_swa, eps)
    Mat<Real> do_swa = group_rmsnorm_backward(cache->o_swa, gamma_swa, eps, dout, g.dgamma_swa);
    Mat<Real> dq_rope, dk_rope, dv_swa;
    if (!cfg.qk_norm) {
      // In the forward pass this was: o_swa = swa_forward(q_rope, k_rope, v, H, G, w, scale)
      swa_backward_blocked(cache->q_rope, cache->k_rope, v, do_swa, cfg.H, cfg.G, cfg.w, scale, dq_rope, dk_rope,
                           dv_swa);
    } else {
      // In the forward pass this was: o_swa = swa_forward(q_hat, k_hat, v, H, G, w, scale)
      Mat<Real> dq_hat, dk_hat;
      swa_backward_blocked(cache->q_hat, cache->k_hat, v, do_swa, cfg.H, cfg.G, cfg.w, scale, dq_hat, dk_hat, dv_swa);
      // In the forward pass this was: q_hat = QKN(q_rope; q_norm), k_hat = QKN(k_rope; k_norm)
      dq_rope = qk_norm_backward(cache->q_rope, *qkn.q_norm, qk_eps, dq_hat, g.dq_norm);
      dk_rope = qk_norm_backward(cache->k_rope, *qkn.k_norm, qk_eps, dk_hat, g.dk_norm);
    }
    // In the forward pass this was: q_rope = rope_forward(q, H, theta); k_rope = rope_forward(k, G, theta)
    g.dq += rope_backward(dq_rope, cfg.H, cfg.rope_theta);
    g.dk += rope_backward(dk_rope, cfg.G, cfg.rope_theta);
    g.dv += dv_swa;
  }
  if (has_rla_branch(cfg)) {
    // In the forward pass this was: c += group_rmsnorm_forward(o_rla, gamma_rla, eps)
    Mat<Real> do_rla = group_rmsnorm_backward(cache->o_rla, gamma_rla, eps, dout, g.dgamma_rla);
    // In the forward pass this was: o_rla = rla_forward_saved(q, k, v, H, G, w_rla, fm, chunk, rla)
    // (rla_backward_saved: ref/rla.h's rla_backward_chunked without recomputing the forward)
    RlaGrads<Real> r = rla_backward_saved(v, do_rla, cache->rla);
    g.dq += r.dq;
    g.dk += r.dk;
    g.dv += r.dv;
  }
  return g;
}

// The layer's parameters. C = d_model. gamma_swa / gamma_rla are unused by layers without that
// branch (their gradients stay zero).
template <class Real>
struct AttnParams {
  Mat<Real> Wq;         // (C, H*D)
  Mat<Real> Wk, Wv;     // (C, G*D)
  Mat<Real> Wo;         // (H*D, C)
  Mat<Real> gamma_swa;  // (H, D), initialised to 1
  Mat<Real> gamma_rla;  // (H, D), initialised to 1
  Mat<Real> q_norm;     // (1, D), initialised to 1: the qk-norm scales (spec §2.9), read only with
  Mat<Real> k_norm;     // (1, D)                    cfg.qk_norm on a layer with softmax attention
};

// The qk-norm scales of p for a core call: set when the layer applies qk-norm, null otherwise.
template <class Real>
QkNormScales<Real> qk_scales(const AttnConfig& cfg, const AttnParams<Real>& p) {
  if (!has_qk_norm(cfg)) return {};
  return {&p.q_norm, &p.k_norm};
}

// Parameters of the given shapes, all set to zero (a gradient accumulator for attention_layer_backward).
template <class Real>
AttnParams<Real> attn_params_zero(const AttnConfig& cfg, int C) {
  AttnParams<Real> p;
  p.Wq = Mat<Real>::Zero(C, long(cfg.H) * cfg.D);
  p.Wk = Mat<Real>::Zero(C, long(cfg.G) * cfg.D);
  p.Wv = Mat<Real>::Zero(C, long(cfg.G) * cfg.D);
  p.Wo = Mat<Real>::Zero(long(cfg.H) * cfg.D, C);
  p.gamma_swa = Mat<Real>::Zero(cfg.H, cfg.D);
  p.gamma_rla = Mat<Real>::Zero(cfg.H, cfg.D);
  p.q_norm = Mat<Real>::Zero(1, cfg.D);
  p.k_norm = Mat<Real>::Zero(1, cfg.D);
  return p;
}

// What attention_layer_forward keeps for attention_layer_backward: the projections, the core's
// output and the core's cache. Without it the backward recomputes all of them from x.
template <class Real>
struct LayerCache {
  Mat<Real> q, k, v;     // (T, H*D), (T, G*D), (T, G*D)
  Mat<Real> c;           // (T, H*D) core output, the input of W_O
  CoreCache<Real> core;
};

// The full attention layer.
// x: (T, C) -> y: (T, C); with keep, what the backward needs is kept there
template <class Real>
Mat<Real> attention_layer_forward(const AttnConfig& cfg, const AttnParams<Real>& p, const Mat<Real>& x,
                                  LayerCache<Real>* keep = nullptr) {
  LayerCache<Real> local;
  LayerCache<Real>& L = keep ? *keep : local;
  // q = x W_Q, k = x W_K, v = x W_V   (spec §2.1)
  L.q = linear_forward(x, p.Wq);
  L.k = linear_forward(x, p.Wk);
  L.v = linear_forward(x, p.Wv);
  L.c = attn_core_forward(cfg, L.q, L.k, L.v, p.gamma_swa, p.gamma_rla, keep ? &L.core : nullptr, qk_scales(cfg, p));
  // y = c W_O
  return linear_forward(L.c, p.Wo);
}

// x: (T, C), dy: (T, C) -> dx: (T, C); every gradient in dp accumulated (+=).
// kept: the cache of attention_layer_forward on the same x and p (null: the forward is recomputed).
template <class Real>
Mat<Real> attention_layer_backward(const AttnConfig& cfg, const AttnParams<Real>& p, const Mat<Real>& x,
                                   const Mat<Real>& dy, AttnParams<Real>& dp, const LayerCache<Real>* kept = nullptr) {
  LayerCache<Real> local;
  if (!kept) {
    attention_layer_forward(cfg, p, x, &local);
    kept = &local;
  }
  const LayerCache<Real>& L = *kept;
  expect_shape("attention_layer_backward: the kept q", L.q, x.rows(), long(cfg.H) * cfg.D);
  // In the forward pass this was: y = c W_O
  const Mat<Real> dc = linear_backward(L.c, p.Wo, dy, dp.Wo);
  // In the forward pass this was: c = attn_core_forward(cfg, q, k, v, gamma_swa, gamma_rla, ..., qk_scales(cfg, p))
  CoreGrads<Real> g = attn_core_backward(cfg, L.q, L.k, L.v, p.gamma_swa, p.gamma_rla, dc, &L.core, qk_scales(cfg, p));
  expect_shape("dgamma_swa", dp.gamma_swa, cfg.H, cfg.D);
  expect_shape("dgamma_rla", dp.gamma_rla, cfg.H, cfg.D);
  dp.gamma_swa += g.dgamma_swa;
  dp.gamma_rla += g.dgamma_rla;
  if (has_qk_norm(cfg)) {
    expect_shape("dq_norm", dp.q_norm, 1, cfg.D);
    expect_shape("dk_norm", dp.k_norm, 1, cfg.D);
    dp.q_norm += g.dq_norm;
    dp.k_norm += g.dk_norm;
  }
  // In the forward pass this was: q = x W_Q, k = x W_K, v = x W_V  (x feeds all three)
  Mat<Real> dx = linear_backward(x, p.Wq, g.dq, dp.Wq);
  dx += linear_backward(x, p.Wk, g.dk, dp.Wk);
  dx += linear_backward(x, p.Wv, g.dv, dp.Wv);
  return dx;
}

}  // namespace ref
