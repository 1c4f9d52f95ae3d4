// cuda/rope.h: rotary position embedding, interleaved pairs (kernels: cuda/rope.cu; reference: ref/rope.h).
//
//   pair i = dims (2i, 2i+1) of every head, angle = pos * theta^(-2i/D), pos = pos0 + row
//   y[2i] = x[2i] cos - x[2i+1] sin,   y[2i+1] = x[2i] sin + x[2i+1] cos
// Device pointers, row-major (T, n_heads*D), D even. In place is allowed (y == x, dx == dy).
// version: 1 one thread per (row, head, pair), 2 one thread per (row, pair) for all heads (default).
#pragma once

namespace cu {

inline constexpr int kRopeVersions = 2;

// x: (T, n_heads*D) -> y: (T, n_heads*D)
void rope_forward(const float* x, float* y, int T, int n_heads, int D, double theta, int pos0 = 0, int version = 2);
// dy: (T, n_heads*D) -> dx = R^T dy: (T, n_heads*D)
void rope_backward(const float* dy, float* dx, int T, int n_heads, int D, double theta, int pos0 = 0,
                   int version = 2);

// B sequences at once, each from position 0: x: (B, T, n_heads*D) -> y: (B, T, n_heads*D), one launch
// (row r of the B*T stacked rows is at position r % T). The same as B calls of rope_forward, one per sequence.
void rope_forward_batch(const float* x, float* y, int B, int T, int n_heads, int D, double theta, int version = 2);
// dy: (B, T, n_heads*D) -> dx = R^T dy: (B, T, n_heads*D)
void rope_backward_batch(const float* dy, float* dx, int B, int T, int n_heads, int D, double theta, int version = 2);

}  // namespace cu
