// The model on --device cuda (model/backend_cuda.h: every op through the fp32 kernels of cuda/, on the
// CPU execution layer in this build) against the same model on the CPU reference backend
// (model/backend_cpu.h), float32 both: one model definition, two backends, the same numbers up to
// float rounding.
//   - one step's batch loss and every parameter gradient, for each local kind in an L G stack
//   - three AdamW training steps with clipping: the same loss at every step and the same weights after
// Tiny shapes: the kernels run emulated (one fiber per CUDA thread), so every op is slow here.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>

#include "model/backend_cpu.h"
#include "model/model.h"
#include "model/params.h"
#include "tests/check.h"

using namespace model;
using ref::Mat;

namespace {

// d_model 32, 2 query heads of dim 16 sharing 1 kv head (GQA), layers L G, T = 24 well past w + 1 = 5
// (the RLA branch sees tokens), RLA chunk 7 that does not divide T.
ModelConfig tiny(const std::string& kind) {
  ModelConfig m;
  m.d_model = 32;
  m.n_heads = 2;
  m.n_kv_heads = 1;
  m.head_dim = 16;
  m.ffn_dim = 48;
  m.n_layers = 2;
  m.pattern = "LG";
  m.window = 4;
  m.local_kind = kind;
  m.chunk = 7;
  return m;
}
constexpr int kB = 2, kT = 24;

data::Batch tiny_batch(uint64_t seed) {
  data::Batch b;
  b.resize(kB, kT);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < b.tokens.size(); ++i) {
    b.tokens[i] = data::rand_below(rng, 256);
    b.targets[i] = (i % 4 == 1) ? -1 : data::rand_below(rng, 256);  // some positions not scored
  }
  return b;
}

// Every tensor of a and b (same config) within tol relative RMS.
bool params_close(const std::string& what, const ModelConfig& m, ModelParams<float>& got, ModelParams<float>& want,
                  double tol) {
  std::vector<NamedTensor<float>> g = named_tensors(m, got), w = named_tensors(m, want);
  bool ok = g.size() == w.size();
  for (size_t i = 0; i < g.size() && i < w.size(); ++i) ok &= rattn_test::check_close(what + " " + g[i].name, *g[i].t, *w[i].t, tol);
  return ok;
}

}  // namespace

TEST_CASE("make_backend(\"cuda\") is the CUDA backend") {
  const auto be = make_backend<float>("cuda");
  CHECK(be->name().rfind("cuda", 0) == 0);
}

TEST_CASE("one step: the CUDA backend's batch loss and gradients equal the CPU backend's, every local kind") {
  const CpuBackend<float> cpu;
  const CudaBackend cuda;
  for (const std::string kind : {"rattn", "swa", "linear"}) {
    CAPTURE(kind);
    const ModelConfig m = tiny(kind);
    const Model<float> net_cpu(m, cpu), net_cuda(m, cuda);
    const ModelParams<float> p = init_params<float>(m, 11);
    const data::Batch batch = tiny_batch(5);
    BatchWorkspace<float> ws_cpu, ws_cuda;
    ModelParams<float> g_cpu = params_filled<float>(m, 0.0f), g_cuda = params_filled<float>(m, 0.0f);
    const double loss_cpu = batch_loss_and_grad(net_cpu, p, batch, ws_cpu, &g_cpu);
    const double loss_cuda = batch_loss_and_grad(net_cuda, p, batch, ws_cuda, &g_cuda);
    INFO("loss cpu " << loss_cpu << " cuda " << loss_cuda);
    CHECK(std::isfinite(loss_cuda));
    CHECK(std::abs(loss_cuda - loss_cpu) <= 1e-5 * std::abs(loss_cpu));
    // float rounding in different orders (tiled matmuls, flash softmax, chunked RLA) through 2 layers
    CHECK(params_close("d", m, g_cuda, g_cpu, 1e-4));
    // the logits of the last sequence too (the forward alone)
    CHECK(rattn_test::check_close("logits", ws_cuda.acts[kB - 1].logits, ws_cpu.acts[kB - 1].logits, 1e-5));
  }
}

TEST_CASE("three AdamW steps: the CUDA path's losses and weights follow the CPU path's") {
  const ModelConfig m = tiny("rattn");
  const CpuBackend<float> cpu;
  const CudaBackend cuda;
  const Backend<float>* backends[2] = {&cpu, &cuda};
  std::vector<double> losses[2];
  ModelParams<float> params[2];
  ref::AdamW adamw{.lr = 1e-2};
  for (int d = 0; d < 2; ++d) {
    const Backend<float>& be = *backends[d];
    const Model<float> net(m, be);
    ModelParams<float>& p = params[d];
    p = init_params<float>(m, 3);
    ModelParams<float> grad = params_filled<float>(m, 0.0f), mom = params_filled<float>(m, 0.0f),
                       var = params_filled<float>(m, 0.0f);
    std::vector<NamedTensor<float>> P = named_tensors(m, p), G = named_tensors(m, grad), M = named_tensors(m, mom),
                                    V = named_tensors(m, var);
    std::vector<Mat<float>*> grad_ptrs;
    for (NamedTensor<float>& g : G) grad_ptrs.push_back(g.t);
    BatchWorkspace<float> ws;
    const data::Batch batch = tiny_batch(100);  // the same batch every step: the loss must fall
    for (long step = 1; step <= 3; ++step) {
      losses[d].push_back(batch_loss_and_grad(net, p, batch, ws, &grad));
      const float norm = be.clip_grad_norm(grad_ptrs, 0.5f);
      INFO("grad norm " << norm);
      CHECK(norm > 0.5f);  // clipping is exercised
      for (size_t i = 0; i < P.size(); ++i) be.adamw_step(*P[i].t, *G[i].t, *M[i].t, *V[i].t, step, adamw, P[i].decay);
    }
  }
  for (size_t s = 0; s < losses[0].size(); ++s) {
    INFO("step " << s + 1 << ": loss cpu " << losses[0][s] << " cuda " << losses[1][s]);
    CHECK(std::abs(losses[1][s] - losses[0][s]) <= 1e-4 * std::abs(losses[0][s]));
  }
  CHECK(losses[0].back() < losses[0].front());  // the steps do train
  CHECK(losses[1].back() < losses[1].front());
  CHECK(params_close("after 3 steps:", m, params[1], params[0], 1e-4));
}
