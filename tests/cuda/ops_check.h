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
//   ScopedEnv, kOrderRuns, bits_differ,
//   check_same_bits_as_first                          determinism checks: run a kernel in every fiber and
//        block order of the CPU layer (EMU_ORDER), with blocks on two host threads at once, and again; the
//        results must be the same bits each time.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/buffer.h"
#include "ref/tensor.h"
#include "tests/check.h"
#include "tests/proc.h"

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

// ScopedEnv (tests/proc.h) sets EMU_ORDER and EMU_HOST_THREADS for one scope; the CPU layer reads them at
// every launch, a GPU ignores them.
using rattn_test::ScopedEnv;

// The runs a determinism check compares: on the CPU layer, fibers and blocks in forward, reverse and three
// seeded random orders, forward again, and blocks on two host threads at once (a GPU ignores both
// variables and simply runs the kernel again).
struct OrderRun {
  const char* order;         // EMU_ORDER
  const char* host_threads;  // EMU_HOST_THREADS
};
inline constexpr OrderRun kOrderRuns[] = {{"forward", "1"},  {"reverse", "1"}, {"random:1", "1"}, {"random:2", "1"},
                                          {"random:3", "1"}, {"forward", "1"}, {"random:4", "2"}};

// How many elements of a and b differ in their bits (0: identical, NaNs included). Shapes must match.
inline long bits_differ(const MatF& a, const MatF& b) {
  REQUIRE(a.rows() == b.rows());
  REQUIRE(a.cols() == b.cols());
  long n = 0;
  for (long i = 0; i < a.size(); ++i) n += std::memcmp(a.data() + i, b.data() + i, sizeof(float)) != 0;
  return n;
}

// One run of a determinism check: the first run's results become the reference (kept in first), every
// later run's must equal them bit for bit. names[i] labels got[i] in a failure.
inline void check_same_bits_as_first(std::vector<MatF>& first, const std::vector<MatF>& got,
                                     const char* const* names) {
  if (first.empty()) {
    first = got;
    return;
  }
  REQUIRE(got.size() == first.size());
  for (size_t i = 0; i < got.size(); ++i) {
    CAPTURE(names[i]);
    CHECK(bits_differ(got[i], first[i]) == 0);
  }
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
