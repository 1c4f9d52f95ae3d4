// cuda/rattn_merge.cu: the RATTENTION merge out = GRMS_swa(o_swa) + GRMS_rla(o_rla), fused, fp32.
//
// Per (token t, head h) row of D values and each branch x in {o_swa, o_rla} with its gamma (spec §2.5, §4.5):
//   r = sqrt(mean_d(x^2) + eps),   y = x / r * gamma[h],   out = y_swa + y_rla
// Backward, with g = dout (the same for both branches, since out is their sum):
//   dx = (gamma * g) / r - x * mean_d(x * gamma * g) / r^3,     dgamma[h] += sum_t (x / r) * g
//
// Kernel versions (the `version` argument of the launchers in cuda/rattn_merge.h):
//   v1  One thread per (b, t, h) row doing both branches with plain loops (the reference loop).
//       Backward: the same for dx; dgamma by a second kernel, one thread per (h, d) summing over all
//       rows in order (deterministic, but reads the tensors again).
//       Teaches: the formulas, and that a per-row norm is two reductions and a scale.
//   v2  One warp per (b, t, h) row, lanes striding over D (coalesced: lane l reads d = l, l+32, ...),
//       the row reductions done with __shfl_xor_sync butterflies, both branches in the same pass (the
//       fusion: each input is read once, out written once; no intermediate y_swa, y_rla in memory).
//       Backward: dx for both branches, and dgamma for both accumulated per lane in registers over
//       the rows a warp visits, combined across the block's warps in shared memory in a fixed order;
//       each block stores that partial (plain stores) in a scratch buffer (n_blocks, 2, H, D), and a
//       second small kernel sums the partials over the blocks in block order and adds the sum to dgamma.
//       Technique: a deterministic two-pass reduction, so dgamma is the same bits on every run. Its
//       cost: n_blocks * 2 * H * D floats of scratch (at most 64 blocks per head) and a launch of
//       2 * H * D threads that reads them once. (One atomicAdd per (block, h, d) into dgamma would need
//       neither, but the order of float atomics from different blocks is the order the blocks happen to
//       run in, so the last bits of dgamma, and of the training run after it, would change from run to
//       run. The last block to finish could do the second pass instead of a second launch; that needs
//       an atomic counter, a __threadfence and a reset, for a launch that costs microseconds.)
#include "cuda/compat.h"
#include "cuda/rattn_merge.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace cu {
namespace {

constexpr int kMaxD = 128;
constexpr int kPerLane = kMaxD / 32;  // elements of a row each lane holds (v2)
constexpr int kWarps = 4;             // warps per block (v2)

// ---- v1 -----------------------------------------------------------------------------------------

// x: one row (D) -> 1/r = rsqrt(mean_d(x^2) + eps)
__device__ float inv_rms(const float* x, int D, float eps) {
  float ss = 0.f;
  for (int d = 0; d < D; ++d) ss += x[d] * x[d];
  return rsqrtf(ss / D + eps);
}

// o_swa, o_rla: (N*H rows of D), gamma: (H,D) -> out
__global__ void merge_forward_v1_kernel(const float* o_swa, const float* o_rla, const float* gamma_swa,
                                        const float* gamma_rla, float* out, int N, int H, int D, float eps) {
  int row = blockIdx.x * blockDim.x + threadIdx.x;  // row = (b*T + t)*H + h
  if (row >= N * H) return;
  int h = row % H;
  const float* xs = o_swa + (long)row * D;
  const float* xr = o_rla + (long)row * D;
  float is = inv_rms(xs, D, eps), ir = inv_rms(xr, D, eps);
  for (int d = 0; d < D; ++d)
    out[(long)row * D + d] = xs[d] * is * gamma_swa[h * D + d] + xr[d] * ir * gamma_rla[h * D + d];
}

// dx for one branch of one row (v1): x, gamma, g: (D) -> dx (D)
__device__ void rms_row_backward_v1(const float* x, const float* gamma, const float* g, float* dx, int D,
                                    float eps) {
  // forward: y = x * (1/r) * gamma, 1/r = rsqrt(mean(x^2) + eps)
  // so: dx = gamma g / r - x mean(x gamma g) / r^3
  float ir = inv_rms(x, D, eps);
  float m = 0.f;
  for (int d = 0; d < D; ++d) m += x[d] * gamma[d] * g[d];
  m /= D;
  for (int d = 0; d < D; ++d) dx[d] = gamma[d] * g[d] * ir - x[d] * m * ir * ir * ir;
}

__global__ void merge_backward_dx_v1_kernel(const float* o_swa, const float* o_rla, const float* gamma_swa,
                                            const float* gamma_rla, const float* dout, float* do_swa,
                                            float* do_rla, int N, int H, int D, float eps) {
  int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= N * H) return;
  int h = row % H;
  long off = (long)row * D;
  // forward: out = y_swa + y_rla, so both branches receive dout unchanged
  rms_row_backward_v1(o_swa + off, gamma_swa + h * D, dout + off, do_swa + off, D, eps);
  rms_row_backward_v1(o_rla + off, gamma_rla + h * D, dout + off, do_rla + off, D, eps);
}

// dgamma[h, d] += sum over rows of head h of (x / r) * dout   (one thread per (h, d), both branches)
__global__ void merge_backward_dgamma_v1_kernel(const float* o_swa, const float* o_rla, const float* dout,
                                                float* dgamma_swa, float* dgamma_rla, int N, int H, int D,
                                                float eps) {
  int idx = blockIdx.x * blockDim.x + threadIdx.x;
  if (idx >= H * D) return;
  int h = idx / D, d = idx % D;
  float gs = 0.f, gr = 0.f;
  for (int n = 0; n < N; ++n) {
    long off = ((long)n * H + h) * D;
    // forward: y = (x / r) * gamma, so dgamma += (x / r) * dout
    gs += o_swa[off + d] * inv_rms(o_swa + off, D, eps) * dout[off + d];
    gr += o_rla[off + d] * inv_rms(o_rla + off, D, eps) * dout[off + d];
  }
  dgamma_swa[idx] += gs;
  dgamma_rla[idx] += gr;
}

// ---- v2 -----------------------------------------------------------------------------------------

// Sum over the 32 lanes of a warp; every lane gets the total.
__device__ __forceinline__ float warp_sum(float x) {
  for (int off = 16; off > 0; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  return x;
}

// grid ceil(N*H / kWarps), block 32*kWarps: warp = one (b,t,h) row.
__global__ void merge_forward_v2_kernel(const float* o_swa, const float* o_rla, const float* gamma_swa,
                                        const float* gamma_rla, float* out, int N, int H, int D, float eps) {
  int lane = threadIdx.x % 32;
  int row = blockIdx.x * kWarps + threadIdx.x / 32;
  if (row >= N * H) return;  // the whole warp leaves together (no block barrier in this kernel)
  int h = row % H;
  long off = (long)row * D;
  float xs[kPerLane], xr[kPerLane];
  float ss = 0.f, sr = 0.f;
  for (int i = 0; i < kPerLane; ++i) {
    int d = lane + 32 * i;
    xs[i] = d < D ? o_swa[off + d] : 0.f;
    xr[i] = d < D ? o_rla[off + d] : 0.f;
    ss += xs[i] * xs[i];
    sr += xr[i] * xr[i];
  }
  float is = rsqrtf(warp_sum(ss) / D + eps), ir = rsqrtf(warp_sum(sr) / D + eps);
  for (int i = 0; i < kPerLane; ++i) {
    int d = lane + 32 * i;
    if (d < D) out[off + d] = xs[i] * is * gamma_swa[h * D + d] + xr[i] * ir * gamma_rla[h * D + d];
  }
}

// grid (n_blocks, H), block 32*kWarps. Block (bx, h) handles the rows n = bx*kWarps + warp, stepping
// by n_blocks*kWarps, of head h. dynamic smem: (kWarps, 2, D) dgamma partials.
// -> do_swa, do_rla; the block's dgamma partial into dgamma_part (n_blocks, 2, H, D): [bx][0] swa, [bx][1] rla
__global__ void merge_backward_v2_kernel(const float* o_swa, const float* o_rla, const float* gamma_swa,
                                         const float* gamma_rla, const float* dout, float* do_swa, float* do_rla,
                                         float* dgamma_part, int N, int H, int D, float eps) {
  DYNAMIC_SHARED(float, smem_merge);
  int lane = threadIdx.x % 32, warp = threadIdx.x / 32, h = blockIdx.y;
  float gsum_s[kPerLane], gsum_r[kPerLane];  // this lane's dgamma partials
  float gam_s[kPerLane], gam_r[kPerLane];
  for (int i = 0; i < kPerLane; ++i) {
    int d = lane + 32 * i;
    gsum_s[i] = gsum_r[i] = 0.f;
    gam_s[i] = d < D ? gamma_swa[h * D + d] : 0.f;
    gam_r[i] = d < D ? gamma_rla[h * D + d] : 0.f;
  }
  for (int n = blockIdx.x * kWarps + warp; n < N; n += gridDim.x * kWarps) {  // warp-uniform loop
    long off = ((long)n * H + h) * D;
    float xs[kPerLane], xr[kPerLane], g[kPerLane];
    float ss = 0.f, sr = 0.f, ms = 0.f, mr = 0.f;
    for (int i = 0; i < kPerLane; ++i) {
      int d = lane + 32 * i;
      xs[i] = d < D ? o_swa[off + d] : 0.f;
      xr[i] = d < D ? o_rla[off + d] : 0.f;
      g[i] = d < D ? dout[off + d] : 0.f;
      ss += xs[i] * xs[i];
      sr += xr[i] * xr[i];
      ms += xs[i] * gam_s[i] * g[i];
      mr += xr[i] * gam_r[i] * g[i];
    }
    float is = rsqrtf(warp_sum(ss) / D + eps), ir = rsqrtf(warp_sum(sr) / D + eps);
    ms = warp_sum(ms) / D;
    mr = warp_sum(mr) / D;
    // forward: out = x_swa/r_swa * gamma_swa + x_rla/r_rla * gamma_rla
    // so:      dx = gamma g / r - x mean(x gamma g) / r^3 (each branch),  dgamma += (x / r) g
    for (int i = 0; i < kPerLane; ++i) {
      int d = lane + 32 * i;
      if (d >= D) continue;
      do_swa[off + d] = gam_s[i] * g[i] * is - xs[i] * ms * is * is * is;
      do_rla[off + d] = gam_r[i] * g[i] * ir - xr[i] * mr * ir * ir * ir;
      gsum_s[i] += xs[i] * is * g[i];
      gsum_r[i] += xr[i] * ir * g[i];
    }
  }
  // combine the warps' partials in a fixed order, then store the block's partial (no atomics)
  for (int i = 0; i < kPerLane; ++i) {
    int d = lane + 32 * i;
    if (d < D) {
      smem_merge[(warp * 2 + 0) * D + d] = gsum_s[i];
      smem_merge[(warp * 2 + 1) * D + d] = gsum_r[i];
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < 2 * D; i += blockDim.x) {
    int br = i / D, d = i % D;
    float acc = 0.f;
    for (int wi = 0; wi < kWarps; ++wi) acc += smem_merge[(wi * 2 + br) * D + d];
    dgamma_part[(((long)blockIdx.x * 2 + br) * H + h) * D + d] = acc;
  }
}

// The second pass: dgamma[br][h, d] += sum over blocks bx = 0, 1, ... of dgamma_part[bx][br][h, d], in block
// order. One thread per (br, h, d) of the 2 * H * D; consecutive threads read consecutive partials.
__global__ void merge_dgamma_sum_kernel(const float* dgamma_part, float* dgamma_swa, float* dgamma_rla,
                                        int n_blocks, int H, int D) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;  // i = (br * H + h) * D + d
  if (i >= 2 * H * D) return;
  float acc = 0.f;
  for (int bx = 0; bx < n_blocks; ++bx) acc += dgamma_part[(long)bx * 2 * H * D + i];
  float* dgamma = i < H * D ? dgamma_swa + i : dgamma_rla + (i - H * D);
  *dgamma += acc;
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

// v2's grid width: about 16 rows per warp, at most 64 blocks per head.
int merge_backward_blocks(int N) {
  int n_blocks = ceil_div(N, kWarps * 16);
  return n_blocks > 64 ? 64 : n_blocks;
}

void check_args(const char* who, int B, int T, int H, int D, int version) {
  if (B < 1 || T < 1 || H < 1 || D < 1) throw std::invalid_argument(std::string(who) + ": need B, T, H, D >= 1");
  if (D > kMaxD) throw std::invalid_argument(std::string(who) + ": head dim D > 128 is not supported");
  if (version < 1 || version > kMergeVersions)
    throw std::invalid_argument(std::string(who) + ": unknown version " + std::to_string(version));
}

}  // namespace

void rattn_merge_forward(const float* o_swa, const float* o_rla, const float* gamma_swa, const float* gamma_rla,
                         float* out, int B, int T, int H, int D, float eps, int version) {
  check_args("cu::rattn_merge_forward", B, T, H, D, version);
  int N = B * T;
  if (version == 1) {
    launch(merge_forward_v1_kernel, dim3(ceil_div(N * H, 128)), dim3(128), 0, o_swa, o_rla, gamma_swa, gamma_rla,
           out, N, H, D, eps);
    return;
  }
  launch(merge_forward_v2_kernel, dim3(ceil_div(N * H, kWarps)), dim3(32 * kWarps), 0, o_swa, o_rla, gamma_swa,
         gamma_rla, out, N, H, D, eps);
}

size_t rattn_merge_scratch_size(int B, int T, int H, int D) {
  check_args("cu::rattn_merge_scratch_size", B, T, H, D, 2);
  return (size_t)merge_backward_blocks(B * T) * 2 * H * D;
}

void rattn_merge_backward(const float* o_swa, const float* o_rla, const float* gamma_swa, const float* gamma_rla,
                          const float* dout, float* do_swa, float* do_rla, float* dgamma_swa, float* dgamma_rla,
                          float* scratch, int B, int T, int H, int D, float eps, int version) {
  check_args("cu::rattn_merge_backward", B, T, H, D, version);
  int N = B * T;
  if (version == 1) {
    launch(merge_backward_dx_v1_kernel, dim3(ceil_div(N * H, 128)), dim3(128), 0, o_swa, o_rla, gamma_swa,
           gamma_rla, dout, do_swa, do_rla, N, H, D, eps);
    launch(merge_backward_dgamma_v1_kernel, dim3(ceil_div(H * D, 128)), dim3(128), 0, o_swa, o_rla, dout,
           dgamma_swa, dgamma_rla, N, H, D, eps);
    return;
  }
  if (!scratch)
    throw std::invalid_argument("cu::rattn_merge_backward: version 2 needs rattn_merge_scratch_size floats of scratch");
  const int n_blocks = merge_backward_blocks(N);
  size_t smem = (size_t)kWarps * 2 * D * sizeof(float);
  launch(merge_backward_v2_kernel, dim3(n_blocks, H), dim3(32 * kWarps), smem, o_swa, o_rla, gamma_swa, gamma_rla,
         dout, do_swa, do_rla, scratch, N, H, D, eps);
  // dgamma += the blocks' partials, summed in block order (see the header of this file)
  launch(merge_dgamma_sum_kernel, dim3(ceil_div(2 * H * D, 128)), dim3(128), 0, (const float*)scratch, dgamma_swa,
         dgamma_rla, n_blocks, H, D);
}

}  // namespace cu
