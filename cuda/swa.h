// cuda/swa.h: windowed (sliding-window) flash attention, forward and backward, fp32 (kernels: cuda/swa.cu).
//
// The CUDA counterpart of ref/attention.h swa_forward / swa_backward (spec §2.2):
//   o[t,h] = sum_{j in [max(0,t-w), t]} softmax_j(scale * q[t,h] . k[j,g]) v[j,g],   g = h / (H/G)
//   w < 0: no window (global causal attention); w >= T-1: the same as global.
//
// All pointers are device pointers. Tensors are (B, T, heads, D) contiguous:
//   q, o, dq, dout: (B, T, H, D)      k, v, dk, dv: (B, T, G, D)      lse, delta: (B, H, T)
// lse is the per-row logsumexp saved by the forward (natural log, of the scaled scores); the backward
// recomputes the attention probabilities from it: P[t,j] = exp(scale q_t.k_j - lse_t).
// version: 1 = naive port of the reference loop (one thread per (b,t,h)), 2 = flash tiles (the default).
#pragma once

namespace cu {

inline constexpr int kSwaVersions = 2;

// q: (B,T,H,D), k, v: (B,T,G,D) -> o: (B,T,H,D), lse: (B,H,T)
void swa_forward(const float* q, const float* k, const float* v, float* o, float* lse, int B, int T, int H,
                 int G, int D, int w, float scale, int version = 2);

// q, o, dout: (B,T,H,D), k, v: (B,T,G,D), lse: (B,H,T) from swa_forward
//   -> dq: (B,T,H,D), dk, dv: (B,T,G,D) (all assigned; dk/dv summed over the query heads of each kv group)
// delta: (B,H,T) workspace, overwritten with delta[t] = rowsum(dout_t * o_t).
void swa_backward(const float* q, const float* k, const float* v, const float* o, const float* lse,
                  const float* dout, float* dq, float* dk, float* dv, float* delta, int B, int T, int H, int G,
                  int D, int w, float scale, int version = 2);

}  // namespace cu
