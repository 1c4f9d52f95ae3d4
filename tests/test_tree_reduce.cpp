// The fixed reduction tree of a batch's gradients and losses (model/tree_reduce.h) and the data-parallel
// combination of the ranks' nodes (model/data_parallel.h), without MPI: each "rank" is one call of
// share_loss_and_grad on its share, and its node goes through the very combine_roots the MPI job uses.
//   - the tree's shape: which node adds into which, for power-of-two and other sizes;
//   - the whole batch's gradient and loss are the same bits for 1 and 2 threads, and for every split of the
//     batch into N contiguous power-of-two shares (N = 1, 2, 4, 8 of B = 8; N = 3 of B = 12);
//   - the tree's result is the exact-order sum of the per-sequence gradients, and it agrees with their sum in
//     double within float rounding;
//   - shares that are not a node of the tree are refused (--batch for the rank count).
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "model/backend_cpu.h"
#include "model/cli.h"
#include "model/data_parallel.h"
#include "model/model.h"
#include "tests/batch_setup.h"
#include "tests/check.h"

using namespace model;
using ref::Mat;

namespace {

ModelConfig tiny() { return rattn_test::tiny_model("rattn", 2, "LG"); }  // L G, GQA, rattn: every kind of tensor

// The flat gradient (named_tensors order) and the loss of a batch, as a trainer sees them.
struct Flat {
  std::vector<float> grad;
  double loss = 0;
};

std::vector<Mat<float>*> tensors_of(const ModelConfig& m, ModelParams<float>& g) {
  std::vector<Mat<float>*> out;
  for (NamedTensor<float>& nt : named_tensors(m, g)) out.push_back(nt.t);
  return out;
}

Flat whole_batch(const Model<float>& net, const ModelParams<float>& p, const data::Batch& batch) {
  BatchWorkspace<float> ws;
  ModelParams<float> g = params_filled<float>(net.config(), 0.0f);
  Flat f;
  f.loss = batch_loss_and_grad(net, p, batch, ws, &g);
  const auto T = tensors_of(net.config(), g);
  f.grad.resize(size_t(total_size(T)));
  pack(T, f.grad.data());
  return f;
}

// N ranks, each computing its share (share_of) into its own workspace, then the nodes combined in tree
// order: the gradient with combine_roots, the loss sums with tree_sum, as model/mpi_job.cpp does.
Flat ranks_combined(const Model<float>& net, const ModelParams<float>& p, const data::Batch& batch, int N) {
  std::vector<std::vector<float>> nodes(static_cast<size_t>(N));
  std::vector<double> loss_sums(static_cast<size_t>(N));
  long scored = 0;
  for (int r = 0; r < N; ++r) {
    BatchWorkspace<float> ws;
    ModelParams<float> g = params_filled<float>(net.config(), 0.0f);
    const ShareSums s = share_loss_and_grad(net, p, batch, share_of(batch.B, r, N), ws, &g);
    loss_sums[size_t(r)] = s.loss_sum;
    scored = s.scored;
    const auto T = tensors_of(net.config(), g);
    nodes[size_t(r)].resize(size_t(total_size(T)));
    pack(T, nodes[size_t(r)].data());
  }
  std::vector<float*> roots;
  for (auto& n : nodes) roots.push_back(n.data());
  combine_roots(roots, long(nodes[0].size()));
  return {nodes[0], tree_sum(loss_sums) / double(scored)};
}

bool same_bits(const Flat& a, const Flat& b) {
  return a.grad.size() == b.grad.size() && a.loss == b.loss &&
         std::memcmp(a.grad.data(), b.grad.data(), a.grad.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("tree_levels: pairs (0+1), (2+3), ... then pairs of those; an odd node out is carried up") {
  auto shape = [](long n) {
    std::string s;
    for (const auto& level : tree_levels(n)) {
      for (const TreeAdd& a : level) s += std::to_string(a.dst) + "+" + std::to_string(a.src) + " ";
      s += "| ";
    }
    return s;
  };
  CHECK(shape(1) == "");
  CHECK(shape(2) == "0+1 | ");
  CHECK(shape(5) == "0+1 2+3 | 0+2 | 0+4 | ");
  CHECK(shape(6) == "0+1 2+3 4+5 | 0+2 | 0+4 | ");
  CHECK(shape(8) == "0+1 2+3 4+5 6+7 | 0+2 4+6 | 0+4 | ");
  // A share of s = 2^k leaves at a multiple of s is one node: the additions inside [4, 8) of the tree over 8
  // are those of a tree over 4, shifted by 4.
  std::string inside;
  for (const auto& level : tree_levels(8))
    for (const TreeAdd& a : level)
      if (a.dst >= 4) inside += std::to_string(a.dst - 4) + "+" + std::to_string(a.src - 4) + " ";
  CHECK(inside == "0+1 2+3 0+2 ");
}

TEST_CASE("tree_sum adds in the tree's order, not left to right") {
  // 1 + 2^-24 rounds to 1 in float, so the grouping shows in the bits.
  const float e = std::ldexp(1.0f, -24);
  const std::vector<float> v = {1.0f, e, e, e, e};
  const float tree = ((v[0] + v[1]) + (v[2] + v[3])) + v[4];
  float left_to_right = 0;
  for (float x : v) left_to_right += x;
  REQUIRE(tree != left_to_right);  // the example does tell the orders apart
  CHECK(tree_sum(v) == tree);
}

TEST_CASE("batch gradient: identical bits for any thread count and any contiguous power-of-two split into ranks") {
  const ModelConfig m = tiny();
  CpuBackend<float> be;
  Model<float> net(m, be);
  const ModelParams<float> p = init_params<float>(m, 7, 1.0);
  const int saved = omp_get_max_threads();
  for (const int B : {8, 12}) {
    const data::Batch batch = rattn_test::random_batch(B, 11, 100 + uint64_t(B));
    omp_set_num_threads(1);
    const Flat one = whole_batch(net, p, batch);
    omp_set_num_threads(2);
    CHECK(same_bits(whole_batch(net, p, batch), one));
    const std::vector<int> rank_counts = B == 8 ? std::vector<int>{1, 2, 4, 8} : std::vector<int>{1, 3, 6, 12};
    for (const int threads : {1, 2}) {
      omp_set_num_threads(threads);
      for (const int N : rank_counts) {
        CAPTURE(B);
        CAPTURE(N);
        CAPTURE(threads);
        CHECK(same_bits(ranks_combined(net, p, batch, N), one));
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST_CASE("batch gradient: the tree sum of the per-sequence gradients, within float rounding of their sum in double") {
  const ModelConfig m = tiny();
  CpuBackend<float> be;
  Model<float> net(m, be);
  const ModelParams<float> p = init_params<float>(m, 9, 1.0);
  const int B = 6;  // not a power of two: ((0+1) + (2+3)) + (4+5)
  const data::Batch batch = rattn_test::random_batch(B, 13, 5);
  const Flat whole = whole_batch(net, p, batch);
  // Each sequence alone (a share of one sequence is a leaf of the tree), scaled for the whole batch.
  std::vector<std::vector<float>> leaf(static_cast<size_t>(B));
  double loss_sum = 0;
  long scored = 0;
  for (int b = 0; b < B; ++b) {
    BatchWorkspace<float> ws;
    ModelParams<float> g = params_filled<float>(m, 0.0f);
    const ShareSums s = share_loss_and_grad(net, p, batch, BatchShare{b, 1}, ws, &g);
    loss_sum += s.loss_sum;
    scored = s.scored;
    const auto T = tensors_of(m, g);
    leaf[size_t(b)].resize(size_t(total_size(T)));
    pack(T, leaf[size_t(b)].data());
  }
  const size_t P = whole.grad.size();
  double err2 = 0, ref2 = 0;
  long exact = 0;
  for (size_t e = 0; e < P; ++e) {
    const auto& l = leaf;
    const float tree = ((l[0][e] + l[1][e]) + (l[2][e] + l[3][e])) + (l[4][e] + l[5][e]);
    exact += tree == whole.grad[e] || (std::isnan(tree) && std::isnan(whole.grad[e]));
    double sum = 0;
    for (int b = 0; b < B; ++b) sum += double(l[size_t(b)][e]);
    err2 += (double(whole.grad[e]) - sum) * (double(whole.grad[e]) - sum);
    ref2 += sum * sum;
  }
  CHECK(exact == long(P));  // the same additions in the same order
  REQUIRE(ref2 > 0);
  CHECK(std::sqrt(err2 / ref2) < 1e-6);  // relative RMS: float rounding of 5 additions
  CHECK(std::abs(whole.loss - loss_sum / double(scored)) < 1e-12 * std::abs(whole.loss));
}

TEST_CASE("share_of: a batch of N x 2^k splits into N shares; any other is refused naming --batch") {
  CHECK(share_of(7, 0, 1).count == 7);  // one process: any batch
  CHECK(share_of(32, 3, 4).first == 24);
  CHECK(share_of(32, 3, 4).count == 8);
  CHECK(share_of(12, 2, 3).first == 8);
  CHECK(share_of(4, 3, 4).count == 1);
  for (const auto& [B, N] : std::vector<std::pair<int, int>>{{10, 4}, {24, 4}, {6, 4}, {3, 4}, {20, 3}}) {
    CAPTURE(B);
    CAPTURE(N);
    try {
      (void)share_of(B, 0, N);
      CHECK_MESSAGE(false, "accepted");
    } catch (const UsageError& e) {
      CHECK(std::string(e.what()).find("--batch") == 0);
    }
  }
  // A share that is not a node of the tree is refused by the model itself.
  CpuBackend<float> be;
  Model<float> net(tiny(), be);
  const ModelParams<float> p = init_params<float>(tiny(), 1, 1.0);
  BatchWorkspace<float> ws;
  CHECK_THROWS_AS(share_loss_and_grad(net, p, rattn_test::random_batch(8, 9, 1), BatchShare{2, 4}, ws, nullptr),
                  std::invalid_argument);
  CHECK_THROWS_AS(share_loss_and_grad(net, p, rattn_test::random_batch(8, 9, 1), BatchShare{0, 3}, ws, nullptr),
                  std::invalid_argument);
}
