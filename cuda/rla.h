// cuda/rla.h: residual linear attention (RLA), chunked, forward and backward, fp32 (kernels: cuda/rla.cu).
//
// The CUDA counterpart of ref/rla.h (spec §2.3, §3.2-3.3, §4). Per query head h, kv head g = h / (H/G):
//   S_t = S_{t-1} + phi(k_t)^T v_t      S: (Dp, D) per kv head, S_{-1} = h0 (or 0)
//   o[t,h] = phi(q[t,h]) S_{t-w-1}      = phi(q_t) h0 + sum_{j <= t-w-1} (phi(q_t) . phi(k_j)) v_j
//   w = -1: no shift, o_t = phi(q_t) S_t (inclusive linear attention over [0, t]).
// Chunk notation (the same in ref/rla.h and cuda/rla.cu): X_[i] is the block of rows of chunk i, and
// S_[i] is the state at the start of chunk i, S_[0] = h0 (or 0); S_t, with a token index, is the state
// after token t.
// phi is applied inside the kernels to the raw q, k (no RoPE, no scale): sm2 = [softmax(x), softmax(-x)]
// (Dp = 2D), relu2 = [relu(x), relu(-x)] (Dp = 2D), identity (Dp = D).
//
// All pointers are device pointers. Tensors are (B, T, heads, D) contiguous:
//   q, o, dq, dout: (B, T, H, D)      k, v, dk, dv: (B, T, G, D)
//   h0, dh0: (B, G, Dp, D), one state per kv head (h0 may be null: zero initial state; dh0 may be null)
//   states: (B, G, n_saved, Dp, D), n_saved = ceil(ceil(T / C) / m): the chunk states S_[0], S_[m],
//           S_[2m], ...; written by the version-2 forward, read by the version-2 backward, which
//           recomputes the states of the chunks in between (spec §3.3, "flexible state saving").
// C: chunk size (any C >= 1; T need not be a multiple); m: save the state every m chunks (m >= 1).
// version: 1 = naive masked form, one thread per output row (C, m, states unused; states may be null),
//          2 = chunked (the default).
#pragma once

#include <cstddef>

#include "cuda/feature_map.h"  // cu::FeatureMap and cu::feature_dim

namespace cu {

inline constexpr int kRlaVersions = 2;

// Number of floats of the `states` buffer: B * G * n_saved * Dp * D.
size_t rla_states_size(int B, int T, int G, int D, FeatureMap fm, int C, int m);

// q: (B,T,H,D), k, v: (B,T,G,D), h0: (B,G,Dp,D) or null -> o: (B,T,H,D), states: (B,G,n_saved,Dp,D)
void rla_forward(const float* q, const float* k, const float* v, const float* h0, float* o, float* states, int B,
                 int T, int H, int G, int D, int w, FeatureMap fm, int C, int m, int version = 2);

// Floats of scratch rla_backward (version 2) needs: the partial dq, dk of every value tile but the first,
// (tiles - 1) * (B*T*H*D + B*T*G*D); 0 when D fits one value tile (the tile width depends on D, phi, C).
size_t rla_backward_scratch_size(int B, int T, int H, int G, int D, FeatureMap fm, int C);

// The same inputs, states from rla_forward (same C, m; version 2 only), dout: (B,T,H,D)
//   -> dq: (B,T,H,D), dk, dv: (B,T,G,D) (summed over each GQA group), dh0: (B,G,Dp,D) if not null.
// Every gradient is assigned (overwritten), not accumulated. scratch: rla_backward_scratch_size floats
// (may be null when that is 0, and for version 1). Deterministic: the same bits on every run (the sum
// over value tiles is done in a fixed order, without atomics).
void rla_backward(const float* q, const float* k, const float* v, const float* h0, const float* states,
                  const float* dout, float* dq, float* dk, float* dv, float* dh0, float* scratch, int B, int T,
                  int H, int G, int D, int w, FeatureMap fm, int C, int m, int version = 2);

}  // namespace cu
