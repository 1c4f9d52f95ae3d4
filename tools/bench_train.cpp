// tools/bench_train.cpp (bin/bench_train; GPU build bin/gpu/bench_train, run by `make gpu-check`): the
// device-resident training step (model/device_trainer.h) timed end to end.
//
// For each model: tokens per second of whole training steps (loss and gradient, clip, AdamW; the median of
// the timed steps, after one warm-up step), the share of the step each kernel takes, and the device memory
// the trainer holds.
//   default   bin/train_tiny's defaults: d_model 64, 2 heads of 32, 2 layers L L (rattn, w 16), T 128, B 32
//   large     d_model 512, 8 heads of 64, 8 layers L L L G (rattn, w 128, sm2, chunk 32), T 2048, B 8
//   tiny      d_model 16, 2 heads of 8 (1 kv head), layers L G, T 32, B 2: what the CPU layer runs in seconds
// The per-kernel shares come from separate profiled steps in which every launch is bracketed by
// cudaDeviceSynchronize and timed on the host (DeviceTrainer::attach_profile): they add launch latency to
// every kernel, so they show where the time goes, while the tokens/s line is the unprofiled step.
// Memory: the bytes of every device buffer the trainer holds (parameters, gradients, two moments, the
// activations the backward keeps, the workspaces), and on a GPU the drop in free device memory too.
// Batches: random bytes with next-byte targets (the time does not depend on the task).
//
//   bin/bench_train [--config default|large|tiny|all] [--steps K]
// On the CPU execution layer (the default build) the kernels run through the fiber emulator: the times are
// EMULATION times; only --config tiny is sensible there (tests/test_device_train.cpp runs it).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "model/device_trainer.h"

namespace {

struct BenchConfig {
  std::string name;
  model::ModelConfig m;
  int B, T;
};

BenchConfig make_config(const std::string& name) {
  BenchConfig c{name, {}, 32, 128};
  if (name == "large") {
    c.m.d_model = 512;
    c.m.n_heads = 8;
    c.m.n_kv_heads = 8;
    c.m.head_dim = 64;
    c.m.n_layers = 8;
    c.m.window = 128;
    c.B = 8;
    c.T = 2048;
  } else if (name == "tiny") {
    c.m.d_model = 16;
    c.m.n_heads = 2;
    c.m.n_kv_heads = 1;
    c.m.head_dim = 8;
    c.m.n_layers = 2;
    c.m.pattern = "LG";
    c.m.window = 4;
    c.m.chunk = 8;
    c.B = 2;
    c.T = 32;
  } else if (name != "default") {
    std::fprintf(stderr, "bench_train: --config: expected one of default|large|tiny|all, got '%s'\n", name.c_str());
    std::exit(2);
  }
  return c;
}

// B sequences of T random bytes, each position scored with the next byte.
data::Batch random_batch(int B, int T, std::mt19937_64& rng) {
  data::Batch b;
  b.B = B;
  b.T = T;
  std::uniform_int_distribution<int> byte(0, 255);
  b.tokens.resize(size_t(B) * T);
  for (int& t : b.tokens) t = byte(rng);
  b.targets.resize(b.tokens.size());
  for (size_t i = 0; i < b.tokens.size(); ++i) b.targets[i] = (i + 1) % size_t(T) ? b.tokens[i + 1] : byte(rng);
  return b;
}

// Free and total device memory (GPU builds; the CPU layer has no cudaMemGetInfo: zeros).
void device_memory(size_t& free_bytes, size_t& total_bytes) {
  free_bytes = total_bytes = 0;
#if defined(RATTN_CUDA_RUNTIME) || defined(__CUDACC__)
  cu::check(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
#endif
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void bench(const BenchConfig& bc, int steps) {
  const model::ModelConfig& m = bc.m;
  std::printf("== %s: d_model %d, %d layers %s (%s, w %d), heads %d (kv %d) x %d, ffn %d, %ld parameters; "
              "B x T = %d x %d\n",
              bc.name.c_str(), m.d_model, m.n_layers, m.layer_string().c_str(), m.local_kind.c_str(), m.window,
              m.n_heads, m.n_kv_heads, m.head_dim, m.ffn(), model::parameter_count(m), bc.B, bc.T);
  size_t free0 = 0, total = 0;
  const bool gpu = !cu::on_cpu_layer();
  device_memory(free0, total);
  model::DeviceTrainer dev(m, bc.B, bc.T);
  model::ModelParams<float> p = model::init_params<float>(m, 1), mom = model::params_filled<float>(m, 0.0f),
                            var = mom;
  dev.upload(p, mom, var);
  std::mt19937_64 rng(1);
  const data::Batch batch = random_batch(bc.B, bc.T, rng);
  const ref::AdamW adamw{.lr = 1e-3};
  long step = 0;
  auto one_step = [&] {
    const double loss = dev.loss_and_grad(batch);
    dev.clip_grad_norm(1.0f);
    dev.adamw_step(++step, adamw);
    cu::check(cudaDeviceSynchronize(), "sync");
    return loss;
  };
  const double first_loss = one_step();  // warm-up: the attention core sizes its buffers here
  std::vector<double> times;
  double loss = first_loss;
  for (int s = 0; s < steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    loss = one_step();
    times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  const double t = times[times.size() / 2];
  std::printf("step %.3f ms (median of %d) | %.0f tokens/s | loss %.4f -> %.4f\n", 1e3 * t, steps,
              double(bc.B) * bc.T / t, first_loss, loss);
  std::printf("memory held: %.1f MiB of device buffers", double(dev.bytes_held()) / (1 << 20));
  if (gpu) {
    size_t free1 = 0;
    device_memory(free1, total);
    std::printf(" (free device memory dropped by %.1f MiB of %.1f GiB)", double(free0 - free1) / (1 << 20),
                double(total) / (1 << 30));
  }
  std::printf("\n");

  model::DeviceTrainer::Profile prof;
  dev.attach_profile(&prof);
  const int profiled = std::max(1, std::min(steps, 3));
  for (int s = 0; s < profiled; ++s) one_step();
  dev.attach_profile(nullptr);
  double sum = 0;
  for (const auto& kv : prof) sum += kv.second;
  std::vector<std::pair<std::string, double>> rows(prof.begin(), prof.end());
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  std::printf("share of the step by kernel (%d profiled steps, %.3f ms/step synchronized):\n", profiled,
              1e3 * sum / profiled);
  for (const auto& [name, secs] : rows)
    std::printf("  %-32s %6.1f %%  %9.3f ms/step\n", name.c_str(), 100 * secs / sum, 1e3 * secs / profiled);
}

}  // namespace

int main(int argc, char** argv) {
  std::string which = cu::on_cpu_layer() ? "tiny" : "all";
  int steps = cu::on_cpu_layer() ? 2 : 10;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--config" && i + 1 < argc) which = argv[++i];
    else if (a == "--steps" && i + 1 < argc) steps = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "bench_train: unknown argument '%s' (usage: bench_train [--config default|large|tiny|all] "
                           "[--steps K])\n", a.c_str());
      return 2;
    }
  }
  if (steps < 1) {
    std::fprintf(stderr, "bench_train: --steps: expected a number >= 1\n");
    return 2;
  }
  std::vector<std::string> names = which == "all" ? std::vector<std::string>{"default", "large"}
                                                  : std::vector<std::string>{which};
  std::vector<BenchConfig> configs;
  for (const std::string& n : names) configs.push_back(make_config(n));  // bad names exit 2 before any work
  if (!cu::device_available()) {
    std::printf("bench_train: no CUDA device; nothing to measure\n");
    return 0;
  }
  std::printf("bench_train: %s\n", cu::on_cpu_layer()
                                       ? "CPU EXECUTION LAYER (fiber emulator): EMULATION times, not GPU times"
                                       : "GPU (nvcc build), fp32 kernels of cuda/, no TF32");
  for (const BenchConfig& c : configs) bench(c, steps);
  return 0;
}
