// cuda/compat.h: the one header every .cu file includes first. The same kernel source then builds
//
//   under nvcc (__CUDACC__)             for the GPU: <cuda_runtime.h>, kernel<<<grid, block, smem>>>(...)
//   under g++ with RATTN_CUDA_RUNTIME   host code of the GPU variant (tests, benchmarks): the real CUDA
//                                       runtime API, no kernels (g++ cannot compile them)
//   under plain g++                     on the CPU execution layer in cuda/emu/ (see cuda/emu/emu.h):
//                                       every CUDA thread is a fiber, so the kernel really runs
//
// What a kernel file writes differently from textbook CUDA (the only two concessions):
//   DYNAMIC_SHARED(float, smem);         instead of   extern __shared__ float smem[];
//   cu::launch(kernel, grid, block, smem_bytes, args...);   instead of   kernel<<<grid, block, smem_bytes>>>(args...);
// Everything else is plain CUDA: __global__, __device__, __shared__, threadIdx, __syncthreads,
// __shfl_xor_sync, atomicAdd, cudaMalloc, ... (the list the CPU layer supports is in cuda/emu/emu.h).
//
// cu::launch checks the launch (cudaGetLastError on the GPU; every misuse the CPU layer detects) and
// throws std::runtime_error with the reason. On the GPU the kernel itself runs asynchronously: a fault
// inside it shows up at the next cudaMemcpy / cudaDeviceSynchronize (set CUDA_LAUNCH_BLOCKING=1 to make
// it show up at the launch).
//
// Rule for kernels (the CPU layer enforces it): barriers are uniform. Every thread of a block reaches
// every __syncthreads (no barrier after an early return: guard the work instead), and every lane named
// in a warp intrinsic's mask calls the same intrinsic with the same mask.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#if defined(__CUDACC__) || defined(RATTN_CUDA_RUNTIME)
#include <cuda_runtime.h>
#else
#include "cuda/emu/emu.h"
#endif

namespace cu {

// Throw std::runtime_error("<what>: <CUDA error string>") unless err is cudaSuccess.
inline void check(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorName(err) + ": " + cudaGetErrorString(err));
}

}  // namespace cu

#if defined(__CUDACC__)
// One shared byte array for every kernel of a translation unit, cast to the element type the kernel
// wants: two kernels declaring `extern __shared__ float a[]` and `extern __shared__ int a[]` would
// conflict, a per-kernel pointer does not. 16-byte aligned, so float4 reads are fine.
#define DYNAMIC_SHARED(T, name)                                                \
  extern __shared__ __align__(16) unsigned char rattn_dynamic_smem_bytes_[]; \
  T* const name = reinterpret_cast<T*>(rattn_dynamic_smem_bytes_)

namespace cu {
// kernel<<<grid, block, smem_bytes>>>(args...), then the launch error check.
// The arguments convert to the kernel's parameter types exactly as in a <<<>>> launch.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes, Args&&... args) {
  kernel<<<grid, block, smem_bytes>>>(std::forward<Args>(args)...);
  check(cudaGetLastError(), "kernel launch");
}
}  // namespace cu

#elif !defined(RATTN_CUDA_RUNTIME)
// The CPU layer: dynamic shared memory is a per-block buffer of smem_bytes, 16-byte aligned,
// filled with 0xFF bytes (NaN as float) at the start of every block so reading it before writing shows.
#define DYNAMIC_SHARED(T, name) T* const name = ::emu::dynamic_shared<T>()

namespace cu {
// Runs every block of the grid on the CPU (see cuda/emu/scheduler.h); throws emu::Error (a
// std::runtime_error) naming the thread, the operation and the source line on any misuse.
template <class... Params, class... Args>
void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes, Args&&... args) {
  ::emu::launch(kernel, grid, block, smem_bytes, std::forward<Args>(args)...);
}
}  // namespace cu
#endif
