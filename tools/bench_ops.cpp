// tools/bench_ops.cpp (bin/bench_ops; GPU build bin/gpu/bench_ops): benchmarks of the non-attention
// kernels (cuda/matmul, rmsnorm, rope, swiglu, cross_entropy, adamw, embedding, feature_map).
// Benchmarks are not tests: one row per kernel version with its time, its rate, and the ratio to the
// op's v1 measured in the same run (v1 / this = speedup); SGEMM also against cuBLAS on a GPU.
//
// Rate formulas (useful work; reads + writes of the arrays the op must touch, 4 bytes per float):
//   SGEMM          2 M N K FLOP
//   rmsnorm fwd    (2 N C + C + N) * 4 B             (read x, gamma; write y, rstd)
//   rmsnorm bwd    (3 N C + N + 3 C) * 4 B           (read x, dy, rstd, gamma; write dx; dgamma += )
//   rope           2 T n D * 4 B                     (read x, write y)
//   swiglu gate    fwd 3 n * 4 B, bwd 5 n * 4 B
//   cross-entropy  fwd (N V + 2 N) * 4 B, bwd (2 N V + N) * 4 B
//   adamw          7 n * 4 B                         (read p, g, m, v; write p, m, v)
//   embedding      fwd (2 N C + N) * 4 B, bwd (N C + 2 V C + N) * 4 B
//   phi (sm2)      fwd 3 N D * 4 B, bwd 4 N D * 4 B  (x, phi of width 2D; bwd reads x and dphi, writes dx)
//
// On the CPU execution layer (the default build) every kernel runs through the fiber emulator: the times
// are EMULATION times, say nothing about a GPU, and the shapes are small. The GPU build (bin/gpu/bench_ops,
// `make gpu-build`: this file compiled with -DRATTN_CUDA_RUNTIME, linked with build/libcuda_gpu.a,
// -lcudart -lcublas) uses model-sized shapes and adds the cuBLAS SGEMM baseline.
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "cuda/adamw.h"
#include "cuda/buffer.h"
#include "cuda/cross_entropy.h"
#include "cuda/embedding.h"
#include "cuda/feature_map.h"
#include "cuda/matmul.h"
#include "cuda/rmsnorm.h"
#include "cuda/rope.h"
#include "cuda/swiglu.h"
#include "tools/bench_util.h"

namespace {

bool g_emu = true;

// Seconds per call of f (bench_util::time_it): at least 0.2 s of calls on a GPU, one timed call on the CPU layer.
double time_it(const std::function<void()>& f) { return bench_util::time_it(f, g_emu ? 0.0 : 0.2); }
using bench_util::random_buffer;

cu::DeviceBuffer<int> random_ints(size_t n, int lo, int hi, std::mt19937_64& rng) {
  std::uniform_int_distribution<int> u(lo, hi);
  std::vector<int> h(n);
  for (int& x : h) x = u(rng);
  cu::DeviceBuffer<int> b(n);
  b.upload(h);
  return b;
}

// One op family: run every version, print a row each with the ratio v1 / version.
// work: FLOPs when flops is true, else bytes.
void bench(const std::string& name, const std::string& shape, int versions, double work, bool flops,
           const std::function<void(int)>& run) {
  double t_v1 = -1, t_best = 1e300;
  int best = 1;
  for (int v = 1; v <= versions; ++v) {
    const double t = time_it([&] { run(v); });
    if (v == 1) t_v1 = t;
    if (t < t_best) t_best = t, best = v;
    const double rate = work / t * 1e-9;
    std::printf("%-24s %-28s v%d %11.4f ms %10.2f %s   v1/v%d = %6.2fx\n", name.c_str(), shape.c_str(), v, t * 1e3,
                rate, flops ? "GFLOP/s" : "GB/s   ", v, t_v1 / t);
  }
  std::printf("%-24s %-28s best v%d: %.2fx faster than v1\n", name.c_str(), "", best, t_v1 / t_best);
}

std::string fmt(const char* f, long a, long b = -1, long c = -1) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, a, b, c);
  return buf;
}

}  // namespace

int main() {
  g_emu = cu::on_cpu_layer();
  if (!cu::device_available()) {
    std::printf("bench_ops: no CUDA device; nothing to measure\n");
    return 0;
  }
  std::printf("bench_ops: %s\n\n", g_emu ? "CPU EXECUTION LAYER (fiber emulator): these are EMULATION times of the "
                                           "kernel source, NOT GPU times; ratios show emulation cost, not GPU speed"
                                         : "GPU (nvcc build), fp32, no TF32");
  std::mt19937_64 rng(1);

  // ---- SGEMM: the three layouts of the linear layer, and cuBLAS -----------------------------------
  {
    const int M = g_emu ? 96 : 4096, N = g_emu ? 80 : 2048, K = g_emu ? 72 : 2048;
    auto A = random_buffer(size_t(M) * K, rng), B = random_buffer(size_t(K) * N, rng);
    cu::DeviceBuffer<float> C(size_t(M) * N);
    const double fl = 2.0 * M * N * K;
    struct L { const char* name; bool ta, tb; };
    for (L l : {L{"matmul C=AB", false, false}, L{"matmul C=AB^T", false, true}, L{"matmul C+=A^TB", true, false}}) {
      // the same storage reinterpreted: only the access pattern changes, the FLOPs do not
      bench(l.name, fmt("M=%ld N=%ld K=%ld", M, N, K), cu::kMatmulVersions, fl, true, [&](int v) {
        cu::matmul(A.data(), B.data(), C.data(), M, N, K, l.ta, l.tb, l.ta ? 1.0f : 0.0f, v);
      });
    }
    if (!g_emu) {
      double t_best = 1e300;
      for (int v = 2; v <= cu::kMatmulVersions; ++v)
        t_best = std::min(t_best, time_it([&] { cu::matmul(A.data(), B.data(), C.data(), M, N, K, false, false, 0, v); }));
      const double t_blas = time_it([&] { cu::matmul_cublas(A.data(), B.data(), C.data(), M, N, K, false, false); });
      std::printf("%-24s %-28s    %11.4f ms %10.2f GFLOP/s   best hand-written / cuBLAS speed = %.2f\n",
                  "matmul C=AB cuBLAS", fmt("M=%ld N=%ld K=%ld", M, N, K).c_str(), t_blas * 1e3, fl / t_blas * 1e-9,
                  t_blas / t_best);
    } else {
      std::printf("%-24s (cuBLAS baseline: GPU build only)\n", "matmul C=AB cuBLAS");
    }
    std::printf("\n");
  }

  // ---- RMSNorm and group RMSNorm -------------------------------------------------------------------
  {
    const int N = g_emu ? 64 : 16384, C = g_emu ? 96 : 1024;
    auto x = random_buffer(size_t(N) * C, rng), g = random_buffer(C, rng), dy = random_buffer(size_t(N) * C, rng);
    cu::DeviceBuffer<float> y(size_t(N) * C), rstd(N), dx(size_t(N) * C), dg(C);
    cudaMemset(dg.data(), 0, sizeof(float) * C);
    const std::string s = fmt("N=%ld C=%ld", N, C);
    bench("rmsnorm fwd", s, cu::kRmsnormVersions, 4.0 * (2.0 * N * C + C + N), false,
          [&](int v) { cu::rmsnorm_forward(x.data(), g.data(), y.data(), rstd.data(), N, C, 1e-5f, v); });
    bench("rmsnorm bwd", s, cu::kRmsnormVersions, 4.0 * (3.0 * N * C + N + 3.0 * C), false, [&](int v) {
      cu::rmsnorm_backward(x.data(), g.data(), rstd.data(), dy.data(), dx.data(), dg.data(), N, C, v);
    });
    const int H = g_emu ? 3 : 16, D = g_emu ? 32 : 128, T = N * C / (H * D);
    cu::DeviceBuffer<float> rstd_g(size_t(T) * H);
    const std::string sg = fmt("T=%ld H=%ld D=%ld", T, H, D);
    bench("group_rmsnorm fwd", sg, cu::kRmsnormVersions, 4.0 * (2.0 * T * H * D + H * D + T * H), false, [&](int v) {
      cu::group_rmsnorm_forward(x.data(), g.data(), y.data(), rstd_g.data(), T, H, D, 1e-8f, v);
    });
    bench("group_rmsnorm bwd", sg, cu::kRmsnormVersions, 4.0 * (3.0 * T * H * D + T * H + 3.0 * H * D), false,
          [&](int v) {
            cu::group_rmsnorm_backward(x.data(), g.data(), rstd_g.data(), dy.data(), dx.data(), dg.data(), T, H, D, v);
          });
    std::printf("\n");
  }

  // ---- RoPE ----------------------------------------------------------------------------------------
  {
    const int T = g_emu ? 64 : 4096, n = g_emu ? 4 : 16, D = g_emu ? 32 : 128;
    auto x = random_buffer(size_t(T) * n * D, rng);
    cu::DeviceBuffer<float> y(size_t(T) * n * D);
    bench("rope fwd", fmt("T=%ld heads=%ld D=%ld", T, n, D), cu::kRopeVersions, 8.0 * T * n * D, false,
          [&](int v) { cu::rope_forward(x.data(), y.data(), T, n, D, 5e5, 0, v); });
    std::printf("\n");
  }

  // ---- SwiGLU gate ---------------------------------------------------------------------------------
  {
    const long n = g_emu ? 20000 : 4096L * 2816;
    auto a = random_buffer(size_t(n), rng), b = random_buffer(size_t(n), rng), dg = random_buffer(size_t(n), rng);
    cu::DeviceBuffer<float> g(static_cast<size_t>(n)), da(static_cast<size_t>(n)), db(static_cast<size_t>(n));
    bench("swiglu gate fwd", fmt("n=%ld", n), cu::kSwigluVersions, 12.0 * n, false,
          [&](int v) { cu::swiglu_gate_forward(a.data(), b.data(), g.data(), n, v); });
    bench("swiglu gate bwd", fmt("n=%ld", n), cu::kSwigluVersions, 20.0 * n, false,
          [&](int v) { cu::swiglu_gate_backward(a.data(), b.data(), dg.data(), da.data(), db.data(), n, v); });
    std::printf("\n");
  }

  // ---- cross-entropy over V = 256 ------------------------------------------------------------------
  {
    const int N = g_emu ? 64 : 32768, V = 256;
    auto logits = random_buffer(size_t(N) * V, rng);
    auto targets = random_ints(size_t(N), 0, V - 1, rng);
    cu::DeviceBuffer<float> losses(N), dl(size_t(N) * V);
    const std::string s = fmt("N=%ld V=%ld", N, V);
    bench("cross_entropy fwd", s, cu::kCrossEntropyVersions, 4.0 * (double(N) * V + 2.0 * N), false,
          [&](int v) { cu::cross_entropy_forward(logits.data(), targets.data(), losses.data(), N, V, v); });
    bench("cross_entropy bwd", s, cu::kCrossEntropyVersions, 4.0 * (2.0 * N * V + N), false, [&](int v) {
      cu::cross_entropy_backward(logits.data(), targets.data(), 1.0f / N, dl.data(), N, V, v);
    });
    std::printf("\n");
  }

  // ---- AdamW ---------------------------------------------------------------------------------------
  {
    const long n = g_emu ? 20000 : 64L << 20;
    auto p = random_buffer(size_t(n), rng), g = random_buffer(size_t(n), rng);
    cu::DeviceBuffer<float> m(static_cast<size_t>(n)), v2(static_cast<size_t>(n));
    cudaMemset(m.data(), 0, sizeof(float) * n);
    cudaMemset(v2.data(), 0, sizeof(float) * n);
    long step = 0;
    bench("adamw step", fmt("n=%ld", n), cu::kAdamwVersions, 28.0 * n, false, [&](int v) {
      cu::adamw_step(p.data(), g.data(), m.data(), v2.data(), n, ++step, cu::AdamW{1e-4}, true, v);
    });
    std::printf("\n");
  }

  // ---- embedding (V = 256) -------------------------------------------------------------------------
  {
    const int N = g_emu ? 64 : 16384, V = 256, C = g_emu ? 64 : 1024;
    auto tokens = random_ints(size_t(N), 0, V - 1, rng);
    auto E = random_buffer(size_t(V) * C, rng), dy = random_buffer(size_t(N) * C, rng);
    cu::DeviceBuffer<float> x(size_t(N) * C), dE(size_t(V) * C);
    cudaMemset(dE.data(), 0, sizeof(float) * V * C);
    const std::string s = fmt("N=%ld V=%ld C=%ld", N, V, C);
    bench("embedding fwd", s, cu::kEmbeddingVersions, 4.0 * (2.0 * N * C + N), false,
          [&](int v) { cu::embedding_forward(tokens.data(), E.data(), x.data(), N, V, C, v); });
    bench("embedding bwd", s, cu::kEmbeddingVersions, 4.0 * (double(N) * C + 2.0 * V * C + N), false,
          [&](int v) { cu::embedding_backward(tokens.data(), dy.data(), dE.data(), N, V, C, v); });
    std::printf("\n");
  }

  // ---- feature map sm2 -----------------------------------------------------------------------------
  {
    const int N = g_emu ? 64 : 4096 * 16, D = g_emu ? 32 : 128;
    auto x = random_buffer(size_t(N) * D, rng), dphi = random_buffer(size_t(N) * 2 * D, rng);
    cu::DeviceBuffer<float> phi(size_t(N) * 2 * D), dx(size_t(N) * D);
    const std::string s = fmt("rows=%ld D=%ld", N, D);
    bench("phi sm2 fwd", s, cu::kFeatureMapVersions, 12.0 * N * D, false,
          [&](int v) { cu::phi_forward(cu::FeatureMap::sm2, x.data(), phi.data(), N, 1, D, v); });
    bench("phi sm2 bwd", s, cu::kFeatureMapVersions, 16.0 * N * D, false,
          [&](int v) { cu::phi_backward(cu::FeatureMap::sm2, x.data(), dphi.data(), dx.data(), N, 1, D, v); });
  }
  return 0;
}
