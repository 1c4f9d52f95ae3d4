// cuda/emu/intrinsics.h: CUDA's device functions on the CPU layer.
//
// Synchronising ones (__syncthreads, __syncwarp, shuffles, votes) hand control to the scheduler
// (scheduler.h: wait_in); the extra defaulted arguments record the caller's source line
// (__builtin_FILE/__builtin_LINE are evaluated at the call site), which is what error messages name.
// Shuffled values travel as 8 raw bytes, so any trivially copyable type of up to 8 bytes works.
//
// Atomics are real atomics (std::atomic_ref), because with EMU_HOST_THREADS > 1 blocks run in parallel.
// Math: the host's libm. It is not CUDA's libdevice: expf may differ by an ulp or two, and __expf
// is exact here but approximate on a GPU; compare with tolerances, never bit for bit across backends.
#pragma once

#include <atomic>
#include <cmath>
#include <cstring>
#include <type_traits>

#include "cuda/emu/scheduler.h"

// ---- barriers ---------------------------------------------------------------------------------------

inline void __syncthreads(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu::detail::wait_in(emu::detail::Op::syncthreads, 0, 0, 0, 32, file, line);
}
inline int __syncthreads_count(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return int(emu::detail::wait_in(emu::detail::Op::syncthreads_count, 0, pred != 0, 0, 32, file, line));
}
inline int __syncthreads_and(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return int(emu::detail::wait_in(emu::detail::Op::syncthreads_and, 0, pred != 0, 0, 32, file, line));
}
inline int __syncthreads_or(int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return int(emu::detail::wait_in(emu::detail::Op::syncthreads_or, 0, pred != 0, 0, 32, file, line));
}
inline void __syncwarp(unsigned mask = 0xffffffffu, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  emu::detail::wait_in(emu::detail::Op::syncwarp, mask, 0, 0, 32, file, line);
}

// Memory fences: the CPU layer is sequentially consistent between switches; with parallel blocks
// (EMU_HOST_THREADS > 1) a real fence.
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }
inline void __threadfence_block() { std::atomic_thread_fence(std::memory_order_seq_cst); }

// ---- warp shuffles and votes ------------------------------------------------------------------------

namespace emu::detail {
template <class T>
uint64_t to_bits(T v) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8, "shuffle of a type larger than 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  return b;
}
template <class T>
T from_bits(uint64_t b) {
  T v;
  std::memcpy(&v, &b, sizeof(T));
  return v;
}
template <class T>
T shuffle(Op op, unsigned mask, T var, int arg, int width, const char* file, int line) {
  return from_bits<T>(wait_in(op, mask, to_bits(var), arg, width, file, line));
}
}  // namespace emu::detail

template <class T>
T __shfl_sync(unsigned mask, T var, int srcLane, int width = warpSize, const char* file = __builtin_FILE(),
              int line = __builtin_LINE()) {
  return emu::detail::shuffle(emu::detail::Op::shfl, mask, var, srcLane, width, file, line);
}
template <class T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = warpSize, const char* file = __builtin_FILE(),
                 int line = __builtin_LINE()) {
  return emu::detail::shuffle(emu::detail::Op::shfl_up, mask, var, int(delta), width, file, line);
}
template <class T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = warpSize, const char* file = __builtin_FILE(),
                   int line = __builtin_LINE()) {
  return emu::detail::shuffle(emu::detail::Op::shfl_down, mask, var, int(delta), width, file, line);
}
template <class T>
T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = warpSize, const char* file = __builtin_FILE(),
                  int line = __builtin_LINE()) {
  return emu::detail::shuffle(emu::detail::Op::shfl_xor, mask, var, laneMask, width, file, line);
}
inline unsigned __ballot_sync(unsigned mask, int pred, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  return unsigned(emu::detail::wait_in(emu::detail::Op::ballot, mask, pred != 0, 0, 32, file, line));
}
inline int __any_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return int(emu::detail::wait_in(emu::detail::Op::any, mask, pred != 0, 0, 32, file, line));
}
inline int __all_sync(unsigned mask, int pred, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  return int(emu::detail::wait_in(emu::detail::Op::all, mask, pred != 0, 0, 32, file, line));
}
// The lanes of this warp that have not exited (not a synchronising operation; prefer explicit masks).
EMU_INTERNAL inline unsigned __activemask(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  auto& w = emu::detail::worker_or_throw("__activemask", file, line);
  unsigned m = 0, warp = w.current->warp;
  for (unsigned l = 0; l < 32 && warp * 32 + l < w.threads.size(); ++l)
    if (w.threads[warp * 32 + l].state != emu::detail::State::exited) m |= 1u << l;
  return m;
}

// ---- atomics: return the old value, as in CUDA ---------------------------------------------------------

#define EMU_ATOMIC_RMW(name, T, expr)                       \
  inline T name(T* address, T val) {                        \
    std::atomic_ref<T> a(*address);                          \
    T old = a.load();                                        \
    while (!a.compare_exchange_weak(old, (expr))) {          \
    }                                                        \
    return old;                                              \
  }
EMU_ATOMIC_RMW(atomicAdd, int, old + val)
EMU_ATOMIC_RMW(atomicAdd, unsigned int, old + val)
EMU_ATOMIC_RMW(atomicAdd, unsigned long long, old + val)
EMU_ATOMIC_RMW(atomicAdd, float, old + val)
EMU_ATOMIC_RMW(atomicAdd, double, old + val)
EMU_ATOMIC_RMW(atomicSub, int, old - val)
EMU_ATOMIC_RMW(atomicSub, unsigned int, old - val)
EMU_ATOMIC_RMW(atomicExch, int, val)
EMU_ATOMIC_RMW(atomicExch, unsigned int, val)
EMU_ATOMIC_RMW(atomicExch, unsigned long long, val)
EMU_ATOMIC_RMW(atomicExch, float, val)
EMU_ATOMIC_RMW(atomicMax, int, old > val ? old : val)
EMU_ATOMIC_RMW(atomicMax, unsigned int, old > val ? old : val)
EMU_ATOMIC_RMW(atomicMax, long long, old > val ? old : val)
EMU_ATOMIC_RMW(atomicMax, unsigned long long, old > val ? old : val)
EMU_ATOMIC_RMW(atomicMin, int, old < val ? old : val)
EMU_ATOMIC_RMW(atomicMin, unsigned int, old < val ? old : val)
EMU_ATOMIC_RMW(atomicMin, long long, old < val ? old : val)
EMU_ATOMIC_RMW(atomicMin, unsigned long long, old < val ? old : val)
EMU_ATOMIC_RMW(atomicAnd, int, old & val)
EMU_ATOMIC_RMW(atomicAnd, unsigned int, old & val)
EMU_ATOMIC_RMW(atomicOr, int, old | val)
EMU_ATOMIC_RMW(atomicOr, unsigned int, old | val)
EMU_ATOMIC_RMW(atomicXor, int, old ^ val)
EMU_ATOMIC_RMW(atomicXor, unsigned int, old ^ val)
#undef EMU_ATOMIC_RMW

#define EMU_ATOMIC_CAS(T)                                   \
  inline T atomicCAS(T* address, T compare, T val) {         \
    std::atomic_ref<T> a(*address);                          \
    a.compare_exchange_strong(compare, val);                 \
    return compare; /* the old value either way */           \
  }
EMU_ATOMIC_CAS(int)
EMU_ATOMIC_CAS(unsigned int)
EMU_ATOMIC_CAS(unsigned long long)
#undef EMU_ATOMIC_CAS

// ---- math ---------------------------------------------------------------------------------------------
// expf, logf, sqrtf, fabsf, fmaxf, fminf, powf, tanhf, fmaf, ... come from <cmath> (global namespace).

inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __sinf(float x) { return std::sin(x); }
inline float __cosf(float x) { return std::cos(x); }
inline float __tanhf(float x) { return std::tanh(x); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
inline float __fadd_rn(float x, float y) { return x + y; }
inline float __fmul_rn(float x, float y) { return x * y; }
inline float __fmaf_rn(float x, float y, float z) { return std::fma(x, y, z); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __int_as_float(int x) { return emu::detail::from_bits<float>(uint32_t(x)); }
inline int __float_as_int(float x) { return int(uint32_t(emu::detail::to_bits(x))); }
inline unsigned __float_as_uint(float x) { return uint32_t(emu::detail::to_bits(x)); }
inline float __uint_as_float(unsigned x) { return emu::detail::from_bits<float>(x); }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x ? __builtin_clz(unsigned(x)) : 32; }
inline int __ffs(int x) { return __builtin_ffs(x); }

// CUDA's min/max are overloaded for every arithmetic pair; here one template (common type).
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> min(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(b) < C(a) ? C(b) : C(a);
}
template <class A, class B, class = std::enable_if_t<std::is_arithmetic_v<A> && std::is_arithmetic_v<B>>>
inline std::common_type_t<A, B> max(A a, B b) {
  using C = std::common_type_t<A, B>;
  return C(a) < C(b) ? C(b) : C(a);
}

// Read-only cache load: an ordinary load here.
template <class T>
inline T __ldg(const T* p) {
  return *p;
}
