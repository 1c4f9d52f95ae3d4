// cuda/feature_map.cu: the RLA feature maps (sm2, relu2, identity), forward and backward, fp32.
//
// Every (row, head) is one independent D-vector x -> phi(x) of width Dp. The reference loop
// (ref/feature_map.h, detail::phi_row / phi_row_backward):
//   sm2:  y1 = softmax(x) (max-subtracted), y2 = softmax(-x) (subtracting -min(x));  phi = [y1, y2]
//         backward: dx = y1 * (g1 - <g1, y1>) - y2 * (g2 - <g2, y2>),  [g1, g2] = dphi   (spec §2.4)
//   relu2: phi = [max(x, 0), max(-x, 0)];  dx = g1 [x > 0] - g2 [x < 0]
//   identity: phi = x;  dx = dphi
//
// Versions, and what each one teaches:
//   v1  one thread per (row, head), the reference loop with its passes over the D values (max and
//       min, the two exp-sums, the writes). Loads are D floats apart between threads (uncoalesced) and
//       only N * n_heads threads exist.
//   v2  one warp per (row, head): lanes stride over d (coalesced), and the four reductions of sm2
//       (max, min, sum e1, sum e2; backward adds <g1, e1>, <g2, e2>) are warp butterflies with
//       __shfl_xor_sync. Each lane keeps its exponentials in registers between the reduction and the
//       write when D <= 128 (4 per lane), so exp is evaluated once per element; larger D recomputes.
#include "cuda/compat.h"

#include <stdexcept>
#include <string>

#include "cuda/feature_map.h"

namespace cu {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}
__device__ __forceinline__ float warp_min(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fminf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}

// ---- v1: one thread per (row, head) ---------------------------------------------------------------
// x: (R, D) rows, phi: (R, Dp); R = N * n_heads (the (N, n_heads*D) layout is exactly R rows of D).
__global__ void phi_forward_v1(FeatureMap fm, const float* x, float* phi, int R, int D) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r < R) {
    const float* xr = x + (long)r * D;
    if (fm == FeatureMap::sm2) {
      float* y = phi + (long)r * 2 * D;
      float mx = xr[0], mn = xr[0];
      for (int d = 1; d < D; ++d) mx = fmaxf(mx, xr[d]), mn = fminf(mn, xr[d]);
      float z1 = 0.0f, z2 = 0.0f;
      for (int d = 0; d < D; ++d) z1 += expf(xr[d] - mx), z2 += expf(mn - xr[d]);
      for (int d = 0; d < D; ++d) {
        y[d] = expf(xr[d] - mx) / z1;
        y[D + d] = expf(mn - xr[d]) / z2;
      }
    } else if (fm == FeatureMap::relu2) {
      float* y = phi + (long)r * 2 * D;
      for (int d = 0; d < D; ++d) y[d] = fmaxf(xr[d], 0.0f), y[D + d] = fmaxf(-xr[d], 0.0f);
    } else {
      for (int d = 0; d < D; ++d) phi[(long)r * D + d] = xr[d];
    }
  }
}

// In the forward pass this was (sm2): y1 = softmax(x), y2 = softmax(-x), phi = [y1, y2], so now
//   dx = y1 * (g1 - <g1, y1>) - y2 * (g2 - <g2, y2>);   relu2: dx = g1 [x > 0] - g2 [x < 0];  identity: dx = g
__global__ void phi_backward_v1(FeatureMap fm, const float* x, const float* dphi, float* dx, int R, int D) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r < R) {
    const float* xr = x + (long)r * D;
    float* dxr = dx + (long)r * D;
    if (fm == FeatureMap::sm2) {
      const float* g = dphi + (long)r * 2 * D;
      float mx = xr[0], mn = xr[0];
      for (int d = 1; d < D; ++d) mx = fmaxf(mx, xr[d]), mn = fminf(mn, xr[d]);
      float z1 = 0.0f, z2 = 0.0f, dot1 = 0.0f, dot2 = 0.0f;
      for (int d = 0; d < D; ++d) {
        const float e1 = expf(xr[d] - mx), e2 = expf(mn - xr[d]);
        z1 += e1, z2 += e2, dot1 += g[d] * e1, dot2 += g[D + d] * e2;
      }
      dot1 /= z1, dot2 /= z2;  // <g1, y1>, <g2, y2>
      for (int d = 0; d < D; ++d) {
        const float y1 = expf(xr[d] - mx) / z1, y2 = expf(mn - xr[d]) / z2;
        dxr[d] = y1 * (g[d] - dot1) - y2 * (g[D + d] - dot2);
      }
    } else if (fm == FeatureMap::relu2) {
      const float* g = dphi + (long)r * 2 * D;
      for (int d = 0; d < D; ++d) dxr[d] = (xr[d] > 0.0f ? g[d] : 0.0f) - (xr[d] < 0.0f ? g[D + d] : 0.0f);
    } else {
      for (int d = 0; d < D; ++d) dxr[d] = dphi[(long)r * D + d];
    }
  }
}

// ---- v2: one warp per (row, head) --------------------------------------------------------------------
constexpr int kWarps = 4;   // block (32, 4): warp threadIdx.y takes row blockIdx.x * 4 + threadIdx.y
constexpr int kCache = 4;   // exponentials kept in registers per lane: D <= 128 evaluates exp once

__global__ void phi_forward_v2(FeatureMap fm, const float* x, float* phi, int R, int D) {
  const int r = blockIdx.x * kWarps + threadIdx.y, lane = threadIdx.x;
  if (r < R) {  // uniform per warp: the shuffles below see all 32 lanes
    const float* xr = x + (long)r * D;
    if (fm == FeatureMap::sm2) {
      float* y = phi + (long)r * 2 * D;
      float mx = -INFINITY, mn = INFINITY;
      for (int d = lane; d < D; d += 32) mx = fmaxf(mx, xr[d]), mn = fminf(mn, xr[d]);
      mx = warp_max(mx);
      mn = warp_min(mn);
      float e1c[kCache], e2c[kCache], z1 = 0.0f, z2 = 0.0f;
      for (int k = 0, d = lane; d < D; ++k, d += 32) {
        const float e1 = expf(xr[d] - mx), e2 = expf(mn - xr[d]);
        if (k < kCache) e1c[k] = e1, e2c[k] = e2;
        z1 += e1, z2 += e2;
      }
      z1 = warp_sum(z1);
      z2 = warp_sum(z2);
      for (int k = 0, d = lane; d < D; ++k, d += 32) {
        const float e1 = k < kCache ? e1c[k] : expf(xr[d] - mx), e2 = k < kCache ? e2c[k] : expf(mn - xr[d]);
        y[d] = e1 / z1;
        y[D + d] = e2 / z2;
      }
    } else if (fm == FeatureMap::relu2) {
      float* y = phi + (long)r * 2 * D;
      for (int d = lane; d < D; d += 32) y[d] = fmaxf(xr[d], 0.0f), y[D + d] = fmaxf(-xr[d], 0.0f);
    } else {
      for (int d = lane; d < D; d += 32) phi[(long)r * D + d] = xr[d];
    }
  }
}

// backward of phi_forward_v2 (the forward lines it inverts are quoted at phi_backward_v1)
__global__ void phi_backward_v2(FeatureMap fm, const float* x, const float* dphi, float* dx, int R, int D) {
  const int r = blockIdx.x * kWarps + threadIdx.y, lane = threadIdx.x;
  if (r < R) {
    const float* xr = x + (long)r * D;
    float* dxr = dx + (long)r * D;
    if (fm == FeatureMap::sm2) {
      const float* g = dphi + (long)r * 2 * D;
      float mx = -INFINITY, mn = INFINITY;
      for (int d = lane; d < D; d += 32) mx = fmaxf(mx, xr[d]), mn = fminf(mn, xr[d]);
      mx = warp_max(mx);
      mn = warp_min(mn);
      float e1c[kCache], e2c[kCache], z1 = 0.0f, z2 = 0.0f, dot1 = 0.0f, dot2 = 0.0f;
      for (int k = 0, d = lane; d < D; ++k, d += 32) {
        const float e1 = expf(xr[d] - mx), e2 = expf(mn - xr[d]);
        if (k < kCache) e1c[k] = e1, e2c[k] = e2;
        z1 += e1, z2 += e2, dot1 += g[d] * e1, dot2 += g[D + d] * e2;
      }
      z1 = warp_sum(z1);
      z2 = warp_sum(z2);
      dot1 = warp_sum(dot1) / z1;  // <g1, y1>
      dot2 = warp_sum(dot2) / z2;  // <g2, y2>
      for (int k = 0, d = lane; d < D; ++k, d += 32) {
        const float e1 = k < kCache ? e1c[k] : expf(xr[d] - mx), e2 = k < kCache ? e2c[k] : expf(mn - xr[d]);
        dxr[d] = e1 / z1 * (g[d] - dot1) - e2 / z2 * (g[D + d] - dot2);
      }
    } else if (fm == FeatureMap::relu2) {
      const float* g = dphi + (long)r * 2 * D;
      for (int d = lane; d < D; d += 32) dxr[d] = (xr[d] > 0.0f ? g[d] : 0.0f) - (xr[d] < 0.0f ? g[D + d] : 0.0f);
    } else {
      for (int d = lane; d < D; d += 32) dxr[d] = dphi[(long)r * D + d];
    }
  }
}

void check_args(FeatureMap fm, int N, int n_heads, int D, int version, const char* op) {
  if (version < 1 || version > kFeatureMapVersions)
    throw std::invalid_argument(std::string("cu::") + op + ": no version " + std::to_string(version) + " (have 1..2)");
  if (N < 0 || n_heads < 1 || D < 1) throw std::invalid_argument(std::string("cu::") + op + ": bad shape");
  if (fm != FeatureMap::sm2 && fm != FeatureMap::relu2 && fm != FeatureMap::identity)
    throw std::invalid_argument(std::string("cu::") + op + ": unknown feature map");
}

}  // namespace

void phi_forward(FeatureMap fm, const float* x, float* phi, int N, int n_heads, int D, int version) {
  check_args(fm, N, n_heads, D, version, "phi_forward");
  const int R = N * n_heads;
  if (R == 0) return;
  if (version == 1) launch(phi_forward_v1, dim3((R + 127) / 128), dim3(128), 0, fm, x, phi, R, D);
  else launch(phi_forward_v2, dim3((R + kWarps - 1) / kWarps), dim3(32, kWarps), 0, fm, x, phi, R, D);
}

void phi_backward(FeatureMap fm, const float* x, const float* dphi, float* dx, int N, int n_heads, int D,
                  int version) {
  check_args(fm, N, n_heads, D, version, "phi_backward");
  const int R = N * n_heads;
  if (R == 0) return;
  if (version == 1) launch(phi_backward_v1, dim3((R + 127) / 128), dim3(128), 0, fm, x, dphi, dx, R, D);
  else launch(phi_backward_v2, dim3((R + kWarps - 1) / kWarps), dim3(32, kWarps), 0, fm, x, dphi, dx, R, D);
}

}  // namespace cu
