// cuda/rope.cu: rotary position embedding (RoPE), interleaved-pair form, forward and backward, fp32 data.
//
// The reference loop (ref/rope.h):
//   for row r, pair i:  angle = (pos0 + r) * theta^(-2i/D);  c = cos(angle), s = sin(angle)
//     for head h:  (x0, x1) = x[r, h*D + 2i .. +1];  y = (x0 c - x1 s, x0 s + x1 c)
// The backward is the inverse rotation R^T = rotation by -angle (sign = -1 below): RoPE is orthogonal.
//
// Precision note: the angle and its cos/sin are computed in double, as in ref/rope.h. In fp32 the
// angle pos * theta^(-2i/D) is off by up to pos * 6e-8 rad (2.4e-4 rad at pos = 4096), an error the
// test against the double reference sees; in double it costs little because v2 computes each angle
// once per (row, pair) and reuses it for every head. The rotation itself is fp32.
//
// Versions, and what each one teaches:
//   v1  one thread per (row, head, pair): the reference loop flattened onto a 1D grid. Every head
//       recomputes the same pow/cos/sin, the expensive part of this memory-bound op.
//   v2  one thread per (row, pair), looping over the heads: the trigonometry is hoisted out of the
//       head loop (n_heads x fewer transcendental calls), and each pair moves as one 8-byte float2
//       load/store (a vectorised access; needs 8-byte aligned x and y, which the launcher checks).
//
// Batched (rope_*_batch): B sequences stacked as B*T rows, one launch for all of them. Every sequence
// restarts at position pos0, so row r of the stack is at position pos0 + r % T: the same kernels with a
// period T (the single-sequence calls pass period = T over T rows, where r % T = r).
#include "cuda/compat.h"

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/rope.h"

namespace cu {
namespace {

// cos and sin of pos * theta^(-2i/D), times sign for sin (sign = -1: the inverse rotation).
__device__ __forceinline__ void rope_cos_sin(int pos, int i, int D, double theta, int sign, float& c, float& s) {
  const double angle = double(pos) * pow(theta, -2.0 * double(i) / double(D));
  c = float(cos(angle));
  s = float(sign * sin(angle));
}

// ---- v1: one thread per (row, head, pair) --------------------------------------------------------
// x, y: (T, n_heads*D); thread g -> row r = g / (n_heads*D/2), head h, pair i.
// rows: B*T rows of the stacked sequences; the position of row r is pos0 + r % T.
__global__ void rope_v1(const float* x, float* y, long rows, int T, int n_heads, int D, double theta, int pos0,
                        int sign) {
  const int half = D / 2;
  const long g = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (g < rows * n_heads * half) {
    const int i = int(g % half), h = int((g / half) % n_heads);
    const long r = g / ((long)half * n_heads);
    float c, s;
    rope_cos_sin(pos0 + int(r % T), i, D, theta, sign, c, s);
    const long j = (long)r * n_heads * D + (long)h * D + 2 * i;
    const float x0 = x[j], x1 = x[j + 1];
    y[j] = x0 * c - x1 * s;
    y[j + 1] = x0 * s + x1 * c;
  }
}

// ---- v2: one thread per (row, pair), all heads ------------------------------------------------------
__global__ void rope_v2(const float* x, float* y, long rows, int T, int n_heads, int D, double theta, int pos0,
                        int sign) {
  const int half = D / 2;
  const long g = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (g < rows * half) {
    const int i = int(g % half);
    const long r = g / half;
    float c, s;
    rope_cos_sin(pos0 + int(r % T), i, D, theta, sign, c, s);  // once, for every head
    const float2* xr = reinterpret_cast<const float2*>(x + (long)r * n_heads * D);
    float2* yr = reinterpret_cast<float2*>(y + (long)r * n_heads * D);
    for (int h = 0; h < n_heads; ++h) {
      const float2 p = xr[h * half + i];  // (x[2i], x[2i+1]) of head h: one 8-byte load
      yr[h * half + i] = make_float2(p.x * c - p.y * s, p.x * s + p.y * c);
    }
  }
}

// B sequences of T rows each (B = 1: one sequence).
void rope_launch(const float* x, float* y, int B, int T, int n_heads, int D, double theta, int pos0, int sign,
                 int version, const char* op) {
  if (D <= 0 || D % 2 != 0 || n_heads <= 0 || T < 0 || B < 0)
    throw std::invalid_argument(std::string("cu::") + op + ": need n_heads > 0 and an even head dim D > 0, got D = " +
                                std::to_string(D));
  if (T == 0 || B == 0) return;
  const long rows = (long)B * T;
  const int threads = 128;
  if (version == 1) {
    const long work = rows * n_heads * (D / 2);
    launch(rope_v1, dim3(unsigned((work + threads - 1) / threads)), dim3(threads), 0, x, y, rows, T, n_heads, D,
           theta, pos0, sign);
  } else if (version == 2) {
    if (reinterpret_cast<std::uintptr_t>(x) % 8 != 0 || reinterpret_cast<std::uintptr_t>(y) % 8 != 0)
      throw std::invalid_argument(std::string("cu::") + op + " v2: x and y must be 8-byte aligned (float2 access)");
    const long work = rows * (D / 2);
    launch(rope_v2, dim3(unsigned((work + threads - 1) / threads)), dim3(threads), 0, x, y, rows, T, n_heads, D,
           theta, pos0, sign);
  } else {
    throw std::invalid_argument(std::string("cu::") + op + ": no version " + std::to_string(version) + " (have 1..2)");
  }
}

}  // namespace

void rope_forward(const float* x, float* y, int T, int n_heads, int D, double theta, int pos0, int version) {
  rope_launch(x, y, 1, T, n_heads, D, theta, pos0, +1, version, "rope_forward");
}

// In the forward pass this was: y = R(angle) x (per pair), so now dx = R^T dy = R(-angle) dy.
void rope_backward(const float* dy, float* dx, int T, int n_heads, int D, double theta, int pos0, int version) {
  rope_launch(dy, dx, 1, T, n_heads, D, theta, pos0, -1, version, "rope_backward");
}

void rope_forward_batch(const float* x, float* y, int B, int T, int n_heads, int D, double theta, int version) {
  rope_launch(x, y, B, T, n_heads, D, theta, 0, +1, version, "rope_forward_batch");
}

void rope_backward_batch(const float* dy, float* dx, int B, int T, int n_heads, int D, double theta, int version) {
  rope_launch(dy, dx, B, T, n_heads, D, theta, 0, -1, version, "rope_backward_batch");
}

}  // namespace cu
