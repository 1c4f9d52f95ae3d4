// cuda/attn_core_host.h: the attention core of ref/rattention.h (attn_core_forward / attn_core_backward),
// composed on the host from the CUDA kernels, on device buffers. Everything between the projections:
//   global layer:  c = SWA(q, k, v; w = -1, 1/sqrt(D))                   (full causal, no RoPE, no norm)
//   local swa:     c = GRMS_swa(SWA(RoPE(q), RoPE(k), v; w))
//   local rattn:   c = GRMS_swa(SWA(RoPE(q), RoPE(k), v; w)) + GRMS_rla(RLA(q, k, v; w, phi))   (fused merge)
//   local linear:  c = GRMS_rla(RLA(q, k, v; w = -1, phi))
//   qk-norm (cfg.qk_norm, spec §2.9): the softmax attention (global, SWA branch) reads
//                  QKN(RoPE(q); q_norm), QKN(RoPE(k); k_norm): cu::rmsnorm_* over the (B*T*heads, D) rows
// Kernels: cu::rope_*, cu::swa_*, cu::rla_* (state saved at every chunk, m = 1), cu::rattn_merge_* and
// cu::group_rmsnorm_*. A batch of B sequences at once, tensors (B, T, heads, D) contiguous, which is
// (B*T, heads*D) row-major: the ref/ layout of one sequence, stacked. RoPE restarts at position 0 in
// every sequence (cu::rope_*_batch). Everything stays on the device: no step of the core copies to the host.
// Buffers: the cache is (re)allocated only when its size changes, and the backward's temporaries live in a
// CoreDeviceWork the caller may keep, so a training loop that calls the core every step allocates nothing
// after its first step (model/device_trainer.h).
// Used by model/device_trainer.h (--device cuda), model/backend_cuda.h (the kernel checker, --device
// cuda-ops) and tools/rattn-op.cpp (OP rattn --device cuda).
#pragma once
#include <cmath>
#include <cstddef>
#include <stdexcept>
#include <vector>

#include "cuda/buffer.h"
#include "cuda/elementwise.h"
#include "cuda/rattn_merge.h"
#include "cuda/rla.h"
#include "cuda/rmsnorm.h"
#include "cuda/rope.h"
#include "cuda/swa.h"
#include "ref/rattention.h"

namespace cu {

inline FeatureMap to_cu(ref::FeatureMap fm) {
  return fm == ref::FeatureMap::sm2 ? FeatureMap::sm2
         : fm == ref::FeatureMap::relu2 ? FeatureMap::relu2 : FeatureMap::identity;
}

// What attn_core_forward_dev keeps for the backward (device buffers; absent branches stay empty).
struct CoreDeviceCache {
  DeviceBuffer<float> q_rope{0}, k_rope{0};  // (B,T,H,D), (B,T,G,D)  SWA branch inputs (local swa/rattn)
  DeviceBuffer<float> o_swa{0}, lse{0};      // (B,T,H,D), (B,H,T)    SWA output (global: the attention output)
  DeviceBuffer<float> rstd_swa{0};           // (B*T, H)              GRMS_swa (local swa only; rattn: merge kernel)
  DeviceBuffer<float> o_rla{0}, states{0};   // (B,T,H,D), (B,G,n_saved,Dp,D)  RLA output and saved chunk states
  DeviceBuffer<float> rstd_rla{0};           // (B*T, H)              GRMS_rla (local linear only)
  DeviceBuffer<float> q_hat{0}, k_hat{0};    // (B,T,H,D), (B,T,G,D)  qk-normed softmax inputs (qk-norm only)
  DeviceBuffer<float> rstd_q{0}, rstd_k{0};  // (B*T*H), (B*T*G)      their rstd
};

// RoPE (forward, or backward R^T) of each of B sequences, positions 0..T-1: one launch for the batch.
// x: (B, T, n, D) -> y: (B, T, n, D)
inline void rope_each(const float* x, float* y, int B, int T, int n, int D, double theta, bool backward) {
  if (backward) rope_backward_batch(x, y, B, T, n, D, theta);
  else rope_forward_batch(x, y, B, T, n, D, theta);
}

// dst += src, n floats of device memory (cu::add in place).
inline void add_into(float* dst, const float* src, size_t n) { add(dst, src, dst, long(n)); }

// buf holds n elements: reallocated only when its size differs (the same shapes every step: once).
template <class T>
inline void ensure_size(DeviceBuffer<T>& buf, size_t n) {
  if (buf.size() != n) buf = DeviceBuffer<T>(n);
}

// The backward's temporaries (device buffers, sized on first use). A caller that keeps one across
// calls allocates them once; attn_core_backward_dev makes a local one when given none.
struct CoreDeviceWork {
  DeviceBuffer<float> delta{0}, do_swa{0}, do_rla{0}, merge_scratch{0}, rla_scratch{0};
  DeviceBuffer<float> dq_rope{0}, dk_rope{0}, dq_rla{0}, dk_rla{0}, dv_rla{0};
  DeviceBuffer<float> dq_hat{0}, dk_hat{0};  // qk-norm only
};

// qk-norm forward (spec §2.9): x (B*T*n rows of D) -> y, with rstd kept; one scale (D) for every row.
inline void qk_norm_forward_dev(const float* x, const float* scale, DeviceBuffer<float>& y, DeviceBuffer<float>& rstd,
                                size_t rows, int D, float eps) {
  ensure_size(y, rows * D);
  ensure_size(rstd, rows);
  rmsnorm_forward(x, scale, y.data(), rstd.data(), int(rows), D, eps);
}

// q: (B,T,H,D), k, v: (B,T,G,D), gamma_swa, gamma_rla: (H,D), q_norm, k_norm: (D) with qk-norm (else
// unread) -> c: (B,T,H,D); cache filled for the backward.
inline void attn_core_forward_dev(const ref::AttnConfig& cfg, const float* q, const float* k, const float* v,
                                  const float* gamma_swa, const float* gamma_rla, float* c, int B, int T,
                                  CoreDeviceCache& cc, const float* q_norm = nullptr, const float* k_norm = nullptr) {
  ref::validate(cfg);
  const bool qkn = ref::has_qk_norm(cfg);
  if (qkn && (!q_norm || !k_norm)) throw std::invalid_argument("attn_core_forward_dev: qk_norm on, no scales");
  const float qk_eps = float(cfg.qk_eps);
  const int H = cfg.H, G = cfg.G, D = cfg.D;
  const size_t nq = size_t(B) * T * H * D, nk = size_t(B) * T * G * D;
  const float scale = float(1.0 / std::sqrt(double(D)));
  const float eps = float(cfg.eps);
  const bool swa = ref::has_swa_branch(cfg), rla = ref::has_rla_branch(cfg);
  if (cfg.global || swa) {
    ensure_size(cc.o_swa, nq);
    ensure_size(cc.lse, size_t(B) * H * T);
  }
  if (cfg.global) {
    // o = softmax(q k^T / sqrt(D) + causal mask) v; c = o
    // (o is kept in the cache: the backward reads it for delta = rowsum(dout * o))
    if (qkn) {  // q_hat = QKN(q), k_hat = QKN(k)   (spec §2.9, no RoPE on a global layer)
      qk_norm_forward_dev(q, q_norm, cc.q_hat, cc.rstd_q, size_t(B) * T * H, D, qk_eps);
      qk_norm_forward_dev(k, k_norm, cc.k_hat, cc.rstd_k, size_t(B) * T * G, D, qk_eps);
      q = cc.q_hat.data();
      k = cc.k_hat.data();
    }
    swa_forward(q, k, v, cc.o_swa.data(), cc.lse.data(), B, T, H, G, D, -1, scale);
    check(cudaMemcpy(c, cc.o_swa.data(), nq * sizeof(float), cudaMemcpyDeviceToDevice), "attn_core: copy o to c");
    return;
  }
  if (swa) {
    // SWA branch: o_swa = SWA(RoPE(q), RoPE(k), v; w, 1/sqrt(D))   (spec §2.2)
    ensure_size(cc.q_rope, nq);
    ensure_size(cc.k_rope, nk);
    rope_each(q, cc.q_rope.data(), B, T, H, D, cfg.rope_theta, false);
    rope_each(k, cc.k_rope.data(), B, T, G, D, cfg.rope_theta, false);
    const float *qs = cc.q_rope.data(), *ks = cc.k_rope.data();
    if (qkn) {  // q_hat = QKN(RoPE(q)), k_hat = QKN(RoPE(k))   (spec §2.9)
      qk_norm_forward_dev(qs, q_norm, cc.q_hat, cc.rstd_q, size_t(B) * T * H, D, qk_eps);
      qk_norm_forward_dev(ks, k_norm, cc.k_hat, cc.rstd_k, size_t(B) * T * G, D, qk_eps);
      qs = cc.q_hat.data();
      ks = cc.k_hat.data();
    }
    swa_forward(qs, ks, v, cc.o_swa.data(), cc.lse.data(), B, T, H, G, D, cfg.w, scale);
  }
  if (rla) {
    // RLA branch on the raw q, k: o_rla[t] = phi(q_t) S_{t-w-1}   (spec §2.3), chunked (spec §3.2)
    const int w_rla = ref::rla_window(cfg), m = 1;
    ensure_size(cc.o_rla, nq);
    ensure_size(cc.states, rla_states_size(B, T, G, D, to_cu(cfg.fm), cfg.chunk, m));
    rla_forward(q, k, v, nullptr, cc.o_rla.data(), cc.states.data(), B, T, H, G, D, w_rla, to_cu(cfg.fm), cfg.chunk, m);
  }
  if (swa && rla) {
    // c = GRMS_swa(o_swa) + GRMS_rla(o_rla)   (spec §2.5, one fused kernel)
    rattn_merge_forward(cc.o_swa.data(), cc.o_rla.data(), gamma_swa, gamma_rla, c, B, T, H, D, eps);
  } else if (swa) {
    // c = GRMS_swa(o_swa)
    ensure_size(cc.rstd_swa, size_t(B) * T * H);
    group_rmsnorm_forward(cc.o_swa.data(), gamma_swa, c, cc.rstd_swa.data(), B * T, H, D, eps);
  } else {
    // c = GRMS_rla(o_rla)
    ensure_size(cc.rstd_rla, size_t(B) * T * H);
    group_rmsnorm_forward(cc.o_rla.data(), gamma_rla, c, cc.rstd_rla.data(), B * T, H, D, eps);
  }
}

// The same inputs, cc from attn_core_forward_dev, dc: (B,T,H,D)
//   -> dq: (B,T,H,D), dk, dv: (B,T,G,D) (assigned); dgamma_swa, dgamma_rla: (H,D) accumulated (+=);
//      with qk-norm, dq_norm, dk_norm: (D) accumulated (+=).
// work: the temporaries, kept by the caller across calls (null: allocated for this call).
inline void attn_core_backward_dev(const ref::AttnConfig& cfg, const float* q, const float* k, const float* v,
                                   const float* gamma_swa, const float* gamma_rla, const float* dc, float* dq,
                                   float* dk, float* dv, float* dgamma_swa, float* dgamma_rla, int B, int T,
                                   const CoreDeviceCache& cc, const float* q_norm = nullptr,
                                   const float* k_norm = nullptr, float* dq_norm = nullptr, float* dk_norm = nullptr,
                                   CoreDeviceWork* work = nullptr) {
  const bool qkn = ref::has_qk_norm(cfg);
  if (qkn && (!q_norm || !k_norm || !dq_norm || !dk_norm))
    throw std::invalid_argument("attn_core_backward_dev: qk_norm on, no scales or their gradients");
  CoreDeviceWork local;
  CoreDeviceWork& wk = work ? *work : local;
  const int H = cfg.H, G = cfg.G, D = cfg.D;
  const size_t nq = size_t(B) * T * H * D, nk = size_t(B) * T * G * D;
  const float scale = float(1.0 / std::sqrt(double(D)));
  const float eps = float(cfg.eps);
  const bool swa = ref::has_swa_branch(cfg), rla = ref::has_rla_branch(cfg);
  ensure_size(wk.delta, size_t(B) * H * T);
  float* const delta = wk.delta.data();
  if (cfg.global) {
    if (!qkn) {
      // In the forward pass this was: c = o = SWA(q, k, v; w = -1)
      swa_backward(q, k, v, cc.o_swa.data(), cc.lse.data(), dc, dq, dk, dv, delta, B, T, H, G, D, -1, scale);
      return;
    }
    // In the forward pass this was: c = o = SWA(q_hat, k_hat, v; w = -1)
    ensure_size(wk.dq_hat, nq);
    ensure_size(wk.dk_hat, nk);
    swa_backward(cc.q_hat.data(), cc.k_hat.data(), v, cc.o_swa.data(), cc.lse.data(), dc, wk.dq_hat.data(),
                 wk.dk_hat.data(), dv, delta, B, T, H, G, D, -1, scale);
    // In the forward pass this was: q_hat = QKN(q; q_norm), k_hat = QKN(k; k_norm)
    rmsnorm_backward(q, q_norm, cc.rstd_q.data(), wk.dq_hat.data(), dq, dq_norm, B * T * H, D);
    rmsnorm_backward(k, k_norm, cc.rstd_k.data(), wk.dk_hat.data(), dk, dk_norm, B * T * G, D);
    return;
  }
  // In the forward pass this was: c = GRMS_swa(o_swa) + GRMS_rla(o_rla) (either term may be absent)
  ensure_size(wk.do_swa, swa ? nq : 0);
  ensure_size(wk.do_rla, rla ? nq : 0);
  DeviceBuffer<float>&do_swa = wk.do_swa, &do_rla = wk.do_rla;
  if (swa && rla) {
    ensure_size(wk.merge_scratch, rattn_merge_scratch_size(B, T, H, D));
    rattn_merge_backward(cc.o_swa.data(), cc.o_rla.data(), gamma_swa, gamma_rla, dc, do_swa.data(), do_rla.data(),
                         dgamma_swa, dgamma_rla, wk.merge_scratch.data(), B, T, H, D, eps);
  } else if (swa)
    group_rmsnorm_backward(cc.o_swa.data(), gamma_swa, cc.rstd_swa.data(), dc, do_swa.data(), dgamma_swa, B * T, H, D);
  else
    group_rmsnorm_backward(cc.o_rla.data(), gamma_rla, cc.rstd_rla.data(), dc, do_rla.data(), dgamma_rla, B * T, H, D);

  // q, k, v feed both branches: the SWA branch writes dq, dk, dv, the RLA branch adds to them.
  if (swa) {
    ensure_size(wk.dq_rope, nq);
    ensure_size(wk.dk_rope, nk);
    DeviceBuffer<float>&dq_rope = wk.dq_rope, &dk_rope = wk.dk_rope;
    if (!qkn) {
      // In the forward pass this was: o_swa = SWA(q_rope, k_rope, v; w)
      swa_backward(cc.q_rope.data(), cc.k_rope.data(), v, cc.o_swa.data(), cc.lse.data(), do_swa.data(),
                   dq_rope.data(), dk_rope.data(), dv, delta, B, T, H, G, D, cfg.w, scale);
    } else {
      // In the forward pass this was: o_swa = SWA(q_hat, k_hat, v; w)
      ensure_size(wk.dq_hat, nq);
      ensure_size(wk.dk_hat, nk);
      swa_backward(cc.q_hat.data(), cc.k_hat.data(), v, cc.o_swa.data(), cc.lse.data(), do_swa.data(),
                   wk.dq_hat.data(), wk.dk_hat.data(), dv, delta, B, T, H, G, D, cfg.w, scale);
      // In the forward pass this was: q_hat = QKN(q_rope; q_norm), k_hat = QKN(k_rope; k_norm)
      rmsnorm_backward(cc.q_rope.data(), q_norm, cc.rstd_q.data(), wk.dq_hat.data(), dq_rope.data(), dq_norm,
                       B * T * H, D);
      rmsnorm_backward(cc.k_rope.data(), k_norm, cc.rstd_k.data(), wk.dk_hat.data(), dk_rope.data(), dk_norm,
                       B * T * G, D);
    }
    // In the forward pass this was: q_rope = RoPE(q), k_rope = RoPE(k)
    rope_each(dq_rope.data(), dq, B, T, H, D, cfg.rope_theta, true);
    rope_each(dk_rope.data(), dk, B, T, G, D, cfg.rope_theta, true);
  }
  if (rla) {
    // In the forward pass this was: o_rla = RLA(q, k, v; w_rla, phi)
    const int w_rla = ref::rla_window(cfg), m = 1;
    ensure_size(wk.rla_scratch, rla_backward_scratch_size(B, T, H, G, D, to_cu(cfg.fm), cfg.chunk));
    DeviceBuffer<float>& scratch = wk.rla_scratch;
    if (!swa) {  // local linear: the RLA branch alone, its gradients are the core's
      rla_backward(q, k, v, nullptr, cc.states.data(), do_rla.data(), dq, dk, dv, nullptr, scratch.data(), B, T, H,
                   G, D, w_rla, to_cu(cfg.fm), cfg.chunk, m);
      return;
    }
    ensure_size(wk.dq_rla, nq);
    ensure_size(wk.dk_rla, nk);
    ensure_size(wk.dv_rla, nk);
    DeviceBuffer<float>&dq_rla = wk.dq_rla, &dk_rla = wk.dk_rla, &dv_rla = wk.dv_rla;
    rla_backward(q, k, v, nullptr, cc.states.data(), do_rla.data(), dq_rla.data(), dk_rla.data(), dv_rla.data(),
                 nullptr, scratch.data(), B, T, H, G, D, w_rla, to_cu(cfg.fm), cfg.chunk, m);
    add_into(dq, dq_rla.data(), nq);
    add_into(dk, dk_rla.data(), nk);
    add_into(dv, dv_rla.data(), nk);
  }
}

}  // namespace cu
