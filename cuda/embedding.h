// cuda/embedding.h: token embedding, a row lookup (kernels: cuda/embedding.cu; reference: ref/embedding.h).
//
//   forward   x[n] = E[tokens[n]]
//   backward  dE[tokens[n]] += dy[n]   (accumulated)
// Device pointers, row-major; E, dE: (V, C), x, dy: (N, C), tokens: (N) ints. A token outside [0, V) makes its
// row of x NaN and is skipped by the backward (kernels cannot throw; ref::embedding_forward throws).
// Backward versions: 1 = atomicAdd scatter (fast, but float additions in a run-dependent order: not
// bit-reproducible), 2 = deterministic gather, one thread per (vocab row, column), adding the rows of dy in
// token order (the default; the same bits on every run). Forward: 1 one thread per element, 2 float4.
#pragma once

namespace cu {

inline constexpr int kEmbeddingVersions = 2;

// tokens: (N), E: (V, C) -> x: (N, C)
void embedding_forward(const int* tokens, const float* E, float* x, int N, int V, int C, int version = 2);
// tokens: (N), dy: (N, C) -> dE: (V, C), accumulated (+=)
void embedding_backward(const int* tokens, const float* dy, float* dE, int N, int V, int C, int version = 2);

}  // namespace cu
