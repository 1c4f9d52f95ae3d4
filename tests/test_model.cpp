// The model's forward/backward over a batch (model/model.h): the composed backward against finite
// differences of the whole model's loss in double, for every local kind in a local-global stack;
// the batch gradient is the same bit for bit with 1 or 2 threads; float follows double.
#include <doctest/doctest.h>
#include <omp.h>

#include <functional>

#include "model/backend_cpu.h"
#include "model/model.h"
#include "tests/batch_setup.h"
#include "tests/check.h"

using namespace model;
using ref::Mat;

namespace {

// A tiny local-global stack: L L G with GQA (2 query heads, 1 kv head), T past w+1, a chunk that
// does not divide T.
ModelConfig tiny(const std::string& kind) { return rattn_test::tiny_model(kind, 3, "LLG"); }

}  // namespace

// Central differences of f at up to `count` elements of x (every element when x is small; for
// the embedding only rows of tokens that occur, the others have no gradient), against analytic.
bool sampled_grad_check(const std::string& name, const std::function<double()>& f, Mat<double>& x,
                        const Mat<double>& analytic, const std::vector<int>& rows_used, std::mt19937_64& rng) {
  std::vector<long> idx;
  if (x.size() <= 300) {
    for (long i = 0; i < x.size(); ++i) idx.push_back(i);
  } else {
    for (int k = 0; k < 40; ++k) {
      const long r = rows_used.empty() ? long(rng() % uint64_t(x.rows()))
                                       : rows_used[size_t(rng() % rows_used.size())];
      idx.push_back(r * x.cols() + long(rng() % uint64_t(x.cols())));
    }
  }
  Mat<double> num(1, long(idx.size())), ana(1, long(idx.size()));
  const double h = 1e-5;
  for (size_t k = 0; k < idx.size(); ++k) {
    double& xi = x.data()[idx[k]];
    const double saved = xi;
    xi = saved + h;
    const double fp = f();
    xi = saved - h;
    const double fm = f();
    xi = saved;
    num(0, long(k)) = (fp - fm) / (2 * h);
    ana(0, long(k)) = analytic.data()[idx[k]];
  }
  return rattn_test::check_close("d" + name + " (analytic vs finite differences)", ana, num, 1e-6);
}

TEST_CASE("model backward matches finite differences of the batch loss (double), every local kind") {
  const int saved_threads = omp_get_max_threads();
  omp_set_num_threads(1);  // many tiny forwards: no thread hand-offs
  for (const std::string kind : {"swa", "rattn", "linear"}) {
    CAPTURE(kind);
    const ModelConfig m = tiny(kind);
    CpuBackend<double> be;
    Model<double> net(m, be);
    ModelParams<double> p = init_params<double>(m, 7, 1.0);
    // Perturb the norm scales away from 1 so their gradients are generic.
    std::mt19937_64 rng(3);
    for (auto& nt : named_tensors(m, p))
      if (!nt.decay && nt.name != "embed") *nt.t += rattn_test::randn<Mat<double>>(nt.t->rows(), nt.t->cols(), rng, 0.2);
    const data::Batch batch = rattn_test::random_batch(2, 11, 5);
    BatchWorkspace<double> ws;
    ModelParams<double> g = params_filled<double>(m, 0.0);
    batch_loss_and_grad(net, p, batch, ws, &g);
    auto f = [&]() { return batch_loss_and_grad(net, p, batch, ws, nullptr); };
    auto P = named_tensors(m, p);
    auto G = named_tensors(m, g);
    int checked = 0;
    for (size_t i = 0; i < P.size(); ++i) {
      const std::string& n = P[i].name;
      // every tensor kind once, in a local (block0) and the global (block2) layer
      const bool pick = n == "embed" || n == "norm_f" || n == "W_out" || n.rfind("block0.", 0) == 0 ||
                        n == "block2.attn.Wq" || n == "block2.attn.Wk" || n == "block2.attn.Wv" || n == "block2.attn.Wo";
      if (!pick) continue;
      CAPTURE(n);
      CHECK(sampled_grad_check(n, f, *P[i].t, *G[i].t, n == "embed" ? batch.tokens : std::vector<int>{}, rng));
      ++checked;
    }
    CHECK(checked >= 12);
  }
  omp_set_num_threads(saved_threads);
}

TEST_CASE("batch gradient is identical bit for bit with 1 and 2 threads") {
  const ModelConfig m = tiny("rattn");
  CpuBackend<float> be;
  Model<float> net(m, be);
  const ModelParams<float> p = init_params<float>(m, 11, 1.0);
  const data::Batch batch = rattn_test::random_batch(5, 13, 9);
  BatchWorkspace<float> ws1, ws2;
  ModelParams<float> g1 = params_filled<float>(m, 0.0f), g2 = params_filled<float>(m, 0.0f);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double l1 = batch_loss_and_grad(net, p, batch, ws1, &g1);
  omp_set_num_threads(2);
  const double l2 = batch_loss_and_grad(net, p, batch, ws2, &g2);
  omp_set_num_threads(saved);
  CHECK(l1 == l2);
  auto G1 = named_tensors(m, g1);
  auto G2 = named_tensors(m, g2);
  for (size_t i = 0; i < G1.size(); ++i) {
    CAPTURE(G1[i].name);
    CHECK(*G1[i].t == *G2[i].t);
    CHECK(G1[i].t->norm() > 0);  // every listed tensor gets a gradient
  }
}

TEST_CASE("batch loss is the mean over every scored position of the batch") {
  // Two sequences with different numbers of scored positions: the batch loss weights them by count.
  const ModelConfig m = tiny("swa");
  CpuBackend<double> be;
  Model<double> net(m, be);
  const ModelParams<double> p = init_params<double>(m, 2, 1.0);
  data::Batch batch = rattn_test::random_batch(2, 9, 4);
  for (int t = 0; t < 9; ++t) batch.targets[size_t(t)] = t < 2 ? 65 : -1;  // sequence 0: 2 positions
  BatchWorkspace<double> ws;
  const double loss = batch_loss_and_grad(net, p, batch, ws, nullptr);
  double sum = 0;
  long n = 0;
  for (int b = 0; b < 2; ++b) {
    const Mat<double> logits = net.forward(p, batch.seq_tokens(b));
    const std::vector<int> tg = batch.seq_targets(b);
    long nb = 0;
    for (int x : tg) nb += x >= 0;
    sum += ref::cross_entropy(logits, tg) * double(nb);
    n += nb;
  }
  CHECK(loss == doctest::Approx(sum / double(n)).epsilon(1e-12));
}

TEST_CASE("float model follows the double model") {
  const ModelConfig m = tiny("rattn");
  CpuBackend<float> bf;
  CpuBackend<double> bd;
  Model<float> nf(m, bf);
  Model<double> nd(m, bd);
  const ModelParams<double> pd = init_params<double>(m, 5, 1.0);
  const ModelParams<float> pf = init_params<float>(m, 5, 1.0);  // the same draws, rounded
  const data::Batch batch = rattn_test::random_batch(1, 17, 1);
  const Mat<float> lf = nf.forward(pf, batch.seq_tokens(0));
  const Mat<double> ld = nd.forward(pd, batch.seq_tokens(0));
  rattn_test::check_close("logits float vs double", lf, ld, 1e-5);
}

TEST_CASE("parameter_count equals the numbers in the built model's parameter list") {
  // parameter_count(m) is computed from the config alone (load_checkpoint refuses files by it);
  // it has to equal the trained tensors named_tensors() lists for every layer mix and local kind.
  struct Case {
    const char* pattern;
    int layers, H, G, ffn;
  };
  const Case cases[] = {
      {"LLG", 3, 2, 1, 16},  // local and global, GQA 2:1
      {"L", 2, 4, 2, 0},     // local only, GQA 4:2, automatic ffn width
      {"G", 2, 2, 2, 16},    // global only: no branch norms whatever the local kind
      {"GL", 5, 3, 3, 8},    // global first, the pattern cut at an odd layer count
  };
  for (const Case& c : cases)
    for (const char* kind : {"rattn", "swa", "linear"}) {
      ModelConfig m = tiny(kind);
      m.pattern = c.pattern;
      m.n_layers = c.layers;
      m.n_heads = c.H;
      m.n_kv_heads = c.G;
      m.ffn_dim = c.ffn;
      ModelParams<float> p = init_params<float>(m, 1, 1.0);
      long held = 0;
      for (const NamedTensor<float>& t : named_tensors(m, p)) held += long(t.t->size());
      INFO("pattern ", c.pattern, " x ", c.layers, ", H ", c.H, " G ", c.G, ", local ", kind);
      CHECK(parameter_count(m) == held);
      CHECK(describe(Config{m, TrainConfig{}}).find(", " + std::to_string(held) + " parameters") !=
            std::string::npos);
    }
}
