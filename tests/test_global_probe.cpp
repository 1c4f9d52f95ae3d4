// model/global_probe.h: the global layer's attention on each recall query's answer (the value's
// position, t - d + 1). With the layer's W_q at 0 every logit is 0, so the attention is uniform and
// every figure has a closed form; with random weights each query's weight must be the softmax of the
// layer's own q and k at that position, on the head that gives it the most.
#include <doctest/doctest.h>

#include <cmath>

#include "tests/batch_setup.h"
#include "model/backend_cpu.h"
#include "model/global_probe.h"

using namespace model;

namespace {

// Scored positions with a distance: (b, t, d) for the batch's dist; the rest stay unscored (dist -1)
// or scored without a distance, which the probe must skip.
data::Batch probe_batch() {
  data::Batch batch = rattn_test::random_batch(2, 17, 11);
  const int marks[][3] = {{0, 16, 1}, {0, 12, 9}, {0, 5, 6}, {1, 16, 17}, {1, 7, 3}};
  for (const auto& m : marks) {
    const size_t i = size_t(m[0]) * 17 + size_t(m[1]);
    batch.targets[i] = 1;
    batch.dist[i] = m[2];
  }
  return batch;
}

}  // namespace

TEST_CASE("probe_global: uniform attention when W_q is 0") {
  const ModelConfig m = rattn_test::tiny_model("rattn", 2, "LG");
  CpuBackend<double> be;
  Model<double> net(m, be);
  ModelParams<double> p = init_params<double>(m, 3, 1.0);
  p.blocks[1].attn.Wq.setZero();
  const data::Batch batch = probe_batch();
  const GlobalProbe g = probe_global(net, p, batch);
  CHECK(g.layer == 1);
  REQUIRE(g.queries == 5);
  // every logit 0: weight 1/(t+1) on every position, log-odds -log t, margin 0, a tie for the top
  const double ts[] = {5, 12, 16, 7, 16};  // in sequence order
  double mass = 0;
  for (int i = 0; i < 5; ++i) {
    mass += 1.0 / (ts[i] + 1.0);
    CHECK(g.log_odds[size_t(i)] == doctest::Approx(-std::log(ts[i])).epsilon(1e-12));
    CHECK(g.margin[size_t(i)] == doctest::Approx(0.0).scale(1.0).epsilon(1e-12));
  }
  CHECK(g.mass() == doctest::Approx(mass / 5.0).epsilon(1e-12));
  CHECK(g.top_fraction() == 1.0);
  CHECK(median(g.log_odds) == doctest::Approx(-std::log(12.0)).epsilon(1e-12));
}

TEST_CASE("probe_global: each query's weight is the layer's softmax at the value's position, best head") {
  const ModelConfig m = rattn_test::tiny_model("swa", 2, "LG");
  CpuBackend<double> be;
  Model<double> net(m, be);
  const ModelParams<double> p = init_params<double>(m, 5, 4.0);  // large weights: peaked attention
  const data::Batch batch = probe_batch();
  const GlobalProbe g = probe_global(net, p, batch);
  REQUIRE(g.queries == 5);
  const ref::AttnConfig& a = net.layer_attn(1);
  size_t i = 0;
  long top = 0;
  double mass = 0;
  for (int b = 0; b < batch.B; ++b) {
    SeqActivations<double> acts;
    net.forward(p, batch.seq_tokens(b), &acts);
    const Mat<double>& q = acts.attn[1].q;
    const Mat<double>& k = acts.attn[1].k;
    for (int t = 0; t < batch.T; ++t) {
      const int d = batch.dist[size_t(b) * 17 + size_t(t)];
      if (d < 1) continue;
      const int target = t - d + 1;
      double best = -1, best_margin = 0;
      bool best_top = false;
      for (int h = 0; h < a.H; ++h) {  // one kv head serves both query heads (GQA)
        // the softmax written out: logits, their exponentials, normalised
        Eigen::VectorXd z = (k.topRows(t + 1) * q.block(t, h * a.D, 1, a.D).transpose()) / std::sqrt(double(a.D));
        Eigen::VectorXd e = (z.array() - z.maxCoeff()).exp();
        const double w = e(target) / e.sum();
        if (w > best) {
          best = w;
          best_margin = z(target) - std::log((e.sum() - e(target)) / double(t)) - z.maxCoeff();
          best_top = z(target) == z.maxCoeff();
        }
      }
      REQUIRE(i < g.log_odds.size());
      CHECK(1.0 / (1.0 + std::exp(-g.log_odds[i])) == doctest::Approx(best).epsilon(1e-9));
      CHECK(g.margin[i] == doctest::Approx(best_margin).epsilon(1e-9));
      mass += best;
      top += best_top ? 1 : 0;
      ++i;
    }
  }
  CHECK(g.mass() == doctest::Approx(mass / 5.0).epsilon(1e-9));
  CHECK(g.top == top);
  // the weights are not uniform here: the check above tells positions apart
  CHECK(g.mass() != doctest::Approx((1.0 / 17 + 1.0 / 13 + 1.0 / 6 + 1.0 / 17 + 1.0 / 8) / 5.0));
}

TEST_CASE("probe_global: no global layer, nothing probed; median of even and odd counts") {
  const ModelConfig m = rattn_test::tiny_model("rattn", 2, "LL");
  CpuBackend<double> be;
  Model<double> net(m, be);
  const GlobalProbe g = probe_global(net, init_params<double>(m, 3, 1.0), probe_batch());
  CHECK(g.layer == -1);
  CHECK(g.queries == 0);
  CHECK(median({3.0, 1.0, 2.0}) == 2.0);
  CHECK(median({4.0, 1.0, 3.0, 2.0}) == 2.5);
  CHECK(median({}) == 0.0);
}
