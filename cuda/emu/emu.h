// cuda/emu/emu.h: the CPU execution layer. Unmodified CUDA kernel source, compiled by g++, runs
// on the CPU with every CUDA thread a fiber; cuda/compat.h includes this when not under nvcc.
//
// Why fibers: threads of a block must really interleave at barriers, or a missing __syncthreads
// can never show. One fiber per CUDA thread, switched only at __syncthreads / __syncwarp / shuffles /
// votes, gives that with no locks and a deterministic, selectable order (EMU_ORDER), and lets the
// scheduler see every thread's position, so misuse is reported instead of hanging or "working".
//
// Files, in reading order:
//   types.h       the keywords (__global__, __shared__, ...), dim3/float4, threadIdx & co.
//   fiber.h       fibers and their stacks (ucontext, or a small x86-64 switch)
//   memory.h      device memory with guard pages and poison; cudaMalloc, cudaMemcpy, ...
//   scheduler.h   launch: blocks on workers, fibers in rounds, releasing barriers and warp ops,
//                 the diagnostics
//   intrinsics.h  __syncthreads, __shfl_*_sync, votes, atomics, math
//
// Supported: __global__ __device__ __host__ __forceinline__ __restrict__ __launch_bounds__;
// threadIdx blockIdx blockDim gridDim warpSize dim3 uint3 float2 float4; static __shared__ (per
// block) and dynamic shared memory (DYNAMIC_SHARED); __syncthreads(_count/_and/_or), __syncwarp,
// __shfl(_up/_down/_xor)_sync with width, __ballot/__any/__all_sync, __activemask; atomicAdd (int,
// unsigned, unsigned long long, float, double), atomicSub/Exch/Max/Min/CAS/And/Or/Xor; expf logf
// sqrtf rsqrtf fmaxf fminf fabsf __expf __fdividef min max __ldg ...; cudaMalloc cudaFree
// cudaMemcpy(Async) cudaMemset(Async) cudaDeviceSynchronize cudaGetLastError cudaPeekAtLastError
// cudaGetErrorString cudaGetErrorName cudaFuncSetAttribute cudaGetDeviceCount cudaSetDevice.
//
// Environment:
//   EMU_ORDER=forward|reverse|random:<seed>   order in which the fibers of a block take turns, and in
//                                              which the blocks of a launch are run
//   EMU_HOST_THREADS=N                         blocks run N at a time (default 1: one after another)
//   EMU_STACK_KB=K                             fiber stack size (default 256)
//
// Caught (emu::Error from the launch, naming thread, operation and source line, unless noted):
//   a __syncthreads not reached by every thread (divergent code, after an early return), threads at
//   different __syncthreads, a warp op whose mask names a lane that exited / waits elsewhere / uses
//   another mask / does not exist, a caller outside its own mask, a shuffle reading a lane outside
//   the mask, a bad launch configuration, > 48 KiB dynamic shared memory without
//   cudaFuncSetAttribute, host pointers as kernel arguments, exceptions thrown in a kernel;
//   out-of-bounds global accesses past the guard page, host code touching device memory, fiber
//   stack overflow (SIGSEGV, with the CUDA thread printed); reads of never-written device or
//   dynamic shared memory (NaN poison); races between barriers when the order matters (run under
//   EMU_ORDER=reverse / random, or in the TSan build, which reports them as data races).
// Missed: weak memory ordering (the emulator is sequentially consistent; a missing __threadfence
//   cannot show), races between blocks unless EMU_HOST_THREADS > 1 under TSan (a result that depends
//   on the order of blocks does show, between EMU_ORDERs), out-of-bounds
//   accesses that stay inside another allocation or inside shared memory (use the ASan build),
//   __CUDA_ARCH__ branches (undefined here), timing, occupancy, bank conflicts, libdevice numerics.
#pragma once

#include "cuda/emu/types.h"
#include "cuda/emu/fiber.h"
#include "cuda/emu/memory.h"
#include "cuda/emu/scheduler.h"
#include "cuda/emu/intrinsics.h"
