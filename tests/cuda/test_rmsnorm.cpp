// tests/cuda/test_rmsnorm.cpp: cu::rmsnorm_* and cu::group_rmsnorm_* (every version) against
// ref/norm.h in double; y, the saved rstd, dx and the accumulated dgamma each checked separately.
#include <cmath>
#include <random>

#include "cuda/rmsnorm.h"
#include "ref/norm.h"
#include "tests/cuda/ops_check.h"

using namespace cuops_test;

namespace {

// rstd for rows of D values: (R, D) -> (R, 1)
template <class S>
ref::Mat<S> rstd_of(const ref::Mat<S>& x_rows, S eps) {
  ref::Mat<S> r(x_rows.rows(), 1);
  for (long i = 0; i < x_rows.rows(); ++i)
    r(i, 0) = S(1) / std::sqrt(x_rows.row(i).squaredNorm() / S(x_rows.cols()) + eps);
  return r;
}

// One group-norm case; H = 1 and gamma a row vector is plain rmsnorm (group = false).
void run_case(int T, int H, int D, bool group, float eps, std::mt19937_64& rng) {
  const int HD = H * D;
  MatF x = rattn_test::randn<MatF>(T, HD, rng), dy = rattn_test::randn<MatF>(T, HD, rng);
  MatF gamma = rattn_test::randn<MatF>(H, D, rng, 0.5).array() + 1.0f;
  MatF dgamma0 = rattn_test::randn<MatF>(H, D, rng);
  if (T > 2) x.row(1).setZero();  // an all-zero row (what RLA gives for t <= w): y = 0, finite dx
  MatD x64 = x.cast<double>(), dy64 = dy.cast<double>(), gamma64 = gamma.cast<double>();

  MatF y32, dx32, dg32 = dgamma0;
  MatD y64, dx64, dg64 = dgamma0.cast<double>();
  if (group) {
    y32 = ref::group_rmsnorm_forward(x, gamma, eps);
    y64 = ref::group_rmsnorm_forward(x64, gamma64, double(eps));
    dx32 = ref::group_rmsnorm_backward(x, gamma, eps, dy, dg32);
    dx64 = ref::group_rmsnorm_backward(x64, gamma64, double(eps), dy64, dg64);
  } else {
    ref::RowVec<float> g32 = gamma.row(0), d32 = dg32.row(0);
    ref::RowVec<double> g64 = gamma64.row(0), d64 = dg64.row(0);
    y32 = ref::rmsnorm_forward(x, g32, eps);
    y64 = ref::rmsnorm_forward(x64, g64, double(eps));
    dx32 = ref::rmsnorm_backward(x, g32, eps, dy, d32);
    dx64 = ref::rmsnorm_backward(x64, g64, double(eps), dy64, d64);
    dg32.row(0) = d32;
    dg64.row(0) = d64;
  }
  // rows of D values: (T*H, D) views of x
  MatF xr = Eigen::Map<const MatF>(x.data(), long(T) * H, D);
  MatD xr64 = xr.cast<double>();
  MatF rstd32 = rstd_of(xr, eps);
  MatD rstd64 = rstd_of(xr64, double(eps));

  cu::DeviceBuffer<float> bx(x.size()), bg(gamma.size()), bdy(dy.size()), by(x.size()), brstd(size_t(T) * H),
      bdx(x.size()), bdg(gamma.size());
  to_device(bx, x);
  to_device(bg, gamma);
  to_device(bdy, dy);
  for (int version = 1; version <= cu::kRmsnormVersions; ++version) {
    CAPTURE(version); CAPTURE(T); CAPTURE(H); CAPTURE(D); CAPTURE(group);
    by.fill_nan();
    brstd.fill_nan();
    bdx.fill_nan();
    to_device(bdg, dgamma0);
    if (group) {
      cu::group_rmsnorm_forward(bx.data(), bg.data(), by.data(), brstd.data(), T, H, D, eps, version);
      cu::group_rmsnorm_backward(bx.data(), bg.data(), brstd.data(), bdy.data(), bdx.data(), bdg.data(), T, H, D,
                                 version);
    } else {
      cu::rmsnorm_forward(bx.data(), bg.data(), by.data(), brstd.data(), T, D, eps, version);
      cu::rmsnorm_backward(bx.data(), bg.data(), brstd.data(), bdy.data(), bdx.data(), bdg.data(), T, D, version);
    }
    check_vs_ref("y", from_device(by, T, HD), y32, y64, kFloorFwd, rattn_test::family_rms(y64));
    check_vs_ref("rstd", from_device(brstd, long(T) * H, 1), rstd32, rstd64, kFloorFwd, rattn_test::family_rms(rstd64));
    const double grad_scale = rattn_test::family_rms(dx64, dg64);
    check_vs_ref("dx", from_device(bdx, T, HD), dx32, dx64, kFloorBwd, grad_scale);
    check_vs_ref("dgamma (+=)", from_device(bdg, H, D), dg32, dg64, kFloorBwd, grad_scale);
    for (auto* b : {&by, &brstd, &bdx, &bdg}) CHECK(b->guards_intact());
  }
}

}  // namespace

TEST_CASE("rmsnorm forward/backward against ref64") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(7);
  for (auto [N, C] : small_run() ? std::vector<std::pair<int, int>>{{5, 33}}
                                 : std::vector<std::pair<int, int>>{{1, 1}, {5, 33}, {67, 64}, {9, 100}, {130, 20}})
    run_case(N, 1, C, false, 1e-5f, rng);
}

TEST_CASE("group_rmsnorm forward/backward against ref64 (eps 1e-8 as in the branch merge)") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(8);
  struct S { int T, H, D; };
  for (S s : small_run() ? std::vector<S>{{7, 3, 16}}
                         : std::vector<S>{{1, 1, 16}, {7, 3, 16}, {65, 2, 32}, {13, 4, 64}, {3, 5, 60}, {40, 1, 33}})
    run_case(s.T, s.H, s.D, true, 1e-8f, rng);
}

TEST_CASE("rmsnorm as qk-norm: rows = T*H (or T*G) of C = D, eps 1e-5, D = 16, 32, 64, 128") {
  // spec §2.9: the attention core runs cu::rmsnorm_* on the (B*T*heads, D) view of q and k with one
  // (D) scale; these are those shapes at the head dims a model uses (T = 9, H = 4 query heads, G = 2).
  REQUIRE_DEVICE();
  std::mt19937_64 rng(9);
  for (int D : small_run() ? std::vector<int>{32} : std::vector<int>{16, 32, 64, 128})
    for (int heads : {4, 2}) run_case(9 * heads, 1, D, false, 1e-5f, rng);
}

TEST_CASE("rmsnorm: unknown version throws") {
  REQUIRE_DEVICE();
  cu::DeviceBuffer<float> b(4), r(1);
  CHECK_THROWS(cu::rmsnorm_forward(b.data(), b.data(), b.data(), r.data(), 1, 4, 1e-5f, 3));
}
