// tests/cuda/ops_check.h: the few helpers the op-kernel tests (tests/cuda/test_<op>.cpp) share.
//
//   to_device(buf, m) / from_device(buf, rows, cols)   Eigen float matrices <-> cu::DeviceBuffer
//   check_vs_ref(name, got, ref32, ref64, floor, scale)   the fp32 kernel passes when
//        err(cuda, ref64) <= 2 * err(ref32, ref64) + floor,  err = rms(x - ref64) / max(rms(ref64), scale)
//        (tests/check.h). scale is the RMS of the output's family (family_rms(dq, dk, dv) for a gradient)
//        or of the inputs it is made of (v for o): never only the output itself, which can be exactly zero
//        (dq, dk at w = 0; o of RLA at w >= T-1) while the kernel's fp32 result is rounding noise.
//        On failure check_close prints the worst element's index and both values.
//   REQUIRE_DEVICE()                                   on a GPU build with no device: RATTN_SKIP.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cuda/buffer.h"
#include "ref/tensor.h"
#include "tests/check.h"

namespace cuops_test {

using MatF = ref::Mat<float>;
using MatD = ref::Mat<double>;

inline constexpr double kFloorFwd = 1e-6;  // style.md floors
inline constexpr double kFloorBwd = 1e-5;

inline void to_device(cu::DeviceBuffer<float>& buf, const MatF& m) {
  REQUIRE(buf.size() == size_t(m.size()));
  buf.upload(m.data(), size_t(m.size()));
}

inline MatF from_device(const cu::DeviceBuffer<float>& buf, long rows, long cols) {
  std::vector<float> h = buf.download();
  REQUIRE(h.size() == size_t(rows * cols));
  MatF m(rows, cols);
  for (long i = 0; i < m.size(); ++i) m.data()[i] = h[size_t(i)];
  return m;
}

// err(got, ref64) <= 2 * err(ref32, ref64) + floor, errors relative to max(rms(ref64), scale).
inline bool check_vs_ref(const std::string& name, const MatF& got, const MatF& ref32, const MatD& ref64,
                         double floor, double scale) {
  const double e32 = rattn_test::compare(ref32, ref64, scale).rel_rms;
  const double tol = 2.0 * e32 + floor;
  char why[96];
  std::snprintf(why, sizeof why, " vs ref64 (tol = 2 * %.3g + %.0e)", e32, floor);
  return rattn_test::check_close(name + why, got, ref64, tol, scale);
}

// Tests honour RATTN_SMALL=1 (gpu-check runs them under compute-sanitizer) by using fewer shapes.
inline bool small_run() {
  const char* s = std::getenv("RATTN_SMALL");
  return s && s[0] == '1';
}

}  // namespace cuops_test

#define REQUIRE_DEVICE()                                      \
  do {                                                        \
    if (!cu::device_available()) RATTN_SKIP("no CUDA device"); \
  } while (0)
