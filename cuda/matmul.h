// cuda/matmul.h: hand-written fp32 SGEMM and the linear layer built on it (kernels: cuda/matmul.cu).
//
// All pointers are device pointers; all matrices are row-major and contiguous.
//   C (M, N) = op(A) (M, K) * op(B) (K, N)  [+ C if accumulate]
//   op(A) = A, stored (M, K), or A^T with A stored (K, M)   (trans_a)
//   op(B) = B, stored (K, N), or B^T with B stored (N, K)   (trans_b)
// beta: 0 overwrites C (C is never read, so it may hold NaN), 1 accumulates (C += op(A) op(B)).
// version: 1 naive, 2 shared-memory tiles, 3 register-blocked tiles (the default). See matmul.cu.
#pragma once

namespace cu {

inline constexpr int kMatmulVersions = 3;

// A: (M,K) or (K,M), B: (K,N) or (N,K), C: (M,N)
void matmul(const float* A, const float* B, float* C, int M, int N, int K, bool trans_a, bool trans_b,
            float beta = 0.0f, int version = 3);

// The linear layer (ref/linear.h), y = x W, no bias.
// x: (N, in), W: (in, out) -> y: (N, out)
void linear_forward(const float* x, const float* W, float* y, int N, int in, int out, int version = 3);
// x: (N, in), W: (in, out), dy: (N, out) -> dx: (N, in) (assigned); dW: (in, out), accumulated (+=).
void linear_backward(const float* x, const float* W, const float* dy, float* dx, float* dW, int N, int in,
                     int out, int version = 3);

// cuBLAS SGEMM with the same meaning as matmul(): the baseline in benchmarks and an oracle in GPU tests,
// never the kernel being taught. Returns false (and does nothing) on the CPU execution layer.
bool matmul_cublas(const float* A, const float* B, float* C, int M, int N, int K, bool trans_a, bool trans_b,
                   float beta = 0.0f);

}  // namespace cu
