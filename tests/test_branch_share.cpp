// model/branch_share.h: the size of a rattn layer's RLA term against its SWA term, over the scored
// positions past the window. With both branch scales at 1 the two terms have the same size on every
// row (each branch is normalised to unit RMS), so the ratio is 1 whatever the weights; scaling one
// layer's gamma_rla by s makes that layer's ratio s and leaves the others; layers without both
// branches, unscored rows and rows t <= w are not counted.
#include <doctest/doctest.h>

#include "tests/batch_setup.h"
#include "model/backend_cpu.h"
#include "model/branch_share.h"

using namespace model;

namespace {

ModelConfig tiny(const std::string& kind, const std::string& pattern) {
  return rattn_test::tiny_model(kind, 3, pattern);
}

}  // namespace

TEST_CASE("branch_ratio: 1 with both scales at 1, s where gamma_rla is scaled by s, rattn layers only") {
  const ModelConfig m = tiny("rattn", "LGL");
  CpuBackend<double> be;
  Model<double> net(m, be);
  ModelParams<double> p = init_params<double>(m, 7, 1.0);
  const data::Batch batch = rattn_test::random_batch(3, 17, 5);

  std::vector<BranchRatio> r = branch_ratio(net, p, batch);
  REQUIRE(r.size() == 2);  // layers 0 and 2; layer 1 is global
  CHECK(r[0].layer == 0);
  CHECK(r[1].layer == 2);
  for (const BranchRatio& x : r) CHECK(x.ratio == doctest::Approx(1.0).epsilon(1e-6));

  p.blocks[2].attn.gamma_rla *= 2.5;
  r = branch_ratio(net, p, batch);
  REQUIRE(r.size() == 2);
  CHECK(r[0].ratio == doctest::Approx(1.0).epsilon(1e-6));
  CHECK(r[1].ratio == doctest::Approx(2.5).epsilon(1e-6));

  // A scale that differs along D weighs each row by its direction: the ratio lies strictly between
  // the smallest and the largest scale, and equals neither.
  p.blocks[0].attn.gamma_rla.setOnes();
  p.blocks[0].attn.gamma_rla.col(0) *= 3.0;
  r = branch_ratio(net, p, batch);
  CHECK(r[0].ratio > 1.0 + 1e-3);
  CHECK(r[0].ratio < 3.0 - 1e-3);
}

TEST_CASE("branch_ratio: no layers without both branches, no rows within the window, no unscored rows") {
  CpuBackend<double> be;
  const data::Batch batch = rattn_test::random_batch(2, 17, 9);
  for (const char* kind : {"swa", "linear"}) {
    const ModelConfig m = tiny(kind, "LLG");
    Model<double> net(m, be);
    CHECK(branch_ratio(net, init_params<double>(m, 7, 1.0), batch).empty());
  }
  // w >= T - 1: every row is within the window, o_rla = 0 there, nothing to measure
  ModelConfig m = tiny("rattn", "LL");
  m.window = 16;
  Model<double> wide(m, be);
  CHECK(branch_ratio(wide, init_params<double>(m, 7, 1.0), batch).empty());
  // no scored position past the window
  m.window = 3;
  Model<double> net(m, be);
  data::Batch unscored = batch;
  for (int& t : unscored.targets) t = -1;
  CHECK(branch_ratio(net, init_params<double>(m, 7, 1.0), unscored).empty());
  // the first n sequences only: a batch whose second sequence is unscored measures what its first does
  ModelParams<double> p = init_params<double>(m, 7, 1.0);
  p.blocks[0].attn.gamma_rla.col(1) *= 4.0;
  data::Batch half = batch;
  for (int t = batch.T; t < 2 * batch.T; ++t) half.targets[size_t(t)] = -1;
  const std::vector<BranchRatio> first = branch_ratio(net, p, batch, 1), both = branch_ratio(net, p, half);
  REQUIRE(first.size() == 3);  // "LL" repeated to 3 layers: every layer local
  REQUIRE(both.size() == 3);
  CHECK(first[0].ratio == both[0].ratio);
  CHECK(first[0].ratio != doctest::Approx(1.0));
}
