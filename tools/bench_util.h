// tools/bench_util.h: what the kernel benchmarks (tools/bench_attn.cpp, tools/bench_ops.cpp) share:
// the timing loop and random device inputs. Host code; on the CPU execution layer and on a GPU alike.
#pragma once
#include <chrono>
#include <cstddef>
#include <functional>
#include <random>
#include <vector>

#include "cuda/buffer.h"

namespace bench_util {

// Seconds per call of f: one warm-up call, then repeat until min_seconds have passed (at least once).
// Every call is followed by cudaDeviceSynchronize, so a kernel launch is timed to its end.
inline double time_it(const std::function<void()>& f, double min_seconds) {
  using clk = std::chrono::steady_clock;
  f();
  cu::check(cudaDeviceSynchronize(), "sync");
  int n = 0;
  const auto t0 = clk::now();
  double elapsed = 0;
  do {
    f();
    cu::check(cudaDeviceSynchronize(), "sync");
    ++n;
    elapsed = std::chrono::duration<double>(clk::now() - t0).count();
  } while (elapsed < min_seconds);
  return elapsed / n;
}

// n floats ~ N(0, scale^2) from rng, uploaded to a new device buffer.
inline cu::DeviceBuffer<float> random_buffer(size_t n, std::mt19937_64& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> h(n);
  for (float& x : h) x = nd(rng);
  cu::DeviceBuffer<float> b(n);
  b.upload(h);
  return b;
}

}  // namespace bench_util
