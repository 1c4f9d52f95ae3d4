// The device-resident training step (model/device_trainer.h, train_tiny --device cuda) on the CPU
// execution layer, against the CPU trainer (model/model.h through model/backend_cpu.h):
//   - one step's loss and every parameter gradient against the model in double, each local kind: the
//     device's fp32 error must be of the size of the CPU's own fp32 error;
//   - 20 steps of model::train on both devices (6 under the sanitizers): the same losses to the tolerance
//     argued below;
//   - the same losses and checkpoint bit for bit in every fiber and block order of the CPU layer;
//   - a checkpoint written by the device run resumes on the CPU and on the device;
//   - what it cannot run is refused with one line and status 2.
// Tiny shapes: the kernels run emulated, one fiber per CUDA thread.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "model/backend_cpu.h"
#include "model/checkpoint.h"
#include "model/device_trainer.h"
#include "model/model.h"
#include "model/trainer.h"
#include "tests/check.h"
#include "tests/proc.h"
#include "tests/train_setup.h"

using namespace model;
using ref::Mat;

namespace {

// tests/train_setup.h's L G stack with GQA (2 query heads, 1 kv head, D = 8, w = 4, T = 32, chunk 8),
// with the local kind given.
Config tiny(const std::string& kind, long steps, int qk_norm = 0) {
  Config c = rattn_test::tiny_run(steps);
  c.model.local_kind = kind;
  c.model.qk_norm = qk_norm;
  return c;
}

// The local kinds, and with qk-norm (spec §2.9: the SWA branch and the global layer) where it applies.
const std::vector<std::pair<std::string, int>> kKinds = {{"rattn", 0}, {"swa", 0}, {"linear", 0}, {"rattn", 1},
                                                         {"swa", 1}};

template <class To, class From>
ModelParams<To> cast_params(const ModelConfig& m, ModelParams<From>& p) {
  ModelParams<To> out = params_filled<To>(m, To(1));
  std::vector<NamedTensor<From>> src = named_tensors(m, p);
  std::vector<NamedTensor<To>> dst = named_tensors(m, out);
  for (size_t i = 0; i < src.size(); ++i) *dst[i].t = src[i].t->template cast<To>();
  return out;
}

// Losses of a run of model::train on device, in-process (progress lines go to a string).
TrainOutcome train_on(const Config& c, const std::string& device, const std::string& ckpt,
                      const std::string& resume = "") {
  RunConfig r = rattn_test::quiet_run(ckpt);
  r.device = device;
  r.resume = resume;
  r.threads = 1;
  r.final_table = false;
  std::ostringstream out;
  TrainOutcome res = train(c, r, out);
  INFO(out.str());
  REQUIRE(res.status == 0);
  return res;
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

}  // namespace

TEST_CASE("one step: the device's loss and gradients are as close to the double model as the CPU's fp32 ones") {
  for (const auto& [kind, qk] : kKinds) {
    CAPTURE(kind);
    CAPTURE(qk);
    const Config c = tiny(kind, 1, qk);
    const ModelConfig& m = c.model;
    ModelParams<float> p = init_params<float>(m, 7);
    data::Batch batch;
    std::mt19937_64 rng(train_seed(c));
    make_task(c)->sample(rng, c.train.batch, batch);

    const CpuBackend<float> cpu32;
    const CpuBackend<double> cpu64;
    const Model<float> net32(m, cpu32);
    const Model<double> net64(m, cpu64);
    BatchWorkspace<float> ws32;
    BatchWorkspace<double> ws64;
    ModelParams<float> g32 = params_filled<float>(m, 0.0f), gdev = params_filled<float>(m, 0.0f);
    ModelParams<double> p64 = cast_params<double>(m, p), g64 = params_filled<double>(m, 0.0);
    const double loss32 = batch_loss_and_grad(net32, p, batch, ws32, &g32);
    const double loss64 = batch_loss_and_grad(net64, p64, batch, ws64, &g64);

    DeviceTrainer dev(m, c.train.batch, c.train.seq_len);
    ModelParams<float> zero = params_filled<float>(m, 0.0f), zero2 = zero;
    dev.upload(p, zero, zero2);
    const double loss_dev = dev.loss_and_grad(batch);
    dev.download_grads(gdev);

    INFO("loss: fp64 " << loss64 << ", cpu fp32 " << loss32 << ", device " << loss_dev);
    // The loss is a mean of B*T cross-entropies of about 5.5: fp32 rounding of the logits gives ~1e-7.
    CHECK(std::abs(loss_dev - loss64) <= 2 * std::abs(loss32 - loss64) + 1e-6 * std::abs(loss64));
    // Every gradient: err(device, fp64) <= 2 err(cpu fp32, fp64) + 1e-5 (tests/cuda/ops_check.h's bar, relative
    // to the RMS of the whole gradient so that near-zero tensors are judged on the family's scale).
    std::vector<NamedTensor<float>> D = named_tensors(m, gdev), F = named_tensors(m, g32);
    std::vector<NamedTensor<double>> R = named_tensors(m, g64);
    double scale = 0;
    long count = 0;
    for (const NamedTensor<double>& r : R) scale += r.t->squaredNorm(), count += r.t->size();
    scale = std::sqrt(scale / double(count));
    for (size_t i = 0; i < D.size(); ++i) {
      CAPTURE(D[i].name);
      const double e32 = rattn_test::compare(*F[i].t, *R[i].t, scale).rel_rms;
      CHECK(rattn_test::check_close(D[i].name, *D[i].t, *R[i].t, 2 * e32 + 1e-5, scale));
    }
  }
}

TEST_CASE("training steps: the device-resident loop's losses follow the CPU trainer's") {
  // Tolerance: the two trainers compute the same step in fp32 with different summation orders (a batch-wide
  // SGEMM against per-sequence products summed in a tree, flash softmax, chunked RLA), so each gradient differs
  // by ~1e-6 relative (the test above), and AdamW divides by sqrt(v) ~ |g|: an update differs by about that
  // fraction of lr = 1e-2, ~1e-8 per weight per step. Measured over 20 steps: losses within 6e-8 relative on
  // every kind. The bar, 1e-5 relative, leaves two orders of magnitude for other compilers and instruction sets
  // and is 1000x below the loss's change per step (~1e-2): a wrong term in any gradient fails it.
  // Under the sanitizers 6 steps: every step runs the same kernels, and 20 of them took 6 of the 8 minutes
  // of this binary under ASan.
  const long steps = rattn_test::kSanitized ? 6 : 20;
  rattn_test::TempDir dir("devtrain");
  for (const auto& [kind, qk] : kKinds) {
    CAPTURE(kind);
    CAPTURE(qk);
    const Config c = tiny(kind, steps, qk);
    const std::string name = kind + (qk ? "_qk" : "");
    const TrainOutcome cpu = train_on(c, "cpu", dir / (name + "_cpu.ckpt"));
    const TrainOutcome dev = train_on(c, "cuda", dir / (name + "_dev.ckpt"));
    REQUIRE(dev.losses.size() == size_t(steps));
    REQUIRE(cpu.losses.size() == size_t(steps));
    double worst = 0;
    for (size_t s = 0; s < size_t(steps); ++s)
      worst = std::max(worst, std::abs(dev.losses[s] - cpu.losses[s]) / cpu.losses[s]);
    INFO("largest relative loss difference over " << steps << " steps: " << worst);
    CHECK(worst <= 1e-5);
    CHECK(dev.losses.back() < dev.losses.front());  // it trains
    // the closing evaluation of the device run (on the host, from its downloaded weights) agrees too
    CHECK(std::abs(dev.final_eval.loss() - cpu.final_eval.loss()) <= 1e-5 * cpu.final_eval.loss());
  }
}

TEST_CASE("--rla-gain-init 0 --rla-hold on the device: gamma_rla held, then released, as on the CPU") {
  // The hold zeroes gamma_rla's slice of the flat device gradient before the clip (DeviceTrainer::
  // zero_grads_ending); the tolerance is the test above's.
  rattn_test::TempDir dir("devhold");
  Config c = tiny("rattn", 8);
  c.train.rla_gain_init = 0;
  c.train.rla_hold = 4;
  const TrainOutcome cpu = train_on(c, "cpu", dir / "hold_cpu.ckpt");
  const TrainOutcome dev = train_on(c, "cuda", dir / "hold_dev.ckpt");
  REQUIRE(dev.losses.size() == 8);
  for (size_t s = 0; s < 8; ++s) CHECK(std::abs(dev.losses[s] - cpu.losses[s]) <= 1e-5 * cpu.losses[s]);
  Config held = c;
  held.train.steps = 4;
  train_on(held, "cuda", dir / "hold4_dev.ckpt");
  CHECK(load_checkpoint<float>(dir / "hold4_dev.ckpt").params.blocks[0].attn.gamma_rla.cwiseAbs().maxCoeff() == 0);
  CHECK(load_checkpoint<float>(dir / "hold_dev.ckpt").params.blocks[0].attn.gamma_rla.cwiseAbs().maxCoeff() > 0);
}

TEST_CASE("the device-resident loop: the same losses and checkpoint, bit for bit, in every fiber and block order") {
  struct OrderRun {
    const char* order;         // EMU_ORDER
    const char* host_threads;  // EMU_HOST_THREADS
  };
  const OrderRun runs[] = {{"forward", "1"}, {"reverse", "1"}, {"random:7", "1"}, {"random:8", "2"}};
  rattn_test::TempDir dir("devorder");
  for (const std::string kind : {"rattn", "linear"}) {
    CAPTURE(kind);
    Config c = tiny(kind, 4);
    c.train.clip = 0.05;  // clipping on every step: the norm's reduction is part of what must not move
    std::vector<double> first;
    std::string first_ckpt;
    for (const OrderRun& run : runs) {
      CAPTURE(run.order);
      CAPTURE(run.host_threads);
      rattn_test::ScopedEnv o("EMU_ORDER", run.order), t("EMU_HOST_THREADS", run.host_threads);
      const std::string ckpt = dir / (kind + run.order + run.host_threads + ".ckpt");
      const TrainOutcome r = train_on(c, "cuda", ckpt);
      const std::string bytes = rattn_test::slurp_file(ckpt);
      REQUIRE(!bytes.empty());
      if (first.empty()) {
        first = r.losses;
        first_ckpt = bytes;
        continue;
      }
      CHECK(same_bits(r.losses, first));
      const bool same_checkpoint = bytes == first_ckpt;  // a bool: doctest would print the whole files
      CHECK(same_checkpoint);
    }
  }
}

TEST_CASE("a checkpoint of the device run resumes on the CPU and on the device") {
  // n steps at once against n/2 and n/2 more (under the sanitizers n = 8: the same paths, fewer times).
  const long n = rattn_test::kSanitized ? 8 : 20, half = n / 2;
  rattn_test::TempDir dir("devresume");
  Config cn = tiny("rattn", n);
  cn.train.cosine = 0;  // a constant lr after warmup: n/2 steps then n/2 more is the schedule of n at once
  Config chalf = cn;
  chalf.train.steps = half;
  const TrainOutcome whole = train_on(cn, "cuda", dir / "whole.ckpt");
  REQUIRE(whole.losses.size() == size_t(n));
  const std::vector<double> last_half(whole.losses.begin() + half, whole.losses.end());
  train_on(chalf, "cuda", dir / "dev_half.ckpt");
  // The device's checkpoint loads as any other (model/checkpoint.h), with the step and the AdamW moments.
  TrainState<float> st = load_checkpoint<float>(dir / "dev_half.ckpt");
  CHECK(st.step == half);
  double msum = 0;
  for (NamedTensor<float>& nt : named_tensors(st.config.model, st.m)) msum += nt.t->cwiseAbs().sum();
  CHECK(msum > 0);
  // Resumed on the device: bit for bit the steps n/2+1..n of the run that was never interrupted.
  const TrainOutcome dev_resumed = train_on(cn, "cuda", dir / "dev_resumed.ckpt", dir / "dev_half.ckpt");
  CHECK(dev_resumed.first_step == half + 1);
  CHECK(same_bits(dev_resumed.losses, last_half));
  // Resumed on the CPU: the CPU trainer continues it, within the tolerance above of the device's.
  const TrainOutcome cpu_resumed = train_on(cn, "cpu", dir / "cpu_resumed.ckpt", dir / "dev_half.ckpt");
  REQUIRE(cpu_resumed.losses.size() == size_t(half));
  for (size_t s = 0; s < size_t(half); ++s) {
    CAPTURE(s);
    CHECK(std::abs(cpu_resumed.losses[s] - last_half[s]) <= 1e-5 * last_half[s]);
  }
  // And a CPU checkpoint resumes on the device.
  Config cmore = cn;
  cmore.train.steps = n + 2;
  const TrainOutcome back = train_on(cmore, "cuda", dir / "back.ckpt", dir / "cpu_resumed.ckpt");
  CHECK(back.losses.size() == 2);
}

TEST_CASE("train_tiny --device cuda refuses what the kernels cannot run: one line, status 2") {
  CHECK(device_trainer_refusal(tiny("rattn", 1).model).empty());
  rattn_test::TempDir dir("devrefuse");
  const rattn_test::Run r = rattn_test::run_program(
      "train_tiny", {"--device", "cuda", "--head-dim", "160", "--d-model", "32", "--heads", "1", "--kv-heads", "1",
                     "--layers", "1", "--seq-len", "32", "--batch", "1", "--steps", "1", "--ckpt", dir / "x.ckpt"});
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.status == 2);
  CHECK(r.err.find("head dims up to 128") != std::string::npos);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
}

TEST_CASE("bin/bench_train --config tiny: tokens/s, memory and a per-kernel share that adds up to the step") {
  const rattn_test::Run r = rattn_test::run_program("bench_train", {"--config", "tiny", "--steps", "1"}, 300);
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.status == 0);
  double ms = 0, tok = 0, mib = 0;
  const size_t at = r.out.find("\nstep ");
  REQUIRE(at != std::string::npos);
  CHECK(std::sscanf(r.out.c_str() + at, "\nstep %lf ms (median of 1) | %lf tokens/s", &ms, &tok) == 2);
  CHECK(ms > 0);
  // B x T = 2 x 32 tokens per step; tokens/s is printed rounded to an integer (under a sanitizer a step
  // takes about 2 s here: 32.4 prints as 32), so within half a unit of it, or 1 % when it is large.
  const double want_tok = 2 * 32 / (ms / 1000);
  CHECK(std::abs(tok - want_tok) <= std::max(0.5 + 1e-9, 0.01 * want_tok));
  const size_t mem = r.out.find("memory held: ");
  REQUIRE(mem != std::string::npos);
  CHECK(std::sscanf(r.out.c_str() + mem, "memory held: %lf MiB", &mib) == 1);
  // at least the parameters, their gradients and two moments: 4 x 14448 floats
  CHECK(mib * (1 << 20) >= 4.0 * 14448 * 4);
  // The share lines: every kernel of the step appears once, and the shares add up to 100 %.
  double total = 0;
  int rows = 0;
  for (const char* name : {"embedding_forward", "rmsnorm_forward", "linear_forward", "attn_core_rattn_forward",
                           "attn_core_global_forward", "swiglu_forward", "add", "cross_entropy_forward",
                           "sum_ordered", "cross_entropy_backward", "zero_grads", "linear_backward",
                           "rmsnorm_backward", "swiglu_backward", "attn_core_rattn_backward",
                           "attn_core_global_backward", "embedding_backward", "clip_grad_norm", "adamw"}) {
    CAPTURE(name);
    const size_t pos = r.out.find("  " + std::string(name) + " ");
    REQUIRE(pos != std::string::npos);
    double share = -1;
    CHECK(std::sscanf(r.out.c_str() + pos + 2 + std::strlen(name), " %lf %%", &share) == 1);
    CHECK(share >= 0);
    total += share;
    ++rows;
  }
  CHECK(rows == 19);
  CHECK(total == doctest::Approx(100).epsilon(0.01));  // each printed to 0.1 %: 19 roundings of <= 0.05
}
