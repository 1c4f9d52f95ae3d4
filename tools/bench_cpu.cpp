// tools/bench_cpu.cpp: CPU benchmarks (float32) of the ops and of the tiny model's training step.
// A benchmark, not a test: it prints one row per config with the time, a rate (FLOP/s or
// tokens/s) and the ratio to a named baseline measured in the same run, and fails only on a crash.
//
//   bin/bench_cpu                 every section (a few minutes on 2 cores)
//   bin/bench_cpu --quick         fewer repetitions and sizes (about a minute)
//   bin/bench_cpu --section NAME  one of: swa rla matmul model
//   bin/bench_cpu --step CONFIG --threads N [--steps K]
//                                 only the training step of one named model config; prints one
//                                 machine-readable line "step CONFIG threads N ms M" (used by
//                                 scripts/bench_compare.sh next to scripts/bench_torch.py)
//
// Times: each measurement is repeated; the row shows the MEDIAN of the repetitions (the minimum
// would flatter us). The op sections run on one thread (Eigen too) and report that thread's CPU
// time, which other jobs on a shared machine disturb much less than wall time. The model section
// reports wall time (what a user waits for) and the CPU time summed over threads.
//
// FLOP formulas (a multiply-add counts 2; exp, max and divisions are not counted):
//   SWA (one sequence, H heads, head dim D, window w; L_t = min(t, w) + 1 keys for query t):
//     forward   4 D H sum_t L_t      (scores q.k: 2D, output p v: 2D per key)
//     backward 10 D H sum_t L_t      (recomputed scores 2D; dv, dp, dq, dk: 2D each per key)
//     (useful work only: the blocked form also computes the masked entries of its tiles)
//   RLA (one sequence, H = G heads, Dp = 2D for sm2):
//     masked forward     2 H T^2 (Dp + D)        (the full (T, T) scores, then P V)
//     masked backward    2 H T^2 (2 Dp + 3 D)     (P, dP, dQ~, dK~, dV: five (T, T) products)
//     recurrent forward  4 H T Dp D              (fold S += phi(k)^T v and read phi(q) S per token)
//     chunked forward    2 H T (2 Dp D + C (Dp + D))   (inter Q~S and state update; intra block ~C keys)
//     chunked backward   about 2.5x the chunked forward (two sweeps)
//   matmul (M, K) x (K, N): 2 M K N.
//   model training step ("model FLOPs", the usual 6N rule plus attention):
//     6 * tokens * parameters (model::parameter_count: per layer 2 C H D + 2 C G D + 3 C F, the head C V,
//     and the norm scales, a fraction of a percent)
//     + 3 * forward attention FLOPs (local swa 4 H D (w+1) per token, global 2 H D (T+1) per token,
//       rattn adds the chunked RLA forward above)
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "data/tasks.h"
#include "model/backend_cpu.h"
#include "model/model.h"
#include "model/params.h"
#include "model/trainer.h"
#include "ref/attention.h"
#include "ref/attention_blocked.h"
#include "ref/linear.h"
#include "ref/rla.h"

namespace {

using ref::Mat;
using Clock = std::chrono::steady_clock;

bool g_quick = false;

double now_ms() { return std::chrono::duration<double, std::milli>(Clock::now().time_since_epoch()).count(); }
// CPU time of the whole process (all threads), ms.
double process_cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// CPU time of the calling thread, ms.
double thread_cpu_ms() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

// Median time of one call of f in ms, as CPU time of this thread (the op benchmarks are single-
// threaded, and CPU time is far less disturbed than wall time by other jobs on a shared machine):
// one warm-up call, then `reps` repetitions, each running f enough times to last about
// min_ms / reps (so fast ops are timed over many calls).
double time_ms(const std::function<void()>& f, double min_ms, int reps) {
  double t0 = thread_cpu_ms();
  f();  // warm-up (and first estimate)
  const double one = std::max(1e-3, thread_cpu_ms() - t0);
  const int inner = std::max(1, int(min_ms / reps / one));
  std::vector<double> per_call;
  for (int r = 0; r < reps; ++r) {
    t0 = thread_cpu_ms();
    for (int i = 0; i < inner; ++i) f();
    per_call.push_back((thread_cpu_ms() - t0) / inner);
  }
  return median(per_call);
}

Mat<float> randn(long rows, long cols, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> nd(0.0, scale);
  Mat<float> m(rows, cols);
  for (long i = 0; i < m.size(); ++i) m.data()[i] = float(nd(rng));
  return m;
}

// ---------------------------------------------------------------------------------------------
// SWA forward + backward against T at a fixed window: the cost must grow linearly in T. Both the
// reference (ref/attention.h: a query and a key at a time) and the blocked form the training step
// uses (ref/attention_blocked.h: a block of queries against its key tile with two products).
struct SwaTimes { double fwd, total; };

// One SWA problem (random q, k, v and output gradient) and its forward / forward+backward calls.
struct SwaCase {
  bool blocked;
  int H, G, w;
  float scale;
  Mat<float> q, k, v, dout, o, dq, dk, dv;
  SwaCase(bool blocked_, int T, int H_, int G_, int D, int w_, std::mt19937_64& rng)
      : blocked(blocked_), H(H_), G(G_), w(w_), scale(1.0f / std::sqrt(float(D))),
        q(randn(T, H_ * D, rng)), k(randn(T, G_ * D, rng)), v(randn(T, G_ * D, rng)), dout(randn(T, H_ * D, rng)) {}
  void fwd() {
    o = blocked ? ref::swa_forward_blocked(q, k, v, H, G, w, scale) : ref::swa_forward(q, k, v, H, G, w, scale);
  }
  void fwd_bwd() {
    fwd();
    if (blocked) ref::swa_backward_blocked(q, k, v, dout, H, G, w, scale, dq, dk, dv);
    else ref::swa_backward(q, k, v, dout, H, G, w, scale, dq, dk, dv);
  }
};

SwaTimes time_swa(bool blocked, int T, int H, int G, int D, int w, std::mt19937_64& rng) {
  SwaCase c(blocked, T, H, G, D, w, rng);
  const double budget = g_quick ? 150 : 500;
  return {time_ms([&] { c.fwd(); }, budget, 5), time_ms([&] { c.fwd_bwd(); }, budget, 5)};
}

// time(b) / time(a) as the median over `rounds` rounds in which a and b are timed back to back, so
// that a change of machine load between the two (other jobs on a shared machine) cancels in the ratio.
double paired_ratio(const std::function<void()>& a, const std::function<void()>& b, int rounds, double budget_ms) {
  std::vector<double> r;
  for (int i = 0; i < rounds; ++i) {
    const double ta = time_ms(a, budget_ms / rounds, 1);
    r.push_back(time_ms(b, budget_ms / rounds, 1) / ta);
  }
  return median(r);
}

void bench_swa() {
  const int H = 2, G = 2, D = 32, w = 64;
  std::printf("\n## SWA forward+backward, H=%d G=%d D=%d w=%d, one sequence\n", H, G, D, w);
  std::printf("%-34s %9s %11s %9s %10s %12s\n", "config", "fwd ms", "fwd+bwd ms", "GFLOP/s", "vs T=2048",
              "blocked speed");
  std::mt19937_64 rng(1);
  const std::vector<int> Ts = {512, 1024, 2048, 4096};
  for (bool blocked : {false, true}) {
    std::vector<SwaTimes> t;
    for (int T : Ts) t.push_back(time_swa(blocked, T, H, G, D, w, rng));
    for (size_t i = 0; i < Ts.size(); ++i) {
      double keys = 0;  // sum_t L_t
      for (int u = 0; u < Ts[i]; ++u) keys += std::min(u, w) + 1;
      char name[80];
      std::snprintf(name, sizeof name, "%s T=%d", blocked ? "blocked  " : "reference", Ts[i]);
      std::printf("%-34s %9.2f %11.2f %9.2f %9.2fx\n", name, t[i].fwd, t[i].total, 14.0 * D * H * keys / (t[i].total * 1e6),
                  t[i].total / t[2].total);
    }
    // The target ratio, measured in interleaved rounds (the column above times each T once, in order).
    SwaCase c2048(blocked, 2048, H, G, D, w, rng), c4096(blocked, 4096, H, G, D, w, rng);
    const double r = paired_ratio([&] { c2048.fwd_bwd(); }, [&] { c4096.fwd_bwd(); }, g_quick ? 5 : 9, g_quick ? 600 : 2000);
    std::printf("%s: time(T=4096) / time(T=2048) = %.2f, median of interleaved rounds   (linear = 2.0; target <= 2.2: %s)\n",
                blocked ? "blocked" : "reference", r, r <= 2.2 ? "met" : "NOT met");
  }
  // The shapes of the tiny model's training step: T = 128, local w = 16 and a global layer.
  for (int wm : {16, -1}) {
    const SwaTimes a = time_swa(false, 128, H, G, D, wm, rng), b = time_swa(true, 128, H, G, D, wm, rng);
    double keys = 0;
    for (int u = 0; u < 128; ++u) keys += wm < 0 ? u + 1 : std::min(u, wm) + 1;
    char name[80];
    std::snprintf(name, sizeof name, "T=128 w=%d reference", wm);
    std::printf("%-34s %9.3f %11.3f %9.2f %10s %12s\n", name, a.fwd, a.total, 14.0 * D * H * keys / (a.total * 1e6), "", "(baseline)");
    std::snprintf(name, sizeof name, "T=128 w=%d blocked", wm);
    std::printf("%-34s %9.3f %11.3f %9.2f %10s %11.2fx\n", name, b.fwd, b.total, 14.0 * D * H * keys / (b.total * 1e6), "",
                a.total / b.total);
  }
}

// ---------------------------------------------------------------------------------------------
// RLA: masked (quadratic, the definition) vs recurrent (token by token) vs chunked (training form).
void bench_rla() {
  const int H = 2, G = 2, D = 32, w = 64, T = 2048;
  const ref::FeatureMap fm = ref::FeatureMap::sm2;
  const int Dp = ref::feature_dim(fm, D);
  std::printf("\n## RLA at T=%d, H=%d G=%d D=%d (Dp=%d, sm2) w=%d, one sequence (ref/rla.h)\n", T, H, G, D, Dp, w);
  std::printf("%-30s %10s %10s %14s\n", "form", "ms", "GFLOP/s", "speed vs masked");
  std::mt19937_64 rng(2);
  const Mat<float> q = randn(T, H * D, rng), k = randn(T, G * D, rng), v = randn(T, G * D, rng);
  const Mat<float> dout = randn(T, H * D, rng);
  Mat<float> o;
  ref::RlaGrads<float> g;
  const double budget = g_quick ? 300 : 1000;
  const int reps = g_quick ? 3 : 5;
  const double t_mask_f = time_ms([&] { o = ref::rla_forward_masked(q, k, v, H, G, w, fm); }, budget, reps);
  const double t_mask_b = time_ms([&] { g = ref::rla_backward_masked(q, k, v, dout, H, G, w, fm); }, budget, reps);
  const double t_rec_f = time_ms([&] { o = ref::rla_forward_recurrent(q, k, v, H, G, w, fm); }, budget, reps);
  struct Row { std::string name; double ms, flop, base; };
  std::vector<Row> rows;
  const double TT = double(T) * T;
  rows.push_back({"masked forward", t_mask_f, 2.0 * H * TT * (Dp + D), t_mask_f});
  rows.push_back({"recurrent forward", t_rec_f, 4.0 * H * T * Dp * D, t_mask_f});
  for (int C : {32, 64, 128}) {
    const double t = time_ms([&] { o = ref::rla_forward_chunked(q, k, v, H, G, w, fm, C); }, budget, reps);
    rows.push_back({"chunked forward C=" + std::to_string(C), t, 2.0 * H * T * (2.0 * Dp * D + C * (Dp + D)), t_mask_f});
  }
  rows.push_back({"masked backward", t_mask_b, 2.0 * H * TT * (2 * Dp + 3 * D), t_mask_b});
  double best_ratio = 0;
  for (int C : {32, 64, 128}) {
    const double t = time_ms([&] { g = ref::rla_backward_chunked(q, k, v, dout, H, G, w, fm, C); }, budget, reps);
    rows.push_back({"chunked backward C=" + std::to_string(C), t, 2.5 * 2.0 * H * T * (2.0 * Dp * D + C * (Dp + D)), t_mask_b});
  }
  for (const Row& r : rows) {
    std::printf("%-30s %10.2f %10.2f %13.1fx\n", r.name.c_str(), r.ms, r.flop / (r.ms * 1e6), r.base / r.ms);
    if (r.name.rfind("chunked forward", 0) == 0) best_ratio = std::max(best_ratio, r.base / r.ms);
  }
  std::printf("chunked forward vs masked forward: best %.1fx   (target >= 5x: %s)\n", best_ratio,
              best_ratio >= 5 ? "met" : "NOT met");
}

// ---------------------------------------------------------------------------------------------
// The Eigen products of the linear layers (ref/linear.h), at the tiny model's shapes (T=128, C=64,
// F=176, V=256), forward y = x W and the two backward products; a large square product as the
// baseline (what Eigen reaches when the matrices are big enough to amortise everything).
void bench_matmul() {
  std::printf("\n## matmul (Eigen, 1 thread), y = x W as in ref/linear.h\n");
  std::printf("%-40s %10s %10s %14s\n", "shape", "us", "GFLOP/s", "vs 512^3");
  std::mt19937_64 rng(3);
  const double budget = g_quick ? 100 : 300;
  auto gemm = [&](long M, long K, long N) {
    const Mat<float> x = randn(M, K, rng), W = randn(K, N, rng);
    Mat<float> y;
    const double ms = time_ms([&] { y = ref::linear_forward(x, W); }, budget, 5);
    return std::make_pair(ms, 2.0 * M * K * N / (ms * 1e6));
  };
  const auto base = gemm(512, 512, 512);
  std::printf("%-40s %10.1f %10.2f %13.2fx\n", "(512,512) x (512,512) [baseline]", base.first * 1e3, base.second, 1.0);
  struct Shape { const char* name; long M, K, N; };
  const Shape shapes[] = {
      {"x W_Q: (128,64) x (64,64)", 128, 64, 64},
      {"x W1: (128,64) x (64,176)", 128, 64, 176},
      {"g W2: (128,176) x (176,64)", 128, 176, 64},
      {"h W_out: (128,64) x (64,256)", 128, 64, 256},
      {"(4096,64) x (64,176) [batch as rows]", 4096, 64, 176},
  };
  for (const Shape& s : shapes) {
    const auto r = gemm(s.M, s.K, s.N);
    std::printf("%-40s %10.1f %10.2f %13.2fx\n", s.name, r.first * 1e3, r.second, r.second / base.second);
  }
  // backward of x W_out: dW += x^T dy and dx = dy W^T (ref::linear_backward does both)
  {
    const Mat<float> x = randn(128, 64, rng), W = randn(64, 256, rng), dy = randn(128, 256, rng);
    Mat<float> dW = Mat<float>::Zero(64, 256), dx;
    const double ms = time_ms([&] { dx = ref::linear_backward(x, W, dy, dW); }, budget, 5);
    const double gf = 2.0 * 2.0 * 128 * 64 * 256 / (ms * 1e6);
    std::printf("%-40s %10.1f %10.2f %13.2fx\n", "linear_backward W_out (x^T dy, dy W^T)", ms * 1e3, gf, gf / base.second);
  }
}

// ---------------------------------------------------------------------------------------------
// The training step of the project's model (model/model.h, through its public API), as in
// model/trainer.cpp: sample a batch, batch_loss_and_grad, clip, AdamW on every tensor.
struct ModelBench {
  const char* name;
  const char* pattern;
  int layers;
  const char* local;
  int T, w, B;
};

const ModelBench kConfigs[] = {
    {"LLLG-swa", "LLLG", 4, "swa", 128, 16, 32},
    {"LLLG-rattn", "LLLG", 4, "rattn", 128, 16, 32},
    {"LL-swa", "LL", 2, "swa", 128, 16, 32},
    {"LL-rattn", "LL", 2, "rattn", 128, 16, 32},
    {"LLLG-swa-T512", "LLLG", 4, "swa", 512, 64, 32},
    {"LLLG-rattn-T512", "LLLG", 4, "rattn", 512, 64, 32},
};

model::ModelConfig model_config(const ModelBench& b) {
  model::ModelConfig m;  // d_model 64, 2 heads (2 kv heads) of dim 32, SwiGLU F = 176, chunk 32
  m.n_layers = b.layers;
  m.pattern = b.pattern;
  m.local_kind = b.local;
  m.window = b.w;
  return m;
}

// "Model FLOPs" of one training step (see the header comment).
double step_flops(const ModelBench& b) {
  const model::ModelConfig m = model_config(b);
  const double H = m.n_heads, D = m.head_dim;
  const double tokens = double(b.B) * b.T;
  const double params = double(model::parameter_count(m));  // norm scales included: negligible
  double attn = 0;  // forward, per token
  for (int l = 0; l < m.n_layers; ++l) {
    if (m.is_global(l)) {
      attn += 2 * H * D * (b.T + 1);
    } else {
      attn += 4 * H * D * (b.w + 1);
      if (std::string(b.local) == "rattn") attn += 2 * H * (2.0 * 2 * D * D + m.chunk * (3 * D));
    }
  }
  return 6 * tokens * params + 3 * tokens * attn;
}

struct StepTime {
  double wall_ms;  // median wall time of one step
  double cpu_ms;   // median CPU time of one step, summed over the threads
};

// Training steps of config b, alternating between the thread counts in `threads` step by step
// (1, 2, 1, 2, ...) so that every thread count sees the same machine load: on a shared machine the
// load drifts over seconds, and timing all 1-thread steps before all 2-thread steps would turn that
// drift into a false speedup or slowdown. Returns, per thread count, the medians over `steps` steps
// after one warm-up step each (the first allocations).
std::vector<StepTime> time_steps(const ModelBench& b, const std::vector<int>& threads, int steps) {
  model::keep_freed_memory();  // as model::train() does
  const model::ModelConfig m = model_config(b);
  const model::CpuBackend<float> backend;
  const model::Model<float> net(m, backend);
  model::ModelParams<float> p = model::init_params<float>(m, 1);
  model::ModelParams<float> grad = model::params_filled<float>(m, 0.0f), mom = grad, var = grad;
  auto P = model::named_tensors(m, p), Gr = model::named_tensors(m, grad);
  auto M = model::named_tensors(m, mom), Vv = model::named_tensors(m, var);
  std::vector<Mat<float>*> grad_ptrs;
  for (auto& g : Gr) grad_ptrs.push_back(g.t);
  data::RecallTask task(b.T, 8, b.w, 0.4);
  std::mt19937_64 rng(5);
  data::Batch batch;
  model::BatchWorkspace<float> ws;
  const ref::AdamW adamw{1e-3};
  std::vector<std::vector<double>> ms(threads.size()), cpu(threads.size());
  long update = 0;
  for (int s = 0; s <= steps; ++s) {
    for (size_t k = 0; k < threads.size(); ++k) {
      omp_set_num_threads(threads[k]);
      const double t0 = now_ms(), c0 = process_cpu_ms();
      task.sample(rng, b.B, batch);
      model::batch_loss_and_grad(net, p, batch, ws, &grad);
      backend.clip_grad_norm(grad_ptrs, 1.0f);
      ++update;
      for (size_t i = 0; i < P.size(); ++i)
        backend.adamw_step(*P[i].t, *Gr[i].t, *M[i].t, *Vv[i].t, update, adamw, P[i].decay);
      if (s > 0) {  // s = 0: the warm-up round
        ms[k].push_back(now_ms() - t0);
        cpu[k].push_back(process_cpu_ms() - c0);
      }
    }
  }
  std::vector<StepTime> r;
  for (size_t k = 0; k < threads.size(); ++k) r.push_back({median(ms[k]), median(cpu[k])});
  return r;
}

void bench_model() {
  const int max_threads = omp_get_num_procs();
  std::printf("\n## training step of the model (model/model.h; d_model 64, 2 heads x 32, SwiGLU F=176, chunk 32)\n");
  std::printf("wall = median wall-clock ms per step; cpu = CPU ms per step summed over threads;\n"
              "1- and 2-thread steps alternate, so both see the same machine load\n");
  std::printf("%-16s %4s %3s %3s %3s %9s %9s %9s %8s %12s\n", "config", "T", "w", "B", "thr", "wall ms", "cpu ms",
              "tokens/s", "GFLOP/s", "2 thr vs 1");
  for (const ModelBench& b : kConfigs) {
    if (g_quick && b.T > 128) continue;
    const int steps = g_quick ? 3 : (b.T > 128 ? 4 : 9);
    const double fl = step_flops(b), tok = double(b.B) * b.T;
    const std::vector<StepTime> t = time_steps(b, max_threads >= 2 ? std::vector<int>{1, 2} : std::vector<int>{1}, steps);
    std::printf("%-16s %4d %3d %3d %3d %9.1f %9.1f %9.0f %8.2f %12s\n", b.name, b.T, b.w, b.B, 1, t[0].wall_ms,
                t[0].cpu_ms, tok / (t[0].wall_ms / 1e3), fl / (t[0].wall_ms * 1e6), "(baseline)");
    if (t.size() > 1) {
      const double sp = t[0].wall_ms / t[1].wall_ms;
      std::printf("%-16s %4d %3d %3d %3d %9.1f %9.1f %9.0f %8.2f %11.2fx%s\n", b.name, b.T, b.w, b.B, 2, t[1].wall_ms,
                  t[1].cpu_ms, tok / (t[1].wall_ms / 1e3), fl / (t[1].wall_ms * 1e6), sp,
                  sp >= 1.6 ? "" : "  (target >= 1.6x: NOT met)");
    }
    std::fflush(stdout);
  }
}

int usage() {
  std::fprintf(stderr, "usage: bench_cpu [--quick] [--section swa|rla|matmul|model] | --step CONFIG --threads N [--steps K]\n");
  std::fprintf(stderr, "configs:");
  for (const ModelBench& b : kConfigs) std::fprintf(stderr, " %s", b.name);
  std::fprintf(stderr, "\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string section, step_config;
  int threads = 1, steps = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) { usage(); std::exit(2); }
      return argv[++i];
    };
    if (a == "--quick") g_quick = true;
    else if (a == "--section") section = value();
    else if (a == "--step") step_config = value();
    else if (a == "--threads") threads = std::atoi(value().c_str());
    else if (a == "--steps") steps = std::atoi(value().c_str());
    else return usage();
  }
  if (!step_config.empty()) {
    for (const ModelBench& b : kConfigs)
      if (step_config == b.name) {
        const StepTime t = time_steps(b, {std::max(1, threads)}, std::max(1, steps))[0];
        std::printf("step %s threads %d ms %.1f cpu_ms %.1f\n", b.name, threads, t.wall_ms, t.cpu_ms);
        return 0;
      }
    return usage();
  }
  std::printf("bench_cpu: float32, %d processors, OpenMP max threads %d%s\n", omp_get_num_procs(), omp_get_max_threads(),
              g_quick ? ", --quick" : "");
  Eigen::setNbThreads(1);  // the op sections: one thread
  if (section.empty() || section == "swa") bench_swa();
  if (section.empty() || section == "rla") bench_rla();
  if (section.empty() || section == "matmul") bench_matmul();
  Eigen::setNbThreads(0);  // the model: as bin/train_tiny runs it
  if (section.empty() || section == "model") bench_model();
  if (!section.empty() && section != "swa" && section != "rla" && section != "matmul" && section != "model") return usage();
  return 0;
}
