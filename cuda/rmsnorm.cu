// cuda/rmsnorm.cu: RMSNorm and the per-head group RMSNorm, forward and backward, fp32.
//
// Both ops normalise independent blocks of D contiguous values ("rows"): rmsnorm has one row per
// token (D = C, one gamma), group_rmsnorm has H rows per token, row r = t*H + h using gamma[h]
// (spec §2.5). So every kernel here works on R = T*H rows of length D with gamma row r % H, and
// plain rmsnorm is the case H = 1. The reference loop (ref/norm.h, detail::rms_block_*):
//   forward   rstd = 1 / sqrt(mean(x^2) + eps);  y = x * rstd * gamma
//   backward  dx = gamma * dy * rstd - x * mean(x * gamma * dy) * rstd^3;  dgamma += x * rstd * dy
//
// Versions, and what each one teaches:
//   v1  one thread per row (and, for dgamma, one thread per column looping over all rows): the
//       reference loop as is. Neighbouring threads read addresses D floats apart, so the loads do
//       not coalesce; with few rows most of the GPU idles.
//   v2  one warp per row: lanes stride through the row (consecutive lanes, consecutive addresses:
//       coalesced), partial sums combined with __shfl_xor_sync butterflies, so every lane ends with
//       the total and no shared memory or __syncthreads is needed. A warp whose row is past the end
//       skips as a whole, so the shuffles' full mask is always right. dgamma: a 32 x 8 block owns
//       32 columns; its 8 row-groups each sum every 8th row, then a fixed-order shared-memory
//       reduction adds the 8 partials: more parallelism over rows, still deterministic (no atomics).
#include "cuda/compat.h"

#include <stdexcept>
#include <string>

#include "cuda/rmsnorm.h"

namespace cu {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

// Sum over the 32 lanes of a warp; every lane gets the total.
__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullMask, v, offset);
  return v;
}

// ---- v1: one thread per row ---------------------------------------------------------------------
// x, y: (R, D), gamma: (H, D), rstd: (R); row r uses gamma row r % H.
__global__ void rms_forward_v1(const float* x, const float* gamma, float* y, float* rstd, int R, int H, int D,
                               float eps) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r < R) {
    const float* xr = x + (long)r * D;
    const float* g = gamma + (long)(r % H) * D;
    float ss = 0.0f;
    for (int d = 0; d < D; ++d) ss += xr[d] * xr[d];
    const float s = 1.0f / sqrtf(ss / D + eps);
    for (int d = 0; d < D; ++d) y[(long)r * D + d] = xr[d] * s * g[d];
    rstd[r] = s;
  }
}

// In the forward pass this was: y = x * rstd * gamma, rstd = (mean(x^2) + eps)^(-1/2), so now
//   dx = gamma * dy * rstd + x * d(rstd)/dx . sum(x * gamma * dy)
//      = gamma * dy * rstd - x * mean(x * gamma * dy) * rstd^3
// x, dy, dx: (R, D), gamma: (H, D), rstd: (R)
__global__ void rms_backward_dx_v1(const float* x, const float* gamma, const float* rstd, const float* dy, float* dx,
                                   int R, int H, int D) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r < R) {
    const float* xr = x + (long)r * D;
    const float* dyr = dy + (long)r * D;
    const float* g = gamma + (long)(r % H) * D;
    float dot = 0.0f;
    for (int d = 0; d < D; ++d) dot += xr[d] * g[d] * dyr[d];
    const float s = rstd[r], c = dot / D * s * s * s;
    for (int d = 0; d < D; ++d) dx[(long)r * D + d] = g[d] * dyr[d] * s - xr[d] * c;
  }
}

// In the forward pass this was: y[t, j] = x[t, j] * rstd[t, j / D] * gamma[j], so now
//   dgamma[j] += sum_t dy[t, j] * x[t, j] * rstd[t, j / D]
// x, dy: (T, H*D) viewed per token, rstd: (T, H), dgamma: (H*D); one thread per column j.
__global__ void rms_backward_dgamma_v1(const float* x, const float* rstd, const float* dy, float* dgamma, int T,
                                       int H, int D) {
  const int HD = H * D, j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j < HD) {
    float acc = 0.0f;
    for (int t = 0; t < T; ++t) acc += dy[(long)t * HD + j] * x[(long)t * HD + j] * rstd[(long)t * H + j / D];
    dgamma[j] += acc;
  }
}

// ---- v2: one warp per row -------------------------------------------------------------------
constexpr int kWarpsPerBlock = 4;
// block (32, 4): warp threadIdx.y takes row blockIdx.x * 4 + threadIdx.y
__global__ void rms_forward_v2(const float* x, const float* gamma, float* y, float* rstd, int R, int H, int D,
                               float eps) {
  const int r = blockIdx.x * kWarpsPerBlock + threadIdx.y, lane = threadIdx.x;
  if (r < R) {  // uniform across the warp: all 32 lanes take part in the shuffles or none does
    const float* xr = x + (long)r * D;
    const float* g = gamma + (long)(r % H) * D;
    float ss = 0.0f;
    for (int d = lane; d < D; d += 32) ss += xr[d] * xr[d];
    ss = warp_sum(ss);
    const float s = 1.0f / sqrtf(ss / D + eps);
    for (int d = lane; d < D; d += 32) y[(long)r * D + d] = xr[d] * s * g[d];
    if (lane == 0) rstd[r] = s;
  }
}

// backward of rms_forward_v2 (see rms_backward_dx_v1 for the forward line it inverts)
__global__ void rms_backward_dx_v2(const float* x, const float* gamma, const float* rstd, const float* dy, float* dx,
                                   int R, int H, int D) {
  const int r = blockIdx.x * kWarpsPerBlock + threadIdx.y, lane = threadIdx.x;
  if (r < R) {
    const float* xr = x + (long)r * D;
    const float* dyr = dy + (long)r * D;
    const float* g = gamma + (long)(r % H) * D;
    float dot = 0.0f;
    for (int d = lane; d < D; d += 32) dot += xr[d] * g[d] * dyr[d];
    dot = warp_sum(dot);
    const float s = rstd[r], c = dot / D * s * s * s;
    for (int d = lane; d < D; d += 32) dx[(long)r * D + d] = g[d] * dyr[d] * s - xr[d] * c;
  }
}

constexpr int kRowGroups = 8;
// dgamma[j] += sum_t dy[t, j] x[t, j] rstd[t, j / D]  (see rms_backward_dgamma_v1)
// block (32, 8): column j = blockIdx.x * 32 + threadIdx.x; row group threadIdx.y sums t = y, y+8, ...
__global__ void rms_backward_dgamma_v2(const float* x, const float* rstd, const float* dy, float* dgamma, int T,
                                       int H, int D) {
  __shared__ float partial[kRowGroups][32];
  const int HD = H * D, j = blockIdx.x * 32 + threadIdx.x;
  float acc = 0.0f;
  if (j < HD)
    for (int t = threadIdx.y; t < T; t += kRowGroups)
      acc += dy[(long)t * HD + j] * x[(long)t * HD + j] * rstd[(long)t * H + j / D];
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();  // every thread reaches this barrier: the guard above wraps only the work
  if (threadIdx.y == 0 && j < HD) {
    float total = 0.0f;
    for (int y = 0; y < kRowGroups; ++y) total += partial[y][threadIdx.x];  // fixed order: deterministic
    dgamma[j] += total;
  }
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }

void check_version(const char* op, int version) {
  if (version < 1 || version > kRmsnormVersions)
    throw std::invalid_argument(std::string("cu::") + op + ": no version " + std::to_string(version) +
                                " (have 1.." + std::to_string(kRmsnormVersions) + ")");
}

// The shared launchers: R = T*H rows of length D, gamma (H, D).
void rows_forward(const float* x, const float* gamma, float* y, float* rstd, int T, int H, int D, float eps,
                  int version, const char* op) {
  check_version(op, version);
  const int R = T * H;
  if (R <= 0 || D <= 0) return;
  if (version == 1) launch(rms_forward_v1, dim3(ceil_div(R, 128)), dim3(128), 0, x, gamma, y, rstd, R, H, D, eps);
  else launch(rms_forward_v2, dim3(ceil_div(R, kWarpsPerBlock)), dim3(32, kWarpsPerBlock), 0, x, gamma, y, rstd, R,
              H, D, eps);
}

void rows_backward(const float* x, const float* gamma, const float* rstd, const float* dy, float* dx, float* dgamma,
                   int T, int H, int D, int version, const char* op) {
  check_version(op, version);
  const int R = T * H;
  if (R <= 0 || D <= 0) return;
  if (version == 1) {
    launch(rms_backward_dx_v1, dim3(ceil_div(R, 128)), dim3(128), 0, x, gamma, rstd, dy, dx, R, H, D);
    launch(rms_backward_dgamma_v1, dim3(ceil_div(H * D, 128)), dim3(128), 0, x, rstd, dy, dgamma, T, H, D);
  } else {
    launch(rms_backward_dx_v2, dim3(ceil_div(R, kWarpsPerBlock)), dim3(32, kWarpsPerBlock), 0, x, gamma, rstd, dy,
           dx, R, H, D);
    launch(rms_backward_dgamma_v2, dim3(ceil_div(H * D, 32)), dim3(32, kRowGroups), 0, x, rstd, dy, dgamma, T, H, D);
  }
}

}  // namespace

void rmsnorm_forward(const float* x, const float* gamma, float* y, float* rstd, int N, int C, float eps,
                     int version) {
  rows_forward(x, gamma, y, rstd, N, 1, C, eps, version, "rmsnorm_forward");
}

void rmsnorm_backward(const float* x, const float* gamma, const float* rstd, const float* dy, float* dx,
                      float* dgamma, int N, int C, int version) {
  rows_backward(x, gamma, rstd, dy, dx, dgamma, N, 1, C, version, "rmsnorm_backward");
}

void group_rmsnorm_forward(const float* x, const float* gamma, float* y, float* rstd, int T, int H, int D,
                           float eps, int version) {
  rows_forward(x, gamma, y, rstd, T, H, D, eps, version, "group_rmsnorm_forward");
}

void group_rmsnorm_backward(const float* x, const float* gamma, const float* rstd, const float* dy, float* dx,
                            float* dgamma, int T, int H, int D, int version) {
  rows_backward(x, gamma, rstd, dy, dx, dgamma, T, H, D, version, "group_rmsnorm_backward");
}

}  // namespace cu
