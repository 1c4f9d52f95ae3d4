// cuda/adamw.cu: the AdamW parameter update and global gradient-norm clipping, fp32.
//
// The reference loop (ref/optim.h), per element i, step t >= 1:
//   m = b1 m + (1 - b1) g;   v = b2 v + (1 - b2) g^2
//   p -= lr * (m * inv_bc1 / (sqrt(v * inv_bc2) + eps) + wd * p),   inv_bcK = 1 / (1 - bK^t)
// The bias corrections are computed once on the host in double (as the reference does), so the
// kernel does no pow.
//
// Versions of the update, and what each one teaches:
//   v1  one thread per element: the reference loop on a 1D grid. Each thread moves 4 x 4 bytes in
//       and 3 x 4 bytes out with 4-byte instructions.
//   v2  float4 loads and stores in a grid-stride loop: a quarter of the memory instructions, a grid
//       sized for the GPU rather than for n, and a scalar tail for n % 4. Memory-bound either way: the
//       ratio v2/v1 in tools/bench_ops shows what vector width alone buys.
//
// clip_grad_norm: a block-level sum of squares (each block reduces its strided elements with warp
// shuffles, then its warps' partials through shared memory) writes one partial per block; the host
// adds the partials in double, in order, so the result is deterministic. Then one scale kernel per
// tensor. This mirrors ref::clip_grad_norm, which also accumulates in double.
#include "cuda/compat.h"

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/adamw.h"

namespace cu {
namespace {

struct AdamParams {
  float b1, b2, lr, eps, wd, inv_bc1, inv_bc2;
};

__device__ __forceinline__ void adam_one(float& p, float g, float& m, float& v, const AdamParams& a) {
  m = a.b1 * m + (1.0f - a.b1) * g;
  v = a.b2 * v + (1.0f - a.b2) * g * g;
  const float m_hat = m * a.inv_bc1, v_hat = v * a.inv_bc2;
  p -= a.lr * (m_hat / (sqrtf(v_hat) + a.eps) + a.wd * p);
}

// ---- v1: one thread per element --------------------------------------------------------------
__global__ void adamw_v1(float* param, const float* grad, float* m, float* v, long n, AdamParams a) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) adam_one(param[i], grad[i], m[i], v[i], a);
}

// ---- v2: float4, grid-stride ---------------------------------------------------------------------
__global__ void adamw_v2(float* param, const float* grad, float* m, float* v, long n, AdamParams a) {
  const long n4 = n / 4, stride = (long)gridDim.x * blockDim.x;
  float4* p4 = reinterpret_cast<float4*>(param);
  const float4* g4 = reinterpret_cast<const float4*>(grad);
  float4* m4 = reinterpret_cast<float4*>(m);
  float4* v4 = reinterpret_cast<float4*>(v);
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
    float4 p = p4[i], mm = m4[i], vv = v4[i];
    const float4 g = g4[i];
    adam_one(p.x, g.x, mm.x, vv.x, a);
    adam_one(p.y, g.y, mm.y, vv.y, a);
    adam_one(p.z, g.z, mm.z, vv.z, a);
    adam_one(p.w, g.w, mm.w, vv.w, a);
    p4[i] = p;
    m4[i] = mm;
    v4[i] = vv;
  }
  for (long i = 4 * n4 + (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
    adam_one(param[i], grad[i], m[i], v[i], a);
}

// ---- clip_grad_norm ----------------------------------------------------------------------------
constexpr int kNormThreads = 256, kNormBlocks = 64;
// partial[blockIdx.x] = sum of g[i]^2 over i = blockIdx.x * 256 + threadIdx.x + k * (256 * gridDim.x)
__global__ void sumsq_partials(const float* g, long n, float* partial) {
  __shared__ float warp_sums[kNormThreads / 32];
  float s = 0.0f;
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x)
    s += g[i] * g[i];
  for (int offset = 16; offset > 0; offset >>= 1) s += __shfl_xor_sync(0xffffffffu, s, offset);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < kNormThreads / 32; ++w) total += warp_sums[w];
    partial[blockIdx.x] = total;
  }
}

__global__ void scale_kernel(float* g, long n, float scale) {
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (long)gridDim.x * blockDim.x) g[i] *= scale;
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

}  // namespace

void adamw_step(float* param, const float* grad, float* m, float* v, long n, long step, const AdamW& cfg, bool decay,
                int version) {
  if (step < 1) throw std::invalid_argument("cu::adamw_step: step is 1-based");
  if (version < 1 || version > kAdamwVersions)
    throw std::invalid_argument("cu::adamw_step: no version " + std::to_string(version) + " (have 1..2)");
  if (n <= 0) return;
  const double bc1 = 1.0 - std::pow(cfg.beta1, double(step)), bc2 = 1.0 - std::pow(cfg.beta2, double(step));
  const AdamParams a{float(cfg.beta1), float(cfg.beta2), float(cfg.lr), float(cfg.eps),
                     decay ? float(cfg.weight_decay) : 0.0f, float(1.0 / bc1), float(1.0 / bc2)};
  const int threads = 256;
  if (version == 1) {
    launch(adamw_v1, dim3(unsigned((n + threads - 1) / threads)), dim3(threads), 0, param, grad, m, v, n, a);
  } else {
    if (!aligned16(param) || !aligned16(grad) || !aligned16(m) || !aligned16(v))
      throw std::invalid_argument("cu::adamw_step v2: pointers must be 16-byte aligned (float4)");
    long blocks = (n / 4 + threads - 1) / threads;
    blocks = blocks < 1 ? 1 : (blocks > 4096 ? 4096 : blocks);
    launch(adamw_v2, dim3(unsigned(blocks)), dim3(threads), 0, param, grad, m, v, n, a);
  }
}

float clip_grad_norm(float* const* grads, const long* sizes, int count, float max_norm) {
  float* partial = nullptr;
  check(cudaMalloc(&partial, kNormBlocks * sizeof(float)), "cu::clip_grad_norm: cudaMalloc");
  double sumsq = 0.0;
  std::vector<float> host(kNormBlocks);
  try {
    for (int i = 0; i < count; ++i) {
      if (sizes[i] <= 0) continue;
      launch(sumsq_partials, dim3(kNormBlocks), dim3(kNormThreads), 0, grads[i], sizes[i], partial);
      check(cudaMemcpy(host.data(), partial, kNormBlocks * sizeof(float), cudaMemcpyDeviceToHost),
            "cu::clip_grad_norm: cudaMemcpy");
      for (float p : host) sumsq += double(p);
    }
  } catch (...) {
    (void)cudaFree(partial);
    throw;
  }
  check(cudaFree(partial), "cu::clip_grad_norm: cudaFree");
  const double norm = std::sqrt(sumsq);
  if (std::isfinite(norm) && norm > double(max_norm)) {
    const float scale = float(double(max_norm) / norm);
    for (int i = 0; i < count; ++i)
      if (sizes[i] > 0) launch(scale_kernel, dim3(kNormBlocks), dim3(kNormThreads), 0, grads[i], sizes[i], scale);
  }
  return float(norm);
}

}  // namespace cu
