// cuda/swiglu.cu: the SwiGLU feed-forward block, forward and backward, fp32.
//
//   a = x W1,  b = x W3,  g = silu(a) * b,  y = g W2          (ref/mlp.h)
//
// The products are cu::matmul (cuda/matmul.cu); this file teaches the elementwise gate in between,
// a purely memory-bound kernel: 2 reads + 1 write per element forward, 3 reads + 2 writes backward.
//
// Versions of the gate kernels, and what each one teaches:
//   v1  one thread per element, the reference loop flattened onto a 1D grid: coalesced, but one
//       4-byte access per load instruction and one thread per element.
//   v2  vectorised float4 loads/stores (16 bytes per instruction, 4 elements per thread) in a
//       grid-stride loop, so a fixed-size grid covers any n; the n % 4 tail is done by scalar code.
//       Needs 16-byte aligned pointers (cudaMalloc gives 256), which the launcher checks.
#include "cuda/compat.h"

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/matmul.h"
#include "cuda/swiglu.h"

namespace cu {
namespace {

__device__ __forceinline__ float sigmoidf_(float z) { return 1.0f / (1.0f + expf(-z)); }  // exp(-z)=inf -> 0

// g = silu(a) * b = a * sigmoid(a) * b
__device__ __forceinline__ float gate(float a, float b) { return a * sigmoidf_(a) * b; }

// In the forward pass this was: g = a * sigmoid(a) * b, so now
//   db = dg * silu(a)
//   da = dg * b * silu'(a),  silu'(a) = sigmoid(a) * (1 + a * (1 - sigmoid(a)))
__device__ __forceinline__ void gate_backward(float a, float b, float dg, float& da, float& db) {
  const float s = sigmoidf_(a);
  db = dg * a * s;
  da = dg * b * s * (1.0f + a * (1.0f - s));
}

// ---- v1: one thread per element ---------------------------------------------------------------
__global__ void gate_forward_v1(const float* a, const float* b, float* g, long n) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) g[i] = gate(a[i], b[i]);
}

__global__ void gate_backward_v1(const float* a, const float* b, const float* dg, float* da, float* db, long n) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    float dai, dbi;
    gate_backward(a[i], b[i], dg[i], dai, dbi);
    da[i] = dai;
    db[i] = dbi;
  }
}

// ---- v2: float4, grid-stride ---------------------------------------------------------------------
__global__ void gate_forward_v2(const float* a, const float* b, float* g, long n) {
  const long n4 = n / 4, stride = (long)gridDim.x * blockDim.x;
  const float4* a4 = reinterpret_cast<const float4*>(a);
  const float4* b4 = reinterpret_cast<const float4*>(b);
  float4* g4 = reinterpret_cast<float4*>(g);
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const float4 av = a4[i], bv = b4[i];
    g4[i] = make_float4(gate(av.x, bv.x), gate(av.y, bv.y), gate(av.z, bv.z), gate(av.w, bv.w));
  }
  for (long i = 4 * n4 + (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) g[i] = gate(a[i], b[i]);
}

__global__ void gate_backward_v2(const float* a, const float* b, const float* dg, float* da, float* db, long n) {
  const long n4 = n / 4, stride = (long)gridDim.x * blockDim.x;
  const float4* a4 = reinterpret_cast<const float4*>(a);
  const float4* b4 = reinterpret_cast<const float4*>(b);
  const float4* dg4 = reinterpret_cast<const float4*>(dg);
  float4* da4 = reinterpret_cast<float4*>(da);
  float4* db4 = reinterpret_cast<float4*>(db);
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const float4 av = a4[i], bv = b4[i], gv = dg4[i];  // read everything before da (may alias dg) is written
    float4 dav, dbv;
    gate_backward(av.x, bv.x, gv.x, dav.x, dbv.x);
    gate_backward(av.y, bv.y, gv.y, dav.y, dbv.y);
    gate_backward(av.z, bv.z, gv.z, dav.z, dbv.z);
    gate_backward(av.w, bv.w, gv.w, dav.w, dbv.w);
    da4[i] = dav;
    db4[i] = dbv;
  }
  for (long i = 4 * n4 + (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
    float dai, dbi;
    gate_backward(a[i], b[i], dg[i], dai, dbi);
    da[i] = dai;
    db[i] = dbi;
  }
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

void check_version(int version, const char* op) {
  if (version < 1 || version > kSwigluVersions)
    throw std::invalid_argument(std::string("cu::") + op + ": no version " + std::to_string(version) + " (have 1..2)");
}

constexpr int kThreads = 256;
dim3 grid_v1(long n) { return dim3(unsigned((n + kThreads - 1) / kThreads)); }
// v2: enough blocks to cover n/4 float4s once, capped (the grid-stride loop does the rest).
dim3 grid_v2(long n) {
  const long blocks = (n / 4 + kThreads - 1) / kThreads;
  return dim3(unsigned(blocks < 1 ? 1 : (blocks > 4096 ? 4096 : blocks)));
}

}  // namespace

void swiglu_gate_forward(const float* a, const float* b, float* g, long n, int version) {
  check_version(version, "swiglu_gate_forward");
  if (n <= 0) return;
  if (version == 1) {
    launch(gate_forward_v1, grid_v1(n), dim3(kThreads), 0, a, b, g, n);
  } else {
    if (!aligned16(a) || !aligned16(b) || !aligned16(g))
      throw std::invalid_argument("cu::swiglu_gate_forward v2: pointers must be 16-byte aligned (float4)");
    launch(gate_forward_v2, grid_v2(n), dim3(kThreads), 0, a, b, g, n);
  }
}

void swiglu_gate_backward(const float* a, const float* b, const float* dg, float* da, float* db, long n,
                          int version) {
  check_version(version, "swiglu_gate_backward");
  if (n <= 0) return;
  if (version == 1) {
    launch(gate_backward_v1, grid_v1(n), dim3(kThreads), 0, a, b, dg, da, db, n);
  } else {
    if (!aligned16(a) || !aligned16(b) || !aligned16(dg) || !aligned16(da) || !aligned16(db))
      throw std::invalid_argument("cu::swiglu_gate_backward v2: pointers must be 16-byte aligned (float4)");
    launch(gate_backward_v2, grid_v2(n), dim3(kThreads), 0, a, b, dg, da, db, n);
  }
}

// x: (N, C) -> y: (N, C); a, b, g: (N, F)
void swiglu_forward(const float* x, const float* W1, const float* W3, const float* W2, float* a, float* b, float* g,
                    float* y, int N, int C, int F, int version) {
  linear_forward(x, W1, a, N, C, F);  // a = x W1
  linear_forward(x, W3, b, N, C, F);  // b = x W3
  swiglu_gate_forward(a, b, g, (long)N * F, version);  // g = silu(a) * b
  linear_forward(g, W2, y, N, F, C);  // y = g W2
}

void swiglu_backward(const float* x, const float* W1, const float* W3, const float* W2, const float* a,
                     const float* b, const float* g, const float* dy, float* dx, float* dW1, float* dW3, float* dW2,
                     float* scratch, int N, int C, int F, int version) {
  float* dg = scratch;                // (N, F), becomes da in place
  float* db = scratch + swiglu_scratch_size(N, F) / 2;  // (N, F), 16-byte aligned for the float4 kernel
  // forward: y = g W2, so dW2 += g^T dy, dg = dy W2^T
  linear_backward(g, W2, dy, dg, dW2, N, F, C);
  // forward: g = silu(a) * b
  swiglu_gate_backward(a, b, dg, /*da=*/dg, db, (long)N * F, version);
  const float* da = dg;
  // forward: a = x W1, b = x W3, so dW1 += x^T da, dW3 += x^T db, dx = da W1^T + db W3^T
  matmul(x, da, dW1, C, F, N, true, false, 1.0f);
  matmul(x, db, dW3, C, F, N, true, false, 1.0f);
  matmul(da, W1, dx, N, C, F, false, true, 0.0f);
  matmul(db, W3, dx, N, C, F, false, true, 1.0f);
}

}  // namespace cu
