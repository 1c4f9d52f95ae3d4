// RMSNorm (block pre-norm) and group RMSNorm (per-head branch norm): forward against a direct
// formula, backward against central finite differences for every input and parameter, float vs
// double, and a demonstration that the gradient checker catches a wrong backward.
#include <doctest/doctest.h>

#include <cmath>

#include "ref/norm.h"
#include "tests/check.h"

using ref::Mat;
using ref::RowVec;
using namespace rattn_test;

namespace {

// loss = sum(y .* R): its gradient with respect to y is R, so backward(R) is d loss / d input.
double dot(const Mat<double>& a, const Mat<double>& b) { return (a.array() * b.array()).sum(); }

// Central differences of f with respect to every element of x (the same formula as grad_check,
// kept here so a test can look at the numeric gradient itself).
template <class M>
M fd_gradient(const std::function<double()>& f, M& x, double h = 1e-5) {
  M numeric(x.rows(), x.cols());
  for (long i = 0; i < x.size(); ++i) {
    const double saved = x.data()[i];
    x.data()[i] = saved + h;
    const double fp = f();
    x.data()[i] = saved - h;
    const double fm = f();
    x.data()[i] = saved;
    numeric.data()[i] = (fp - fm) / (2 * h);
  }
  return numeric;
}

}  // namespace

TEST_CASE("rmsnorm forward: each row divided by its RMS and scaled by gamma") {
  std::mt19937_64 rng(11);
  const long N = 5, C = 7;
  const double eps = 1e-6;
  Mat<double> x = randn<Mat<double>>(N, C, rng);
  RowVec<double> gamma = randn<RowVec<double>>(1, C, rng);
  Mat<double> y = ref::rmsnorm_forward(x, gamma, eps);
  Mat<double> want(N, C);
  for (long n = 0; n < N; ++n) {
    double ms = 0;
    for (long c = 0; c < C; ++c) ms += x(n, c) * x(n, c) / C;
    for (long c = 0; c < C; ++c) want(n, c) = x(n, c) / std::sqrt(ms + eps) * gamma(c);
  }
  check_close("rmsnorm y", y, want, 1e-15);
  // with gamma = 1 every output row has mean square 1 / (1 + eps / mean(x^2)) ~ 1
  Mat<double> y1 = ref::rmsnorm_forward(x, RowVec<double>::Ones(C).eval(), eps);
  for (long n = 0; n < N; ++n) CHECK(y1.row(n).squaredNorm() / C == doctest::Approx(1.0).epsilon(1e-5));
}

TEST_CASE("rmsnorm backward matches finite differences (dx, dgamma)") {
  // eps = 0.3 is large on purpose: with x of unit scale it changes r visibly, so a backward that
  // drops eps or puts it in the wrong place fails. N = 1 is the decode shape.
  for (double eps : {1e-6, 0.3}) {
    for (long N : {1L, 5L}) {
      CAPTURE(eps);
      CAPTURE(N);
      std::mt19937_64 rng(100 + N);
      const long C = 7;
      Mat<double> x = randn<Mat<double>>(N, C, rng);
      RowVec<double> gamma = randn<RowVec<double>>(1, C, rng);
      Mat<double> R = randn<Mat<double>>(N, C, rng);
      auto f = [&] { return dot(ref::rmsnorm_forward(x, gamma, eps), R); };
      // dgamma is accumulated: start from a non-zero value and check the increment
      RowVec<double> dgamma0 = randn<RowVec<double>>(1, C, rng), dgamma = dgamma0;
      Mat<double> dx = ref::rmsnorm_backward(x, gamma, eps, R, dgamma);
      grad_check("x", f, x, dx);
      RowVec<double> inc = dgamma - dgamma0;
      grad_check("gamma", f, gamma, inc);
    }
  }
}

TEST_CASE("group rmsnorm forward normalises each (t, h) block separately") {
  std::mt19937_64 rng(12);
  const long T = 5, H = 3, D = 4;
  const double eps = 1e-8;
  Mat<double> x = randn<Mat<double>>(T, H * D, rng);
  // give the heads very different scales: a whole-row norm would mix them
  for (long t = 0; t < T; ++t) x.row(t).segment(D, D) *= 100.0;
  Mat<double> gamma = randn<Mat<double>>(H, D, rng);
  Mat<double> y = ref::group_rmsnorm_forward(x, gamma, eps);
  Mat<double> want(T, H * D);
  for (long t = 0; t < T; ++t)
    for (long h = 0; h < H; ++h) {
      double ms = 0;
      for (long d = 0; d < D; ++d) ms += x(t, h * D + d) * x(t, h * D + d) / D;
      for (long d = 0; d < D; ++d)
        want(t, h * D + d) = x(t, h * D + d) / std::sqrt(ms + eps) * gamma(h, d);
    }
  check_close("group_rmsnorm y", y, want, 1e-15);
  // GRMS(0) = 0 (spec §2.5: RLA rows with t <= w are exactly zero and stay zero)
  Mat<double> z = Mat<double>::Zero(2, H * D);
  CHECK(ref::group_rmsnorm_forward(z, gamma, eps).cwiseAbs().maxCoeff() == 0.0);
}

TEST_CASE("group rmsnorm backward matches finite differences (dx, dgamma)") {
  struct Shape { long T, H, D; double eps; };
  for (Shape s : {Shape{1, 4, 4, 1e-8}, Shape{5, 3, 4, 1e-6}, Shape{13, 2, 6, 0.3}}) {
    CAPTURE(s.T);
    CAPTURE(s.H);
    CAPTURE(s.D);
    CAPTURE(s.eps);
    std::mt19937_64 rng(200 + s.T);
    Mat<double> x = randn<Mat<double>>(s.T, s.H * s.D, rng);
    Mat<double> gamma = randn<Mat<double>>(s.H, s.D, rng);
    Mat<double> R = randn<Mat<double>>(s.T, s.H * s.D, rng);
    auto f = [&] { return dot(ref::group_rmsnorm_forward(x, gamma, s.eps), R); };
    Mat<double> dgamma0 = randn<Mat<double>>(s.H, s.D, rng), dgamma = dgamma0;
    Mat<double> dx = ref::group_rmsnorm_backward(x, gamma, s.eps, R, dgamma);
    grad_check("x", f, x, dx);
    Mat<double> inc = dgamma - dgamma0;
    grad_check("gamma", f, gamma, inc);
  }
}

TEST_CASE("norms in float agree with double") {
  std::mt19937_64 rng(13);
  const long T = 9, H = 3, D = 6, C = H * D;
  Mat<double> x = randn<Mat<double>>(T, C, rng), R = randn<Mat<double>>(T, C, rng);
  RowVec<double> g1 = randn<RowVec<double>>(1, C, rng);
  Mat<double> gH = randn<Mat<double>>(H, D, rng);
  Mat<float> xf = x.cast<float>(), Rf = R.cast<float>(), gHf = gH.cast<float>();
  RowVec<float> g1f = g1.cast<float>();

  check_close("rmsnorm y f32", ref::rmsnorm_forward(xf, g1f, 1e-6f), ref::rmsnorm_forward(x, g1, 1e-6), 1e-6);
  RowVec<double> dg1 = RowVec<double>::Zero(C);
  RowVec<float> dg1f = RowVec<float>::Zero(C);
  check_close("rmsnorm dx f32", ref::rmsnorm_backward(xf, g1f, 1e-6f, Rf, dg1f),
              ref::rmsnorm_backward(x, g1, 1e-6, R, dg1), 1e-5);
  check_close("rmsnorm dgamma f32", dg1f, dg1, 1e-5);

  check_close("group_rmsnorm y f32", ref::group_rmsnorm_forward(xf, gHf, 1e-8f),
              ref::group_rmsnorm_forward(x, gH, 1e-8), 1e-6);
  Mat<double> dgH = Mat<double>::Zero(H, D);
  Mat<float> dgHf = Mat<float>::Zero(H, D);
  check_close("group_rmsnorm dx f32", ref::group_rmsnorm_backward(xf, gHf, 1e-8f, Rf, dgHf),
              ref::group_rmsnorm_backward(x, gH, 1e-8, R, dgH), 1e-5);
  check_close("group_rmsnorm dgamma f32", dgHf, dgH, 1e-5);
}

TEST_CASE("norm shape errors are reported") {
  Mat<double> x = Mat<double>::Ones(2, 6), gamma = Mat<double>::Ones(2, 4);
  CHECK_THROWS_AS(ref::group_rmsnorm_forward(x, gamma, 1e-8), std::invalid_argument);
  CHECK_THROWS_AS(ref::rmsnorm_forward(x, RowVec<double>::Ones(5).eval(), 1e-8), std::invalid_argument);
}

TEST_CASE("the gradient checker catches a wrong backward and points at it") {
  std::mt19937_64 rng(14);
  const long T = 5, H = 3, D = 4;
  const double eps = 1e-6;
  Mat<double> x = randn<Mat<double>>(T, H * D, rng);
  Mat<double> gamma = randn<Mat<double>>(H, D, rng);
  Mat<double> R = randn<Mat<double>>(T, H * D, rng);
  auto f = [&] { return dot(ref::group_rmsnorm_forward(x, gamma, eps), R); };
  Mat<double> dgamma = Mat<double>::Zero(H, D);
  Mat<double> dx = ref::group_rmsnorm_backward(x, gamma, eps, R, dgamma);
  Mat<double> numeric = fd_gradient(f, x);
  REQUIRE(compare(dx, numeric).rel_rms < 1e-8);  // the real backward is right

  SUBCASE("one element off by 1e-4: the report names that element and both values") {
    Mat<double> wrong = dx;
    const long row = 3, col = 7;  // (t = 3, head 1, d = 3)
    wrong(row, col) += 1e-4;
    CloseReport r = compare(wrong, numeric);
    CHECK(r.shape_ok);
    CHECK(r.finite);
    CHECK(r.rel_rms > 1e-6);  // grad_check's default tolerance would fail it
    CHECK(r.worst == row * (H * D) + col);
    CHECK(r.worst_got == wrong(row, col));
    CHECK(r.worst_want == numeric(row, col));
    CHECK(r.worst_want == doctest::Approx(dx(row, col)).epsilon(1e-8));
  }
  SUBCASE("a backward that forgets the 1/r^3 term is far off") {
    // the classic mistake: treat r as a constant, dx = gamma * dy / r
    Mat<double> wrong(T, H * D);
    for (long t = 0; t < T; ++t)
      for (long h = 0; h < H; ++h) {
        const double r = std::sqrt(x.row(t).segment(h * D, D).squaredNorm() / D + eps);
        for (long d = 0; d < D; ++d) wrong(t, h * D + d) = gamma(h, d) * R(t, h * D + d) / r;
      }
    CHECK(compare(wrong, numeric).rel_rms > 1e-2);
  }
}
