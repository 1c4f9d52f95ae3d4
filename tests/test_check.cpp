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

TEST_CASE("compare with a scale: rounding noise against an exact zero is judged by the family's scale") {
  // dq at w = 0 is exactly zero; an fp32 kernel returns noise of a few float epsilons times the scale
  // of its inputs. Against the zero tensor alone that noise is an absolute number whose size depends on
  // the CPU; against the family's scale (here rms 1) it is what it is.
  Mat<double> zero = Mat<double>::Zero(4, 8), family = Mat<double>::Ones(4, 8);
  Mat<double> noise = zero;
  noise(1, 3) = 3e-7;
  noise(2, 5) = -2e-7;
  const double scale = family_rms(zero, family);
  CHECK(scale == doctest::Approx(std::sqrt(0.5)));
  CHECK(compare(noise, zero, scale).rel_rms < 1e-7);
  // A real error (one element off by 1e-3 of the scale) still fails a 1e-5 tolerance.
  Mat<double> wrong = zero;
  wrong(0, 0) = 1e-3;
  CHECK(compare(wrong, zero, scale).rel_rms > 1e-5);
  // The scale is only a floor: a reference larger than it is its own yardstick.
  Mat<double> big = 100 * family, big_off = big;
  big_off(0, 0) += 1.0;
  CHECK(compare(big_off, big, scale).rel_rms == doctest::Approx(compare(big_off, big).rel_rms));
}
