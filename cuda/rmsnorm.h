// cuda/rmsnorm.h: RMSNorm (the block pre-norm) and the per-head group RMSNorm (the branch norms),
// forward and backward (kernels: cuda/rmsnorm.cu; the reference: ref/norm.h).
//
//   rmsnorm:        y[n]    = x[n]    * rstd[n]    * gamma      rstd[n]    = 1 / sqrt(mean_c(x[n]^2) + eps)
//   group_rmsnorm:  y[t, h] = x[t, h] * rstd[t, h] * gamma[h]   rstd[t, h] = 1 / sqrt(mean_d(x[t, h]^2) + eps)
// The forward saves rstd; the backward takes it (as llm.c's layernorm does) instead of recomputing.
// All pointers are device pointers, row-major. dx is assigned; dgamma is accumulated (+=) with a
// deterministic reduction (no atomics: the same inputs give the same bits on every run).
// version: 1 one thread per row, 2 one warp per row with shuffles (the default). See rmsnorm.cu.
#pragma once

namespace cu {

inline constexpr int kRmsnormVersions = 2;

// x: (N, C), gamma: (C) -> y: (N, C), rstd: (N)
void rmsnorm_forward(const float* x, const float* gamma, float* y, float* rstd, int N, int C, float eps,
                     int version = 2);
// x, dy: (N, C), gamma: (C), rstd: (N) from the forward -> dx: (N, C); dgamma: (C), accumulated (+=)
void rmsnorm_backward(const float* x, const float* gamma, const float* rstd, const float* dy, float* dx,
                      float* dgamma, int N, int C, int version = 2);

// x: (T, H*D), gamma: (H, D) -> y: (T, H*D), rstd: (T, H)
void group_rmsnorm_forward(const float* x, const float* gamma, float* y, float* rstd, int T, int H, int D,
                           float eps, int version = 2);
// x, dy: (T, H*D), gamma: (H, D), rstd: (T, H) -> dx: (T, H*D); dgamma: (H, D), accumulated (+=)
void group_rmsnorm_backward(const float* x, const float* gamma, const float* rstd, const float* dy, float* dx,
                            float* dgamma, int T, int H, int D, int version = 2);

}  // namespace cu
