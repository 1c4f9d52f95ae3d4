// ref/decode.h: constant-memory decode of one attention layer, one token at a time (spec §3.1).
//
// The per-layer cache holds, for a layer whose forward is ref::attention_layer_forward:
//   local swa    a ring of the last w+1 RAW (un-RoPE'd) k, v rows with their positions
//   local rattn  the same ring, plus the RLA state S (one (Dp, D) matrix per kv head)
//   local linear only the state S (RLA over all of [0, t], w = -1)
//   global       the full k, v cache (grows with t: global layers are what keeps decode O(T));
//                with qk-norm, k is kept normalised
//
// Step t of a local layer (the ring has w+1 slots; slot t mod (w+1) still holds token t-w-1):
//   1. rattn: fold the token leaving the window into the state,  S += phi(k_{t-w-1})^T v_{t-w-1}
//      (after this, S = S_{t-w-1} = sum_{j <= t-w-1} phi(k_j)^T v_j: exactly the RLA keys of query t)
//   2. overwrite the slot with k_t, v_t and position t
//   3. SWA over the ring: the keys are RoPE'd at their stored positions, q_t at position t, and the
//      ring is read oldest first, so the keys sit in the same order as in the full forward
//   4. rattn: o_rla = phi(q_t) S;   c = GRMS_swa(o_swa) + GRMS_rla(o_rla);   y = c W_O
// The ring keeps raw k (as axlearn caches un-RoPE'd keys) so that the token it hands to the RLA
// state in step 1 is the raw key the RLA branch wants; RoPE is re-applied to w+1 keys per step.
// With qk-norm (spec §2.9) the ring still holds raw keys, for the same reason: q_t and the w+1 window
// keys are normalised after their RoPE at every step. A global layer's full cache holds the
// normalised keys (nothing else reads them), so each key is normalised once.
//
// Prefill is simply decode steps over the prompt (attention_layer_prefill): the cache after the
// prompt is then exactly the cache of a token-by-token run, and no second code path can disagree.
//
// State precision: the state has the scalar type of the model (fp32 in float, fp64 in double).
#pragma once
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <vector>

#include "ref/attention.h"
#include "ref/feature_map.h"
#include "ref/linear.h"
#include "ref/norm.h"
#include "ref/rattention.h"
#include "ref/rla.h"
#include "ref/rope.h"
#include "ref/tensor.h"

namespace ref {

template <class Real>
struct AttnDecodeCache {
  long t = 0;                  // tokens seen so far = the position of the next token
  Mat<Real> ring_k, ring_v;    // (w+1, G*D): raw k, v of the last w+1 tokens (local swa, rattn)
  std::vector<long> ring_pos;  // (w+1): position held by each slot, -1 = empty
  Mat<Real> k_all, v_all;      // (t, G*D): every k, v so far (global layers; k normalised with qk-norm)
  RlaState<Real> state;        // G matrices (Dp, D): S_{t-w-1} (rattn) or S_t (linear)

  // Bytes held by the cache (the tensors only; bookkeeping ints such as t are not counted).
  size_t bytes() const {
    size_t n = size_t(ring_k.size() + ring_v.size() + k_all.size() + v_all.size());
    for (const Mat<Real>& Sg : state) n += size_t(Sg.size());
    return n * sizeof(Real) + ring_pos.size() * sizeof(long);
  }
};

// The cache of a layer with no tokens yet.
template <class Real>
AttnDecodeCache<Real> attn_decode_init(const AttnConfig& cfg) {
  validate(cfg);
  if (!cfg.global && cfg.kind != LocalKind::linear && cfg.w < 0)
    throw std::invalid_argument("attn_decode_init: a local swa/rattn layer needs w >= 0 to decode with a "
                                "ring buffer (w < 0 is global attention: use a global layer)");
  AttnDecodeCache<Real> c;
  const long kv_cols = long(cfg.G) * cfg.D;
  if (cfg.global) {
    c.k_all.resize(0, kv_cols);
    c.v_all.resize(0, kv_cols);
  }
  if (has_swa_branch(cfg)) {
    c.ring_k = Mat<Real>::Zero(cfg.w + 1, kv_cols);
    c.ring_v = Mat<Real>::Zero(cfg.w + 1, kv_cols);
    c.ring_pos.assign(size_t(cfg.w + 1), -1);
  }
  if (has_rla_branch(cfg)) c.state = rla_zero_state<Real>(cfg.G, cfg.D, cfg.fm);
  return c;
}

// Bytes a plain full-attention layer of the same shape holds after T tokens: k and v for every token.
template <class Real>
size_t full_attention_cache_bytes(const AttnConfig& cfg, long T) {
  return size_t(2 * T * long(cfg.G) * cfg.D) * sizeof(Real);
}

// One decode step: the layer's output for the token x_t at position cache.t; advances the cache.
// x_t: (1, C) -> y_t: (1, C)   (equals row t of attention_layer_forward over the whole sequence)
#ifndef RATTN_EXERCISE_DECODE_STEP  // workshop hook: exercises/08_decode_step.h replaces this (docs/workshop.md)
template <class Real>
Mat<Real> attention_layer_decode_step(const AttnConfig& cfg, const AttnParams<Real>& p, AttnDecodeCache<Real>& cache,
                                      const Mat<Real>& x_t) {
  expect_shape("x_t", x_t, 1, p.Wq.rows());
  const long t = cache.t;
  const Real scale = Real(1.0 / std::sqrt(double(cfg.D)));
  const Real eps = Real(cfg.eps);
  const Real qk_eps = Real(cfg.qk_eps);
  const bool qkn = has_qk_norm(cfg);
  // q_t = x_t W_Q, k_t = x_t W_K, v_t = x_t W_V   (spec §2.1)
  const Mat<Real> q = linear_forward(x_t, p.Wq), k = linear_forward(x_t, p.Wk), v = linear_forward(x_t, p.Wv);
  Mat<Real> c = Mat<Real>::Zero(1, q.cols());

  if (cfg.global) {
    // global: append to the full cache, attend over [0, t], no RoPE, no branch norm
    cache.k_all.conservativeResize(t + 1, Eigen::NoChange);
    cache.v_all.conservativeResize(t + 1, Eigen::NoChange);
    cache.k_all.row(t) = qkn ? qk_norm_forward(k, p.k_norm, qk_eps) : k;  // k_hat with qk-norm (spec §2.9)
    cache.v_all.row(t) = v;
    c = attend_row(qkn ? qk_norm_forward(q, p.q_norm, qk_eps) : q, 0, cache.k_all, cache.v_all, 0, t, cfg.H, cfg.G,
                   scale);
  } else if (cfg.kind == LocalKind::linear) {
    // linear (w = -1, inclusive): S_t = S_{t-1} + phi(k_t)^T v_t;  o_rla = phi(q_t) S_t
    rla_fold(cache.state, k, v, cfg.G, cfg.fm);
    c = group_rmsnorm_forward(rla_read(cache.state, q, cfg.H, cfg.G, cfg.fm), p.gamma_rla, eps);
  } else {
    const long W1 = cfg.w + 1;  // ring slots
    const long slot = t % W1;
    // 1. the slot still holds token t-w-1, which leaves the window now: fold it into S (rattn)
    if (cache.ring_pos[size_t(slot)] >= 0) {
      if (cache.ring_pos[size_t(slot)] != t - W1)
        throw std::logic_error("decode ring: slot holds an unexpected position");
      if (cfg.kind == LocalKind::rattn)
        rla_fold(cache.state, Mat<Real>(cache.ring_k.row(slot)), Mat<Real>(cache.ring_v.row(slot)), cfg.G, cfg.fm);
    }
    // 2. overwrite the slot with the current raw k_t, v_t
    cache.ring_k.row(slot) = k;
    cache.ring_v.row(slot) = v;
    cache.ring_pos[size_t(slot)] = t;
    // 3. SWA over the window [max(0, t-w), t], oldest first; RoPE at each stored position,
    //    then qk-norm when on (spec §2.9: the same rows of q_hat, k_hat as the full forward)
    const long j0 = window_start(t, cfg.w), n = t - j0 + 1;
    Mat<Real> k_win(n, k.cols()), v_win(n, v.cols());
    for (long j = j0; j <= t; ++j) {
      const long s = j % W1;
      const long pos = cache.ring_pos[size_t(s)];
      k_win.row(j - j0) = rope_forward(Mat<Real>(cache.ring_k.row(s)), cfg.G, cfg.rope_theta, int(pos));
      v_win.row(j - j0) = cache.ring_v.row(s);
    }
    const Mat<Real> q_rope = rope_forward(q, cfg.H, cfg.rope_theta, int(t));
    const Mat<Real> q_hat = qkn ? qk_norm_forward(q_rope, p.q_norm, qk_eps) : q_rope;
    if (qkn) k_win = qk_norm_forward(k_win, p.k_norm, qk_eps);
    const Mat<Real> o_swa = attend_row(q_hat, 0, k_win, v_win, 0, n - 1, cfg.H, cfg.G, scale);
    c = group_rmsnorm_forward(o_swa, p.gamma_swa, eps);
    // 4. RLA: o_rla = phi(q_t) S_{t-w-1}
    if (cfg.kind == LocalKind::rattn)
      c += group_rmsnorm_forward(rla_read(cache.state, q, cfg.H, cfg.G, cfg.fm), p.gamma_rla, eps);
  }
  cache.t = t + 1;
  // y_t = c W_O
  return linear_forward(c, p.Wo);
}
#else
#include RATTN_EXERCISE_DECODE_STEP
#endif

// Prefill = decode steps over the prompt, row by row (see the header comment).
// x: (T0, C) -> y: (T0, C), the layer's outputs at positions cache.t .. cache.t + T0 - 1
template <class Real>
Mat<Real> attention_layer_prefill(const AttnConfig& cfg, const AttnParams<Real>& p, AttnDecodeCache<Real>& cache,
                                  const Mat<Real>& x) {
  Mat<Real> y(x.rows(), p.Wo.cols());
  for (long r = 0; r < x.rows(); ++r) y.row(r) = attention_layer_decode_step(cfg, p, cache, Mat<Real>(x.row(r)));
  return y;
}

}  // namespace ref
