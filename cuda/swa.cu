// cuda/swa.cu: windowed flash attention (SWA), forward and backward, fp32.
//
// The math (spec §2.2; reference: ref/attention.h), for query t, head h, kv head g = h / (H/G):
//   s[t,j] = scale * q[t,h] . k[j,g]              for j in [max(0, t-w), t]   (w+1 keys; w < 0: [0, t])
//   P[t,j] = softmax_j(s[t,j]),   o[t,h] = sum_j P[t,j] v[j,g],   lse[t] = log sum_j exp(s[t,j])
// Backward (FlashAttention-2, Dao 2023, Algorithm 2), with delta[t] = rowsum(dO_t * o_t):
//   dv[j] += P[t,j] dO_t,   dP[t,j] = dO_t . v_j,   dS[t,j] = P[t,j] (dP[t,j] - delta[t])
//   dq[t] += scale * dS[t,j] k_j,   dk[j] += scale * dS[t,j] q_t
//
// Kernel versions (pick one with the `version` argument of the launchers in cuda/swa.h):
//   v1  The reference loop ported as is: one CUDA thread per (b, t, h) output row. Forward: one pass for
//       the row maximum, one for the sum and the weighted sum of v. Backward: one thread per (b, t, h)
//       for dq and one thread per (b, j, g) for dk, dv, each recomputing P from the saved lse.
//       Teaches: the indexing, the window test and GQA, with nothing else in the way. Every key is read
//       from global memory by every query that uses it, so memory traffic is (w+1) times the tensor size.
//   v2  Flash attention (FlashAttention-2 loop order): one block per (query tile of Br rows, b, h), one
//       thread per query row; K/V tiles of Bc keys are staged in shared memory once and read by all Br
//       threads (broadcast reads, no bank conflicts); online softmax (running max m, running sum l,
//       rescaled accumulator) so the T x T score matrix never exists; the forward saves lse per row.
//       Tiles wholly outside the window band [t-w, t] of every row in the query tile are never visited
//       (the loop bounds are computed from the band), so the cost grows like T*w, not T^2; tiles that are
//       partly inside are masked per element. Global attention is the same kernel with w < 0.
//       Backward: (a) delta = rowsum(dO * O), one thread per row; (b) one block per (KV tile, b, g)
//       accumulating dk, dv for its Bc keys over every query tile and every query head of the GQA group
//       that can see them (so no atomics are needed for dk, dv, and the group sum is free); (c) dQ in a
//       separate pass, one block per (query tile, b, h), the same loop as the forward. Recomputing P in
//       two passes costs one extra QK^T but keeps the backward deterministic: no float atomics anywhere.
//   What v2 does not do (a v3 would): tensor cores (mma/wgmma), several warps per tile splitting the
//   head dimension, register-resident accumulators with D as a template parameter, cp.async double
//   buffering. They change speed, not the algorithm.
//
// Shared-memory rows are padded to D+1 floats: thread i reading row i at column d hits bank
// (i*(D+1)+d) % 32, distinct for the 32 threads of a warp.
#include "cuda/compat.h"
#include "cuda/swa.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace cu {
namespace {

constexpr int kBr = 32;  // query rows per block (v2)
constexpr int kBc = 32;  // keys per K/V tile (v2)
constexpr int kMaxD = 128;

__device__ __forceinline__ int imin(int a, int b) { return a < b ? a : b; }
__device__ __forceinline__ int imax(int a, int b) { return a > b ? a : b; }

// Is key j in the window of query t? [max(0, t-w), t]; w < 0: [0, t].
__device__ __forceinline__ bool in_window(int t, int j, int w) { return j <= t && (w < 0 || j >= t - w); }

// ------------------------------------------------------------------------------------------------
// v1: naive, one thread per (b, t, h)
// ------------------------------------------------------------------------------------------------

// q: (B,T,H,D), k, v: (B,T,G,D) -> o: (B,T,H,D), lse: (B,H,T)
#ifndef RATTN_EXERCISE_SWA_KERNEL_V1  // workshop hook: exercises/06_swa_kernel_v1.h replaces this (docs/workshop.md)
__global__ void swa_forward_v1_kernel(const float* q, const float* k, const float* v, float* o, float* lse,
                                      int B, int T, int H, int G, int D, int w, float scale) {
  int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * T * H) return;  // no barrier in this kernel, so an early return is fine
  int h = idx % H, t = (idx / H) % T, b = idx / (H * T);
  int g = h / (H / G);
  const float* q_t = q + ((long)(b * T + t) * H + h) * D;
  float* o_t = o + ((long)(b * T + t) * H + h) * D;
  int j0 = w < 0 ? 0 : imax(0, t - w);
  // pass 1: the row maximum of the scores (for a stable exp)
  float m = -INFINITY;
  for (int j = j0; j <= t; ++j) {
    const float* k_j = k + ((long)(b * T + j) * G + g) * D;
    float s = 0.f;
    for (int d = 0; d < D; ++d) s += q_t[d] * k_j[d];
    m = fmaxf(m, s * scale);
  }
  // pass 2: l = sum_j exp(s_j - m), o = sum_j exp(s_j - m) v_j / l
  for (int d = 0; d < D; ++d) o_t[d] = 0.f;
  float l = 0.f;
  for (int j = j0; j <= t; ++j) {
    const float* k_j = k + ((long)(b * T + j) * G + g) * D;
    const float* v_j = v + ((long)(b * T + j) * G + g) * D;
    float s = 0.f;
    for (int d = 0; d < D; ++d) s += q_t[d] * k_j[d];
    float p = expf(s * scale - m);
    l += p;
    for (int d = 0; d < D; ++d) o_t[d] += p * v_j[d];
  }
  for (int d = 0; d < D; ++d) o_t[d] /= l;
  lse[(long)(b * H + h) * T + t] = m + logf(l);
}
#else
#include RATTN_EXERCISE_SWA_KERNEL_V1
#endif

// o, dout: (B,T,H,D) -> delta: (B,H,T), delta[t] = sum_d dout[t,d] * o[t,d]   (shared by v1 and v2)
__global__ void swa_delta_kernel(const float* o, const float* dout, float* delta, int B, int T, int H, int D) {
  int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * T * H) return;
  int h = idx % H, t = (idx / H) % T, b = idx / (H * T);
  const float* o_t = o + (long)idx * D;  // idx = (b*T + t)*H + h
  const float* do_t = dout + (long)idx * D;
  float s = 0.f;
  for (int d = 0; d < D; ++d) s += do_t[d] * o_t[d];
  delta[(long)(b * H + h) * T + t] = s;
}

// dq: one thread per (b, t, h).  q, dout: (B,T,H,D), k, v: (B,T,G,D), lse, delta: (B,H,T) -> dq (B,T,H,D)
__global__ void swa_backward_dq_v1_kernel(const float* q, const float* k, const float* v, const float* lse,
                                          const float* delta, const float* dout, float* dq, int B, int T, int H,
                                          int G, int D, int w, float scale) {
  int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * T * H) return;
  int h = idx % H, t = (idx / H) % T, b = idx / (H * T);
  int g = h / (H / G);
  const float* q_t = q + (long)idx * D;
  const float* do_t = dout + (long)idx * D;
  float* dq_t = dq + (long)idx * D;
  float lse_t = lse[(long)(b * H + h) * T + t], delta_t = delta[(long)(b * H + h) * T + t];
  for (int d = 0; d < D; ++d) dq_t[d] = 0.f;
  for (int j = (w < 0 ? 0 : imax(0, t - w)); j <= t; ++j) {
    const float* k_j = k + ((long)(b * T + j) * G + g) * D;
    const float* v_j = v + ((long)(b * T + j) * G + g) * D;
    // forward: P = exp(scale q.k - lse) and o = sum_j P v_j, so dP = dO . v_j and dS = P (dP - delta)
    float s = 0.f, dp = 0.f;
    for (int d = 0; d < D; ++d) {
      s += q_t[d] * k_j[d];
      dp += do_t[d] * v_j[d];
    }
    float p = expf(s * scale - lse_t);
    float ds = p * (dp - delta_t);
    // forward: s = scale * q . k, so dq += scale * dS * k
    for (int d = 0; d < D; ++d) dq_t[d] += scale * ds * k_j[d];
  }
}

// dk, dv: one thread per (b, j, g), summing over the r = H/G query heads of the group and over the
// queries t in [j, j+w] that see key j.  -> dk, dv: (B,T,G,D)
__global__ void swa_backward_dkdv_v1_kernel(const float* q, const float* k, const float* v, const float* lse,
                                            const float* delta, const float* dout, float* dk, float* dv, int B,
                                            int T, int H, int G, int D, int w, float scale) {
  int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * T * G) return;
  int g = idx % G, j = (idx / G) % T, b = idx / (G * T);
  int r = H / G;
  const float* k_j = k + (long)idx * D;  // idx = (b*T + j)*G + g
  const float* v_j = v + (long)idx * D;
  float* dk_j = dk + (long)idx * D;
  float* dv_j = dv + (long)idx * D;
  for (int d = 0; d < D; ++d) dk_j[d] = dv_j[d] = 0.f;
  int t1 = w < 0 ? T - 1 : imin(T - 1, j + w);
  for (int h = g * r; h < (g + 1) * r; ++h) {
    for (int t = j; t <= t1; ++t) {
      const float* q_t = q + ((long)(b * T + t) * H + h) * D;
      const float* do_t = dout + ((long)(b * T + t) * H + h) * D;
      float s = 0.f, dp = 0.f;
      for (int d = 0; d < D; ++d) {
        s += q_t[d] * k_j[d];
        dp += do_t[d] * v_j[d];
      }
      float p = expf(s * scale - lse[(long)(b * H + h) * T + t]);
      float ds = p * (dp - delta[(long)(b * H + h) * T + t]);
      // forward: o_t = sum_j P v_j, so dv_j += P dO_t;  s = scale q_t . k_j, so dk_j += scale dS q_t
      for (int d = 0; d < D; ++d) {
        dv_j[d] += p * do_t[d];
        dk_j[d] += scale * ds * q_t[d];
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// v2: flash tiles
// ------------------------------------------------------------------------------------------------

// Copy rows [row0, row0+n) of one head of a (B,T,heads,D) tensor into a shared tile with row stride D+1;
// rows at or past T are zero-filled. Called by all threads of the block (strided over the tile).
__device__ __forceinline__ void load_tile(float* tile, const float* x, int b, int row0, int n, int T, int heads,
                                          int head, int D) {
  for (int i = threadIdx.x; i < n * D; i += blockDim.x) {
    int r = i / D, d = i % D;
    int t = row0 + r;
    tile[r * (D + 1) + d] = t < T ? x[((long)(b * T + t) * heads + head) * D + d] : 0.f;
  }
}

// The key tiles that query tile [q0, q0+Br) needs: keys [lo, hi] with lo = max(0, q0-w) (0 when w < 0)
// and hi = min(T-1, q0+Br-1). Tiles outside [lo/Bc, hi/Bc] are skipped: this is where the cost becomes T*w.
__device__ __forceinline__ void kv_tile_range(int q0, int T, int w, int* kt0, int* kt1) {
  int lo = w < 0 ? 0 : imax(0, q0 - w);
  int hi = imin(T - 1, q0 + kBr - 1);
  *kt0 = lo / kBc;
  *kt1 = hi / kBc;
}

// grid (ceil(T/Br), B*H), block Br threads; dynamic smem: q, acc (Br rows), k, v (Bc rows), stride D+1.
// q: (B,T,H,D), k, v: (B,T,G,D) -> o: (B,T,H,D), lse: (B,H,T)
#ifndef RATTN_EXERCISE_SWA_KERNEL_V2  // workshop hook: exercises/07_swa_kernel_v2.h replaces this (docs/workshop.md)
__global__ void swa_forward_v2_kernel(const float* q, const float* k, const float* v, float* o, float* lse,
                                      int T, int H, int G, int D, int w, float scale) {
  DYNAMIC_SHARED(float, smem_fwd);
  const int P = D + 1;
  float* q_s = smem_fwd;         // (Br, D+1) the query tile
  float* acc_s = q_s + kBr * P;  // (Br, D+1) each thread's un-normalised output row
  float* k_s = acc_s + kBr * P;  // (Bc, D+1)
  float* v_s = k_s + kBc * P;    // (Bc, D+1)
  int b = blockIdx.y / H, h = blockIdx.y % H, g = h / (H / G);
  int q0 = blockIdx.x * kBr;
  int i = threadIdx.x;  // this thread's query row within the tile
  int t = q0 + i;
  bool row_ok = t < T;  // rows past T run the loop (for the barriers) but neither compute nor write

  load_tile(q_s, q, b, q0, kBr, T, H, h, D);
  for (int d = 0; d < D; ++d) acc_s[i * P + d] = 0.f;
  float m = -INFINITY;  // running maximum of this row's scores
  float l = 0.f;        // running sum of exp(s - m)
  float s[kBc];

  int kt0, kt1;
  kv_tile_range(q0, T, w, &kt0, &kt1);
  for (int kt = kt0; kt <= kt1; ++kt) {
    int k0 = kt * kBc;
    __syncthreads();  // everyone is done with the previous K/V tile
    load_tile(k_s, k, b, k0, kBc, T, G, g, D);
    load_tile(v_s, v, b, k0, kBc, T, G, g, D);
    __syncthreads();
    if (row_ok) {
      // s = scale * q_t . k_j for the keys of this tile in the window (masked keys: -inf)
      float m_tile = -INFINITY;
      for (int jj = 0; jj < kBc; ++jj) {
        int j = k0 + jj;
        if (j < T && in_window(t, j, w)) {
          float dot = 0.f;
          for (int d = 0; d < D; ++d) dot += q_s[i * P + d] * k_s[jj * P + d];
          s[jj] = dot * scale;
          m_tile = fmaxf(m_tile, s[jj]);
        } else {
          s[jj] = -INFINITY;
        }
      }
      if (m_tile > -INFINITY) {  // a tile can be wholly masked for this row (but not for the block)
        // online softmax: rescale what we have by exp(m_old - m_new), then add this tile
        float m_new = fmaxf(m, m_tile);
        float alpha = expf(m - m_new);  // m = -inf on the first tile: alpha = 0, and acc, l are 0
        l *= alpha;
        for (int d = 0; d < D; ++d) acc_s[i * P + d] *= alpha;
        for (int jj = 0; jj < kBc; ++jj) {
          if (s[jj] == -INFINITY) continue;
          float p = expf(s[jj] - m_new);
          l += p;
          for (int d = 0; d < D; ++d) acc_s[i * P + d] += p * v_s[jj * P + d];
        }
        m = m_new;
      }
    }
  }
  if (row_ok) {  // every row sees at least its own key, so l >= 1
    float* o_t = o + ((long)(b * T + t) * H + h) * D;
    for (int d = 0; d < D; ++d) o_t[d] = acc_s[i * P + d] / l;
    lse[(long)(b * H + h) * T + t] = m + logf(l);
  }
}
#else
#include RATTN_EXERCISE_SWA_KERNEL_V2
#endif

// dk, dv. grid (ceil(T/Bc), B*G), block Bc threads (thread jj owns key k0+jj).
// dynamic smem: k, v, dk, dv (Bc rows), q, dO (Br rows), stride D+1; lse, delta (Br).
__global__ void swa_backward_dkdv_v2_kernel(const float* q, const float* k, const float* v, const float* lse,
                                            const float* delta, const float* dout, float* dk, float* dv, int T,
                                            int H, int G, int D, int w, float scale) {
  DYNAMIC_SHARED(float, smem_dkdv);
  const int P = D + 1;
  float* k_s = smem_dkdv;
  float* v_s = k_s + kBc * P;
  float* dk_s = v_s + kBc * P;
  float* dv_s = dk_s + kBc * P;
  float* q_s = dv_s + kBc * P;  // (Br, D+1)
  float* do_s = q_s + kBr * P;  // (Br, D+1)
  float* lse_s = do_s + kBr * P;
  float* delta_s = lse_s + kBr;
  int b = blockIdx.y / G, g = blockIdx.y % G, r = H / G;
  int k0 = blockIdx.x * kBc;
  int jj = threadIdx.x, j = k0 + jj;
  bool key_ok = j < T;

  load_tile(k_s, k, b, k0, kBc, T, G, g, D);
  load_tile(v_s, v, b, k0, kBc, T, G, g, D);
  for (int d = 0; d < D; ++d) dk_s[jj * P + d] = dv_s[jj * P + d] = 0.f;
  // The queries that can see keys [k0, k0+Bc): t in [k0, k0+Bc-1+w] (to T-1 when w < 0).
  int t_hi = w < 0 ? T - 1 : imin(T - 1, k0 + kBc - 1 + w);
  int qt0 = k0 / kBr, qt1 = t_hi / kBr;
  for (int h = g * r; h < (g + 1) * r; ++h) {  // the GQA group: dk, dv are sums over its query heads
    for (int qt = qt0; qt <= qt1; ++qt) {
      int q0 = qt * kBr;
      __syncthreads();
      load_tile(q_s, q, b, q0, kBr, T, H, h, D);
      load_tile(do_s, dout, b, q0, kBr, T, H, h, D);
      for (int ii = threadIdx.x; ii < kBr; ii += blockDim.x) {
        int t = q0 + ii;
        lse_s[ii] = t < T ? lse[(long)(b * H + h) * T + t] : 0.f;
        delta_s[ii] = t < T ? delta[(long)(b * H + h) * T + t] : 0.f;
      }
      __syncthreads();
      if (key_ok) {
        for (int ii = 0; ii < kBr; ++ii) {
          int t = q0 + ii;
          if (t >= T || !in_window(t, j, w)) continue;
          float s = 0.f, dp = 0.f;
          for (int d = 0; d < D; ++d) {
            s += q_s[ii * P + d] * k_s[jj * P + d];
            dp += do_s[ii * P + d] * v_s[jj * P + d];
          }
          // forward: P = exp(s - lse) (recomputed), o_t = sum_j P v_j
          float p = expf(s * scale - lse_s[ii]);
          float ds = p * (dp - delta_s[ii]);
          // so dv_j += P dO_t;  and s = scale q_t . k_j, so dk_j += scale dS q_t
          for (int d = 0; d < D; ++d) {
            dv_s[jj * P + d] += p * do_s[ii * P + d];
            dk_s[jj * P + d] += scale * ds * q_s[ii * P + d];
          }
        }
      }
    }
  }
  if (key_ok) {
    float* dk_j = dk + ((long)(b * T + j) * G + g) * D;
    float* dv_j = dv + ((long)(b * T + j) * G + g) * D;
    for (int d = 0; d < D; ++d) {
      dk_j[d] = dk_s[jj * P + d];
      dv_j[d] = dv_s[jj * P + d];
    }
  }
}

// dq. grid (ceil(T/Br), B*H), block Br threads (thread i owns query q0+i); the forward's loop again.
// dynamic smem: q, dO, dq (Br rows), k, v (Bc rows), stride D+1.
__global__ void swa_backward_dq_v2_kernel(const float* q, const float* k, const float* v, const float* lse,
                                          const float* delta, const float* dout, float* dq, int T, int H, int G,
                                          int D, int w, float scale) {
  DYNAMIC_SHARED(float, smem_dq);
  const int P = D + 1;
  float* q_s = smem_dq;
  float* do_s = q_s + kBr * P;
  float* dq_s = do_s + kBr * P;
  float* k_s = dq_s + kBr * P;
  float* v_s = k_s + kBc * P;
  int b = blockIdx.y / H, h = blockIdx.y % H, g = h / (H / G);
  int q0 = blockIdx.x * kBr;
  int i = threadIdx.x, t = q0 + i;
  bool row_ok = t < T;

  load_tile(q_s, q, b, q0, kBr, T, H, h, D);
  load_tile(do_s, dout, b, q0, kBr, T, H, h, D);
  for (int d = 0; d < D; ++d) dq_s[i * P + d] = 0.f;
  float lse_t = row_ok ? lse[(long)(b * H + h) * T + t] : 0.f;
  float delta_t = row_ok ? delta[(long)(b * H + h) * T + t] : 0.f;
  int kt0, kt1;
  kv_tile_range(q0, T, w, &kt0, &kt1);
  for (int kt = kt0; kt <= kt1; ++kt) {
    int k0 = kt * kBc;
    __syncthreads();
    load_tile(k_s, k, b, k0, kBc, T, G, g, D);
    load_tile(v_s, v, b, k0, kBc, T, G, g, D);
    __syncthreads();
    if (row_ok) {
      for (int jj = 0; jj < kBc; ++jj) {
        int j = k0 + jj;
        if (j >= T || !in_window(t, j, w)) continue;
        float s = 0.f, dp = 0.f;
        for (int d = 0; d < D; ++d) {
          s += q_s[i * P + d] * k_s[jj * P + d];
          dp += do_s[i * P + d] * v_s[jj * P + d];
        }
        float p = expf(s * scale - lse_t);
        float ds = p * (dp - delta_t);
        // forward: s = scale q_t . k_j, so dq_t += scale dS k_j
        for (int d = 0; d < D; ++d) dq_s[i * P + d] += scale * ds * k_s[jj * P + d];
      }
    }
  }
  if (row_ok) {
    float* dq_t = dq + ((long)(b * T + t) * H + h) * D;
    for (int d = 0; d < D; ++d) dq_t[d] = dq_s[i * P + d];
  }
}

// ------------------------------------------------------------------------------------------------
// launchers
// ------------------------------------------------------------------------------------------------

void check_args(const char* who, int B, int T, int H, int G, int D, int version) {
  if (B < 1 || T < 1 || H < 1 || G < 1 || D < 1 || H % G != 0)
    throw std::invalid_argument(std::string(who) + ": need B, T, H, G, D >= 1 and H % G == 0");
  if (D > kMaxD) throw std::invalid_argument(std::string(who) + ": head dim D > 128 is not supported");
  if (version < 1 || version > kSwaVersions)
    throw std::invalid_argument(std::string(who) + ": unknown version " + std::to_string(version));
}

// Dynamic shared memory above 48 KiB must be opted into per kernel.
template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
          "cudaFuncSetAttribute(swa smem)");
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

}  // namespace

void swa_forward(const float* q, const float* k, const float* v, float* o, float* lse, int B, int T, int H,
                 int G, int D, int w, float scale, int version) {
  check_args("cu::swa_forward", B, T, H, G, D, version);
  if (version == 1) {
    int n = B * T * H, block = 128;
    launch(swa_forward_v1_kernel, dim3(ceil_div(n, block)), dim3(block), 0, q, k, v, o, lse, B, T, H, G, D, w,
           scale);
    return;
  }
  size_t smem = (size_t)(2 * kBr + 2 * kBc) * (D + 1) * sizeof(float);
  allow_smem(swa_forward_v2_kernel, smem);
  launch(swa_forward_v2_kernel, dim3(ceil_div(T, kBr), B * H), dim3(kBr), smem, q, k, v, o, lse, T, H, G, D, w,
         scale);
}

void swa_backward(const float* q, const float* k, const float* v, const float* o, const float* lse,
                  const float* dout, float* dq, float* dk, float* dv, float* delta, int B, int T, int H, int G,
                  int D, int w, float scale, int version) {
  check_args("cu::swa_backward", B, T, H, G, D, version);
  int block = 128;
  launch(swa_delta_kernel, dim3(ceil_div(B * T * H, block)), dim3(block), 0, o, dout, delta, B, T, H, D);
  if (version == 1) {
    launch(swa_backward_dq_v1_kernel, dim3(ceil_div(B * T * H, block)), dim3(block), 0, q, k, v, lse, delta,
           dout, dq, B, T, H, G, D, w, scale);
    launch(swa_backward_dkdv_v1_kernel, dim3(ceil_div(B * T * G, block)), dim3(block), 0, q, k, v, lse, delta,
           dout, dk, dv, B, T, H, G, D, w, scale);
    return;
  }
  size_t smem_kv = ((size_t)(4 * kBc + 2 * kBr) * (D + 1) + 2 * kBr) * sizeof(float);
  allow_smem(swa_backward_dkdv_v2_kernel, smem_kv);
  launch(swa_backward_dkdv_v2_kernel, dim3(ceil_div(T, kBc), B * G), dim3(kBc), smem_kv, q, k, v, lse, delta,
         dout, dk, dv, T, H, G, D, w, scale);
  size_t smem_q = (size_t)(3 * kBr + 2 * kBc) * (D + 1) * sizeof(float);
  allow_smem(swa_backward_dq_v2_kernel, smem_q);
  launch(swa_backward_dq_v2_kernel, dim3(ceil_div(T, kBr), B * H), dim3(kBr), smem_q, q, k, v, lse, delta, dout,
         dq, T, H, G, D, w, scale);
}

}  // namespace cu
