// cuda/cross_entropy.cu: softmax cross-entropy, forward (per-row losses) and backward (dlogits), fp32.
//
// The reference loop (ref/loss.h), per row n with target y >= 0:
//   m = max(logits[n]);  lse = m + log(sum_v exp(logits[n, v] - m));  loss_n = lse - logits[n, y]
//   dlogits[n, v] = (exp(logits[n, v] - lse) - [v == y]) * dloss
//
// Versions, and what each one teaches:
//   v1  one thread per row, three passes over the row (max, sum, write): the reference loop as is.
//       Neighbouring threads read addresses V floats apart (no coalescing), and with N rows only N
//       threads exist.
//   v2  one warp per row. Each lane keeps an online softmax pair (m, s = sum exp(x - m)) over its
//       strided elements (one pass instead of two: when a larger x arrives, s is rescaled by
//       exp(m_old - m_new)); the 32 pairs are merged with __shfl_xor_sync butterflies, after which
//       every lane holds the row's logsumexp. Reads are coalesced (lane l reads v = l, l+32, ...).
//       The same merge rule is what flash attention uses across key tiles.
#include "cuda/compat.h"

#include <cmath>
#include <stdexcept>
#include <string>

#include "cuda/cross_entropy.h"

namespace cu {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;

// ---- v1: one thread per row ------------------------------------------------------------------
__device__ float row_lse_serial(const float* row, int V) {
  float m = row[0];
  for (int v = 1; v < V; ++v) m = fmaxf(m, row[v]);
  float s = 0.0f;
  for (int v = 0; v < V; ++v) s += expf(row[v] - m);
  return m + logf(s);
}

// logits: (N, V), targets, losses: (N)
__global__ void ce_forward_v1(const float* logits, const int* targets, float* losses, int N, int V) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n < N) {
    const int y = targets[n];
    const float* row = logits + (long)n * V;
    if (y < 0 || y >= V) losses[n] = (y == -1) ? 0.0f : NAN;
    else losses[n] = row_lse_serial(row, V) - row[y];
  }
}

// In the forward pass this was: loss_n = lse_n - logits[n, y], lse_n = log sum_v exp(logits[n, v]), so now
//   dlogits[n, v] = dloss * (softmax(logits[n])_v - [v == y])
__global__ void ce_backward_v1(const float* logits, const int* targets, float dloss, float* dlogits, int N, int V) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  if (n < N) {
    const int y = targets[n];
    const float* row = logits + (long)n * V;
    float* drow = dlogits + (long)n * V;
    if (y == -1) {
      for (int v = 0; v < V; ++v) drow[v] = 0.0f;
    } else if (y < -1 || y >= V) {
      for (int v = 0; v < V; ++v) drow[v] = NAN;
    } else {
      const float lse = row_lse_serial(row, V);
      for (int v = 0; v < V; ++v) drow[v] = (expf(row[v] - lse) - (v == y ? 1.0f : 0.0f)) * dloss;
    }
  }
}

// ---- v2: one warp per row ----------------------------------------------------------------------
// Merge two online-softmax pairs (m, s): s = sum exp(x - m) over each part. An empty part has
// m = -inf, s = 0 and must not produce exp(-inf - -inf) = NaN.
__device__ __forceinline__ void lse_merge(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  if (mn == -INFINITY) return;  // both parts empty
  s = (m == -INFINITY ? 0.0f : s * expf(m - mn)) + (m2 == -INFINITY ? 0.0f : s2 * expf(m2 - mn));
  m = mn;
}

// logsumexp of one row by one warp; every lane returns it. All 32 lanes must call it.
__device__ float row_lse_warp(const float* row, int V, int lane) {
  float m = -INFINITY, s = 0.0f;
  for (int v = lane; v < V; v += 32) {
    const float x = row[v];
    if (x > m) {  // a new maximum: rescale what was summed so far
      s = (m == -INFINITY ? 0.0f : s * expf(m - x)) + 1.0f;
      m = x;
    } else {
      s += expf(x - m);
    }
  }
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float m2 = __shfl_xor_sync(kFullMask, m, offset);
    const float s2 = __shfl_xor_sync(kFullMask, s, offset);
    lse_merge(m, s, m2, s2);
  }
  return m + logf(s);
}

constexpr int kWarps = 4;  // rows per block; block (32, 4)
__global__ void ce_forward_v2(const float* logits, const int* targets, float* losses, int N, int V) {
  const int n = blockIdx.x * kWarps + threadIdx.y, lane = threadIdx.x;
  if (n < N) {  // uniform per warp
    const int y = targets[n];
    const float* row = logits + (long)n * V;
    const float lse = row_lse_warp(row, V, lane);
    if (lane == 0) losses[n] = (y == -1) ? 0.0f : (y < -1 || y >= V) ? NAN : lse - row[y];
  }
}

// backward of ce_forward_v2 (the forward line it inverts is quoted at ce_backward_v1)
__global__ void ce_backward_v2(const float* logits, const int* targets, float dloss, float* dlogits, int N, int V) {
  const int n = blockIdx.x * kWarps + threadIdx.y, lane = threadIdx.x;
  if (n < N) {
    const int y = targets[n];
    const float* row = logits + (long)n * V;
    float* drow = dlogits + (long)n * V;
    const float lse = row_lse_warp(row, V, lane);  // every lane of the warp calls the shuffles
    const bool bad = (y < -1 || y >= V);
    for (int v = lane; v < V; v += 32)
      drow[v] = (y == -1) ? 0.0f : bad ? NAN : (expf(row[v] - lse) - (v == y ? 1.0f : 0.0f)) * dloss;
  }
}

void check_args(int N, int V, int version, const char* op) {
  if (version < 1 || version > kCrossEntropyVersions)
    throw std::invalid_argument(std::string("cu::") + op + ": no version " + std::to_string(version) + " (have 1..2)");
  if (N < 0 || V < 1) throw std::invalid_argument(std::string("cu::") + op + ": need N >= 0 and V >= 1");
}

}  // namespace

void cross_entropy_forward(const float* logits, const int* targets, float* losses, int N, int V, int version) {
  check_args(N, V, version, "cross_entropy_forward");
  if (N == 0) return;
  if (version == 1) launch(ce_forward_v1, dim3((N + 127) / 128), dim3(128), 0, logits, targets, losses, N, V);
  else launch(ce_forward_v2, dim3((N + kWarps - 1) / kWarps), dim3(32, kWarps), 0, logits, targets, losses, N, V);
}

void cross_entropy_backward(const float* logits, const int* targets, float dloss, float* dlogits, int N, int V,
                            int version) {
  check_args(N, V, version, "cross_entropy_backward");
  if (N == 0) return;
  if (version == 1) launch(ce_backward_v1, dim3((N + 127) / 128), dim3(128), 0, logits, targets, dloss, dlogits, N, V);
  else launch(ce_backward_v2, dim3((N + kWarps - 1) / kWarps), dim3(32, kWarps), 0, logits, targets, dloss, dlogits,
              N, V);
}

}  // namespace cu
