// tools/bench_cpu.cpp: CPU benchmarks (float32) of the ops and of the tiny model's training step.
// A benchmark, not a test: it prints one row per config with the time, a rate (FLOP/s or
// tokens/s) and the ratio to a named baseline measured in the same run, and fails only on a crash.
//
//   bin/bench_cpu                 every section (a few minutes on 2 cores)
//   bin/bench_cpu --quick         fewer repetitions and sizes (about a minute)
//   bin/bench_cpu --section NAME  one of: swa rla matmul model ratio breakdown
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
//   model training step: the sum over its ops of FLOPs per call x calls per step, counted product by
//     product (step_breakdown, the breakdown section's FLOP column; the RLA chunks by rla_chunk_flops).
#include <omp.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
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
#include "ref/rla_train.h"
#include "ref/rattention.h"

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

struct StepTime {
  double wall_ms;  // median wall time of one step
  double cpu_ms;   // median CPU time of one step, summed over the threads
};

// One config's training loop, as in model/trainer.cpp: sample a batch, batch_loss_and_grad, clip,
// AdamW on every tensor. step(threads) runs one step and returns its wall and CPU ms.
class StepRunner {
 public:
  explicit StepRunner(const ModelBench& b)
      : b_(b), m_(model_config(b)), net_(m_, backend_), p_(model::init_params<float>(m_, 1)),
        grad_(model::params_filled<float>(m_, 0.0f)), mom_(grad_), var_(grad_), task_(b.T, 8, b.w, 0.4), rng_(5) {
    P_ = model::named_tensors(m_, p_);
    G_ = model::named_tensors(m_, grad_);
    M_ = model::named_tensors(m_, mom_);
    V_ = model::named_tensors(m_, var_);
    for (auto& g : G_) grad_ptrs_.push_back(g.t);
  }
  StepTime step(int threads) {
    omp_set_num_threads(threads);
    const double t0 = now_ms(), c0 = process_cpu_ms();
    task_.sample(rng_, b_.B, batch_);
    model::batch_loss_and_grad(net_, p_, batch_, ws_, &grad_);
    backend_.clip_grad_norm(grad_ptrs_, 1.0f);
    ++update_;
    for (size_t i = 0; i < P_.size(); ++i)
      backend_.adamw_step(*P_[i].t, *G_[i].t, *M_[i].t, *V_[i].t, update_, adamw_, P_[i].decay);
    return {now_ms() - t0, process_cpu_ms() - c0};
  }

 private:
  ModelBench b_;
  model::ModelConfig m_;
  model::CpuBackend<float> backend_;
  model::Model<float> net_;
  model::ModelParams<float> p_, grad_, mom_, var_;
  std::vector<model::NamedTensor<float>> P_, G_, M_, V_;
  std::vector<Mat<float>*> grad_ptrs_;
  data::RecallTask task_;
  std::mt19937_64 rng_;
  data::Batch batch_;
  model::BatchWorkspace<float> ws_;
  const ref::AdamW adamw_{1e-3};
  long update_ = 0;
};

// Interleaved timing: one step of every (config, threads) in `runs` per round, `steps` rounds after
// one warm-up round (the first allocations). On a shared machine the load drifts over seconds;
// timing one config's steps after another's would turn that drift into a false ratio. Returns the
// median wall and CPU ms per step of every run, in the order of `runs`.
std::vector<StepTime> time_interleaved(const std::vector<std::pair<const ModelBench*, int>>& runs, int steps) {
  model::keep_freed_memory();  // as model::train() does
  std::vector<std::unique_ptr<StepRunner>> runners;
  for (const auto& r : runs) runners.push_back(std::make_unique<StepRunner>(*r.first));
  std::vector<std::vector<double>> ms(runs.size()), cpu(runs.size());
  for (int s = 0; s <= steps; ++s)
    for (size_t k = 0; k < runs.size(); ++k) {
      const StepTime t = runners[k]->step(runs[k].second);
      if (s > 0) {  // s = 0: the warm-up round
        ms[k].push_back(t.wall_ms);
        cpu[k].push_back(t.cpu_ms);
      }
    }
  std::vector<StepTime> r;
  for (size_t k = 0; k < runs.size(); ++k) r.push_back({median(ms[k]), median(cpu[k])});
  return r;
}

// Training steps of config b at each thread count of `threads`, interleaved (see above).
std::vector<StepTime> time_steps(const ModelBench& b, const std::vector<int>& threads, int steps) {
  std::vector<std::pair<const ModelBench*, int>> runs;
  for (int t : threads) runs.push_back({&b, t});
  return time_interleaved(runs, steps);
}

// FLOPs of one training step of b, counted op by op (defined with the breakdown below).
double step_flops_counted(const ModelBench& b);

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
    const double fl = step_flops_counted(b), tok = double(b.B) * b.T;
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

// ---------------------------------------------------------------------------------------------
// Where the time of one training step goes, op by op (--section breakdown). Each op is timed alone,
// on one thread, at the step's shapes (one sequence, T = 128), with the inputs it sees in the step,
// and multiplied by the number of times a step calls it (B sequences, per layer). The sum is set
// against a measured 1-thread step of the same config: the difference is what the op timings miss
// (the residual additions, copies into the per-sequence buffers, a whole step's cache misses).
// FLOPs per call (a multiply-add counts 2; exp, divisions, norms, RoPE and phi are not counted):
//   linear (T, K) x (K, N): 2 T K N forward, twice that backward (dx and dW);
//   SwiGLU: 3 products forward, 6 backward (a, b kept from the forward);
//   SWA / causal attention: useful work only, as in the SWA section above;
//   RLA chunks: every product of ref/rla_train.h at its real (n, m) shapes (rla_chunk_flops).
struct OpRow {
  std::string part, op;
  double calls, flops, ms_per_call;  // calls per step, FLOPs per call, median ms per call (0: not timed)
};

// FLOPs of rla_forward_saved / rla_backward_saved (ref/rla_train.h), chunk by chunk, with its skips.
std::pair<double, double> rla_chunk_flops(int T, int H, int G, int D, int Dp, int w, int C) {
  const int r = H / G, s = w + 1, nc = (T + C - 1) / C;
  std::vector<int> n(static_cast<size_t>(nc)), m(static_cast<size_t>(nc));
  std::vector<char> S_zero(static_cast<size_t>(nc));
  bool zero = true;
  double f = 0, b = 0;
  for (int i = 0; i < nc; ++i) {  // forward
    const int c0 = i * C;
    n[size_t(i)] = std::min(C, T - c0);
    m[size_t(i)] = std::max(0, ref::detail::chunk_keys(c0, n[size_t(i)], s).m);
    const double ni = n[size_t(i)], mi = m[size_t(i)];
    S_zero[size_t(i)] = zero;
    if (!zero) f += 2.0 * r * ni * Dp * D;                       // Q~ S
    if (mi > 0) f += r * (2.0 * ni * mi * Dp + 2.0 * ni * mi * D);  // A, A V'
    if (mi > 0 && i + 1 < nc) f += 2.0 * mi * Dp * D, zero = false;  // S += K'^T V'
  }
  bool dS_zero = true;
  for (int i = nc - 1; i >= 0; --i) {  // backward
    const double ni = n[size_t(i)], mi = m[size_t(i)];
    if (mi > 0 && !dS_zero) b += 2 * 2.0 * mi * D * Dp;            // V' dS^T, K' dS
    if (!S_zero[size_t(i)]) b += 2.0 * r * ni * D * Dp;            // dO S^T
    if (mi > 0) b += r * (2.0 * ni * D * mi + 2 * 2.0 * ni * mi * Dp + 2.0 * mi * ni * D);  // B, B K', B^T Q~, A^T dO
    if (i > 0) b += 2.0 * r * Dp * ni * D, dS_zero = false;        // dS += Q~^T dO
  }
  return {G * f, G * b};
}

// The rows of a step of config b; with time_them, every op is timed (else ms_per_call = 0).
std::vector<OpRow> step_breakdown(const ModelBench& b, bool time_them) {
  const model::ModelConfig m = model_config(b);
  const int T = b.T, C = m.d_model, B = b.B, F = m.ffn(), V = m.vocab;
  std::mt19937_64 rng(11);
  const model::CpuBackend<float> be;
  model::ModelParams<float> p = model::init_params<float>(m, 1);
  const double budget = g_quick ? 30 : 120;
  const int reps = g_quick ? 3 : 5;
  std::vector<OpRow> rows;
  auto time_of = [&](const std::function<void()>& f) { return time_them ? time_ms(f, budget, reps) : 0.0; };
  auto add = [&](const std::string& part, const std::string& op, double calls, double flops,
                 const std::function<void()>& f) { rows.push_back({part, op, calls, flops, time_of(f)}); };
  int n_local = 0, n_global = 0;
  for (int l = 0; l < m.n_layers; ++l) (m.is_global(l) ? n_global : n_local)++;
  const Mat<float> x = randn(T, C, rng), dy = randn(T, C, rng);
  const float eps = float(m.norm_eps);

  // The block around the attention: two RMSNorms and the SwiGLU, every layer.
  const double L = m.n_layers;
  {
    const model::BlockParams<float>& bp = p.blocks[0];
    model::BlockParams<float> gb = model::params_filled<float>(m, 0.0f).blocks[0];
    ref::SwiGLUCache<float> kept;
    const double mlp = 2.0 * T * C * F;
    add("block", "rmsnorm forward (x2)", 2 * L * B, 0, [&] { be.rmsnorm_forward(x, bp.norm1, eps); });
    add("block", "rmsnorm backward (x2)", 2 * L * B, 0, [&] { be.rmsnorm_backward(x, bp.norm1, eps, dy, gb.norm1); });
    add("block", "swiglu forward", L * B, 3 * mlp, [&] { be.swiglu_forward(x, bp.mlp, &kept); });
    add("block", "swiglu backward", L * B, 6 * mlp, [&] { be.swiglu_backward(x, bp.mlp, dy, gb.mlp, &kept); });
  }
  // The attention layers, split into the pieces of ref/rattention.h.
  for (const bool global : {false, true}) {
    const int count = global ? n_global : n_local;
    if (count == 0) continue;
    int l = 0;
    while (m.is_global(l) != global) ++l;
    const ref::AttnConfig cfg = model::attn_config(m, l);
    const std::string part = global ? "global attn" : std::string("local attn (") + b.local + ")";
    const double calls = double(count) * B;
    const ref::AttnParams<float>& ap = p.blocks[size_t(l)].attn;
    ref::AttnParams<float> dp = ref::attn_params_zero<float>(cfg, C);
    const int HD = cfg.H * cfg.D, GD = cfg.G * cfg.D;
    const Mat<float> q = randn(T, HD, rng), k = randn(T, GD, rng), v = randn(T, GD, rng), dc = randn(T, HD, rng);
    const float scale = 1.0f / std::sqrt(float(cfg.D));
    Mat<float> dq, dk, dv;
    const double proj = 2.0 * T * C * (2.0 * HD + 2.0 * GD);
    add(part, "projections q, k, v, o forward", calls, proj, [&] {
      ref::linear_forward(x, ap.Wq), ref::linear_forward(x, ap.Wk), ref::linear_forward(x, ap.Wv);
      ref::linear_forward(q, ap.Wo);
    });
    add(part, "projections backward", calls, 2 * proj, [&] {
      ref::linear_backward(q, ap.Wo, dy, dp.Wo);
      ref::linear_backward(x, ap.Wq, dc, dp.Wq), ref::linear_backward(x, ap.Wk, k, dp.Wk);
      ref::linear_backward(x, ap.Wv, v, dp.Wv);
    });
    double keys = 0;  // sum over queries of the keys each one attends to
    for (int t = 0; t < T; ++t) keys += global ? t + 1 : std::min(t, cfg.w) + 1;
    const double attn = 2.0 * cfg.D * cfg.H * keys;  // one (query, key) product of D, per head
    if (global) {
      add(part, "causal attention forward", calls, 2 * attn,
          [&] { ref::swa_forward_blocked(q, k, v, cfg.H, cfg.G, -1, scale); });
      add(part, "causal attention backward", calls, 5 * attn,
          [&] { ref::swa_backward_blocked(q, k, v, dc, cfg.H, cfg.G, -1, scale, dq, dk, dv); });
      continue;
    }
    if (ref::has_swa_branch(cfg)) {
      add(part, "rope forward (q, k)", calls, 0, [&] {
        ref::rope_forward(q, cfg.H, cfg.rope_theta), ref::rope_forward(k, cfg.G, cfg.rope_theta);
      });
      add(part, "rope backward", calls, 0, [&] {
        ref::rope_backward(q, cfg.H, cfg.rope_theta), ref::rope_backward(k, cfg.G, cfg.rope_theta);
      });
      add(part, "swa forward (blocked)", calls, 2 * attn,
          [&] { ref::swa_forward_blocked(q, k, v, cfg.H, cfg.G, cfg.w, scale); });
      add(part, "swa backward (blocked)", calls, 5 * attn,
          [&] { ref::swa_backward_blocked(q, k, v, dc, cfg.H, cfg.G, cfg.w, scale, dq, dk, dv); });
    }
    const int branches = int(ref::has_swa_branch(cfg)) + int(ref::has_rla_branch(cfg));
    Mat<float> dgamma = Mat<float>::Zero(cfg.H, cfg.D);
    const std::string times = branches > 1 ? " (x2)" : "";
    add(part, "branch norm forward" + times, branches * calls, 0,
        [&] { ref::group_rmsnorm_forward(q, ap.gamma_swa, float(cfg.eps)); });
    add(part, "branch norm backward" + times, branches * calls, 0,
        [&] { ref::group_rmsnorm_backward(q, ap.gamma_swa, float(cfg.eps), dc, dgamma); });
    if (ref::has_rla_branch(cfg)) {
      const int w_rla = ref::rla_window(cfg);
      const auto [rf, rb] = rla_chunk_flops(T, cfg.H, cfg.G, cfg.D, ref::feature_dim(cfg.fm, cfg.D), w_rla, cfg.chunk);
      ref::RlaSaved<float> saved;
      ref::rla_forward_saved(q, k, v, cfg.H, cfg.G, w_rla, cfg.fm, cfg.chunk, saved);
      const Mat<float> Qf = saved.Qf, Kf = saved.Kf, dQf = randn(T, Qf.cols(), rng), dKf = randn(T, Kf.cols(), rng);
      // rla_forward_saved / rla_backward_saved include phi: their rows show the chunks alone.
      const double phi_f = time_of([&] {
        ref::phi_forward_heads(cfg.fm, q, cfg.H), ref::phi_forward_heads(cfg.fm, k, cfg.G);
      });
      const double rla_f = time_of([&] { ref::rla_forward_saved(q, k, v, cfg.H, cfg.G, w_rla, cfg.fm, cfg.chunk, saved); });
      const double phi_b = time_of([&] {
        ref::phi_backward_heads_from_phi(cfg.fm, Qf, dQf, cfg.H), ref::phi_backward_heads_from_phi(cfg.fm, Kf, dKf, cfg.G);
      });
      const double rla_b = time_of([&] { ref::rla_backward_saved(v, dc, saved); });
      rows.push_back({part, "phi forward (q, k)", calls, 0, phi_f});
      rows.push_back({part, "rla chunks forward", calls, rf, std::max(0.0, rla_f - phi_f)});
      rows.push_back({part, "phi backward (q, k)", calls, 0, phi_b});
      rows.push_back({part, "rla chunks backward", calls, rb, std::max(0.0, rla_b - phi_b)});
    }
  }
  // Once per sequence: the embedding, the final norm, the output head and the loss.
  {
    std::vector<int> tokens(static_cast<size_t>(T)), targets(static_cast<size_t>(T));
    for (int i = 0; i < T; ++i) tokens[size_t(i)] = targets[size_t(i)] = int(rng() % 256);
    Mat<float> dE = Mat<float>::Zero(p.E.rows(), p.E.cols()), dW = Mat<float>::Zero(p.W_out.rows(), p.W_out.cols());
    const Mat<float> logits = ref::linear_forward(x, p.W_out);
    Mat<float> dlogits, dgf = Mat<float>::Zero(1, C);
    add("head", "embedding forward + backward", B, 0,
        [&] { be.embedding_forward(tokens, p.E), be.embedding_backward(tokens, dy, dE); });
    add("head", "final rmsnorm forward + backward", B, 0,
        [&] { be.rmsnorm_forward(x, p.norm_f, eps), be.rmsnorm_backward(x, p.norm_f, eps, dy, dgf); });
    add("head", "output head forward + backward", B, 3 * 2.0 * T * C * V,
        [&] { ref::linear_forward(x, p.W_out), ref::linear_backward(x, p.W_out, logits, dW); });
    add("head", "cross-entropy (+ gradient)", B, 0, [&] { be.cross_entropy(logits, targets, &dlogits); });
  }
  // Once per step: the per-sequence gradient buffers, the clip and the optimizer.
  {
    std::vector<model::ModelParams<float>> per(2, model::params_filled<float>(m, 0.0f));
    model::ModelParams<float> sum = per[0], mom = per[0], var = per[0];
    auto P = model::named_tensors(m, p), S = model::named_tensors(m, sum), M = model::named_tensors(m, mom),
         Vv = model::named_tensors(m, var), G0 = model::named_tensors(m, per[0]), G1 = model::named_tensors(m, per[1]);
    std::vector<Mat<float>*> grads;
    for (auto& g : S) grads.push_back(g.t);
    const ref::AdamW adamw{1e-3};
    add("step", "zero a sequence's gradient buffer", B, 0, [&] { for (auto& g : G0) g.t->setZero(); });
    add("step", "add one buffer into the sum", B, 0, [&] {
      for (size_t i = 0; i < S.size(); ++i) *S[i].t += *G1[i].t;
    });
    add("step", "clip gradient norm", 1, 0, [&] { be.clip_grad_norm(grads, 1e30f); });
    add("step", "AdamW", 1, 0, [&] {
      for (size_t i = 0; i < P.size(); ++i) be.adamw_step(*P[i].t, *S[i].t, *M[i].t, *Vv[i].t, 1, adamw, P[i].decay);
    });
  }
  return rows;
}

double step_flops_counted(const ModelBench& b) {
  double f = 0;
  for (const OpRow& r : step_breakdown(b, false)) f += r.flops * r.calls;
  return f;
}

// The peak float32 rate of one core, measured: 12 independent chains of multiply-adds on Eigen's
// widest float packet (16 lanes with AVX-512, 8 with AVX2, 4 with SSE2), enough chains to cover the
// FMA latency on every x86 core; 2 FLOPs per lane per multiply-add. The ceiling the step is set against.
double fma_peak_gflops() {
  using namespace Eigen::internal;
  using Packet = packet_traits<float>::type;
  constexpr int lanes = packet_traits<float>::size, chains = 12;
  // Twelve named accumulators: the compiler keeps them in registers (an array indexed in a loop spills).
  Packet p0 = pset1<Packet>(0.0f), p1 = pset1<Packet>(0.1f), p2 = pset1<Packet>(0.2f), p3 = pset1<Packet>(0.3f);
  Packet p4 = pset1<Packet>(0.4f), p5 = pset1<Packet>(0.5f), p6 = pset1<Packet>(0.6f), p7 = pset1<Packet>(0.7f);
  Packet p8 = pset1<Packet>(0.8f), p9 = pset1<Packet>(0.9f), p10 = pset1<Packet>(1.0f), p11 = pset1<Packet>(1.1f);
  const Packet a = pset1<Packet>(0.9999999f), c = pset1<Packet>(1e-7f);
  const long iters = 10'000'000;
  double best_ms = 1e30;  // the peak: the fastest of several short runs (another job on the core only slows it)
  for (int rep = 0; rep < (g_quick ? 5 : 15); ++rep) {
    const double t0 = thread_cpu_ms();
    for (long i = 0; i < iters; ++i) {
      p0 = pmadd(p0, a, c), p1 = pmadd(p1, a, c), p2 = pmadd(p2, a, c), p3 = pmadd(p3, a, c);
      p4 = pmadd(p4, a, c), p5 = pmadd(p5, a, c), p6 = pmadd(p6, a, c), p7 = pmadd(p7, a, c);
      p8 = pmadd(p8, a, c), p9 = pmadd(p9, a, c), p10 = pmadd(p10, a, c), p11 = pmadd(p11, a, c);
    }
    best_ms = std::min(best_ms, thread_cpu_ms() - t0);
  }
  const Packet sum = padd(padd(padd(padd(p0, p1), padd(p2, p3)), padd(padd(p4, p5), padd(p6, p7))),
                          padd(padd(p8, p9), padd(p10, p11)));
  volatile float keep = predux(sum);  // the chains must not be optimised away
  (void)keep;
  return 2.0 * lanes * chains * double(iters) / (best_ms * 1e6);
}

void bench_breakdown() {
  // As the trainer does: without it, the temporaries of an op (e.g. the SwiGLU backward's) are given
  // back to the system after every call and faulted in again (that op measured 1.6x slower).
  model::keep_freed_memory();
  const double peak = fma_peak_gflops();
  for (const char* name : {"LL-swa", "LL-rattn"}) {
    const ModelBench* b = nullptr;
    for (const ModelBench& c : kConfigs)
      if (name == std::string(c.name)) b = &c;
    Eigen::setNbThreads(1);
    const std::vector<OpRow> rows = step_breakdown(*b, true);
    Eigen::setNbThreads(0);
    const StepTime whole = time_steps(*b, {1}, g_quick ? 3 : 7)[0];
    double sum = 0, flops = 0;
    for (const OpRow& r : rows) sum += r.ms_per_call * r.calls, flops += r.flops * r.calls;
    std::printf("\n## where a training step goes: %s (B=%d, T=%d, w=%d), one thread, each op timed alone x its calls per step\n",
                b->name, b->B, b->T, b->w);
    std::printf("%-20s %-34s %9s %6s %9s %7s %10s %8s\n", "part", "op", "us/call", "calls", "ms/step", "share",
                "MFLOP/step", "GFLOP/s");
    for (const OpRow& r : rows) {
      const double ms = r.ms_per_call * r.calls;
      char rate[32] = "-";
      if (r.flops > 0 && ms > 0) std::snprintf(rate, sizeof rate, "%.1f", r.flops * r.calls / (ms * 1e6));
      std::printf("%-20s %-34s %9.1f %6.0f %9.2f %6.1f%% %10.1f %8s\n", r.part.c_str(), r.op.c_str(), r.ms_per_call * 1e3,
                  r.calls, ms, 100 * ms / sum, r.flops * r.calls / 1e6, rate);
    }
    std::printf("%-20s %-34s %9s %6s %9.2f %6.1f%% %10.1f %8.1f\n", "sum", "of the ops timed alone", "", "", sum, 100.0,
                flops / 1e6, flops / (sum * 1e6));
    std::printf("%-20s %-34s %9s %6s %9.2f %7s %10s %8.1f   (%.0f%% of the measured one-core peak, %.1f GFLOP/s)\n",
                "measured", "1-thread training step (median)", "", "", whole.cpu_ms, "", "", flops / (whole.cpu_ms * 1e6),
                100 * flops / (whole.cpu_ms * 1e6) / peak, peak);
    std::fflush(stdout);
  }
}

// RATTENTION against SWA, step for step (--section ratio): the four T = 128 configs, at each thread
// count every step interleaved with the others', so the ratios are taken under the same load.
// Beside it, the floor that FLOPs alone set: the RLA branch's FLOPs over the SWA step's.
void bench_ratio() {
  std::printf("\n## RATTENTION vs SWA training step (B=32, T=128, w=16), all configs and thread counts interleaved\n");
  const char* names[] = {"LL-swa", "LL-rattn", "LLLG-swa", "LLLG-rattn"};
  // One interleaved loop per thread count: a 1-thread step right after a 2-thread one shares its core
  // with the idle OpenMP worker still spinning (measured: 4 ms of CPU time per step, and slower steps).
  std::vector<std::pair<const ModelBench*, int>> runs;
  const int max_threads = std::min(2, omp_get_num_procs());
  for (const char* n : names)
    for (const ModelBench& c : kConfigs)
      if (n == std::string(c.name))
        for (int th = 1; th <= max_threads; ++th) runs.push_back({&c, th});
  std::vector<StepTime> t(runs.size());
  for (int th = 1; th <= max_threads; ++th) {
    std::vector<std::pair<const ModelBench*, int>> same;
    for (const auto& r : runs)
      if (r.second == th) same.push_back(r);
    const std::vector<StepTime> ts = time_interleaved(same, g_quick ? 4 : 11);
    for (size_t i = 0, k = 0; i < runs.size(); ++i)
      if (runs[i].second == th) t[i] = ts[k++];
  }
  std::printf("%-12s %3s %9s %9s %12s\n", "config", "thr", "wall ms", "cpu ms", "2 thr vs 1");
  for (size_t i = 0; i < runs.size(); ++i) {
    char sp[32] = "";
    if (runs[i].second == 2) std::snprintf(sp, sizeof sp, "%.2fx", t[i - 1].wall_ms / t[i].wall_ms);
    std::printf("%-12s %3d %9.1f %9.1f %12s\n", runs[i].first->name, runs[i].second, t[i].wall_ms, t[i].cpu_ms, sp);
  }
  for (int stack = 0; stack < 2; ++stack) {
    const ModelBench* swa = runs[size_t(stack * 2 * max_threads)].first;
    const ModelBench* rat = runs[size_t((stack * 2 + 1) * max_threads)].first;
    const double fs = step_flops_counted(*swa), fr = step_flops_counted(*rat);
    for (int th = 0; th < max_threads; ++th) {
      const double r = t[size_t((stack * 2 + 1) * max_threads + th)].wall_ms / t[size_t(stack * 2 * max_threads + th)].wall_ms;
      std::printf("%s / %s, %d thread%s: %.2fx   (target <= 1.15x: %s; FLOPs alone: %.2fx)\n", rat->name, swa->name,
                  th + 1, th ? "s" : "", r, r <= 1.15 ? "met" : "NOT met", fr / fs);
    }
  }
  std::fflush(stdout);
}

int usage() {
  std::fprintf(stderr, "usage: bench_cpu [--quick] [--section swa|rla|matmul|model|ratio|breakdown] | --step CONFIG --threads N [--steps K]\n");
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
  if (section.empty() || section == "ratio") bench_ratio();
  if (section.empty() || section == "breakdown") bench_breakdown();
  if (!section.empty() && section != "swa" && section != "rla" && section != "matmul" && section != "model" &&
      section != "ratio" && section != "breakdown")
    return usage();
  return 0;
}
