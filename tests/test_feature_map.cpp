// Tests for ref/feature_map.h: the RLA feature maps phi (spec §2.4), forward values,
// backward against central finite differences in double, float against double.
#include <doctest/doctest.h>

#include <cstdio>

#include "ref/feature_map.h"
#include "tests/check.h"

using ref::FeatureMap;
using ref::Mat;
using namespace rattn_test;

static const FeatureMap kAllMaps[] = {FeatureMap::sm2, FeatureMap::relu2, FeatureMap::identity};

TEST_CASE("feature map names parse and print, and give the feature width") {
  for (FeatureMap fm : kAllMaps) CHECK(ref::parse_feature_map(ref::to_string(fm)) == fm);
  CHECK_THROWS_AS(ref::parse_feature_map("softmax"), std::invalid_argument);
  CHECK(ref::feature_dim(FeatureMap::sm2, 6) == 12);
  CHECK(ref::feature_dim(FeatureMap::relu2, 6) == 12);
  CHECK(ref::feature_dim(FeatureMap::identity, 6) == 6);
}

TEST_CASE("sm2 is [softmax(x), softmax(-x)] per head, stable for large inputs") {
  std::mt19937_64 rng(11);
  const int N = 5, n = 3, D = 6;
  Mat<double> x = randn<Mat<double>>(N, n * D, rng, 2.0);
  Mat<double> y = ref::phi_forward_heads(FeatureMap::sm2, x, n);
  REQUIRE(y.rows() == N);
  REQUIRE(y.cols() == n * 2 * D);
  // Straight from the definition, without max subtraction (safe at this scale).
  Mat<double> want(N, n * 2 * D);
  for (int t = 0; t < N; ++t)
    for (int h = 0; h < n; ++h) {
      Eigen::ArrayXd xh = x.row(t).segment(h * D, D).transpose().array();
      Eigen::ArrayXd e1 = xh.exp(), e2 = (-xh).exp();
      want.row(t).segment(h * 2 * D, D) = (e1 / e1.sum()).matrix().transpose();
      want.row(t).segment(h * 2 * D + D, D) = (e2 / e2.sum()).matrix().transpose();
    }
  check_close("sm2 forward", y, want, 1e-14);
  // Each half is a probability vector, so phi(k) sums to 2 (spec §2.4: the bound on phi(q).phi(k)).
  for (int t = 0; t < N; ++t)
    for (int h = 0; h < n; ++h) CHECK(y.row(t).segment(h * 2 * D, 2 * D).sum() == doctest::Approx(2.0));
  // Max subtraction keeps huge inputs finite (exp(1000) would overflow without it).
  Mat<double> big = x * 500.0;
  Mat<double> yb = ref::phi_forward_heads(FeatureMap::sm2, big, n);
  CHECK(yb.allFinite());
  CHECK(yb.minCoeff() >= 0.0);
  Mat<float> yf = ref::phi_forward_heads(FeatureMap::sm2, Mat<float>(big.cast<float>()), n);
  CHECK(yf.allFinite());
}

TEST_CASE("relu2 and identity forward values") {
  Mat<double> x(1, 4);
  x << -1.5, 0.0, 2.0, -0.25;
  Mat<double> r = ref::phi_forward(FeatureMap::relu2, x);
  Mat<double> want_r(1, 8);
  want_r << 0, 0, 2, 0, 1.5, 0, 0, 0.25;
  check_close("relu2 forward", r, want_r, 0.0);
  Mat<double> id = ref::phi_forward(FeatureMap::identity, x);
  check_close("identity forward", id, x, 0.0);
}

TEST_CASE("phi backward matches finite differences (double) for every feature map") {
  std::mt19937_64 rng(12);
  const int N = 4, n = 2;
  for (FeatureMap fm : kAllMaps)
    for (int D : {4, 6}) {
      CAPTURE(ref::to_string(fm));
      CAPTURE(D);
      const int Dp = ref::feature_dim(fm, D);
      Mat<double> x = randn<Mat<double>>(N, n * D, rng);
      Mat<double> R = randn<Mat<double>>(N, n * Dp, rng);  // loss = sum(phi(x) * R), so dphi = R
      auto loss = [&] { return (ref::phi_forward_heads(fm, x, n).array() * R.array()).sum(); };
      Mat<double> dx = ref::phi_backward_heads(fm, x, R, n);
      CHECK(grad_check(std::string("x ") + ref::to_string(fm), loss, x, dx, 1e-6));
      // The single-head entry points are the same kernels on an (N, D) matrix.
      Mat<double> x1 = x.leftCols(D);
      Mat<double> R1 = R.leftCols(Dp);
      auto loss1 = [&] { return (ref::phi_forward(fm, x1).array() * R1.array()).sum(); };
      CHECK(grad_check(std::string("x (one head) ") + ref::to_string(fm), loss1, x1,
                       ref::phi_backward(fm, x1, R1), 1e-6));
    }
}

TEST_CASE("phi float agrees with double") {
  std::mt19937_64 rng(13);
  const int N = 7, n = 2, D = 6;
  for (FeatureMap fm : kAllMaps) {
    CAPTURE(ref::to_string(fm));
    const int Dp = ref::feature_dim(fm, D);
    Mat<double> x = randn<Mat<double>>(N, n * D, rng);
    Mat<double> g = randn<Mat<double>>(N, n * Dp, rng);
    Mat<float> xf = x.cast<float>(), gf = g.cast<float>();
    CloseReport fwd = compare(ref::phi_forward_heads(fm, xf, n), ref::phi_forward_heads(fm, x, n));
    CloseReport bwd = compare(ref::phi_backward_heads(fm, xf, gf, n), ref::phi_backward_heads(fm, x, g, n));
    std::printf("phi %-8s float vs double: forward rel RMS %.2e, backward rel RMS %.2e\n",
                ref::to_string(fm), fwd.rel_rms, bwd.rel_rms);
    check_close("phi forward float vs double", ref::phi_forward_heads(fm, xf, n),
                ref::phi_forward_heads(fm, x, n), 1e-6);
    check_close("phi backward float vs double", ref::phi_backward_heads(fm, xf, gf, n),
                ref::phi_backward_heads(fm, x, g, n), 1e-6);
  }
}

TEST_CASE("phi rejects a width that does not split into heads") {
  Mat<double> x = Mat<double>::Zero(2, 7);
  CHECK_THROWS_AS(ref::phi_forward_heads(FeatureMap::sm2, x, 2), std::invalid_argument);
  Mat<double> dphi = Mat<double>::Zero(2, 5);
  CHECK_THROWS_AS(ref::phi_backward(FeatureMap::sm2, x, dphi), std::invalid_argument);
}
