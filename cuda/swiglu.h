// cuda/swiglu.h: the SwiGLU feed-forward block (kernels: cuda/swiglu.cu; reference: ref/mlp.h).
//
//   a = x W1,  b = x W3,  g = silu(a) * b,  y = g W2,     silu(z) = z * sigmoid(z)
//
// The elementwise gate has its own kernels (swiglu_gate_*, `version` selects them); the three
// products use cu::matmul's default version. Device pointers, row-major. The forward saves a, b, g
// for the backward (caller-provided (N, F) buffers). Parameter gradients accumulate (+=); dx is assigned.
#pragma once

namespace cu {

inline constexpr int kSwigluVersions = 2;

// The gate alone, n elements: g = silu(a) * b
void swiglu_gate_forward(const float* a, const float* b, float* g, long n, int version = 2);
// In the forward pass this was g = silu(a) * b: da = dg * b * silu'(a), db = dg * silu(a).
// da may alias dg (each element is read before it is written).
void swiglu_gate_backward(const float* a, const float* b, const float* dg, float* da, float* db, long n,
                          int version = 2);

// Floats of scratch swiglu_backward needs: two (N, F) arrays, the second starting 16-byte aligned.
inline long swiglu_scratch_size(int N, int F) { return 2 * (((long)N * F + 3) / 4 * 4); }

// x: (N, C), W1, W3: (C, F), W2: (F, C) -> y: (N, C); saves a, b, g: (N, F)
void swiglu_forward(const float* x, const float* W1, const float* W3, const float* W2, float* a, float* b, float* g,
                    float* y, int N, int C, int F, int version = 2);
// x, dy: (N, C); a, b, g: (N, F) from the forward -> dx: (N, C) assigned;
// dW1, dW3: (C, F), dW2: (F, C) accumulated (+=); scratch: swiglu_scratch_size(N, F) floats.
void swiglu_backward(const float* x, const float* W1, const float* W3, const float* W2, const float* a,
                     const float* b, const float* g, const float* dy, float* dx, float* dW1, float* dW3, float* dW2,
                     float* scratch, int N, int C, int F, int version = 2);

}  // namespace cu
