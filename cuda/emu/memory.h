// cuda/emu/memory.h: "device" memory and the CUDA runtime API subset (cudaMalloc, cudaMemcpy, ...).
//
// Device memory is ordinary process memory, laid out so that misuse faults as it would on a GPU:
//
//   [ guard page | slack < 16 bytes ... data ... | guard page ]      (mmap, one mapping per cudaMalloc)
//                                      ^ the data END touches the trailing guard page
//
//  - data is 16-byte aligned (cudaMalloc gives 256; enough for float4) and ends within 15 bytes of an
//    inaccessible page, so a kernel reading or writing past the end faults (SIGSEGV, reported with
//    the CUDA thread; scheduler.h);
//  - fresh allocations are filled with 0xFF bytes (NaN as float): reading memory nobody wrote shows;
//  - while host code runs, all device memory is inaccessible (PROT_NONE), as it is on a real system:
//    host code that dereferences a device pointer faults instead of silently working on the CPU
//    layer only. Launches and cudaMemcpy/cudaMemset open it for their duration.
//  - kernel arguments of pointer type are checked to point into device memory (or be null).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include "cuda/emu/types.h"

enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInvalidDeviceFunction = 98,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchFailure = 719,
};
using cudaError = cudaError_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};

struct CUstream_st;
using cudaStream_t = CUstream_st*;  // streams are accepted and ignored: everything is synchronous

namespace emu::detail {

struct Allocation {
  char* map = nullptr;  // whole mapping, guard pages included
  size_t map_bytes = 0;
  char* ptr = nullptr;  // what cudaMalloc returned
  size_t bytes = 0;
};

struct Memory {
  std::recursive_mutex mu;
  std::map<uintptr_t, Allocation> allocs;  // key: ptr
  int open_count = 0;                      // > 0 while a launch / memcpy has device memory open
};
inline Memory& memory() {
  static Memory* m = new Memory;  // never destroyed: buffers may be freed by static destructors
  return *m;
}

inline size_t page_size() { return size_t(sysconf(_SC_PAGESIZE)); }

// The allocation that contains [p, p + n) (n = 0: p may also be one past the end), or null.
inline const Allocation* find_allocation(const void* p, size_t n = 0) {
  auto& allocs = memory().allocs;
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = allocs.upper_bound(a);
  if (it == allocs.begin()) return nullptr;
  --it;
  const Allocation& al = it->second;
  uintptr_t lo = reinterpret_cast<uintptr_t>(al.ptr);
  if (a < lo || a + n > lo + al.bytes) return nullptr;
  return &al;
}

// Make the data pages of one allocation (or all) accessible or not.
inline void protect(const Allocation& al, bool open) {
  size_t pg = page_size();
  mprotect(al.map + pg, al.map_bytes - 2 * pg, open ? PROT_READ | PROT_WRITE : PROT_NONE);
}
inline void protect_all(bool open) {
  for (auto& kv : memory().allocs) protect(kv.second, open);
}

// RAII: device memory accessible while alive (nested uses are fine). Holds the memory lock, so
// host threads that use the CUDA API concurrently take turns.
class OpenDeviceMemory {
 public:
  OpenDeviceMemory() : lock_(memory().mu) {
    if (memory().open_count++ == 0) protect_all(true);
  }
  ~OpenDeviceMemory() {
    if (--memory().open_count == 0) protect_all(false);
  }
  OpenDeviceMemory(const OpenDeviceMemory&) = delete;
  OpenDeviceMemory& operator=(const OpenDeviceMemory&) = delete;

 private:
  std::lock_guard<std::recursive_mutex> lock_;
};

// Describe an address for a crash report: "12 bytes past the end of the 400-byte allocation at 0x...".
inline void describe_address(const void* p, char* out, size_t cap) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  for (auto& kv : memory().allocs) {
    const Allocation& al = kv.second;
    uintptr_t lo = reinterpret_cast<uintptr_t>(al.ptr), hi = lo + al.bytes;
    uintptr_t mlo = reinterpret_cast<uintptr_t>(al.map), mhi = mlo + al.map_bytes;
    if (a < mlo || a >= mhi) continue;
    if (a >= hi)
      std::snprintf(out, cap, "%zu bytes past the end of the %zu-byte device allocation at %p", size_t(a - hi),
                    al.bytes, (void*)al.ptr);
    else if (a < lo)
      std::snprintf(out, cap, "%zu bytes before the start of the %zu-byte device allocation at %p",
                    size_t(lo - a), al.bytes, (void*)al.ptr);
    else
      std::snprintf(out, cap, "inside the %zu-byte device allocation at %p (device memory is inaccessible "
                    "to host code: use cudaMemcpy)", al.bytes, (void*)al.ptr);
    return;
  }
  std::snprintf(out, cap, "not near any device allocation");
}

inline void ensure_segv_reporter();  // scheduler.h: SIGSEGVs are reported with the CUDA thread

inline thread_local cudaError_t last_error = cudaSuccess;
inline cudaError_t fail(cudaError_t e) {
  last_error = e;
  return e;
}

}  // namespace emu::detail

// ---- the runtime API subset ----------------------------------------------------------------------

inline cudaError_t cudaMalloc(void** p, size_t bytes) {
  using namespace emu::detail;
  if (!p) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::recursive_mutex> lock(memory().mu);
  ensure_segv_reporter();
  size_t pg = page_size();
  size_t data_pages = (bytes + 15) / 16 * 16;
  data_pages = (data_pages + pg - 1) / pg * pg;
  if (data_pages == 0) data_pages = pg;
  Allocation al;
  al.map_bytes = data_pages + 2 * pg;
  void* m = mmap(nullptr, al.map_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) return fail(cudaErrorMemoryAllocation);
  al.map = static_cast<char*>(m);
  al.bytes = bytes;
  al.ptr = al.map + pg + data_pages - (bytes + 15) / 16 * 16;
  std::memset(al.map + pg, 0xFF, data_pages);  // poison: NaN for floats
  mprotect(al.map, pg, PROT_NONE);
  mprotect(al.map + pg + data_pages, pg, PROT_NONE);
  if (memory().open_count == 0) protect(al, false);
  memory().allocs[reinterpret_cast<uintptr_t>(al.ptr)] = al;
  *p = al.ptr;
  return cudaSuccess;
}

template <class T>
inline cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}

inline cudaError_t cudaFree(void* p) {
  using namespace emu::detail;
  if (!p) return cudaSuccess;
  std::lock_guard<std::recursive_mutex> lock(memory().mu);
  auto it = memory().allocs.find(reinterpret_cast<uintptr_t>(p));
  if (it == memory().allocs.end()) return fail(cudaErrorInvalidValue);  // not from cudaMalloc, or freed twice
  munmap(it->second.map, it->second.map_bytes);
  memory().allocs.erase(it);
  return cudaSuccess;
}

inline cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  using namespace emu::detail;
  if (bytes == 0) return cudaSuccess;
  OpenDeviceMemory open;
  bool dst_dev = find_allocation(dst, bytes) != nullptr, src_dev = find_allocation(src, bytes) != nullptr;
  // A device pointer whose range runs past its allocation is an error, not "host memory".
  if (!dst_dev && find_allocation(dst)) return fail(cudaErrorInvalidValue);
  if (!src_dev && find_allocation(src)) return fail(cudaErrorInvalidValue);
  bool ok = false;
  switch (kind) {
    case cudaMemcpyHostToHost: ok = !dst_dev && !src_dev; break;
    case cudaMemcpyHostToDevice: ok = dst_dev && !src_dev; break;
    case cudaMemcpyDeviceToHost: ok = !dst_dev && src_dev; break;
    case cudaMemcpyDeviceToDevice: ok = dst_dev && src_dev; break;
    case cudaMemcpyDefault: ok = true; break;
  }
  if (!ok) return fail(cudaErrorInvalidValue);  // direction does not match the pointers
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}

inline cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind,
                                   cudaStream_t = nullptr) {
  return cudaMemcpy(dst, src, bytes, kind);
}

inline cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  using namespace emu::detail;
  if (bytes == 0) return cudaSuccess;
  OpenDeviceMemory open;
  if (!find_allocation(p, bytes)) return fail(cudaErrorInvalidValue);
  std::memset(p, value, bytes);
  return cudaSuccess;
}

inline cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t = nullptr) {
  return cudaMemset(p, value, bytes);
}

inline cudaError_t cudaGetLastError() {
  cudaError_t e = emu::detail::last_error;
  emu::detail::last_error = cudaSuccess;
  return e;
}
inline cudaError_t cudaPeekAtLastError() { return emu::detail::last_error; }
inline cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }  // launches are synchronous
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
inline cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
inline cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : emu::detail::fail(cudaErrorInvalidDevice); }
inline cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}

inline const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}

inline const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument (CPU layer: a pointer outside its allocation, or a "
                                       "copy direction that does not match the pointers)";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return cudaGetErrorName(e);
  }
}
