// tools/bench_attn.cpp (bin/bench_attn; GPU build bin/gpu/bench_attn): the attention kernels' benchmarks.
// Benchmarks are not tests: one row per configuration, with the time, the FLOP rate and the ratio to a
// baseline measured in the same run.
//
//   1. SWA (cuda/swa.cu v2), forward and backward: each window w against the same kernel with no window
//      (w = -1, full causal), which shows the T*w saving of skipping the tiles outside the band; and
//      against cuBLAS SGEMM doing the same number of FLOPs (the roof for fp32 matmul work).
//   2. Chunked RLA (cuda/rla.cu v2) for several chunk sizes C and save intervals m, against the naive
//      masked v1, against the token-by-token recurrence (the same kernel with C = 1) and against cuBLAS.
//
// FLOP formulas (useful work only: masked elements of partial tiles and recomputation are not counted):
//   SWA forward   4 D * pairs,  pairs = B H sum_t (min(t, w) + 1)    (q.k and p v: 2D each per pair)
//   SWA backward 10 D * pairs   (FlashAttention-2 convention: 2.5x the forward: dv, dp, dq, dk and s again)
//   RLA forward  B H T (2 Dp D + (C+1)(Dp + D)) + B G T 2 Dp D
//                (phi(q) S; the masked intra-chunk block, C(C+1)/2 pairs per chunk of Dp and D; S update)
//   RLA backward 2x the forward (dq needs the forward's products again, dk/dv the transposed ones).
// cuBLAS baseline: C (M, N) = A (M, K) B (K, N) with M = B H T and K = D (SWA) or Dp (RLA), and N chosen
// so that 2 M N K equals the kernel's FLOPs: the time a dense fp32 GEMM (no TF32) needs for that work.
//
// On the CPU execution layer (the default build) every kernel runs through the fiber emulator: times
// are EMULATION times, printed as such, and say nothing about a GPU. Shapes are then small.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/buffer.h"
#include "cuda/matmul.h"
#include "cuda/rla.h"
#include "cuda/swa.h"
#include "tools/bench_util.h"

namespace {

using bench_util::random_buffer;
using bench_util::time_it;

// Time of a cuBLAS SGEMM with M rows, inner dimension K and 2 M N K ~= flops; < 0 when unavailable.
double cublas_time_for(double flops, long M, long K, double min_seconds) {
  if (cu::on_cpu_layer()) return -1;
  long N = std::max(1L, std::lround(flops / (2.0 * M * K)));
  cu::DeviceBuffer<float> A(size_t(M * K)), Bm(size_t(K * N)), C(size_t(M * N));
  cudaMemset(A.data(), 0, sizeof(float) * M * K);
  cudaMemset(Bm.data(), 0, sizeof(float) * K * N);
  bool ok = true;
  double t = time_it([&] { ok = cu::matmul_cublas(A.data(), Bm.data(), C.data(), int(M), int(N), int(K), false, false); },
                     min_seconds);
  return ok ? t : -1;
}

void row(const char* what, const std::string& cfg, double seconds, double flops, const std::string& baseline) {
  std::printf("%-28s %-34s %10.3f ms %9.3f GFLOP/s   %s\n", what, cfg.c_str(), seconds * 1e3, flops / seconds * 1e-9,
              baseline.c_str());
}

std::string ratio(const char* name, double t, double t_base) {
  if (t_base < 0) return std::string(name) + ": n/a";
  char buf[96];
  std::snprintf(buf, sizeof buf, "%s %.3f ms, kernel/%s = %.2fx", name, t_base * 1e3, name, t / t_base);
  return buf;
}

double swa_pairs(long B, long H, long T, int w) {
  double pairs = 0;
  for (long t = 0; t < T; ++t) pairs += double(w < 0 ? t : std::min<long>(t, w)) + 1;
  return pairs * B * H;
}

}  // namespace

int main() {
  const bool emu = cu::on_cpu_layer();
  if (!cu::device_available()) {
    std::printf("bench_attn: no CUDA device; nothing to measure\n");
    return 0;
  }
  // GPU: the paper's head dim 128 and T = 4096 (3B model heads: H = 16, G = 4). CPU layer: small.
  const int B = emu ? 1 : 2, H = emu ? 2 : 16, G = emu ? 1 : 4, T = emu ? 512 : 4096, D = emu ? 32 : 128;
  const double min_s = emu ? 0.0 : 0.5;
  std::printf("bench_attn: %s\n", emu ? "CPU EXECUTION LAYER (fiber emulator): EMULATION times, not GPU times"
                                      : "GPU (nvcc build)");
  std::printf("shape: B=%d T=%d H=%d G=%d D=%d, fp32\n\n", B, T, H, G, D);
  std::mt19937_64 rng(1);
  const size_t nq = size_t(B) * T * H * D, nk = size_t(B) * T * G * D;
  auto q = random_buffer(nq, rng), k = random_buffer(nk, rng), v = random_buffer(nk, rng),
       dout = random_buffer(nq, rng);
  cu::DeviceBuffer<float> o(nq), lse(size_t(B) * H * T), dq(nq), dk(nk), dv(nk), delta(size_t(B) * H * T);

  // ---- 1. SWA --------------------------------------------------------------------------------
  const float scale = 1.0f / std::sqrt(float(D));
  auto swa_fwd = [&](int w) {
    return time_it([&] { cu::swa_forward(q.data(), k.data(), v.data(), o.data(), lse.data(), B, T, H, G, D, w, scale); },
                   min_s);
  };
  auto swa_bwd = [&](int w) {
    cu::swa_forward(q.data(), k.data(), v.data(), o.data(), lse.data(), B, T, H, G, D, w, scale);
    return time_it([&] {
      cu::swa_backward(q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                       dv.data(), delta.data(), B, T, H, G, D, w, scale);
    }, min_s);
  };
  const double t_full_f = swa_fwd(-1), t_full_b = swa_bwd(-1);
  const double pairs_full = swa_pairs(B, H, T, -1);
  std::vector<int> windows = emu ? std::vector<int>{32, 128} : std::vector<int>{64, 128, 512, 1024};
  row("swa fwd v2", "w=-1 (no window)", t_full_f, 4.0 * D * pairs_full,
      ratio("cuBLAS", t_full_f, cublas_time_for(4.0 * D * pairs_full, long(B) * H * T, D, min_s)));
  for (int w : windows) {
    double t = swa_fwd(w), fl = 4.0 * D * swa_pairs(B, H, T, w);
    char base[160];
    std::snprintf(base, sizeof base, "no-window/this = %.2fx (pairs ratio %.2fx); %s", t_full_f / t,
                  pairs_full / swa_pairs(B, H, T, w),
                  ratio("cuBLAS", t, cublas_time_for(fl, long(B) * H * T, D, min_s)).c_str());
    row("swa fwd v2", "w=" + std::to_string(w), t, fl, base);
  }
  row("swa bwd v2", "w=-1 (no window)", t_full_b, 10.0 * D * pairs_full, "");
  for (int w : windows) {
    double t = swa_bwd(w), fl = 10.0 * D * swa_pairs(B, H, T, w);
    char base[160];
    std::snprintf(base, sizeof base, "no-window/this = %.2fx; %s", t_full_b / t,
                  ratio("cuBLAS", t, cublas_time_for(fl, long(B) * H * T, D, min_s)).c_str());
    row("swa bwd v2", "w=" + std::to_string(w), t, fl, base);
  }
  {  // v1 against v2 at one window
    int w = windows[1];
    double t1 = time_it([&] {
      cu::swa_forward(q.data(), k.data(), v.data(), o.data(), lse.data(), B, T, H, G, D, w, scale, 1);
    }, min_s);
    double t2 = swa_fwd(w);
    char base[96];
    std::snprintf(base, sizeof base, "v1/v2 = %.2fx", t1 / t2);
    row("swa fwd v1 (naive)", "w=" + std::to_string(w), t1, 4.0 * D * swa_pairs(B, H, T, w), base);
  }

  // ---- 2. RLA --------------------------------------------------------------------------------
  std::printf("\n");
  const cu::FeatureMap fm = cu::FeatureMap::sm2;
  const int Dp = cu::feature_dim(fm, D), w_rla = emu ? 32 : 512;
  auto rla_flops = [&](int C) {
    return double(B) * H * T * (2.0 * Dp * D + (C + 1.0) * (Dp + D)) + double(B) * G * T * 2.0 * Dp * D;
  };
  cu::DeviceBuffer<float> states(cu::rla_states_size(B, T, G, D, fm, 1, 1));  // C = 1, m = 1 is the largest
  auto rla_fwd = [&](int C, int m, int version) {
    return time_it([&] {
      cu::rla_forward(q.data(), k.data(), v.data(), nullptr, o.data(), states.data(), B, T, H, G, D, w_rla, fm, C, m,
                      version);
    }, version == 1 ? 0.0 : min_s);
  };
  auto rla_bwd = [&](int C, int m) {
    cu::rla_forward(q.data(), k.data(), v.data(), nullptr, o.data(), states.data(), B, T, H, G, D, w_rla, fm, C, m);
    cu::DeviceBuffer<float> scratch(cu::rla_backward_scratch_size(B, T, H, G, D, fm, C));
    return time_it([&] {
      cu::rla_backward(q.data(), k.data(), v.data(), nullptr, states.data(), dout.data(), dq.data(), dk.data(),
                       dv.data(), nullptr, scratch.data(), B, T, H, G, D, w_rla, fm, C, m);
    }, min_s);
  };
  std::printf("RLA: phi = sm2 (Dp = %d), w = %d\n", Dp, w_rla);
  const double t_v1 = rla_fwd(64, 1, 1);
  const double t_seq = rla_fwd(1, 1, 2);
  row("rla fwd v1 (masked)", "O(T^2)", t_v1, rla_flops(64), "");
  row("rla fwd v2 C=1 (recurrence)", "m=1", t_seq, rla_flops(1), "");
  for (int C : {16, 32, 64}) {
    for (int m : {1, 2, 4}) {
      if (emu && m == 4) continue;
      double t, fl = rla_flops(C);
      try {
        t = rla_fwd(C, m, 2);
      } catch (const std::invalid_argument& e) {
        std::printf("%-28s %-34s skipped: %s\n", "rla fwd v2", ("C=" + std::to_string(C)).c_str(), e.what());
        break;
      }
      char base[200];
      std::snprintf(base, sizeof base, "v1/this = %.1fx, recurrence/this = %.1fx; %s", t_v1 / t, t_seq / t,
                    ratio("cuBLAS", t, cublas_time_for(fl, long(B) * H * T, Dp, min_s)).c_str());
      row("rla fwd v2", "C=" + std::to_string(C) + " m=" + std::to_string(m), t, fl, base);
    }
  }
  for (int C : {16, 32, 64}) {
    for (int m : {1, 2, 4}) {
      if (emu && m == 4) continue;
      double t, fl = 2 * rla_flops(C);
      try {
        t = rla_bwd(C, m);
      } catch (const std::invalid_argument& e) {  // the chunk does not fit shared memory at this D
        std::printf("%-28s %-34s skipped: %s\n", "rla bwd v2", ("C=" + std::to_string(C)).c_str(), e.what());
        break;
      }
      row("rla bwd v2", "C=" + std::to_string(C) + " m=" + std::to_string(m), t, fl,
          ratio("cuBLAS", t, cublas_time_for(fl, long(B) * H * T, Dp, min_s)));
    }
  }
  if (emu) std::printf("\n(EMULATION times: the CPU execution layer runs one fiber per CUDA thread; not GPU times)\n");
  return 0;
}
