// Linear layer, token embedding and SwiGLU MLP: forward against direct loops, backward against
// central finite differences for every input and parameter, float vs double.
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "ref/embedding.h"
#include "ref/linear.h"
#include "ref/mlp.h"
#include "tests/check.h"

using ref::Mat;
using namespace rattn_test;

namespace {
double dot(const Mat<double>& a, const Mat<double>& b) { return (a.array() * b.array()).sum(); }
double silu(double z) { return z / (1.0 + std::exp(-z)); }
}  // namespace

TEST_CASE("linear forward is x W, element by element") {
  std::mt19937_64 rng(21);
  const long N = 5, IN = 7, OUT = 3;
  Mat<double> x = randn<Mat<double>>(N, IN, rng), W = randn<Mat<double>>(IN, OUT, rng);
  Mat<double> want = Mat<double>::Zero(N, OUT);
  for (long n = 0; n < N; ++n)
    for (long o = 0; o < OUT; ++o)
      for (long i = 0; i < IN; ++i) want(n, o) += x(n, i) * W(i, o);
  check_close("linear y", ref::linear_forward(x, W), want, 1e-15);
  CHECK_THROWS_AS(ref::linear_forward(x, Mat<double>(Mat<double>::Ones(6, 3))), std::invalid_argument);
}

TEST_CASE("linear backward matches finite differences (dx, dW accumulated)") {
  for (long N : {1L, 5L}) {
    CAPTURE(N);
    std::mt19937_64 rng(22 + N);
    const long IN = 7, OUT = 3;
    Mat<double> x = randn<Mat<double>>(N, IN, rng), W = randn<Mat<double>>(IN, OUT, rng);
    Mat<double> R = randn<Mat<double>>(N, OUT, rng);
    auto f = [&] { return dot(ref::linear_forward(x, W), R); };
    Mat<double> dW0 = randn<Mat<double>>(IN, OUT, rng), dW = dW0;
    Mat<double> dx = ref::linear_backward(x, W, R, dW);
    grad_check("x", f, x, dx);
    Mat<double> inc = dW - dW0;
    grad_check("W", f, W, inc);
  }
}

TEST_CASE("embedding forward looks up rows; backward accumulates repeated tokens") {
  std::mt19937_64 rng(23);
  const long V = 11, C = 5;
  const std::vector<int> tokens = {3, 0, 10, 3, 7, 3, 0};  // repeats on purpose
  const long N = long(tokens.size());
  Mat<double> E = randn<Mat<double>>(V, C, rng);
  Mat<double> x = ref::embedding_forward(tokens, E);
  REQUIRE(x.rows() == N);
  for (long n = 0; n < N; ++n) CHECK(x.row(n) == E.row(tokens[n]));

  Mat<double> R = randn<Mat<double>>(N, C, rng);
  auto f = [&] { return dot(ref::embedding_forward(tokens, E), R); };
  Mat<double> dE0 = randn<Mat<double>>(V, C, rng), dE = dE0;
  ref::embedding_backward(tokens, R, dE);
  Mat<double> inc = dE - dE0;
  grad_check("E", f, E, inc);
  // rows of unused tokens are untouched
  CHECK(inc.row(1).cwiseAbs().maxCoeff() == 0.0);

  CHECK_THROWS_AS(ref::embedding_forward(std::vector<int>{0, 11}, E), std::out_of_range);
  CHECK_THROWS_AS(ref::embedding_forward(std::vector<int>{-1}, E), std::out_of_range);
}

TEST_CASE("swiglu forward is (silu(x W1) * (x W3)) W2") {
  std::mt19937_64 rng(24);
  const long N = 5, C = 6, F = 9;
  Mat<double> x = randn<Mat<double>>(N, C, rng);
  ref::SwiGLUParams<double> p{randn<Mat<double>>(C, F, rng), randn<Mat<double>>(C, F, rng),
                              randn<Mat<double>>(F, C, rng)};
  Mat<double> want = Mat<double>::Zero(N, C);
  for (long n = 0; n < N; ++n)
    for (long j = 0; j < F; ++j) {
      double a = 0, b = 0;
      for (long c = 0; c < C; ++c) {
        a += x(n, c) * p.W1(c, j);
        b += x(n, c) * p.W3(c, j);
      }
      const double g = silu(a) * b;
      for (long c = 0; c < C; ++c) want(n, c) += g * p.W2(j, c);
    }
  check_close("swiglu y", ref::swiglu_forward(x, p), want, 1e-14);
  // silu stays finite at extreme pre-activations
  Mat<double> big = x * 1e4;
  CHECK(ref::swiglu_forward(big, p).allFinite());
}

TEST_CASE("swiglu backward matches finite differences (dx, dW1, dW3, dW2)") {
  for (long N : {1L, 5L}) {
    CAPTURE(N);
    std::mt19937_64 rng(25 + N);
    const long C = 6, F = 9;
    Mat<double> x = randn<Mat<double>>(N, C, rng);
    ref::SwiGLUParams<double> p{randn<Mat<double>>(C, F, rng), randn<Mat<double>>(C, F, rng),
                                randn<Mat<double>>(F, C, rng)};
    Mat<double> R = randn<Mat<double>>(N, C, rng);
    auto f = [&] { return dot(ref::swiglu_forward(x, p), R); };
    ref::SwiGLUParams<double> dp0{randn<Mat<double>>(C, F, rng), randn<Mat<double>>(C, F, rng),
                                  randn<Mat<double>>(F, C, rng)};
    ref::SwiGLUParams<double> dp = dp0;
    Mat<double> dx = ref::swiglu_backward(x, p, R, dp);
    grad_check("x", f, x, dx);
    Mat<double> inc1 = dp.W1 - dp0.W1, inc3 = dp.W3 - dp0.W3, inc2 = dp.W2 - dp0.W2;
    grad_check("W1", f, p.W1, inc1);
    grad_check("W3", f, p.W3, inc3);
    grad_check("W2", f, p.W2, inc2);
  }
}

TEST_CASE("linear, embedding and swiglu in float agree with double") {
  std::mt19937_64 rng(26);
  const long N = 7, C = 6, F = 10;
  Mat<double> x = randn<Mat<double>>(N, C, rng), R = randn<Mat<double>>(N, C, rng);
  ref::SwiGLUParams<double> p{randn<Mat<double>>(C, F, rng), randn<Mat<double>>(C, F, rng),
                              randn<Mat<double>>(F, C, rng)};
  ref::SwiGLUParams<float> pf{p.W1.cast<float>(), p.W3.cast<float>(), p.W2.cast<float>()};
  Mat<float> xf = x.cast<float>(), Rf = R.cast<float>();

  check_close("linear y f32", ref::linear_forward(xf, pf.W1), ref::linear_forward(x, p.W1), 1e-6);
  Mat<double> dW = Mat<double>::Zero(C, F);
  Mat<float> dWf = Mat<float>::Zero(C, F);
  Mat<double> Rl = randn<Mat<double>>(N, F, rng);
  Mat<float> Rlf = Rl.cast<float>();
  check_close("linear dx f32", ref::linear_backward(xf, pf.W1, Rlf, dWf), ref::linear_backward(x, p.W1, Rl, dW), 1e-6);
  check_close("linear dW f32", dWf, dW, 1e-6);

  const std::vector<int> tokens = {1, 4, 1, 0, 5, 2, 1};
  Mat<double> E = randn<Mat<double>>(6, C, rng), dE = Mat<double>::Zero(6, C);
  Mat<float> Ef = E.cast<float>(), dEf = Mat<float>::Zero(6, C);
  check_close("embedding x f32", ref::embedding_forward(tokens, Ef), ref::embedding_forward(tokens, E), 1e-7);
  ref::embedding_backward(tokens, R, dE);
  ref::embedding_backward(tokens, Rf, dEf);
  check_close("embedding dE f32", dEf, dE, 1e-6);

  check_close("swiglu y f32", ref::swiglu_forward(xf, pf), ref::swiglu_forward(x, p), 1e-5);
  ref::SwiGLUParams<double> dp{Mat<double>::Zero(C, F), Mat<double>::Zero(C, F), Mat<double>::Zero(F, C)};
  ref::SwiGLUParams<float> dpf{Mat<float>::Zero(C, F), Mat<float>::Zero(C, F), Mat<float>::Zero(F, C)};
  check_close("swiglu dx f32", ref::swiglu_backward(xf, pf, Rf, dpf), ref::swiglu_backward(x, p, R, dp), 1e-5);
  check_close("swiglu dW1 f32", dpf.W1, dp.W1, 1e-5);
  check_close("swiglu dW3 f32", dpf.W3, dp.W3, 1e-5);
  check_close("swiglu dW2 f32", dpf.W2, dp.W2, 1e-5);
}
