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

TEST_CASE("rope batched: each of B stacked sequences from position 0, against ref64 per sequence") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(37);
  struct S { int B, T, n, D; };
  for (S c : {S{3, 7, 2, 16}, S{2, 33, 3, 8}, S{1, 5, 1, 2}}) {
    const int W = c.n * c.D, N = c.B * c.T;
    MatF x = rattn_test::randn<MatF>(N, W, rng), dy = rattn_test::randn<MatF>(N, W, rng);
    cu::DeviceBuffer<float> bx(x.size()), bdy(dy.size()), by(x.size()), bdx(x.size());
    to_device(bx, x);
    to_device(bdy, dy);
    for (int version = 1; version <= cu::kRopeVersions; ++version) {
      CAPTURE(version); CAPTURE(c.B); CAPTURE(c.T);
      by.fill_nan();
      bdx.fill_nan();
      cu::rope_forward_batch(bx.data(), by.data(), c.B, c.T, c.n, c.D, 5e5, version);
      cu::rope_backward_batch(bdy.data(), bdx.data(), c.B, c.T, c.n, c.D, 5e5, version);
      const MatF y = from_device(by, N, W), dx = from_device(bdx, N, W);
      for (int b = 0; b < c.B; ++b) {  // sequence b restarts at position 0
        CAPTURE(b);
        const MatF xb = x.middleRows(b * c.T, c.T), dyb = dy.middleRows(b * c.T, c.T);
        const MatD y64 = ref::rope_forward(MatD(xb.cast<double>()), c.n, 5e5, 0);
        const MatD dx64 = ref::rope_backward(MatD(dyb.cast<double>()), c.n, 5e5, 0);
        check_vs_ref("y", y.middleRows(b * c.T, c.T), ref::rope_forward(xb, c.n, 5e5, 0), y64, kFloorFwd,
                     rattn_test::family_rms(y64));
        check_vs_ref("dx", dx.middleRows(b * c.T, c.T), ref::rope_backward(dyb, c.n, 5e5, 0), dx64, kFloorBwd,
                     rattn_test::family_rms(dx64));
      }
      CHECK(by.guards_intact());
      CHECK(bdx.guards_intact());
    }
  }
}
