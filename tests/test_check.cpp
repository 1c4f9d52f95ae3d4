// The comparison and gradient-check helpers themselves: a checker that cannot fail is worthless.
#include <doctest/doctest.h>

#include "ref/tensor.h"
#include "tests/check.h"

using ref::Mat;
using namespace rattn_test;

TEST_CASE("compare finds the worst element and its index") {
  Mat<double> want(2, 3), got(2, 3);
  want << 1, 2, 3, 4, 5, 6;
  got = want;
  got(1, 2) = 6.5;
  got(0, 1) = 2.1;
  CloseReport r = compare(got, want);
  CHECK(r.shape_ok);
  CHECK(r.worst == 5);  // flat index of (1, 2)
  CHECK(r.worst_got == 6.5);
  CHECK(r.worst_want == 6);
  CHECK(r.rel_rms == doctest::Approx(std::sqrt(0.25 + 0.01) / std::sqrt(91.0)));
}

TEST_CASE("compare flags NaN and shape mismatch") {
  Mat<double> a = Mat<double>::Ones(2, 2), b = a;
  a(0, 0) = std::nan("");
  CHECK_FALSE(compare(a, b).finite);
  Mat<double> c = Mat<double>::Ones(2, 3);
  CHECK_FALSE(compare(c, b).shape_ok);
}

TEST_CASE("finite differences reproduce a known gradient and expose a wrong one") {
  // f(x) = sum(sin(x) * x): df/dx = cos(x) * x + sin(x)
  std::mt19937_64 rng(1);
  Mat<double> x = randn<Mat<double>>(3, 4, rng);
  auto f = [&] { return (x.array().sin() * x.array()).sum(); };
  Mat<double> g = (x.array().cos() * x.array() + x.array().sin()).matrix();
  CHECK(grad_check("x", f, x, g));
  Mat<double> wrong = g;
  wrong(2, 1) += 1e-3;
  // Compute the numeric gradient the same way and verify the comparison would fail.
  Mat<double> numeric(3, 4);
  for (long i = 0; i < x.size(); ++i) {
    double s = x.data()[i];
    x.data()[i] = s + 1e-5;
    double fp = f();
    x.data()[i] = s - 1e-5;
    double fm = f();
    x.data()[i] = s;
    numeric.data()[i] = (fp - fm) / 2e-5;
  }
  CloseReport r = compare(wrong, numeric);
  CHECK(r.rel_rms > 1e-6);
  CHECK(r.worst == 2 * 4 + 1);
}
