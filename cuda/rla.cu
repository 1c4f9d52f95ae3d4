// cuda/rla.cu: residual linear attention (RLA), forward and backward, fp32.
//
// The math (spec §2.3, §3.2, §4; reference: ref/rla.h), query head h, kv head g = h / (H/G), Q~ = phi(Q):
//   o_t = phi(q_t) h0 + sum_{j <= t-w-1} (phi(q_t) . phi(k_j)) v_j          (masked form)
// Chunked form (spec §3.2) with the shifted keys k'_u = k_{u-w-1}, v'_u = v_{u-w-1} (zero when u-w-1 < 0;
// w+1 is the shift ref/rla.h calls s). Chunk notation as in ref/rla.h and cuda/rla.h: X_[i] is the block
// of rows of chunk i = rows [iC, (i+1)C), and S_[i] is the state at the start of chunk i, S_[0] = h0 (or 0):
//   O_[i]   = Q~_[i] S_[i] + ((Q~_[i] K~'_[i]^T) ⊙ M) V'_[i]        M = lower triangular including the diagonal
//   S_[i+1] = S_[i] + K~'_[i]^T V'_[i]
// The shift is done by index: shifted row u of chunk i reads key j = u - w - 1 and skips it when j < 0
// (u is also the row of the query it meets on the diagonal). There is never a shifted copy of k or v in
// memory (spec §3.3, "CUDA guidance"). w = -1 gives j = u: no shift.
//
// Kernel versions (the `version` argument of the launchers in cuda/rla.h):
//   v1  The masked form as a loop: one thread per (b, t, h) output row, phi recomputed for every
//       (query, key) pair, O(T^2 D) work. Backward: one thread per (b,t,h) for dq, one per (b,j,g) for
//       dk, dv (summing the GQA group), one per (b,g,p) for a row of dh0.
//       Teaches: the exact index set j <= t-w-1, where the phi backward goes, and what the GQA sums are.
//   v2  The paper's kernel design (spec §3.3), one block per (value tile, kv head g, b), looping over the
//       chunks in order:
//       - phi fused: raw q/k rows are read from global memory and phi(q), phi(k) are computed in shared
//         memory; phi(Q), phi(K) never exist in global memory. The backward applies the phi backward
//         in-kernel, so it returns gradients with respect to the raw q, k.
//       - fp32 state S (Dp x BV) in shared memory for the whole sequence: one state per kv head, used
//         by all r = H/G query heads of the group (the block loops over them), so dk, dv are summed over
//         the group inside the block.
//       - Value tiling: the block owns value columns [c0, c0+BV); BV is chosen so that the backward's
//         shared memory fits (D = 128 with sm2 is a 256 x 128 fp32 state, 128 KiB: too much with the
//         tiles beside it). phi is recomputed once per value tile.
//       - Flexible state saving: the forward writes S_[i] to global memory only when i % m == 0. The
//         backward walks the save groups last to first; inside a group it first recomputes the
//         states forward from the saved one (computing dQ~ = dO S_[i]^T + ((dO V'^T) ⊙ M) K~', which
//         needs S_[i]), then walks the group's chunks backward carrying dS (the gradient of the state),
//         computing dK~' = V' dS^T + ((dO V'^T) ⊙ M)^T Q~ and dV' = K~' dS + ((Q~ K~'^T) ⊙ M)^T dO,
//         and then dS += Q~^T dO. After chunk 0, dS = dh0. Memory for saved states: B*G*ceil(n/m)*Dp*D.
//       - dq and dk are sums over value tiles (dQ~ sums over value columns), and the sum is done in a
//         fixed order, so the gradients are the same bits on every run (no float atomics): each block
//         stores its tile's partial (plain stores: in a block every dq, dk row is written once), tile 0
//         into dq, dk themselves and tile x > 0 into slot x-1 of a scratch buffer; then a second small
//         kernel adds slots 0, 1, ... to dq, dk in that order, one thread per element. The technique is
//         a two-pass reduction through partials in memory. Its cost: (tiles - 1) * |dq + dk| floats of
//         scratch and one more launch that reads them once; with one value tile (D <= BV) neither.
//         (atomicAdd into zeroed dq, dk would need neither, but with more than two tiles the order of its
//         float additions is whatever order the blocks run in, so the last bits change from run to run.
//         Keeping all tiles of a row in one block is not possible: the state of every tile would have to
//         fit in its shared memory, which is why the columns are tiled at all.)
//         dv and dh0 columns belong to one block: plain stores.
//       The token-by-token recurrence (spec §3.1) is v2 with C = 1 (the benchmark's sequential baseline).
//   What v2 does not do (a v3 would): tensor-core matmuls for the C x C and C x Dp products, several
//   blocks per kv head splitting Dp with a reduction, double-buffered tile loads.
//
// Every shared row that is read across threads along its length is padded (stride Dp+1, BV+1).
#include "cuda/compat.h"
#include "cuda/rla.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace cu {
namespace {

constexpr int kMaxD = 128;
constexpr int kMaxDp = 2 * kMaxD;
constexpr int kThreads = 128;                     // threads per block (v2)
constexpr size_t kSmemBudget = 200 * 1024;       // bytes of dynamic shared memory we allow ourselves (sm_90: 227 KiB)

// ---- the feature map, on the device --------------------------------------------------------------

// Dp, the width of phi(x) for a head of D values: cu::feature_dim (cuda/feature_map.h), callable from
// the kernels too. Every Dp of this file comes from here.
__host__ __device__ __forceinline__ int phi_dim(FeatureMap fm, int D) {
  return fm == FeatureMap::identity ? D : 2 * D;
}

// phi of one raw row. x: (D) -> y: (Dp).
__device__ void phi_row(FeatureMap fm, const float* x, float* y, int D) {
  if (fm == FeatureMap::sm2) {  // sm2: [softmax(x), softmax(-x)], max subtraction (max(x) and -min(x))
    float mx = x[0], mn = x[0];
    for (int d = 1; d < D; ++d) mx = fmaxf(mx, x[d]), mn = fminf(mn, x[d]);
    float z1 = 0.f, z2 = 0.f;
    for (int d = 0; d < D; ++d) {
      y[d] = expf(x[d] - mx);
      y[D + d] = expf(mn - x[d]);
      z1 += y[d];
      z2 += y[D + d];
    }
    for (int d = 0; d < D; ++d) y[d] /= z1, y[D + d] /= z2;
  } else if (fm == FeatureMap::relu2) {  // relu2: [relu(x), relu(-x)]
    for (int d = 0; d < D; ++d) y[d] = fmaxf(x[d], 0.f), y[D + d] = fmaxf(-x[d], 0.f);
  } else {
    for (int d = 0; d < D; ++d) y[d] = x[d];
  }
}

// The phi backward, written in terms of y = phi(x) (all three maps can be): y, dy: (Dp) -> dx: (D).
// Calls emit(d, dx_d) for d = 0..D-1, so the caller decides where dx goes.
//   sm2:      forward y1 = softmax(x), y2 = softmax(-x), so  dx = y1 (g1 - <g1,y1>) - y2 (g2 - <g2,y2>)
//   relu2:    forward y1 = relu(x), y2 = relu(-x), so  dx = g1 [x > 0] - g2 [x < 0]  ([x > 0] = [y1 > 0])
//   identity: forward y = x, so dx = g
template <class Emit>
__device__ void phi_row_backward(FeatureMap fm, const float* y, const float* dy, int D, Emit emit) {
  if (fm == FeatureMap::sm2) {
    float dot1 = 0.f, dot2 = 0.f;
    for (int d = 0; d < D; ++d) dot1 += dy[d] * y[d], dot2 += dy[D + d] * y[D + d];
    for (int d = 0; d < D; ++d) emit(d, y[d] * (dy[d] - dot1) - y[D + d] * (dy[D + d] - dot2));
  } else if (fm == FeatureMap::relu2) {
    for (int d = 0; d < D; ++d) emit(d, (y[d] > 0.f ? dy[d] : 0.f) - (y[D + d] > 0.f ? dy[D + d] : 0.f));
  } else {
    for (int d = 0; d < D; ++d) emit(d, dy[d]);
  }
}

__device__ __forceinline__ long row_index(int b, int t, int T, int heads, int head) {
  return ((long)b * T + t) * heads + head;  // times D gives the offset of row (b, t, head)
}

// ------------------------------------------------------------------------------------------------
// v1: the masked form, one thread per output row
// ------------------------------------------------------------------------------------------------

// q: (B,T,H,D), k, v: (B,T,G,D), h0: (B,G,Dp,D) or null -> o: (B,T,H,D)
__global__ void rla_forward_v1_kernel(const float* q, const float* k, const float* v, const float* h0, float* o,
                                      int B, int T, int H, int G, int D, int w, FeatureMap fm) {
  int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * T * H) return;  // no barriers here
  int h = idx % H, t = (idx / H) % T, b = idx / (H * T), g = h / (H / G);
  int Dp = phi_dim(fm, D);
  float phiq[kMaxDp], phik[kMaxDp];
  phi_row(fm, q + (long)idx * D, phiq, D);
  float* o_t = o + (long)idx * D;
  // o_t = phi(q_t) h0
  const float* h0_g = h0 ? h0 + ((long)b * G + g) * Dp * D : nullptr;
  for (int c = 0; c < D; ++c) {
    float acc = 0.f;
    if (h0_g)
      for (int p = 0; p < Dp; ++p) acc += phiq[p] * h0_g[p * D + c];
    o_t[c] = acc;
  }
  // o_t += sum_{j <= t-w-1} (phi(q_t) . phi(k_j)) v_j
  for (int j = 0; j <= t - w - 1; ++j) {
    phi_row(fm, k + row_index(b, j, T, G, g) * D, phik, D);
    float a = 0.f;
    for (int p = 0; p < Dp; ++p) a += phiq[p] * phik[p];
    const float* v_j = v + row_index(b, j, T, G, g) * D;
    for (int c = 0; c < D; ++c) o_t[c] += a * v_j[c];
  }
}

// dq: one thread per (b, t, h).
__global__ void rla_backward_dq_v1_kernel(const float* q, const float* k, const float* v, const float* h0,
                                          const float* dout, float* dq, int B, int T, int H, int G, int D, int w,
                                          FeatureMap fm) {
  int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * T * H) return;
  int h = idx % H, t = (idx / H) % T, b = idx / (H * T), g = h / (H / G);
  int Dp = phi_dim(fm, D);
  float phiq[kMaxDp], phik[kMaxDp], dphiq[kMaxDp];
  phi_row(fm, q + (long)idx * D, phiq, D);
  const float* do_t = dout + (long)idx * D;
  // forward: o_t = phi(q_t) h0 + ..., so dphi(q_t) = h0 dO_t  (+ the key terms below)
  const float* h0_g = h0 ? h0 + ((long)b * G + g) * Dp * D : nullptr;
  for (int p = 0; p < Dp; ++p) {
    float acc = 0.f;
    if (h0_g)
      for (int c = 0; c < D; ++c) acc += h0_g[p * D + c] * do_t[c];
    dphiq[p] = acc;
  }
  // forward: o_t += (phi(q_t) . phi(k_j)) v_j, so dphi(q_t) += (dO_t . v_j) phi(k_j)
  for (int j = 0; j <= t - w - 1; ++j) {
    phi_row(fm, k + row_index(b, j, T, G, g) * D, phik, D);
    const float* v_j = v + row_index(b, j, T, G, g) * D;
    float dp = 0.f;
    for (int c = 0; c < D; ++c) dp += do_t[c] * v_j[c];
    for (int p = 0; p < Dp; ++p) dphiq[p] += dp * phik[p];
  }
  float* dq_t = dq + (long)idx * D;
  phi_row_backward(fm, phiq, dphiq, D, [&](int d, float x) { dq_t[d] = x; });
}

// dk, dv: one thread per (b, j, g), summing over the query heads of the group and the queries
// t >= j+w+1 that read key j.
__global__ void rla_backward_dkdv_v1_kernel(const float* q, const float* k, const float* v, const float* dout,
                                            float* dk, float* dv, int B, int T, int H, int G, int D, int w,
                                            FeatureMap fm) {
  int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * T * G) return;
  int g = idx % G, j = (idx / G) % T, b = idx / (G * T), r = H / G;
  int Dp = phi_dim(fm, D);
  float phik[kMaxDp], phiq[kMaxDp], dphik[kMaxDp];
  phi_row(fm, k + (long)idx * D, phik, D);
  const float* v_j = v + (long)idx * D;
  float* dv_j = dv + (long)idx * D;
  for (int p = 0; p < Dp; ++p) dphik[p] = 0.f;
  for (int c = 0; c < D; ++c) dv_j[c] = 0.f;
  for (int h = g * r; h < (g + 1) * r; ++h) {
    for (int t = j + w + 1; t < T; ++t) {
      phi_row(fm, q + row_index(b, t, T, H, h) * D, phiq, D);
      const float* do_t = dout + row_index(b, t, T, H, h) * D;
      float a = 0.f, dp = 0.f;
      for (int p = 0; p < Dp; ++p) a += phiq[p] * phik[p];
      for (int c = 0; c < D; ++c) dp += do_t[c] * v_j[c];
      // forward: o_t += a v_j with a = phi(q_t) . phi(k_j), so dv_j += a dO_t, dphi(k_j) += (dO_t . v_j) phi(q_t)
      for (int c = 0; c < D; ++c) dv_j[c] += a * do_t[c];
      for (int p = 0; p < Dp; ++p) dphik[p] += dp * phiq[p];
    }
  }
  float* dk_j = dk + (long)idx * D;
  phi_row_backward(fm, phik, dphik, D, [&](int d, float x) { dk_j[d] = x; });
}

// dh0 row p of kv head g: one thread per (b, g, p). dh0: (B,G,Dp,D)
// forward: o_t = phi(q_t) h0 + ..., for every t and every query head of the group, so dh0 = sum Q~^T dO.
__global__ void rla_backward_dh0_v1_kernel(const float* q, const float* dout, float* dh0, int B, int T, int H,
                                           int G, int D, FeatureMap fm) {
  int Dp = phi_dim(fm, D);
  int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= B * G * Dp) return;
  int p = idx % Dp, g = (idx / Dp) % G, b = idx / (Dp * G), r = H / G;
  float phiq[kMaxDp];
  float* row = dh0 + (long)idx * D;  // idx = (b*G + g)*Dp + p
  for (int c = 0; c < D; ++c) row[c] = 0.f;
  for (int h = g * r; h < (g + 1) * r; ++h)
    for (int t = 0; t < T; ++t) {
      phi_row(fm, q + row_index(b, t, T, H, h) * D, phiq, D);
      const float* do_t = dout + row_index(b, t, T, H, h) * D;
      for (int c = 0; c < D; ++c) row[c] += phiq[p] * do_t[c];
    }
}

// ------------------------------------------------------------------------------------------------
// v2: chunked, fused phi, state in shared memory, saved every m chunks
// ------------------------------------------------------------------------------------------------

// Load phi(k'_u) and the value tile v'_u[c0 : c0+BV) for the C rows u = u0 .. u0+C-1 of a chunk:
// key j = u - w - 1, zero rows when u >= T or j < 0 (the shift, by index).
// phik_s: (C, Dp+1), v_s: (C, BV). All threads of the block call it.
__device__ void load_shifted_keys(float* phik_s, float* v_s, const float* k, const float* v, int b, int g, int u0,
                                  int C, int T, int G, int D, int w, FeatureMap fm, int c0, int BV, int nbv) {
  int Dp = phi_dim(fm, D), PD = Dp + 1;
  for (int rr = threadIdx.x; rr < C; rr += blockDim.x) {
    int u = u0 + rr, j = u - w - 1;
    if (u < T && j >= 0) {
      phi_row(fm, k + row_index(b, j, T, G, g) * D, phik_s + rr * PD, D);
    } else {
      for (int p = 0; p < Dp; ++p) phik_s[rr * PD + p] = 0.f;
    }
  }
  for (int i = threadIdx.x; i < C * BV; i += blockDim.x) {
    int rr = i / BV, c = i % BV, u = u0 + rr, j = u - w - 1;
    v_s[i] = (u < T && j >= 0 && c < nbv) ? v[row_index(b, j, T, G, g) * D + c0 + c] : 0.f;
  }
}

// Load phi(q_u) for query head h and (optionally) the dout value tile, rows u = u0 .. u0+C-1, zero past T.
__device__ void load_queries(float* phiq_s, float* do_s, const float* q, const float* dout, int b, int h, int u0,
                             int C, int T, int H, int D, FeatureMap fm, int c0, int BV, int nbv) {
  int Dp = phi_dim(fm, D), PD = Dp + 1;
  for (int rr = threadIdx.x; rr < C; rr += blockDim.x) {
    int u = u0 + rr;
    if (u < T) {
      phi_row(fm, q + row_index(b, u, T, H, h) * D, phiq_s + rr * PD, D);
    } else {
      for (int p = 0; p < Dp; ++p) phiq_s[rr * PD + p] = 0.f;
    }
  }
  if (do_s)
    for (int i = threadIdx.x; i < C * BV; i += blockDim.x) {
      int rr = i / BV, c = i % BV, u = u0 + rr;
      do_s[i] = (u < T && c < nbv) ? dout[row_index(b, u, T, H, h) * D + c0 + c] : 0.f;
    }
}

// The pieces below are shared by the forward's chunk loop and the backward's, which runs the same loop
// again to recompute the states. None has a barrier: the caller syncs around them.

// S (Dp, BV+1) <- columns [c0, c0+nbv) of the (Dp, D) state src in global memory (0 where src is null
// and in the columns past nbv of a narrower last tile).
__device__ void load_state(float* S_s, const float* src, int Dp, int D, int c0, int BV, int nbv) {
  for (int i = threadIdx.x; i < Dp * BV; i += blockDim.x) {
    int p = i / BV, c = i % BV;
    S_s[p * (BV + 1) + c] = (src && c < nbv) ? src[p * D + c0 + c] : 0.f;
  }
}

// Columns [c0, c0+nbv) of the (Dp, D) state dst in global memory <- S (Dp, BV+1).
__device__ void store_state(float* dst, const float* S_s, int Dp, int D, int c0, int BV, int nbv) {
  for (int i = threadIdx.x; i < Dp * nbv; i += blockDim.x) {
    int p = i / nbv, c = i % nbv;
    dst[p * D + c0 + c] = S_s[p * (BV + 1) + c];
  }
}

// S_[i+1] = S_[i] + phi(K'_[i])^T V'_[i]. S: (Dp, BV+1), phi(K'): (C, Dp+1), V': (C, BV).
__device__ void advance_state(float* S_s, const float* phik_s, const float* v_s, int Dp, int C, int BV, int nbv) {
  for (int i = threadIdx.x; i < Dp * nbv; i += blockDim.x) {
    int p = i / nbv, c = i % nbv;
    float acc = 0.f;
    for (int uu = 0; uu < C; ++uu) acc += phik_s[uu * (Dp + 1) + p] * v_s[uu * BV + c];
    S_s[p * (BV + 1) + c] += acc;
  }
}

// out = (X Y^T) ⊙ M, M lower triangular including the diagonal: out[rr][uu] = X_rr . Y_uu (the first
// n entries of each row) for uu <= rr, else 0. X, Y: C rows of stride ldx, ldy; out: (C, C).
// Forward: A = (phi(Q) phi(K')^T) ⊙ M; backward also dP = (dO V'^T) ⊙ M.
__device__ void masked_products(float* out, const float* X, int ldx, const float* Y, int ldy, int n, int C) {
  for (int i = threadIdx.x; i < C * C; i += blockDim.x) {
    int rr = i / C, uu = i % C;
    float a = 0.f;
    if (uu <= rr)
      for (int p = 0; p < n; ++p) a += X[rr * ldx + p] * Y[uu * ldy + p];
    out[i] = a;
  }
}

// grid (D/BV value tiles, G, B), block kThreads.
// dynamic smem: S (Dp, BV+1), phi(K') (C, Dp+1), phi(Q) (C, Dp+1), V' (C, BV), A (C, C).
// q: (B,T,H,D), k, v: (B,T,G,D), h0: (B,G,Dp,D) or null -> o: (B,T,H,D), states: (B,G,n_saved,Dp,D) or null
__global__ void rla_forward_v2_kernel(const float* q, const float* k, const float* v, const float* h0, float* o,
                                      float* states, int T, int H, int G, int D, int w, FeatureMap fm, int C, int m,
                                      int BV) {
  DYNAMIC_SHARED(float, smem_rla_fwd);
  const int Dp = phi_dim(fm, D), PD = Dp + 1, SB = BV + 1;
  float* S_s = smem_rla_fwd;      // (Dp, BV+1): the running state, columns [c0, c0+BV)
  float* phik_s = S_s + Dp * SB;  // (C, Dp+1)
  float* phiq_s = phik_s + C * PD;
  float* v_s = phiq_s + C * PD;   // (C, BV)
  float* a_s = v_s + C * BV;      // (C, C): (phi(Q) phi(K')^T) ⊙ M
  const int b = blockIdx.z, g = blockIdx.y, c0 = blockIdx.x * BV, r = H / G;
  const int nbv = D - c0 < BV ? D - c0 : BV;  // columns of this tile (the last tile may be narrower)
  const int n_chunks = (T + C - 1) / C, n_saved = (n_chunks + m - 1) / m;
  const int tid = threadIdx.x, nt = blockDim.x;

  // S_[0] = h0 (or 0)
  load_state(S_s, h0 ? h0 + ((long)b * G + g) * Dp * D : nullptr, Dp, D, c0, BV, nbv);
  for (int ci = 0; ci < n_chunks; ++ci) {
    const int u0 = ci * C;
    __syncthreads();  // S is up to date; the previous chunk's tiles are no longer read
    if (states && ci % m == 0)  // flexible state saving: only every m-th chunk's S_[i] goes to memory
      store_state(states + (((long)b * G + g) * n_saved + ci / m) * Dp * D, S_s, Dp, D, c0, BV, nbv);
    load_shifted_keys(phik_s, v_s, k, v, b, g, u0, C, T, G, D, w, fm, c0, BV, nbv);
    for (int h = g * r; h < (g + 1) * r; ++h) {  // every query head of the group reads the same S
      __syncthreads();  // phi(K'), V' loaded; the previous head's phi(Q), A no longer read
      load_queries(phiq_s, nullptr, q, nullptr, b, h, u0, C, T, H, D, fm, c0, BV, nbv);
      __syncthreads();
      // A = (phi(Q_[i]) phi(K'_[i])^T) ⊙ M, M inclusive lower triangular
      masked_products(a_s, phiq_s, PD, phik_s, PD, Dp, C);
      __syncthreads();
      // O_[i] = phi(Q_[i]) S_[i] + A V'_[i]
      for (int i = tid; i < C * nbv; i += nt) {
        int rr = i / nbv, c = i % nbv, u = u0 + rr;
        if (u >= T) continue;
        float acc = 0.f;
        for (int p = 0; p < Dp; ++p) acc += phiq_s[rr * PD + p] * S_s[p * SB + c];
        for (int uu = 0; uu <= rr; ++uu) acc += a_s[rr * C + uu] * v_s[uu * BV + c];
        o[row_index(b, u, T, H, h) * D + c0 + c] = acc;
      }
    }
    __syncthreads();  // every head has read S_[i]
    // S_[i+1] = S_[i] + phi(K'_[i])^T V'_[i]
    advance_state(S_s, phik_s, v_s, Dp, C, BV, nbv);
  }
}

// grid (D/BV, G, B), block kThreads.
// dynamic smem: S, dS (Dp, BV+1); phi(K'), phi(Q), dphi (C, Dp+1); V', dO, dV' (C, BV); A, dP (C, C).
// -> this value tile's partials of dq, dk: tile 0 into dq, dk, tile x > 0 into slot x-1 of scratch, a slot
//    being [dq (B,T,H,D) | dk (B,T,G,D)] (all zeroed first; rows of keys no query reads stay 0);
//    dv (stores into a zeroed buffer), dh0 (stores; may be null)
__global__ void rla_backward_v2_kernel(const float* q, const float* k, const float* v, const float* states,
                                       const float* dout, float* dq, float* dk, float* dv, float* dh0,
                                       float* scratch, int T, int H, int G, int D, int w, FeatureMap fm, int C,
                                       int m, int BV) {
  DYNAMIC_SHARED(float, smem_rla_bwd);
  const int Dp = phi_dim(fm, D), PD = Dp + 1, SB = BV + 1;
  float* S_s = smem_rla_bwd;      // (Dp, BV+1) the recomputed state S_[i]
  float* dS_s = S_s + Dp * SB;    // (Dp, BV+1) the gradient of the state after the current chunk
  float* phik_s = dS_s + Dp * SB;  // (C, Dp+1)
  float* phiq_s = phik_s + C * PD;
  float* dphi_s = phiq_s + C * PD;  // dphi(Q) in the forward sub-loop, dphi(K') in the reverse one
  float* v_s = dphi_s + C * PD;     // (C, BV)
  float* do_s = v_s + C * BV;
  float* dv_s = do_s + C * BV;
  float* a_s = dv_s + C * BV;       // (C, C)
  float* dp_s = a_s + C * C;        // (C, C)
  const int b = blockIdx.z, g = blockIdx.y, c0 = blockIdx.x * BV, r = H / G;
  const int nbv = D - c0 < BV ? D - c0 : BV;
  const int n_chunks = (T + C - 1) / C, n_saved = (n_chunks + m - 1) / m;
  const int tid = threadIdx.x, nt = blockDim.x;
  // where this value tile's partials of dq, dk go (see the kernel's comment)
  const long nq = (long)gridDim.z * T * H * D, nk = (long)gridDim.z * T * G * D;
  float* dq_tile = blockIdx.x == 0 ? dq : scratch + (blockIdx.x - 1) * (nq + nk);
  float* dk_tile = blockIdx.x == 0 ? dk : dq_tile + nq;

  for (int i = tid; i < Dp * SB; i += nt) dS_s[i] = 0.f;  // nothing after the last chunk
  for (int sg = n_saved - 1; sg >= 0; --sg) {
    const int ci0 = sg * m, ci1 = (ci0 + m < n_chunks ? ci0 + m : n_chunks);  // chunks [ci0, ci1)
    __syncthreads();
    load_state(S_s, states + (((long)b * G + g) * n_saved + sg) * Dp * D, Dp, D, c0, BV, nbv);
    // ---- forward sub-loop: recompute S_[i] for each chunk of the group, and dq ----
    for (int ci = ci0; ci < ci1; ++ci) {
      const int u0 = ci * C;
      __syncthreads();
      load_shifted_keys(phik_s, v_s, k, v, b, g, u0, C, T, G, D, w, fm, c0, BV, nbv);
      for (int h = g * r; h < (g + 1) * r; ++h) {
        __syncthreads();
        load_queries(phiq_s, do_s, q, dout, b, h, u0, C, T, H, D, fm, c0, BV, nbv);
        __syncthreads();
        // dP = (dO_[i] V'_[i]^T) ⊙ M   (this value tile's part of the sum over value columns)
        masked_products(dp_s, do_s, BV, v_s, BV, nbv, C);
        __syncthreads();
        // forward: O_[i] = phi(Q_[i]) S_[i] + ((phi(Q_[i]) phi(K'_[i])^T) ⊙ M) V'_[i]
        // so:      dphi(Q_[i]) = dO_[i] S_[i]^T + dP phi(K'_[i])
        for (int i = tid; i < C * Dp; i += nt) {
          int rr = i / Dp, p = i % Dp;
          float acc = 0.f;
          for (int c = 0; c < nbv; ++c) acc += do_s[rr * BV + c] * S_s[p * SB + c];
          for (int uu = 0; uu <= rr; ++uu) acc += dp_s[rr * C + uu] * phik_s[uu * PD + p];
          dphi_s[rr * PD + p] = acc;
        }
        __syncthreads();
        // dq = phi_backward(phi(q), dphi(q)): this tile's partial (phi_backward is linear in dphi)
        for (int rr = tid; rr < C; rr += nt) {
          int u = u0 + rr;
          if (u >= T) continue;
          float* dq_u = dq_tile + row_index(b, u, T, H, h) * D;
          phi_row_backward(fm, phiq_s + rr * PD, dphi_s + rr * PD, D, [&](int d, float x) { dq_u[d] = x; });
        }
      }
      __syncthreads();
      // forward: S_[i+1] = S_[i] + phi(K'_[i])^T V'_[i]  (recomputed, as the forward did)
      advance_state(S_s, phik_s, v_s, Dp, C, BV, nbv);
    }
    // ---- reverse sub-loop: dS carries d(loss)/d(S_[i+1]); dk, dv, then dS += phi(Q_[i])^T dO_[i] ----
    for (int ci = ci1 - 1; ci >= ci0; --ci) {
      const int u0 = ci * C;
      __syncthreads();
      load_shifted_keys(phik_s, v_s, k, v, b, g, u0, C, T, G, D, w, fm, c0, BV, nbv);
      __syncthreads();
      // forward: S_[i+1] = S_[i] + phi(K'_[i])^T V'_[i], so dphi(K'_[i]) = V'_[i] dS^T, dV'_[i] = phi(K'_[i]) dS
      for (int i = tid; i < C * Dp; i += nt) {
        int uu = i / Dp, p = i % Dp;
        float acc = 0.f;
        for (int c = 0; c < nbv; ++c) acc += v_s[uu * BV + c] * dS_s[p * SB + c];
        dphi_s[uu * PD + p] = acc;
      }
      for (int i = tid; i < C * BV; i += nt) {
        int uu = i / BV, c = i % BV;
        float acc = 0.f;
        if (c < nbv)
          for (int p = 0; p < Dp; ++p) acc += phik_s[uu * PD + p] * dS_s[p * SB + c];
        dv_s[i] = acc;
      }
      for (int h = g * r; h < (g + 1) * r; ++h) {
        __syncthreads();
        load_queries(phiq_s, do_s, q, dout, b, h, u0, C, T, H, D, fm, c0, BV, nbv);
        __syncthreads();
        // A = (phi(Q) phi(K')^T) ⊙ M and dP = (dO V'^T) ⊙ M
        masked_products(a_s, phiq_s, PD, phik_s, PD, Dp, C);
        masked_products(dp_s, do_s, BV, v_s, BV, nbv, C);
        __syncthreads();
        // forward: O_[i] += A V'_[i] with A = (phi(Q) phi(K')^T) ⊙ M
        // so:      dV'_[i] += A^T dO_[i],   dphi(K'_[i]) += dP^T phi(Q_[i])
        for (int i = tid; i < C * Dp; i += nt) {
          int uu = i / Dp, p = i % Dp;
          float acc = 0.f;
          for (int rr = uu; rr < C; ++rr) acc += dp_s[rr * C + uu] * phiq_s[rr * PD + p];
          dphi_s[uu * PD + p] += acc;
        }
        for (int i = tid; i < C * nbv; i += nt) {
          int uu = i / nbv, c = i % nbv;
          float acc = 0.f;
          for (int rr = uu; rr < C; ++rr) acc += a_s[rr * C + uu] * do_s[rr * BV + c];
          dv_s[uu * BV + c] += acc;
        }
        // forward: O_[i] = phi(Q_[i]) S_[i] + ..., so dS_[i] = dS_[i+1] + phi(Q_[i])^T dO_[i] (dS was used above)
        for (int i = tid; i < Dp * nbv; i += nt) {
          int p = i / nbv, c = i % nbv;
          float acc = 0.f;
          for (int rr = 0; rr < C; ++rr) acc += phiq_s[rr * PD + p] * do_s[rr * BV + c];
          dS_s[p * SB + c] += acc;
        }
      }
      __syncthreads();
      // un-shift: row u of the chunk is key j = u - w - 1; dk = phi_backward(phi(k_j), dphi(k'_u))
      for (int rr = tid; rr < C; rr += nt) {
        int u = u0 + rr, j = u - w - 1;
        if (u >= T || j < 0) continue;
        float* dk_j = dk_tile + row_index(b, j, T, G, g) * D;  // this tile's partial, as dq
        phi_row_backward(fm, phik_s + rr * PD, dphi_s + rr * PD, D, [&](int d, float x) { dk_j[d] = x; });
      }
      for (int i = tid; i < C * nbv; i += nt) {
        int rr = i / nbv, c = i % nbv, u = u0 + rr, j = u - w - 1;
        if (u >= T || j < 0) continue;
        dv[row_index(b, j, T, G, g) * D + c0 + c] = dv_s[rr * BV + c];
      }
    }
  }
  __syncthreads();
  if (dh0)  // dS is now the gradient of S_[0] = h0
    store_state(dh0 + ((long)b * G + g) * Dp * D, dS_s, Dp, D, c0, BV, nbv);
}

// The second pass of the backward's reduction over value tiles: dq, dk += slots 0 .. n_slots-1 of scratch
// (the partials of tiles 1, 2, ...), added in slot order, so every run gives the same bits. A slot is
// [dq (nq floats) | dk (nk floats)]; one thread per element i of the concatenation (coalesced reads).
__global__ void rla_sum_value_tiles_kernel(float* dq, float* dk, const float* scratch, long nq, long nk,
                                           int n_slots) {
  long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= nq + nk) return;
  float* dst = i < nq ? dq + i : dk + (i - nq);
  float acc = *dst;  // tile 0's partial
  for (int s = 0; s < n_slots; ++s) acc += scratch[s * (nq + nk) + i];
  *dst = acc;
}

// ------------------------------------------------------------------------------------------------
// launchers
// ------------------------------------------------------------------------------------------------

int ceil_div(int a, int b) { return (a + b - 1) / b; }

void check_args(const char* who, int B, int T, int H, int G, int D, int w, int C, int m, int version) {
  auto fail = [&](const std::string& why) { throw std::invalid_argument(std::string(who) + ": " + why); };
  if (B < 1 || T < 1 || H < 1 || G < 1 || D < 1 || H % G != 0) fail("need B, T, H, G, D >= 1 and H % G == 0");
  if (D > kMaxD) fail("head dim D > 128 is not supported");
  if (w < -1) fail("w must be >= -1 (w = -1: no shift)");
  if (C < 1 || m < 1) fail("need chunk size C >= 1 and save interval m >= 1");
  if (version < 1 || version > kRlaVersions) fail("unknown version " + std::to_string(version));
}

size_t fwd_smem_floats(int Dp, int C, int BV) {
  return (size_t)Dp * (BV + 1) + 2 * (size_t)C * (Dp + 1) + (size_t)C * BV + (size_t)C * C;
}
size_t bwd_smem_floats(int Dp, int C, int BV) {
  return 2 * (size_t)Dp * (BV + 1) + 3 * (size_t)C * (Dp + 1) + 3 * (size_t)C * BV + 2 * (size_t)C * C;
}

// The value-tile width: as wide as D (at most 64) while the kernel's shared memory fits the budget.
// (sm2 with D = 128: the forward fits C <= 64, the backward C <= 32; the emulator applies the same rule.)
int pick_bv(int D, int Dp, int C, bool backward) {
  auto bytes = [&](int bv) {
    return (backward ? bwd_smem_floats(Dp, C, bv) : fwd_smem_floats(Dp, C, bv)) * sizeof(float);
  };
  int BV = D < 64 ? D : 64;
  while (BV > 8 && bytes(BV) > kSmemBudget) BV = (BV + 1) / 2;
  if (bytes(BV) > kSmemBudget)
    throw std::invalid_argument(std::string(backward ? "cu::rla_backward" : "cu::rla_forward") + ": chunk size " +
                                std::to_string(C) + " with D = " + std::to_string(D) +
                                " needs more shared memory than the kernel allows; use a smaller C");
  return BV;
}

template <class Kernel>
void allow_smem(Kernel kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes),
          "cudaFuncSetAttribute(rla smem)");
}

}  // namespace

size_t rla_states_size(int B, int T, int G, int D, FeatureMap fm, int C, int m) {
  size_t n_saved = (size_t)ceil_div(ceil_div(T, C), m);
  return (size_t)B * G * n_saved * phi_dim(fm, D) * D;
}

void rla_forward(const float* q, const float* k, const float* v, const float* h0, float* o, float* states, int B,
                 int T, int H, int G, int D, int w, FeatureMap fm, int C, int m, int version) {
  check_args("cu::rla_forward", B, T, H, G, D, w, C, m, version);
  const int Dp = phi_dim(fm, D);
  if (version == 1) {
    int n = B * T * H, block = 128;
    launch(rla_forward_v1_kernel, dim3(ceil_div(n, block)), dim3(block), 0, q, k, v, h0, o, B, T, H, G, D, w, fm);
    return;
  }
  int BV = pick_bv(D, Dp, C, false);
  size_t smem = fwd_smem_floats(Dp, C, BV) * sizeof(float);
  allow_smem(rla_forward_v2_kernel, smem);
  launch(rla_forward_v2_kernel, dim3(ceil_div(D, BV), G, B), dim3(kThreads), smem, q, k, v, h0, o, states, T, H,
         G, D, w, fm, C, m, BV);
}

size_t rla_backward_scratch_size(int B, int T, int H, int G, int D, FeatureMap fm, int C) {
  check_args("cu::rla_backward_scratch_size", B, T, H, G, D, 0, C, 1, 2);
  const int tiles = ceil_div(D, pick_bv(D, phi_dim(fm, D), C, true));
  return (size_t)(tiles - 1) * ((size_t)B * T * H * D + (size_t)B * T * G * D);
}

void rla_backward(const float* q, const float* k, const float* v, const float* h0, const float* states,
                  const float* dout, float* dq, float* dk, float* dv, float* dh0, float* scratch, int B, int T,
                  int H, int G, int D, int w, FeatureMap fm, int C, int m, int version) {
  check_args("cu::rla_backward", B, T, H, G, D, w, C, m, version);
  const int Dp = phi_dim(fm, D);
  int block = 128;
  if (version == 1) {
    launch(rla_backward_dq_v1_kernel, dim3(ceil_div(B * T * H, block)), dim3(block), 0, q, k, v, h0, dout, dq, B,
           T, H, G, D, w, fm);
    launch(rla_backward_dkdv_v1_kernel, dim3(ceil_div(B * T * G, block)), dim3(block), 0, q, k, v, dout, dk, dv,
           B, T, H, G, D, w, fm);
    if (dh0)
      launch(rla_backward_dh0_v1_kernel, dim3(ceil_div(B * G * Dp, block)), dim3(block), 0, q, dout, dh0, B, T,
             H, G, D, fm);
    return;
  }
  if (!states) throw std::invalid_argument("cu::rla_backward: version 2 needs the states saved by rla_forward");
  const int BV = pick_bv(D, Dp, C, true), tiles = ceil_div(D, BV);
  const long nq = (long)B * T * H * D, nk = (long)B * T * G * D;
  if (tiles > 1 && !scratch)
    throw std::invalid_argument("cu::rla_backward: D = " + std::to_string(D) + " is " + std::to_string(tiles) +
                                " value tiles: pass rla_backward_scratch_size floats of scratch");
  // Rows of dq, dk, dv of keys no query reads (j > T-w-2) receive nothing and stay 0.
  check(cudaMemset(dq, 0, sizeof(float) * nq), "cudaMemset(dq)");
  check(cudaMemset(dk, 0, sizeof(float) * nk), "cudaMemset(dk)");
  check(cudaMemset(dv, 0, sizeof(float) * nk), "cudaMemset(dv)");
  if (tiles > 1) check(cudaMemset(scratch, 0, sizeof(float) * (tiles - 1) * (nq + nk)), "cudaMemset(scratch)");
  size_t smem = bwd_smem_floats(Dp, C, BV) * sizeof(float);
  allow_smem(rla_backward_v2_kernel, smem);
  launch(rla_backward_v2_kernel, dim3(tiles, G, B), dim3(kThreads), smem, q, k, v, states, dout, dq, dk, dv, dh0,
         scratch, T, H, G, D, w, fm, C, m, BV);
  // dq, dk = tile 0's partial + tile 1's + ...: a fixed order (see the header of this file)
  if (tiles > 1)
    launch(rla_sum_value_tiles_kernel, dim3(unsigned((nq + nk + 255) / 256)), dim3(256), 0, dq, dk,
           (const float*)scratch, nq, nk, tiles - 1);
}

}  // namespace cu
