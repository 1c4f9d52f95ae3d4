// cuda/buffer.h: host-side helpers for tests and programs that drive kernels.
//
//   cu::device_available()   true on the CPU execution layer; on GPU builds true iff a CUDA device exists
//   cu::on_cpu_layer()       true when the kernels run on the CPU execution layer (cuda/emu/)
//   cu::DeviceBuffer<T>      n elements of device memory between two guard bands:
//
//       [ guard band: kGuardBytes of a known pattern | n * sizeof(T) data | guard band ]
//
//     An out-of-bounds write a little past either end of the data lands in a band and
//     guards_intact() reports it, on a GPU and on the CPU layer alike. On the CPU layer the whole
//     allocation also ends exactly at an inaccessible page, so a write further out faults at once
//     (SIGSEGV, reported with the CUDA thread that did it; see cuda/emu/memory.h).
//
// Typical test:
//   cu::DeviceBuffer<float> x(n), y(n);
//   x.upload(host_x);  y.fill_nan();          // poison the output: unwritten elements stay NaN
//   cu::some_op(x.data(), y.data(), n);
//   std::vector<float> got = y.download();   CHECK(y.guards_intact());
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/compat.h"

namespace cu {

// Built against the CPU execution layer (g++ without RATTN_CUDA_RUNTIME)?
inline bool on_cpu_layer() {
#if defined(__CUDACC__) || defined(RATTN_CUDA_RUNTIME)
  return false;
#else
  return true;
#endif
}

// Can kernels run here? Always on the CPU layer; on a GPU build iff cudaGetDeviceCount finds a device
// (with no GPU or no driver it returns an error, which is cleared so it does not leak into later checks).
inline bool device_available() {
  if (on_cpu_layer()) return true;
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return n > 0;
}

template <class T>
class DeviceBuffer {
 public:
  static constexpr size_t kGuardBytes = 256;  // a multiple of 256 keeps data() as aligned as cudaMalloc's
  static constexpr uint32_t kGuardWord = 0xDEADBEEFu;

  // n elements, uninitialised (NaN-filled bytes on the CPU layer), guard bands written.
  explicit DeviceBuffer(size_t n) : n_(n) {
    void* p = nullptr;
    check(cudaMalloc(&p, bytes_total()), "DeviceBuffer: cudaMalloc");
    base_ = static_cast<unsigned char*>(p);
    std::vector<unsigned char> band = guard_pattern();
    check(cudaMemcpy(base_, band.data(), kGuardBytes, cudaMemcpyHostToDevice), "DeviceBuffer: guard");
    check(cudaMemcpy(base_ + kGuardBytes + data_bytes(), band.data(), kGuardBytes, cudaMemcpyHostToDevice),
          "DeviceBuffer: guard");
  }
  ~DeviceBuffer() {
    if (base_) (void)cudaFree(base_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : base_(o.base_), n_(o.n_) { o.base_ = nullptr; o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      if (base_) (void)cudaFree(base_);
      base_ = o.base_; n_ = o.n_;
      o.base_ = nullptr; o.n_ = 0;
    }
    return *this;
  }

  T* data() { return reinterpret_cast<T*>(base_ + kGuardBytes); }
  const T* data() const { return reinterpret_cast<const T*>(base_ + kGuardBytes); }
  size_t size() const { return n_; }

  // Copy n <= size() elements from the host into the start of the buffer.
  void upload(const T* host, size_t n) {
    if (n > n_)
      throw std::invalid_argument("DeviceBuffer::upload: " + std::to_string(n) + " elements into a buffer of " +
                                  std::to_string(n_));
    if (n) check(cudaMemcpy(data(), host, n * sizeof(T), cudaMemcpyHostToDevice), "DeviceBuffer::upload");
  }
  void upload(const std::vector<T>& host) { upload(host.data(), host.size()); }

  // All size() elements back to the host.
  std::vector<T> download() const {
    std::vector<T> host(n_);
    if (n_) check(cudaMemcpy(host.data(), data(), data_bytes(), cudaMemcpyDeviceToHost), "DeviceBuffer::download");
    return host;
  }

  // Every byte 0xFF: NaN for float/double, so elements a kernel forgot to write stand out.
  void fill_nan() {
    if (n_) check(cudaMemset(data(), 0xFF, data_bytes()), "DeviceBuffer::fill_nan");
  }

  // Both guard bands still hold their pattern (no kernel wrote just outside the data).
  bool guards_intact() const {
    std::vector<unsigned char> want = guard_pattern(), got(kGuardBytes);
    for (size_t off : {size_t(0), kGuardBytes + data_bytes()}) {
      check(cudaMemcpy(got.data(), base_ + off, kGuardBytes, cudaMemcpyDeviceToHost), "DeviceBuffer::guards_intact");
      if (got != want) return false;
    }
    return true;
  }

 private:
  size_t data_bytes() const { return n_ * sizeof(T); }
  size_t bytes_total() const { return kGuardBytes + data_bytes() + kGuardBytes; }
  static std::vector<unsigned char> guard_pattern() {
    std::vector<unsigned char> band(kGuardBytes);
    for (size_t i = 0; i < kGuardBytes; i += 4) std::memcpy(&band[i], &kGuardWord, 4);
    return band;
  }

  unsigned char* base_ = nullptr;
  size_t n_ = 0;
};

}  // namespace cu
