// cuda/elementwise.cu: add, sum_ordered and tree_combine (see cuda/elementwise.h), fp32 data.
//
// add, the reference loop: for i in [0, n): out[i] = a[i] + b[i]   (ref/: Eigen's a + b)
//   v1  one thread per element.
//   v2  float4 loads and stores in a grid-stride loop, a scalar tail for n % 4 (as adamw_v2): a memory-
//       bound op, so a quarter of the memory instructions is what there is to win. Needs 16-byte aligned
//       pointers, which the launcher checks (it falls back to v1 when they are not).
//
// sum_ordered: ONE block of 256 threads. Thread t adds x[t], x[t + 256], x[t + 512], ... in double in
// index order; then the 256 partials are added pairwise in shared memory (stride 128, 64, ..., 1): a
// fixed tree. The order depends on n only, so the sum is the same bits on every run (a grid of blocks
// adding into one value with atomicAdd would not be: the hardware orders the atomics). One block is
// enough for what it sums (B*T losses once a step); it is not a general-purpose reduction.
//
// tree_combine: one thread per element, grid-stride. Each thread walks the whole tree for its element
// (stride 1, 2, 4, ...: node i += node i + stride for i a multiple of 2 * stride), so every element's
// additions are the tree's, in the tree's order, whichever thread or block runs it: no cross-thread
// communication at all. The k nodes of one element are k strided loads; k is the number of ranks (a
// handful), so the kernel is bound by memory: each node is read once and node 0 written once per level.
#include "cuda/compat.h"

#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/elementwise.h"

namespace cu {
namespace {

__global__ void add_v1(const float* a, const float* b, float* out, long n) {
  const long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = a[i] + b[i];
}

__global__ void add_v2(const float* a, const float* b, float* out, long n) {
  const long n4 = n / 4, stride = (long)gridDim.x * blockDim.x;
  const float4* a4 = reinterpret_cast<const float4*>(a);
  const float4* b4 = reinterpret_cast<const float4*>(b);
  float4* o4 = reinterpret_cast<float4*>(out);
  for (long i = (long)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += stride) {
    const float4 x = a4[i], y = b4[i];
    o4[i] = make_float4(x.x + y.x, x.y + y.y, x.z + y.z, x.w + y.w);
  }
  for (long i = 4 * n4 + (long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) out[i] = a[i] + b[i];
}

constexpr int kSumThreads = 256;

__global__ void sum_ordered_kernel(const float* x, long n, double* sum) {
  __shared__ double part[kSumThreads];
  double s = 0.0;
  for (long i = threadIdx.x; i < n; i += kSumThreads) s += double(x[i]);  // index order within the thread
  part[threadIdx.x] = s;
  __syncthreads();
  for (int stride = kSumThreads / 2; stride > 0; stride >>= 1) {  // a fixed pairwise tree
    if ((int)threadIdx.x < stride) part[threadIdx.x] += part[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) *sum = part[0];
}

__global__ void tree_combine_kernel(float* nodes, int k, long stride, long n) {
  const long step = (long)gridDim.x * blockDim.x;
  for (long e = (long)blockIdx.x * blockDim.x + threadIdx.x; e < n; e += step)
    for (int s = 1; s < k; s *= 2)                 // level by level (model/tree_reduce.h: tree_levels)
      for (int i = 0; i + s < k; i += 2 * s)       // node i = node i + node i+s: the lower node on the left
        nodes[i * stride + e] = nodes[i * stride + e] + nodes[(i + s) * stride + e];
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

}  // namespace

void add(const float* a, const float* b, float* out, long n, int version) {
  if (version < 1 || version > kAddVersions)
    throw std::invalid_argument("cu::add: no version " + std::to_string(version) + " (have 1..2)");
  if (n <= 0) return;
  const int threads = 256;
  if (version == 2 && aligned16(a) && aligned16(b) && aligned16(out)) {
    long blocks = (n / 4 + threads - 1) / threads;
    blocks = blocks < 1 ? 1 : (blocks > 4096 ? 4096 : blocks);
    launch(add_v2, dim3(unsigned(blocks)), dim3(threads), 0, a, b, out, n);
  } else {
    launch(add_v1, dim3(unsigned((n + threads - 1) / threads)), dim3(threads), 0, a, b, out, n);
  }
}

void sum_ordered(const float* x, long n, double* sum) {
  if (n < 0) throw std::invalid_argument("cu::sum_ordered: n < 0");
  launch(sum_ordered_kernel, dim3(1), dim3(kSumThreads), 0, x, n, sum);
}

void tree_combine(float* nodes, int k, long stride, long n) {
  if (k < 1 || n < 0 || stride < n) throw std::invalid_argument("cu::tree_combine: need k >= 1, 0 <= n <= stride");
  if (k == 1 || n == 0) return;
  const int threads = 256;
  long blocks = (n + threads - 1) / threads;
  blocks = blocks > 1024 ? 1024 : blocks;
  launch(tree_combine_kernel, dim3(unsigned(blocks)), dim3(threads), 0, nodes, k, stride, n);
}

}  // namespace cu
