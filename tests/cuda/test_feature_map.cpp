// tests/cuda/test_feature_map.cpp: cu::phi_forward / phi_backward (every version, every feature map)
// against ref/feature_map.h in double; D below a warp, D above the register cache (> 128), several heads.
#include <random>

#include "cuda/feature_map.h"
#include "ref/feature_map.h"
#include "tests/cuda/ops_check.h"

using namespace cuops_test;

static_assert(int(cu::FeatureMap::sm2) == int(ref::FeatureMap::sm2) &&
                  int(cu::FeatureMap::relu2) == int(ref::FeatureMap::relu2) &&
                  int(cu::FeatureMap::identity) == int(ref::FeatureMap::identity),
              "cu::FeatureMap and ref::FeatureMap must list the maps in the same order");

TEST_CASE("phi forward/backward against ref64") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(41);
  struct S { int N, n, D; };
  std::vector<S> shapes = small_run() ? std::vector<S>{{7, 3, 16}}
                                      : std::vector<S>{{1, 1, 16}, {7, 3, 16}, {65, 2, 32}, {5, 1, 64},
                                                       {3, 2, 160}, {4, 1, 5}, {9, 4, 33}};
  for (ref::FeatureMap rfm : {ref::FeatureMap::sm2, ref::FeatureMap::relu2, ref::FeatureMap::identity})
    for (S s : shapes) {
      const auto fm = static_cast<cu::FeatureMap>(int(rfm));
      const int Dp = ref::feature_dim(rfm, s.D);
      REQUIRE(cu::feature_dim(fm, s.D) == Dp);
      MatF x = rattn_test::randn<MatF>(s.N, s.n * s.D, rng, 2.0);
      MatF dphi = rattn_test::randn<MatF>(s.N, s.n * Dp, rng);
      MatD x64 = x.cast<double>(), dphi64 = dphi.cast<double>();
      MatF y32 = ref::phi_forward_heads(rfm, x, s.n), dx32 = ref::phi_backward_heads(rfm, x, dphi, s.n);
      MatD y64 = ref::phi_forward_heads(rfm, x64, s.n), dx64 = ref::phi_backward_heads(rfm, x64, dphi64, s.n);
      cu::DeviceBuffer<float> bx(x.size()), bdphi(dphi.size()), by(y32.size()), bdx(x.size());
      to_device(bx, x);
      to_device(bdphi, dphi);
      for (int version = 1; version <= cu::kFeatureMapVersions; ++version) {
        CAPTURE(version); CAPTURE(ref::to_string(rfm)); CAPTURE(s.N); CAPTURE(s.n); CAPTURE(s.D);
        by.fill_nan();
        bdx.fill_nan();
        cu::phi_forward(fm, bx.data(), by.data(), s.N, s.n, s.D, version);
        cu::phi_backward(fm, bx.data(), bdphi.data(), bdx.data(), s.N, s.n, s.D, version);
        check_vs_ref("phi", from_device(by, s.N, s.n * Dp), y32, y64, kFloorFwd, rattn_test::family_rms(y64));
        check_vs_ref("dx", from_device(bdx, s.N, s.n * s.D), dx32, dx64, kFloorBwd, rattn_test::family_rms(dx64));
        CHECK(by.guards_intact());
        CHECK(bdx.guards_intact());
      }
    }
}
