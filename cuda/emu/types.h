// cuda/emu/types.h: CUDA's keywords, vector types and built-in variables for g++.
//
// The qualifiers mean nothing on the CPU: __global__ / __device__ / __host__ vanish, __shared__
// becomes `static thread_local` (one instance per host worker thread; a worker runs one block at a
// time and all of a block's fibers live on its worker, so that is one instance per running block).
//
// threadIdx / blockIdx / blockDim / gridDim are thread_local variables of the worker thread; the
// scheduler writes threadIdx before it switches to a fiber, so in gdb `p threadIdx` shows the CUDA
// thread you are stepping through.
#pragma once

#include <cmath>
#include <cstdint>

#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __shared__ static thread_local
// __restrict__ is a g++ keyword already.

// `#pragma unroll` is CUDA's; g++ does not know it and would warn on every loop.
#pragma GCC diagnostic ignored "-Wunknown-pragmas"

struct uint3 { unsigned int x, y, z; };
struct int2 { int x, y; };
struct int4 { int x, y, z, w; };
struct __align__(8) float2 { float x, y; };
struct __align__(16) float4 { float x, y, z, w; };

// dim3: unspecified components are 1, as in CUDA.
struct dim3 {
  unsigned int x = 1, y = 1, z = 1;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

// The built-in variables (set by the scheduler, read by kernels).
inline thread_local uint3 threadIdx{0, 0, 0};
inline thread_local uint3 blockIdx{0, 0, 0};
inline thread_local dim3 blockDim{1, 1, 1};
inline thread_local dim3 gridDim{1, 1, 1};
constexpr int warpSize = 32;
