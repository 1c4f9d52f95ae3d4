// RoPE (ref/rope.h) and windowed causal attention (ref/attention.h): values against hand-written
// formulas and a brute-force masked softmax, the window boundary by perturbation, and every
// gradient against central finite differences in double.
#include <doctest/doctest.h>

#include <cmath>
#include <random>

#include "ref/attention.h"
#include "ref/rope.h"
#include "tests/check.h"

using ref::Mat;
using namespace rattn_test;

namespace {

// sum(W .* y): a scalar loss with a random upstream gradient W, so dL/dy = W.
double dot_all(const Mat<double>& W, const Mat<double>& y) { return (W.array() * y.array()).sum(); }

// Brute force: the full (T, T) score matrix, an explicit window mask, softmax over the unmasked
// entries. Written independently of attention.h (no shared helper).
template <class S>
Mat<S> attention_bruteforce(const Mat<S>& q, const Mat<S>& k, const Mat<S>& v, int H, int G, int w, S scale) {
  const long T = q.rows(), D = q.cols() / H;
  Mat<S> o = Mat<S>::Zero(T, q.cols());
  for (int h = 0; h < H; ++h) {
    const int g = h / (H / G);
    Mat<S> scores = q.middleCols(h * D, D) * k.middleCols(g * D, D).transpose() * scale;  // (T, T)
    for (long t = 0; t < T; ++t) {
      double m = -1e300;
      for (long j = 0; j < T; ++j) {
        bool visible = j <= t && (w < 0 || t - j <= w);
        if (visible) m = std::max(m, double(scores(t, j)));
      }
      double l = 0;
      Mat<double> acc = Mat<double>::Zero(1, D);
      for (long j = 0; j < T; ++j) {
        bool visible = j <= t && (w < 0 || t - j <= w);
        if (!visible) continue;
        double p = std::exp(double(scores(t, j)) - m);
        l += p;
        acc += p * v.block(j, g * D, 1, D).template cast<double>();
      }
      o.block(t, h * D, 1, D) = (acc / l).cast<S>();
    }
  }
  return o;
}

}  // namespace

TEST_CASE("rope: known rotation angles, norm preserved, pos0 offset") {
  // D = 4, theta = 100: pair 0 rotates by pos, pair 1 by pos * 100^(-1/2) = pos / 10.
  const double theta = 100.0;
  Mat<double> x(3, 4);
  x << 1, 2, 3, 4,  //
      -1, 0.5, 2, -3,  //
      0.25, -2, 1, 1;
  Mat<double> y = ref::rope_forward(x, 1, theta);
  for (long r = 0; r < 3; ++r) {
    double a0 = double(r), a1 = double(r) / 10.0;
    CHECK(y(r, 0) == doctest::Approx(x(r, 0) * std::cos(a0) - x(r, 1) * std::sin(a0)).epsilon(1e-14));
    CHECK(y(r, 1) == doctest::Approx(x(r, 0) * std::sin(a0) + x(r, 1) * std::cos(a0)).epsilon(1e-14));
    CHECK(y(r, 2) == doctest::Approx(x(r, 2) * std::cos(a1) - x(r, 3) * std::sin(a1)).epsilon(1e-14));
    CHECK(y(r, 3) == doctest::Approx(x(r, 2) * std::sin(a1) + x(r, 3) * std::cos(a1)).epsilon(1e-14));
    CHECK(y.row(r).norm() == doctest::Approx(x.row(r).norm()).epsilon(1e-14));
  }
  CHECK(y.row(0) == x.row(0));  // position 0: identity

  // pos0: row r of rope(x, pos0) equals row pos0 + r of a longer sequence.
  std::mt19937_64 rng(11);
  Mat<double> big = randn<Mat<double>>(9, 12, rng);
  Mat<double> ybig = ref::rope_forward(big, 2, ref::kDefaultRopeTheta);
  Mat<double> tail = big.bottomRows(4);
  Mat<double> ytail = ref::rope_forward(tail, 2, ref::kDefaultRopeTheta, 5);
  check_close("rope pos0 offset", ytail, Mat<double>(ybig.bottomRows(4)), 1e-15);
}

TEST_CASE("rope: relative position property  <R_a q, R_b k> depends only on a - b") {
  std::mt19937_64 rng(12);
  Mat<double> q = randn<Mat<double>>(1, 6, rng), k = randn<Mat<double>>(1, 6, rng);
  const double theta = 50.0;
  double d1 = ref::rope_forward(q, 1, theta, 7).row(0).dot(ref::rope_forward(k, 1, theta, 3).row(0));
  double d2 = ref::rope_forward(q, 1, theta, 14).row(0).dot(ref::rope_forward(k, 1, theta, 10).row(0));
  double d3 = ref::rope_forward(q, 1, theta, 8).row(0).dot(ref::rope_forward(k, 1, theta, 3).row(0));
  CHECK(d1 == doctest::Approx(d2).epsilon(1e-12));
  CHECK(std::abs(d1 - d3) > 1e-3);  // a different offset does change the score
}

TEST_CASE("rope: backward against finite differences, and R^T R = I") {
  for (int D : {4, 6})
    for (int pos0 : {0, 5})
      for (double theta : {10.0, ref::kDefaultRopeTheta}) {
        CAPTURE(D);
        CAPTURE(pos0);
        CAPTURE(theta);
        std::mt19937_64 rng(100 + D + pos0);
        const int n = 2;
        Mat<double> x = randn<Mat<double>>(5, n * D, rng);
        Mat<double> W = randn<Mat<double>>(5, n * D, rng);
        auto f = [&] { return dot_all(W, ref::rope_forward(x, n, theta, pos0)); };
        CHECK(grad_check("x (rope)", f, x, ref::rope_backward(W, n, theta, pos0)));
        check_close("rope_backward(rope_forward(x))", ref::rope_backward(ref::rope_forward(x, n, theta, pos0), n, theta, pos0), x, 1e-14);
      }
}

TEST_CASE("rope: float agrees with double") {
  std::mt19937_64 rng(13);
  Mat<double> x = randn<Mat<double>>(7, 12, rng);
  Mat<float> xf = x.cast<float>();
  check_close("rope float vs double", ref::rope_forward(xf, 3, 5e5, 100), ref::rope_forward(x, 3, 5e5, 100), 1e-6);
}

TEST_CASE("swa_forward equals a brute-force softmax over the explicit window") {
  for (int T : {1, 5, 13})
    for (int w : {-1, 0, 1, 2, 5, 12, 20})
      for (int D : {4, 6}) {
        CAPTURE(T);
        CAPTURE(w);
        CAPTURE(D);
        const int H = 4, G = 2;
        std::mt19937_64 rng(1000 + 31 * T + 7 * (w + 1) + D);
        Mat<double> q = randn<Mat<double>>(T, H * D, rng), k = randn<Mat<double>>(T, G * D, rng),
                    v = randn<Mat<double>>(T, G * D, rng);
        const double scale = 1.0 / std::sqrt(double(D));
        check_close("swa_forward vs brute force", ref::swa_forward(q, k, v, H, G, w, scale),
                    attention_bruteforce(q, k, v, H, G, w, scale), 1e-14);
        Mat<float> qf = q.cast<float>(), kf = k.cast<float>(), vf = v.cast<float>();
        check_close("swa_forward float vs double brute force", ref::swa_forward(qf, kf, vf, H, G, w, float(scale)),
                    attention_bruteforce(q, k, v, H, G, w, scale), 1e-6);
      }
}

TEST_CASE("swa with w >= T-1 equals global causal attention; w = 0 returns v") {
  const int T = 9, H = 4, G = 2, D = 6;
  std::mt19937_64 rng(21);
  Mat<double> q = randn<Mat<double>>(T, H * D, rng), k = randn<Mat<double>>(T, G * D, rng),
              v = randn<Mat<double>>(T, G * D, rng);
  Mat<double> global = ref::swa_forward(q, k, v, H, G, -1, 0.4);
  for (int w : {T - 1, T, 3 * T}) {
    CAPTURE(w);
    check_close("swa(w >= T-1) vs global", ref::swa_forward(q, k, v, H, G, w, 0.4), global, 0.0);
  }
  // w < T-1 really is different (the test above can fail).
  CHECK(compare(ref::swa_forward(q, k, v, H, G, T - 2, 0.4), global).rel_rms > 1e-6);
  // w = 0: the window is the query's own key, softmax of one entry is 1, o[t,h] = v[t,g].
  Mat<double> o0 = ref::swa_forward(q, k, v, H, G, 0, 0.4);
  Mat<double> want(T, H * D);
  for (int h = 0; h < H; ++h) want.middleCols(h * D, D) = v.middleCols((h / (H / G)) * D, D);
  check_close("swa(w=0) = v", o0, want, 1e-15);
}

TEST_CASE("swa window boundary by perturbation: o[t] depends on k[j], v[j] iff t-w <= j <= t") {
  const int T = 11, H = 4, G = 2, D = 4;
  std::mt19937_64 rng(22);
  Mat<double> q = randn<Mat<double>>(T, H * D, rng), k = randn<Mat<double>>(T, G * D, rng),
              v = randn<Mat<double>>(T, G * D, rng);
  for (int w : {-1, 0, 1, 3}) {
    Mat<double> o = ref::swa_forward(q, k, v, H, G, w, 0.5);
    for (int j = 0; j < T; ++j) {
      Mat<double> k2 = k, v2 = v;
      k2.row(j).array() += 0.3;
      v2.row(j).array() += 0.3;
      Mat<double> ok = ref::swa_forward(q, k2, v, H, G, w, 0.5), ov = ref::swa_forward(q, k, v2, H, G, w, 0.5);
      for (int t = 0; t < T; ++t) {
        bool in_window = j <= t && (w < 0 || j >= t - w);
        CAPTURE(w);
        CAPTURE(t);
        CAPTURE(j);
        CHECK(((ov.row(t) - o.row(t)).norm() > 0) == in_window);
        // k[j] only matters when the window holds more than one key (w=0: softmax of one is 1)
        bool k_matters = in_window && t - ref::window_start(t, w) >= 1;
        CHECK(((ok.row(t) - o.row(t)).norm() > 0) == k_matters);
      }
    }
  }
}

TEST_CASE("swa backward against finite differences (dq, dk, dv), GQA H=4 G=2") {
  const int H = 4, G = 2;
  for (int T : {1, 5, 13})
    for (int D : {4, 6})
      for (int w : {-1, 0, 2, T - 1, T + 3}) {
        CAPTURE(T);
        CAPTURE(D);
        CAPTURE(w);
        std::mt19937_64 rng(500 + 17 * T + D + 3 * (w + 1));
        Mat<double> q = randn<Mat<double>>(T, H * D, rng), k = randn<Mat<double>>(T, G * D, rng),
                    v = randn<Mat<double>>(T, G * D, rng), W = randn<Mat<double>>(T, H * D, rng);
        const double scale = 1.0 / std::sqrt(double(D));
        Mat<double> dq, dk, dv;
        ref::swa_backward(q, k, v, W, H, G, w, scale, dq, dk, dv);
        auto f = [&] { return dot_all(W, ref::swa_forward(q, k, v, H, G, w, scale)); };
        // dq, dk are exactly zero at w = 0 (one key per softmax): errors relative to the family's scale.
        const double scale_g = family_rms(dq, dk, dv);
        CHECK(grad_check("q (swa)", f, q, dq, 1e-6, 1e-5, scale_g));
        CHECK(grad_check("k (swa)", f, k, dk, 1e-6, 1e-5, scale_g));
        CHECK(grad_check("v (swa)", f, v, dv, 1e-6, 1e-5, scale_g));
      }
}

TEST_CASE("swa rejects bad shapes") {
  Mat<double> q = Mat<double>::Zero(3, 8), k = Mat<double>::Zero(3, 4), v = Mat<double>::Zero(3, 4);
  CHECK_THROWS(ref::swa_forward(q, k, v, 3, 1, 1, 1.0));                      // H*D != cols
  CHECK_THROWS(ref::swa_forward(q, k, Mat<double>(Mat<double>::Zero(3, 6)), 2, 1, 1, 1.0));  // v width
  CHECK_THROWS(ref::rope_forward(Mat<double>(Mat<double>::Zero(2, 6)), 2, 1e4));  // odd head dim 3
}
