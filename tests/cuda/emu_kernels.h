// tests/cuda/emu_kernels.h: small kernels that exercise the CUDA execution layers (the CPU one in
// cuda/emu/ and a real GPU), for tests/cuda/test_emu.cpp. Kernels in tests/cuda/emu_kernels.cu.
//
// All pointers are device pointers. The "correct" kernels must give the right answer on every
// layer and in every EMU_ORDER; the "broken" ones each contain one classic mistake, and the CPU layer
// must catch it (an emu::Error from the launch, a wrong result under some order, or a guard band
// that is no longer intact). Broken kernels other than write_past_end are only run on the CPU layer.
#pragma once

namespace emu_test {

// ---- correct kernels ----
// C (M, N) = A (M, K) B (K, N), row-major, 16 x 16 shared-memory tiles (two barriers per tile).
void matmul_tiled(const float* A, const float* B, float* C, int M, int N, int K);
// out[0] += sum of x[0..n): grid-stride loads, warp shuffles, a shared-memory (dynamic) block
// combine, one float atomicAdd per block. blocks x threads (threads a multiple of 32).
void block_sum(const float* x, float* out, int n, int blocks, int threads);
// One block of `threads` (a multiple of 32) threads; for thread t with v = in[t] and lane = t % 32:
//   out[6t+0] = __shfl_sync(full, v, src_lane, width)      out[6t+1] = __shfl_up_sync(full, v, delta, width)
//   out[6t+2] = __shfl_down_sync(full, v, delta, width)    out[6t+3] = __shfl_xor_sync(full, v, lane_mask, width)
//   out[6t+4] = __shfl_xor_sync(0x0000ffff, v, 1) for lanes < 16 (a partial mask), else v
//   out[6t+5] = float(__shfl_sync(full, t, 0)) (an int shuffle: lane 0's thread index)
void shuffles(const float* in, float* out, int threads, int src_lane, int delta, int lane_mask, int width);
// One block; pred[t] = in[t] > 0; per thread t (lane = t % 32):
//   out[5t+0] = __ballot_sync(full, pred)   out[5t+1] = __any_sync(full, pred)   out[5t+2] = __all_sync(full, pred)
//   out[5t+3] = __syncthreads_count(pred)   out[5t+4] = __syncthreads_and(pred) * 2 + __syncthreads_or(pred)
void votes(const float* in, unsigned* out, int threads);
// blocks x threads threads each do: atomicAdd(&i[0], 1), atomicAdd(&f[0], 0.5f), atomicAdd(&d[0], 0.25),
// atomicMax(&i[1], gid), atomicMin(&i[2], -gid), atomicExch(&i[3], 7), an atomicCAS increment of i[4],
// atomicAdd(&u[0], 3ull), atomicSub(&i[5], 2)   (gid = global thread index)
void atomics(int* i, float* f, double* d, unsigned long long* u, int blocks, int threads);
// out[t] = in[t - 1] (0 for t = 0) through shared memory, one block of n <= 256 threads. With
// barrier = false the read of the neighbour's slot races with its write: forward order happens to
// write before read; reverse order reads first.
void neighbour_shift(const float* in, float* out, int n, bool barrier);
// out[b] = b + 1 for every block b, through a static __shared__ variable that each block sets and
// reads back after a barrier (shared memory is per block).
void static_shared_per_block(int* out, int blocks);
// out[bx + blocks_x * by] = the value of counter[0] when block (bx, by) started (counter[0] starts at 0):
// the rank of each block in the order the blocks ran. Thread 0 of each block does one atomicAdd.
void block_tickets(int* counter, int* out, int blocks_x, int blocks_y);
// Uses smem_bytes of dynamic shared memory (cudaFuncSetAttribute first when set_attribute);
// out[0] = sum of 0..(smem_bytes/4 - 1) computed through it.
void big_dynamic_smem(float* out, int smem_bytes, bool set_attribute);

// out[0] = sum of in[0..32), one warp, through shared memory with __syncwarp (legacy = false), or
// BROKEN (legacy = true): the old warp-synchronous volatile version with no __syncwarp.
void warp_reduce(const float* in, float* out, bool legacy);

// ---- broken kernels: one mistake each ----
// The tiled matmul without the second __syncthreads (the next tile overwrites the current one).
void matmul_missing_barrier(const float* A, const float* B, float* C, int M, int N, int K);
// __syncthreads inside `if (threadIdx.x < 16)`; 64 threads.
void divergent_barrier(float* out);
// `if (i >= n) return;` before a __syncthreads; one block of 64 threads, n = 40.
void early_return_barrier(float* out);
// Threads 0..31 and 32..63 at two different __syncthreads.
void two_barriers(float* out);
// A full-mask __shfl_xor_sync inside `if (lane < 16)`; 32 threads.
void shuffle_in_divergent_code(float* out);
// Every lane calls __shfl_sync(0x1, ...): lanes 1..31 are not in their own mask.
void caller_not_in_mask(float* out);
// A 48-thread block; warp 1 has lanes 0..15 only, but calls a full-mask __shfl_xor_sync.
void full_mask_in_partial_warp(float* out);
// Lanes 0..15 call __shfl_down_sync(0x0000ffff, v, 8): lanes 8..15 read lanes 16..23, outside the mask.
void shuffle_reads_outside_mask(float* out);
// Lanes 0..15 use mask 0x0000ffff, lanes 16..31 0xffffffff in the same __ballot_sync.
void mismatched_masks(float* out);
// Thread 0 writes out[n] (one element past the end).
void write_past_end(float* out, int n);

}  // namespace emu_test
