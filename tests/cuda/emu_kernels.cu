// tests/cuda/emu_kernels.cu: the kernels tests/cuda/test_emu.cpp runs (declarations and meaning in
// tests/cuda/emu_kernels.h). Compiled like every .cu: by g++ for the CPU layer, by nvcc for sm_90.
// The broken kernels are broken on purpose; each says what is wrong with it.
#include "cuda/compat.h"

#include "tests/cuda/emu_kernels.h"

namespace emu_test {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kT = 16;  // matmul tile

inline int ceil_div(int a, int b) { return (a + b - 1) / b; }

// C = A B with 16 x 16 tiles of A and B staged in shared memory.
// kSecondBarrier = false is the classic bug: a fast thread loads the next tile over the one a slow
// thread is still multiplying.
template <bool kSecondBarrier>
__global__ void matmul_tiled_kernel(const float* __restrict__ A, const float* __restrict__ B, float* __restrict__ C,
                                    int M, int N, int K) {
  __shared__ float As[kT][kT];  // As[ty][kk] = A(row, k0 + kk)
  __shared__ float Bs[kT][kT];  // Bs[kk][tx] = B(k0 + kk, col)
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int row = blockIdx.y * kT + ty, col = blockIdx.x * kT + tx;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += kT) {
    As[ty][tx] = (row < M && k0 + tx < K) ? A[(long)row * K + k0 + tx] : 0.0f;
    Bs[ty][tx] = (k0 + ty < K && col < N) ? B[(long)(k0 + ty) * N + col] : 0.0f;
    __syncthreads();  // the tile is complete
    for (int kk = 0; kk < kT; ++kk) acc += As[ty][kk] * Bs[kk][tx];
    if (kSecondBarrier) __syncthreads();  // everyone is done with the tile: it may be overwritten
  }
  if (row < M && col < N) C[(long)row * N + col] = acc;
}

__global__ void block_sum_kernel(const float* __restrict__ x, float* __restrict__ out, int n) {
  DYNAMIC_SHARED(float, warp_sums);  // one per warp
  const int t = threadIdx.x, lane = t % 32, warp = t / 32, n_warps = blockDim.x / 32;
  float v = 0.0f;
  for (int i = blockIdx.x * blockDim.x + t; i < n; i += gridDim.x * blockDim.x) v += x[i];
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(kFull, v, o);  // every lane: its warp's sum
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < n_warps ? warp_sums[lane] : 0.0f;
    for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(kFull, v, o);  // lane 0: the block's sum
    if (lane == 0) atomicAdd(out, v);
  }
}

__global__ void shuffles_kernel(const float* __restrict__ in, float* __restrict__ out, int src_lane, int delta,
                                int lane_mask, int width) {
  const int t = threadIdx.x, lane = t % 32;
  const float v = in[t];
  float* o = out + 6 * t;
  o[0] = __shfl_sync(kFull, v, src_lane, width);
  o[1] = __shfl_up_sync(kFull, v, delta, width);
  o[2] = __shfl_down_sync(kFull, v, delta, width);
  o[3] = __shfl_xor_sync(kFull, v, lane_mask, width);
  o[4] = lane < 16 ? __shfl_xor_sync(0x0000ffffu, v, 1) : v;
  o[5] = float(__shfl_sync(kFull, t, 0));
}

__global__ void votes_kernel(const float* __restrict__ in, unsigned* __restrict__ out) {
  const int t = threadIdx.x;
  const int pred = in[t] > 0.0f;
  unsigned* o = out + 5 * t;
  o[0] = __ballot_sync(kFull, pred);
  o[1] = __any_sync(kFull, pred);
  o[2] = __all_sync(kFull, pred);
  o[3] = __syncthreads_count(pred);
  const int all = __syncthreads_and(pred);
  const int any = __syncthreads_or(pred);
  o[4] = all * 2 + any;
}

__global__ void atomics_kernel(int* i, float* f, double* d, unsigned long long* u) {
  const int gid = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(&i[0], 1);
  atomicAdd(&f[0], 0.5f);
  atomicAdd(&d[0], 0.25);
  atomicMax(&i[1], gid);
  atomicMin(&i[2], -gid);
  atomicExch(&i[3], 7);
  int old = 0, seen;  // a CAS loop starts from a guess; a failed CAS returns the current value
  while ((seen = atomicCAS(&i[4], old, old + 1)) != old) old = seen;
  atomicAdd(&u[0], 3ull);
  atomicSub(&i[5], 2);
}

// kBarrier = false is the bug: s[t - 1] may not be written yet when thread t reads it.
template <bool kBarrier>
__global__ void neighbour_shift_kernel(const float* __restrict__ in, float* __restrict__ out) {
  __shared__ float s[256];
  const int t = threadIdx.x;
  s[t] = in[t];
  if (kBarrier) __syncthreads();
  out[t] = t > 0 ? s[t - 1] : 0.0f;
}

__global__ void static_shared_kernel(int* out) {
  __shared__ int mine;
  if (threadIdx.x == 0) mine = blockIdx.x + 1;
  __syncthreads();
  if (threadIdx.x == blockDim.x - 1) out[blockIdx.x] = mine;
}

__global__ void block_tickets_kernel(int* counter, int* out) {
  if (threadIdx.x == 0) out[blockIdx.x + gridDim.x * blockIdx.y] = atomicAdd(counter, 1);
}

__global__ void big_smem_kernel(float* out, int n) {
  DYNAMIC_SHARED(float, s);
  for (int i = threadIdx.x; i < n; i += blockDim.x) s[i] = float(i);
  __syncthreads();
  if (threadIdx.x == 0) {
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) sum += s[i];
    out[0] = sum;
  }
}

// One warp sums in[0..32) through shared memory, __syncwarp between each step's reads and writes.
__global__ void warp_reduce_kernel(const float* __restrict__ in, float* __restrict__ out) {
  __shared__ float s[32];
  const int lane = threadIdx.x;
  s[lane] = in[lane];
  __syncwarp();
  for (int o = 16; o > 0; o /= 2) {
    const float v = lane < o ? s[lane] + s[lane + o] : 0.0f;
    __syncwarp();  // every lane has read before anyone writes
    if (lane < o) s[lane] = v;
    __syncwarp();  // every lane has written before anyone reads
  }
  if (lane == 0) out[0] = s[0];
}

// ---- broken on purpose ----

// WRONG since Volta: the pre-2017 "warp-synchronous" reduction through volatile shared memory with
// no __syncwarp, which assumed the 32 lanes run in lock step. They need not, and here they do not.
__global__ void warp_reduce_legacy_kernel(const float* __restrict__ in, float* __restrict__ out) {
  __shared__ float s[32];
  volatile float* vs = s;
  const int lane = threadIdx.x;
  vs[lane] = in[lane];
  if (lane < 16) {
    vs[lane] = vs[lane] + vs[lane + 16];
    vs[lane] = vs[lane] + vs[lane + 8];
    vs[lane] = vs[lane] + vs[lane + 4];
    vs[lane] = vs[lane] + vs[lane + 2];
    vs[lane] = vs[lane] + vs[lane + 1];
  }
  if (lane == 0) out[0] = vs[0];
}

// WRONG: only threads 0..15 reach the barrier; the others exit.
__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x < 16) __syncthreads();
  out[threadIdx.x] = 1.0f;
}

// WRONG: threads past n return early, then the rest wait at a barrier the returned ones never reach.
__global__ void early_return_barrier_kernel(float* out, int n) {
  __shared__ float s[64];
  const int t = threadIdx.x;
  if (t >= n) return;
  s[t] = float(t);
  __syncthreads();
  out[t] = s[n - 1 - t];
}

// WRONG: two warps at two different barriers.
__global__ void two_barriers_kernel(float* out) {
  if (threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.0f;
}

// WRONG: a full-mask shuffle that only lanes 0..15 execute.
__global__ void shuffle_in_divergent_kernel(float* out) {
  const int lane = threadIdx.x % 32;
  float v = float(lane);
  if (lane < 16) v = __shfl_xor_sync(kFull, v, 1);
  out[threadIdx.x] = v;
}

// WRONG: every lane passes mask 0x1, which contains only lane 0.
__global__ void caller_not_in_mask_kernel(float* out) {
  out[threadIdx.x] = __shfl_sync(0x1u, float(threadIdx.x), 0);
}

// WRONG (in a 48-thread block): warp 1 has 16 lanes; the full mask names 16 that do not exist.
__global__ void full_mask_partial_warp_kernel(float* out) {
  out[threadIdx.x] = __shfl_xor_sync(kFull, float(threadIdx.x), 1);
}

// WRONG: lanes 8..15 read lanes 16..23, which are not in the mask.
__global__ void shuffle_outside_mask_kernel(float* out) {
  const int lane = threadIdx.x % 32;
  float v = float(lane);
  if (lane < 16) v = __shfl_down_sync(0x0000ffffu, v, 8);
  out[threadIdx.x] = v;
}

// WRONG: the two half-warps pass different masks to the same vote.
__global__ void mismatched_masks_kernel(float* out) {
  const int lane = threadIdx.x % 32;
  const unsigned mask = lane < 16 ? 0x0000ffffu : kFull;
  out[threadIdx.x] = float(__ballot_sync(mask, 1));
}

// WRONG: writes one element past the end of out.
__global__ void write_past_end_kernel(float* out, int n) {
  if (threadIdx.x == 0) out[n] = 42.0f;
}

}  // namespace

void matmul_tiled(const float* A, const float* B, float* C, int M, int N, int K) {
  cu::launch(matmul_tiled_kernel<true>, dim3(ceil_div(N, kT), ceil_div(M, kT)), dim3(kT, kT), 0, A, B, C, M, N, K);
}
void matmul_missing_barrier(const float* A, const float* B, float* C, int M, int N, int K) {
  cu::launch(matmul_tiled_kernel<false>, dim3(ceil_div(N, kT), ceil_div(M, kT)), dim3(kT, kT), 0, A, B, C, M, N, K);
}
void block_sum(const float* x, float* out, int n, int blocks, int threads) {
  cu::launch(block_sum_kernel, dim3(blocks), dim3(threads), (threads / 32) * sizeof(float), x, out, n);
}
void shuffles(const float* in, float* out, int threads, int src_lane, int delta, int lane_mask, int width) {
  cu::launch(shuffles_kernel, dim3(1), dim3(threads), 0, in, out, src_lane, delta, lane_mask, width);
}
void votes(const float* in, unsigned* out, int threads) {
  cu::launch(votes_kernel, dim3(1), dim3(threads), 0, in, out);
}
void atomics(int* i, float* f, double* d, unsigned long long* u, int blocks, int threads) {
  cu::launch(atomics_kernel, dim3(blocks), dim3(threads), 0, i, f, d, u);
}
void neighbour_shift(const float* in, float* out, int n, bool barrier) {
  if (barrier) cu::launch(neighbour_shift_kernel<true>, dim3(1), dim3(n), 0, in, out);
  else cu::launch(neighbour_shift_kernel<false>, dim3(1), dim3(n), 0, in, out);
}
void static_shared_per_block(int* out, int blocks) {
  cu::launch(static_shared_kernel, dim3(blocks), dim3(64), 0, out);
}
void block_tickets(int* counter, int* out, int blocks_x, int blocks_y) {
  cu::launch(block_tickets_kernel, dim3(blocks_x, blocks_y), dim3(32), 0, counter, out);
}
void big_dynamic_smem(float* out, int smem_bytes, bool set_attribute) {
  if (set_attribute)
    cu::check(cudaFuncSetAttribute(big_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes),
              "cudaFuncSetAttribute(big_smem_kernel)");
  cu::launch(big_smem_kernel, dim3(1), dim3(128), size_t(smem_bytes), out, smem_bytes / 4);
}
void warp_reduce(const float* in, float* out, bool legacy) {
  if (legacy) cu::launch(warp_reduce_legacy_kernel, dim3(1), dim3(32), 0, in, out);
  else cu::launch(warp_reduce_kernel, dim3(1), dim3(32), 0, in, out);
}
void divergent_barrier(float* out) { cu::launch(divergent_barrier_kernel, dim3(1), dim3(64), 0, out); }
void early_return_barrier(float* out) { cu::launch(early_return_barrier_kernel, dim3(1), dim3(64), 0, out, 40); }
void two_barriers(float* out) { cu::launch(two_barriers_kernel, dim3(1), dim3(64), 0, out); }
void shuffle_in_divergent_code(float* out) { cu::launch(shuffle_in_divergent_kernel, dim3(1), dim3(32), 0, out); }
void caller_not_in_mask(float* out) { cu::launch(caller_not_in_mask_kernel, dim3(1), dim3(32), 0, out); }
void full_mask_in_partial_warp(float* out) { cu::launch(full_mask_partial_warp_kernel, dim3(1), dim3(48), 0, out); }
void shuffle_reads_outside_mask(float* out) { cu::launch(shuffle_outside_mask_kernel, dim3(1), dim3(32), 0, out); }
void mismatched_masks(float* out) { cu::launch(mismatched_masks_kernel, dim3(1), dim3(32), 0, out); }
void write_past_end(float* out, int n) { cu::launch(write_past_end_kernel, dim3(1), dim3(32), 0, out, n); }

}  // namespace emu_test
