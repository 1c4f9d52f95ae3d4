// tests/cuda/test_rope.cpp: cu::rope_forward / rope_backward (every version) against ref/rope.h in
// double; pos0 > 0 (decode offsets), several heads, in-place use, odd row counts.
#include <random>

#include "cuda/rope.h"
#include "ref/rope.h"
#include "tests/cuda/ops_check.h"

using namespace cuops_test;

TEST_CASE("rope forward/backward against ref64") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(31);
  struct S { int T, n, D, pos0; double theta; };
  std::vector<S> cases = small_run() ? std::vector<S>{{7, 3, 16, 0, 5e5}}
                                     : std::vector<S>{{1, 1, 2, 0, 5e5},    {7, 3, 16, 0, 5e5},  {65, 2, 32, 5, 5e5},
                                                      {33, 4, 64, 100, 1e4}, {257, 1, 16, 0, 5e5}, {3, 2, 6, 4000, 10.0}};
  for (S c : cases) {
    const int W = c.n * c.D;
    MatF x = rattn_test::randn<MatF>(c.T, W, rng), dy = rattn_test::randn<MatF>(c.T, W, rng);
    MatD x64 = x.cast<double>(), dy64 = dy.cast<double>();
    MatF y32 = ref::rope_forward(x, c.n, c.theta, c.pos0), dx32 = ref::rope_backward(dy, c.n, c.theta, c.pos0);
    MatD y64 = ref::rope_forward(x64, c.n, c.theta, c.pos0), dx64 = ref::rope_backward(dy64, c.n, c.theta, c.pos0);
    cu::DeviceBuffer<float> bx(x.size()), bdy(dy.size()), by(x.size()), bdx(x.size());
    to_device(bx, x);
    to_device(bdy, dy);
    for (int version = 1; version <= cu::kRopeVersions; ++version) {
      CAPTURE(version); CAPTURE(c.T); CAPTURE(c.n); CAPTURE(c.D); CAPTURE(c.pos0);
      by.fill_nan();
      bdx.fill_nan();
      cu::rope_forward(bx.data(), by.data(), c.T, c.n, c.D, c.theta, c.pos0, version);
      cu::rope_backward(bdy.data(), bdx.data(), c.T, c.n, c.D, c.theta, c.pos0, version);
      check_vs_ref("y", from_device(by, c.T, W), y32, y64, kFloorFwd, rattn_test::family_rms(y64));
      check_vs_ref("dx", from_device(bdx, c.T, W), dx32, dx64, kFloorBwd, rattn_test::family_rms(dx64));
      CHECK(by.guards_intact());
      CHECK(bdx.guards_intact());
      // in place: y overwrites x
      cu::DeviceBuffer<float> inplace(x.size());
      to_device(inplace, x);
      cu::rope_forward(inplace.data(), inplace.data(), c.T, c.n, c.D, c.theta, c.pos0, version);
      check_vs_ref("y (in place)", from_device(inplace, c.T, W), y32, y64, kFloorFwd, rattn_test::family_rms(y64));
    }
  }
}

TEST_CASE("rope: odd head dim and unknown version throw") {
  REQUIRE_DEVICE();
  cu::DeviceBuffer<float> b(6);
  CHECK_THROWS(cu::rope_forward(b.data(), b.data(), 2, 1, 3, 5e5, 0, 2));
  CHECK_THROWS(cu::rope_forward(b.data(), b.data(), 1, 1, 6, 5e5, 0, 3));
}
