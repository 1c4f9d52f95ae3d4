// Cross-entropy (against a direct log-sum-exp, ignored targets, huge logits, finite differences),
// AdamW (against a hand computation, decay only when asked), global gradient-norm clipping, and
// the learning-rate schedule.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "ref/loss.h"
#include "ref/optim.h"
#include "tests/check.h"

using ref::Mat;
using namespace rattn_test;

namespace {
constexpr long V = 256;  // the byte vocabulary

// The loss written the naive way: log(sum(exp(l))) without max subtraction (fine for small logits).
double direct_cross_entropy(const Mat<double>& logits, const std::vector<int>& targets) {
  double total = 0;
  long counted = 0;
  for (long n = 0; n < logits.rows(); ++n) {
    if (targets[n] < 0) continue;
    double s = 0;
    for (long c = 0; c < logits.cols(); ++c) s += std::exp(logits(n, c));
    total += std::log(s) - logits(n, targets[n]);
    ++counted;
  }
  return total / double(counted);
}
}  // namespace

TEST_CASE("cross-entropy matches a direct log-sum-exp and ignores target -1") {
  std::mt19937_64 rng(31);
  const long N = 7;
  Mat<double> logits = randn<Mat<double>>(N, V, rng, 3.0);
  const std::vector<int> targets = {65, -1, 0, 255, -1, 10, 65};
  const double loss = ref::cross_entropy(logits, targets);
  CHECK(loss == doctest::Approx(direct_cross_entropy(logits, targets)).epsilon(1e-13));

  // ignored rows contribute nothing: change them wildly, the loss and the other rows' grads stay
  Mat<double> d1, d2;
  ref::cross_entropy(logits, targets, &d1);
  Mat<double> changed = logits;
  changed.row(1) *= 50.0;
  changed.row(4).setConstant(1e3);
  CHECK(ref::cross_entropy(changed, targets, &d2) == loss);
  CHECK(d1 == d2);
  CHECK(d1.row(1).cwiseAbs().maxCoeff() == 0.0);
  CHECK(d1.row(4).cwiseAbs().maxCoeff() == 0.0);

  // and the mean is over the counted rows only: the same as the loss of those rows alone
  Mat<double> kept(5, V);
  kept << logits.row(0), logits.row(2), logits.row(3), logits.row(5), logits.row(6);
  CHECK(loss == doctest::Approx(ref::cross_entropy(kept, {65, 0, 255, 10, 65})).epsilon(1e-14));

  // no counted positions: loss 0 and zero gradient, not NaN
  Mat<double> d3;
  CHECK(ref::cross_entropy(logits, std::vector<int>(N, -1), &d3) == 0.0);
  CHECK(d3.rows() == N);
  CHECK(d3.cwiseAbs().maxCoeff() == 0.0);

  CHECK_THROWS_AS(ref::cross_entropy(logits, {0, 1}), std::invalid_argument);
  CHECK_THROWS_AS(ref::cross_entropy(logits, {0, 1, 2, 3, 4, 5, 256}), std::out_of_range);
  CHECK_THROWS_AS(ref::cross_entropy(logits, {0, 1, 2, 3, 4, 5, -2}), std::out_of_range);
}

TEST_CASE("cross-entropy gradient matches finite differences") {
  std::mt19937_64 rng(32);
  const long N = 5;
  Mat<double> logits = randn<Mat<double>>(N, V, rng, 2.0);
  const std::vector<int> targets = {3, -1, 200, 3, 97};
  Mat<double> dlogits;
  ref::cross_entropy(logits, targets, &dlogits);
  auto f = [&] { return double(ref::cross_entropy(logits, targets)); };
  grad_check("logits", f, logits, dlogits);
  // each counted row of softmax - onehot sums to zero
  for (long n = 0; n < N; ++n) CHECK(std::abs(dlogits.row(n).sum()) < 1e-15);
}

TEST_CASE("cross-entropy stays finite for huge logits") {
  // row 0: logits 1e4 and 1e4 - 1 dominate; target 1 -> loss = 1 + log(1 + e^-1) (others ~e^-1e4)
  // row 1: logits -1e4 everywhere except 0 at the target -> loss = log(1 + 255 e^-1e4) ~ 0
  Mat<double> logits = Mat<double>::Zero(2, V);
  logits(0, 0) = 1e4;
  logits(0, 1) = 1e4 - 1;
  logits(0, 2) = -1e4;
  logits.row(1).setConstant(-1e4);
  logits(1, 7) = 0;
  const std::vector<int> targets = {1, 7};
  const double want0 = 1 + std::log1p(std::exp(-1.0));
  Mat<double> d;
  const double loss = ref::cross_entropy(logits, targets, &d);
  CHECK(std::isfinite(loss));
  CHECK(loss == doctest::Approx(want0 / 2).epsilon(1e-12));
  CHECK(d.allFinite());
  CHECK(d(0, 0) == doctest::Approx(1 / (1 + std::exp(-1.0)) / 2).epsilon(1e-12));

  Mat<float> lf = logits.cast<float>(), df;
  const float lossf = ref::cross_entropy(lf, targets, &df);
  CHECK(std::isfinite(lossf));
  CHECK(lossf == doctest::Approx(want0 / 2).epsilon(1e-6));
  CHECK(df.allFinite());
}

TEST_CASE("cross-entropy in float agrees with double") {
  std::mt19937_64 rng(33);
  const long N = 9;
  Mat<double> logits = randn<Mat<double>>(N, V, rng, 4.0);
  const std::vector<int> targets = {1, 2, -1, 40, 255, 0, 128, -1, 7};
  Mat<double> d;
  Mat<float> df;
  const double loss = ref::cross_entropy(logits, targets, &d);
  Mat<float> lf = logits.cast<float>();
  const float lossf = ref::cross_entropy(lf, targets, &df);
  CHECK(lossf == doctest::Approx(loss).epsilon(1e-6));
  check_close("dlogits f32", df, d, 1e-5);
}

TEST_CASE("AdamW: one step matches a hand computation") {
  ref::AdamW cfg{.lr = 0.01};  // beta1 0.9, beta2 0.95, eps 1e-8, weight_decay 0.1
  SUBCASE("first step from zero moments: the update is g / (|g| + eps)") {
    Mat<double> p(1, 3), g(1, 3);
    p << 0.5, -1.0, 2.0;
    g << 0.2, -0.3, 0.0;
    Mat<double> m = Mat<double>::Zero(1, 3), v = Mat<double>::Zero(1, 3);
    ref::adamw_step(p, g, m, v, 1, cfg, /*decay=*/true);
    // m = 0.1 g, v = 0.05 g^2; m_hat = g, v_hat = g^2
    CHECK(m(0) == doctest::Approx(0.02).epsilon(1e-15));
    CHECK(v(0) == doctest::Approx(0.002).epsilon(1e-15));
    // p0: 0.5 - 0.01 * (0.2 / (0.2 + 1e-8) + 0.1 * 0.5) = 0.5 - 0.01 * (0.99999995 + 0.05)
    CHECK(p(0) == doctest::Approx(0.4895000005).epsilon(1e-13));
    // p1: -1 - 0.01 * (-0.99999996667 - 0.1) = -0.9890000003333
    CHECK(p(1) == doctest::Approx(-1.0 + 0.01 * (0.3 / (0.3 + 1e-8) + 0.1)).epsilon(1e-14));
    CHECK(p(1) == doctest::Approx(-0.9890000003333).epsilon(1e-12));
    // p2: zero gradient, only the decay: 2 * (1 - 0.01 * 0.1) = 1.998
    CHECK(p(2) == doctest::Approx(1.998).epsilon(1e-15));
  }
  SUBCASE("third step with existing moments: bias correction uses beta^3") {
    Mat<double> p(1, 1), g(1, 1), m(1, 1), v(1, 1);
    p << 0.5;
    g << 0.2;
    m << 0.05;
    v << 0.001;
    ref::adamw_step(p, g, m, v, 3, cfg, /*decay=*/false);
    // m = 0.9 * 0.05 + 0.1 * 0.2 = 0.065;  v = 0.95 * 0.001 + 0.05 * 0.04 = 0.00295
    CHECK(m(0) == doctest::Approx(0.065).epsilon(1e-15));
    CHECK(v(0) == doctest::Approx(0.00295).epsilon(1e-15));
    // m_hat = 0.065 / (1 - 0.729) = 0.239852398524;  v_hat = 0.00295 / (1 - 0.857375) = 0.0206836108676
    // update = m_hat / (sqrt(v_hat) + 1e-8) = 0.239852398524 / 0.143817978...
    const double m_hat = 0.065 / 0.271, v_hat = 0.00295 / 0.142625;
    CHECK(m_hat == doctest::Approx(0.239852398524).epsilon(1e-11));
    CHECK(v_hat == doctest::Approx(0.0206836108676).epsilon(1e-11));
    CHECK(p(0) == doctest::Approx(0.5 - 0.01 * m_hat / (std::sqrt(v_hat) + 1e-8)).epsilon(1e-14));
    CHECK(p(0) == doctest::Approx(0.48332251).epsilon(1e-8));
  }
}

TEST_CASE("AdamW: weight decay only when asked, decoupled from the gradient") {
  std::mt19937_64 rng(34);
  ref::AdamW cfg{.lr = 0.003, .weight_decay = 0.25};
  Mat<double> p0 = randn<Mat<double>>(3, 5, rng), g = randn<Mat<double>>(3, 5, rng);
  Mat<double> m0 = randn<Mat<double>>(3, 5, rng, 0.1);
  Mat<double> v0 = randn<Mat<double>>(3, 5, rng, 0.1).cwiseAbs();
  Mat<double> pd = p0, md = m0, vd = v0, pn = p0, mn = m0, vn = v0;
  ref::adamw_step(pd, g, md, vd, 4, cfg, true);
  ref::adamw_step(pn, g, mn, vn, 4, cfg, false);
  CHECK(md == mn);  // the moments never see the decay
  CHECK(vd == vn);
  // the two results differ by exactly lr * wd * p0 (not divided by sqrt(v_hat): decoupled)
  check_close("decay difference", (pn - pd).eval(), (cfg.lr * cfg.weight_decay * p0).eval(), 1e-12);
  // zero gradient, zero moments, no decay: nothing moves
  Mat<double> p = p0, z = Mat<double>::Zero(3, 5), m = z, v = z;
  ref::adamw_step(p, z, m, v, 1, cfg, false);
  CHECK(p == p0);
  CHECK_THROWS_AS(ref::adamw_step(p, z, m, v, 0, cfg, false), std::invalid_argument);
}

TEST_CASE("AdamW minimises a quadratic, in double and float") {
  // f(p) = 0.5 ||p - target||^2, grad = p - target: 400 steps at lr 0.05 reach the target
  std::mt19937_64 rng(35);
  Mat<double> target = randn<Mat<double>>(2, 3, rng);
  ref::AdamW cfg{.lr = 0.05, .weight_decay = 0.0};
  Mat<double> p = Mat<double>::Zero(2, 3), m = p, v = p;
  Mat<float> pf = Mat<float>::Zero(2, 3), mf = pf, vf = pf, tf = target.cast<float>();
  for (long step = 1; step <= 400; ++step) {
    Mat<double> g = p - target;
    ref::adamw_step(p, g, m, v, step, cfg, true);
    Mat<float> gf = pf - tf;
    ref::adamw_step(pf, gf, mf, vf, step, cfg, true);
    // early on the trajectory is smooth and float follows double closely; near the optimum Adam's
    // steps are ~lr in size whatever the gradient, so the two only agree to ~lr there
    if (step == 10) check_close("adamw p after 10 steps f32", pf, p, 1e-6);
  }
  CHECK((p - target).cwiseAbs().maxCoeff() < 1e-2);
  CHECK((pf.cast<double>() - target).cwiseAbs().maxCoeff() < 1e-2);
}

TEST_CASE("global gradient-norm clipping scales to max_norm and returns the pre-clip norm") {
  Mat<double> A = Mat<double>::Zero(2, 2), B(1, 1);
  A(0, 1) = 3;
  B(0, 0) = -4;  // global norm sqrt(9 + 16) = 5
  std::vector<Mat<double>*> grads = {&A, &B};
  CHECK(ref::clip_grad_norm(grads, 10.0) == doctest::Approx(5.0).epsilon(1e-15));
  CHECK(A(0, 1) == 3.0);  // below the limit: untouched
  CHECK(B(0, 0) == -4.0);
  CHECK(ref::clip_grad_norm(grads, 1.0) == doctest::Approx(5.0).epsilon(1e-15));
  CHECK(A(0, 1) == doctest::Approx(0.6).epsilon(1e-15));
  CHECK(B(0, 0) == doctest::Approx(-0.8).epsilon(1e-15));
  CHECK(std::sqrt(A.squaredNorm() + B.squaredNorm()) == doctest::Approx(1.0).epsilon(1e-15));
  // clipping again at the same limit changes nothing and reports the new norm
  CHECK(ref::clip_grad_norm(grads, 1.0) == doctest::Approx(1.0).epsilon(1e-15));

  // random shapes, float: the post-clip norm is max_norm, directions unchanged
  std::mt19937_64 rng(36);
  Mat<float> P = randn<Mat<float>>(4, 7, rng), Q = randn<Mat<float>>(3, 1, rng);
  Mat<float> P0 = P, Q0 = Q;
  const double norm0 = std::sqrt(P0.cast<double>().squaredNorm() + Q0.cast<double>().squaredNorm());
  std::vector<Mat<float>*> gf = {&P, &Q};
  const float pre = ref::clip_grad_norm(gf, 0.5f);
  CHECK(pre == doctest::Approx(norm0).epsilon(1e-6));
  CHECK(std::sqrt(P.cast<double>().squaredNorm() + Q.cast<double>().squaredNorm()) ==
        doctest::Approx(0.5).epsilon(1e-6));
  check_close("clipped P direction", P, (P0 * float(0.5 / norm0)).eval(), 1e-6);

  // a non-finite gradient: the norm says so and nothing is scaled
  B(0, 0) = std::numeric_limits<double>::infinity();
  const double bad = ref::clip_grad_norm(grads, 1.0);
  CHECK(std::isinf(bad));
  CHECK(A(0, 1) == doctest::Approx(0.6).epsilon(1e-15));
}

TEST_CASE("lr schedule: linear warmup to peak, cosine to the floor") {
  const double peak = 1e-3, floor = 1e-4;
  const long warmup = 10, total = 110;
  CHECK(ref::lr_at(0, peak, floor, warmup, total) == 0.0);
  CHECK(ref::lr_at(1, peak, floor, warmup, total) == doctest::Approx(1e-4).epsilon(1e-14));
  CHECK(ref::lr_at(5, peak, floor, warmup, total) == doctest::Approx(5e-4).epsilon(1e-14));
  CHECK(ref::lr_at(warmup, peak, floor, warmup, total) == doctest::Approx(peak).epsilon(1e-14));
  CHECK(ref::lr_at(60, peak, floor, warmup, total) == doctest::Approx((peak + floor) / 2).epsilon(1e-14));
  // a quarter of the way into the decay: floor + (peak - floor) * (1 + cos(pi/4)) / 2
  CHECK(ref::lr_at(35, peak, floor, warmup, total) ==
        doctest::Approx(floor + (peak - floor) * (1 + std::sqrt(0.5)) / 2).epsilon(1e-13));
  CHECK(ref::lr_at(total, peak, floor, warmup, total) == doctest::Approx(floor).epsilon(1e-14));
  CHECK(ref::lr_at(total + 1000, peak, floor, warmup, total) == floor);
  // strictly rising through warmup, strictly falling after it
  for (long s = 1; s <= warmup; ++s)
    CHECK(ref::lr_at(s, peak, floor, warmup, total) > ref::lr_at(s - 1, peak, floor, warmup, total));
  for (long s = warmup + 1; s <= total; ++s)
    CHECK(ref::lr_at(s, peak, floor, warmup, total) < ref::lr_at(s - 1, peak, floor, warmup, total));
  // no warmup: the cosine starts at peak at step 0
  CHECK(ref::lr_at(0, peak, floor, 0, total) == doctest::Approx(peak).epsilon(1e-14));
  CHECK(ref::lr_at(1, peak, floor, 0, total) < peak);
  CHECK_THROWS_AS(ref::lr_at(1, peak, floor, 20, 10), std::invalid_argument);
  CHECK_THROWS_AS(ref::lr_at(1, peak, floor, -1, 10), std::invalid_argument);
}
