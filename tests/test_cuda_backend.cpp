// The kernel checker, --device cuda-ops (model/backend_cuda.h: every op through the fp32 kernels of cuda/, on the
// CPU execution layer in this build) against the same model on the CPU reference backend
// (model/backend_cpu.h), float32 both: one model definition, two backends, the same numbers up to
// float rounding.
//   - one step's batch loss and every parameter gradient, for each local kind in an L G stack
//   - three AdamW training steps with clipping: the same loss at every step and the same weights after
//   - bin/train_tiny --device cuda-ops, and --device cuda (the device-resident step, model/device_trainer.h;
//     tests/test_device_train.cpp checks it against the CPU): the same losses and the same checkpoint, bit for
//     bit, in every fiber and block order of the CPU layer (no backward kernel sums in an order the schedule
//     chooses)
// Tiny shapes: the kernels run emulated (one fiber per CUDA thread), so every op is slow here.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "model/backend_cpu.h"
#include "model/model.h"
#include "model/params.h"
#include "tests/check.h"
#include "tests/proc.h"

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

TEST_CASE("make_backend(\"cuda-ops\") is the kernel checker") {
  const auto be = make_backend<float>("cuda-ops");
  CHECK(be->name().rfind("cuda", 0) == 0);
}

TEST_CASE("one step: the CUDA backend's batch loss and gradients equal the CPU backend's, every local kind, qk-norm") {
  // With qk-norm (spec §2.9), L G: the local layer's SWA branch and the global layer both normalise q and k;
  // the scales are moved away from 1 so that dq_norm, dk_norm and the scale's place (after RoPE) are exercised.
  const CpuBackend<float> cpu;
  const CudaOpsBackend cuda;
  struct Case {
    std::string kind;
    int qk_norm;
  };
  for (const Case& c : {Case{"rattn", 0}, Case{"swa", 0}, Case{"linear", 0}, Case{"rattn", 1}, Case{"swa", 1}}) {
    CAPTURE(c.kind);
    CAPTURE(c.qk_norm);
    ModelConfig m = tiny(c.kind);
    m.qk_norm = c.qk_norm;
    const Model<float> net_cpu(m, cpu), net_cuda(m, cuda);
    ModelParams<float> p = init_params<float>(m, 11);
    std::mt19937_64 rng(13);
    if (c.qk_norm)
      for (BlockParams<float>& b : p.blocks) {
        b.attn.q_norm += rattn_test::randn<Mat<float>>(1, m.head_dim, rng, 0.3);
        b.attn.k_norm += rattn_test::randn<Mat<float>>(1, m.head_dim, rng, 0.3);
      }
    const data::Batch batch = tiny_batch(5);
    BatchWorkspace<float> ws_cpu, ws_cuda;
    ModelParams<float> g_cpu = params_filled<float>(m, 0.0f), g_cuda = params_filled<float>(m, 0.0f);
    const double loss_cpu = batch_loss_and_grad(net_cpu, p, batch, ws_cpu, &g_cpu);
    const double loss_cuda = batch_loss_and_grad(net_cuda, p, batch, ws_cuda, &g_cuda);
    INFO("loss cpu " << loss_cpu << " cuda " << loss_cuda);
    CHECK(std::isfinite(loss_cuda));
    CHECK(std::abs(loss_cuda - loss_cpu) <= 1e-5 * std::abs(loss_cpu));
    // with qk-norm the parameter list holds the four scales (two per layer), all with a gradient
    int scales = 0;
    for (const NamedTensor<float>& nt : named_tensors(m, g_cpu))
      if (nt.name.ends_with("q_norm") || nt.name.ends_with("k_norm")) {
        ++scales;
        CHECK(nt.t->norm() > 0);
      }
    CHECK(scales == 4 * c.qk_norm);
    // float rounding in different orders (tiled matmuls, flash softmax, chunked RLA) through 2 layers
    CHECK(params_close("d", m, g_cuda, g_cpu, 1e-4));
    // the logits of the last sequence too (the forward alone)
    CHECK(rattn_test::check_close("logits", ws_cuda.acts[kB - 1].logits, ws_cpu.acts[kB - 1].logits, 1e-5));
  }
}

TEST_CASE("three AdamW steps: the CUDA path's losses and weights follow the CPU path's") {
  const ModelConfig m = tiny("rattn");
  const CpuBackend<float> cpu;
  const CudaOpsBackend cuda;
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

namespace {
// step -> the loss printed on train_tiny's progress line "step      2/3 | loss 5.7801 | ...".
std::map<long, std::string> step_losses(const std::string& out) {
  std::map<long, std::string> m;
  for (size_t pos = 0; (pos = out.find("step ", pos)) != std::string::npos; pos += 5) {
    long step = 0, total = 0;
    char loss[32] = {0};
    if (std::sscanf(out.c_str() + pos, "step %ld/%ld | loss %31s", &step, &total, loss) == 3) m[step] = loss;
  }
  return m;
}
}  // namespace

TEST_CASE("train_tiny --device cuda and cuda-ops: the same losses and weights, bit for bit, in every fiber and block order") {
  // Head dim 128 with sm2 at chunk 32: the RLA backward splits the values into 4 tiles, whose dq, dk
  // partials are summed; T = 136: the merge backward sums 3 blocks' dgamma partials per head. With float
  // atomics those sums would follow the block order and the runs would drift apart in the last bits.
  // Small enough for the sanitizer build (under ASan a step takes seconds here).
  // The checkpoint holds the weights and AdamW moments after the last step: equal files mean every
  // step's gradient was the same bits.
  rattn_test::TempDir dir("cuda_det");
  struct OrderRun {
    const char* order;         // EMU_ORDER: fibers and blocks of every launch
    const char* host_threads;  // EMU_HOST_THREADS: 2 runs two blocks at the same time
  };
  const OrderRun runs[] = {{"forward", "1"}, {"reverse", "1"}, {"random:6", "2"}};
  for (const std::string device : {"cuda-ops", "cuda"}) {
    CAPTURE(device);
    std::map<long, std::string> first_losses;
    std::string first_ckpt;
    for (const OrderRun& run : runs) {
      const std::string order = run.order, threads = run.host_threads;
      CAPTURE(order);
      CAPTURE(threads);
      rattn_test::ScopedEnv env_order("EMU_ORDER", run.order), env_threads("EMU_HOST_THREADS", run.host_threads);
      const std::string ckpt = dir / (device + order + "_" + threads + ".ckpt");
      const rattn_test::Run r = rattn_test::run_program(
          "train_tiny", {"--device", device, "--d-model", "32", "--heads", "1", "--kv-heads", "1", "--head-dim",
                         "128", "--layers", "1", "--pattern", "L", "--local", "rattn", "--feature-map", "sm2", "--window", "4",
                         "--chunk", "32", "--seq-len", "136", "--batch", "2", "--steps", "3", "--eval-interval", "0",
                         "--eval-seqs", "1", "--threads", "1", "--log-every", "1", "--ckpt", ckpt},
          300);
      INFO("stdout: " << r.out << "\nstderr: " << r.err);
      REQUIRE(r.status == 0);
      const std::map<long, std::string> losses = step_losses(r.out);
      REQUIRE(losses.size() == 3);
      const std::string bytes = rattn_test::slurp_file(ckpt);
      REQUIRE(!bytes.empty());
      if (first_ckpt.empty()) {
        first_losses = losses;
        first_ckpt = bytes;
        continue;
      }
      CHECK(losses == first_losses);
      const bool same_checkpoint = bytes == first_ckpt;  // a bool: doctest would print the whole files
      CHECK(same_checkpoint);
    }
  }
}
