// tests/cuda/test_emu.cpp: the CUDA execution layers themselves (kernels: tests/cuda/emu_kernels.cu).
//
//  1. correct kernels (tiled matmul, reduction, shuffles, votes, atomics, shared memory) give the right
//     answer, on a GPU and on the CPU layer in every fiber order (where results must be bit-identical);
//  2. deliberately broken kernels are caught by the CPU layer: a missing __syncthreads gives a wrong
//     result in some order, a barrier in divergent code / after an early return and warp ops with
//     lanes missing from the mask are reported with thread, operation and source line, an
//     out-of-bounds write is caught by the guard bands (on a GPU too), a far one by the guard page.
// Checks that only mean something on the CPU layer skip elsewhere; on a GPU build without a device
// everything skips ("no CUDA device").
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "cuda/buffer.h"
#include "ref/tensor.h"
#include "tests/check.h"
#include "tests/proc.h"
#include "tests/cuda/emu_kernels.h"

namespace {

using MatF = ref::Mat<float>;
using MatD = ref::Mat<double>;

#define REQUIRE_DEVICE()                                       \
  do {                                                         \
    if (!cu::device_available()) RATTN_SKIP("no CUDA device"); \
  } while (0)
#define REQUIRE_CPU_LAYER()                                                            \
  do {                                                                                 \
    if (!cu::on_cpu_layer()) RATTN_SKIP("checks the CPU execution layer only");        \
  } while (0)

// EMU_ORDER, EMU_HOST_THREADS are set for one scope with ScopedEnv (tests/proc.h): the CPU layer
// reads them at every launch, a GPU ignores them.
using rattn_test::ScopedEnv;

const char* const kOrders[] = {"forward", "reverse", "random:7"};

std::vector<float> randv(size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

MatF as_mat(const std::vector<float>& v, long rows, long cols) {
  return Eigen::Map<const MatF>(v.data(), rows, cols);
}

// The message of the exception f throws ("" if none).
template <class F>
std::string error_of(F f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// The CPU layer's report must say what went wrong, where (the kernel's source line) and who.
void check_report(const std::string& msg, const std::vector<std::string>& must_contain) {
  MESSAGE("the CPU layer's report: " << msg);
  CHECK(!msg.empty());
  CHECK(msg.find("tests/cuda/emu_kernels.cu:") != std::string::npos);
  CHECK(msg.find("thread (") != std::string::npos);
  for (const std::string& s : must_contain) {
    INFO("expected in the report: " << s);
    CHECK(msg.find(s) != std::string::npos);
  }
}

// C = A B through the tiled kernel (fixed = with both barriers), as a matrix.
MatF run_matmul(bool fixed, const std::vector<float>& a, const std::vector<float>& b, int M, int N, int K) {
  cu::DeviceBuffer<float> dA(a.size()), dB(b.size()), dC(size_t(M) * N);
  dA.upload(a);
  dB.upload(b);
  dC.fill_nan();
  if (fixed) emu_test::matmul_tiled(dA.data(), dB.data(), dC.data(), M, N, K);
  else emu_test::matmul_missing_barrier(dA.data(), dB.data(), dC.data(), M, N, K);
  CHECK(dA.guards_intact());
  CHECK(dB.guards_intact());
  CHECK(dC.guards_intact());
  return as_mat(dC.download(), M, N);
}

}  // namespace

// ---- correct kernels --------------------------------------------------------------------------------

TEST_CASE("tiled matmul: right result for ragged shapes, identical in every fiber order") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(11);
  struct Shape { int M, N, K; };
  for (Shape s : {Shape{1, 1, 1}, Shape{16, 16, 16}, Shape{70, 33, 50}, Shape{17, 40, 33}}) {
    CAPTURE(s.M); CAPTURE(s.N); CAPTURE(s.K);
    std::vector<float> a = randv(size_t(s.M) * s.K, rng), b = randv(size_t(s.K) * s.N, rng);
    MatD want = as_mat(a, s.M, s.K).cast<double>() * as_mat(b, s.K, s.N).cast<double>();
    if (!cu::on_cpu_layer()) {
      rattn_test::check_close("C", run_matmul(true, a, b, s.M, s.N, s.K), want, 1e-5);
      continue;
    }
    MatF first;
    for (const char* order : kOrders) {
      CAPTURE(order);
      ScopedEnv env("EMU_ORDER", order);
      MatF got = run_matmul(true, a, b, s.M, s.N, s.K);
      rattn_test::check_close("C", got, want, 1e-5);
      if (first.size() == 0) first = got;
      else CHECK(got == first);  // a race-free kernel is deterministic: the order cannot matter
    }
  }
}

TEST_CASE("block sum: shuffles, dynamic shared memory and float atomicAdd, several blocks") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(12);
  struct Case { int n, blocks, threads; };
  for (Case c : {Case{1, 1, 32}, Case{1000, 3, 128}, Case{4097, 2, 256}, Case{300, 5, 96}}) {
    CAPTURE(c.n); CAPTURE(c.blocks); CAPTURE(c.threads);
    std::vector<float> x = randv(size_t(c.n), rng);
    double want = 0;
    for (float v : x) want += v;
    cu::DeviceBuffer<float> dx(x.size()), out(1);
    dx.upload(x);
    out.upload(std::vector<float>{0.0f});
    emu_test::block_sum(dx.data(), out.data(), c.n, c.blocks, c.threads);
    double got = out.download()[0];
    CHECK(std::abs(got - want) <= 1e-5 * (1 + std::abs(want)) * std::sqrt(double(c.n)));
    CHECK(out.guards_intact());
  }
}

TEST_CASE("warp shuffles (idx, up, down, xor) with widths, partial masks and int values") {
  REQUIRE_DEVICE();
  const int threads = 64;
  std::vector<float> in(threads);
  for (int t = 0; t < threads; ++t) in[size_t(t)] = float(100 + t);
  struct P { int src, delta, xmask, width; };
  for (P p : {P{5, 3, 6, 32}, P{13, 1, 3, 8}, P{2, 2, 1, 4}, P{7, 4, 16, 16}, P{0, 1, 12, 8}}) {
    CAPTURE(p.src); CAPTURE(p.delta); CAPTURE(p.xmask); CAPTURE(p.width);
    cu::DeviceBuffer<float> din(in.size()), dout(size_t(threads) * 6);
    din.upload(in);
    dout.fill_nan();
    emu_test::shuffles(din.data(), dout.data(), threads, p.src, p.delta, p.xmask, p.width);
    std::vector<float> got = dout.download();
    CHECK(dout.guards_intact());
    // The CUDA Programming Guide's definitions, lane by lane; a segment is `width` consecutive lanes.
    for (int t = 0; t < threads; ++t) {
      CAPTURE(t);
      const int warp0 = t / 32 * 32, lane = t % 32, w = p.width, seg = lane / w * w;
      auto v = [&](int l) { return in[size_t(warp0 + l)]; };
      const float* o = &got[size_t(6 * t)];
      CHECK(o[0] == v(seg + p.src % w));
      CHECK(o[1] == (lane - p.delta >= seg ? v(lane - p.delta) : v(lane)));
      CHECK(o[2] == (lane + p.delta < seg + w ? v(lane + p.delta) : v(lane)));
      const int x = lane ^ p.xmask;  // may read an earlier segment, never a later one
      CHECK(o[3] == (x < seg + w ? v(x) : v(lane)));
      CHECK(o[4] == (lane < 16 ? v(lane ^ 1) : v(lane)));
      CHECK(o[5] == float(warp0));
    }
  }
}

TEST_CASE("votes: ballot / any / all and __syncthreads_count / _and / _or") {
  REQUIRE_DEVICE();
  const int threads = 64;
  for (int pattern = 0; pattern < 3; ++pattern) {
    CAPTURE(pattern);
    std::vector<float> in(threads);
    for (int t = 0; t < threads; ++t)  // 0: lanes 3, 9, 40 true; 1: all true; 2: warp 0 true, warp 1 false
      in[size_t(t)] = pattern == 0 ? (t == 3 || t == 9 || t == 40 ? 1.0f : -1.0f)
                      : pattern == 1 ? 1.0f
                                     : (t < 32 ? 1.0f : -1.0f);
    cu::DeviceBuffer<float> din(in.size());
    cu::DeviceBuffer<unsigned> dout(size_t(threads) * 5);
    din.upload(in);
    emu_test::votes(din.data(), dout.data(), threads);
    std::vector<unsigned> got = dout.download();
    unsigned count = 0;
    for (float x : in) count += x > 0;
    for (int t = 0; t < threads; ++t) {
      CAPTURE(t);
      unsigned ballot = 0;
      for (int l = 0; l < 32; ++l) ballot |= unsigned(in[size_t(t / 32 * 32 + l)] > 0) << l;
      const unsigned* o = &got[size_t(5 * t)];
      CHECK(o[0] == ballot);
      CHECK(o[1] == unsigned(ballot != 0));
      CHECK(o[2] == unsigned(ballot == 0xffffffffu));
      CHECK(o[3] == count);
      CHECK(o[4] == unsigned(2 * (count == unsigned(threads)) + (count > 0)));
    }
  }
}

TEST_CASE("atomics: add (int, float, double, unsigned long long), sub, max, min, exch, CAS") {
  REQUIRE_DEVICE();
  const char* workers[] = {"1", "2"};  // EMU_HOST_THREADS=2: blocks really run in parallel
  for (const char* nw : workers) {
    CAPTURE(nw);
    ScopedEnv env("EMU_HOST_THREADS", nw);
    const int blocks = 4, threads = 64, n = blocks * threads;
    cu::DeviceBuffer<int> di(6);
    cu::DeviceBuffer<float> df(1);
    cu::DeviceBuffer<double> dd(1);
    cu::DeviceBuffer<unsigned long long> du(1);
    di.upload(std::vector<int>{0, INT_MIN, INT_MAX, 0, 0, 0});
    df.upload(std::vector<float>{0.0f});
    dd.upload(std::vector<double>{0.0});
    du.upload(std::vector<unsigned long long>{0});
    emu_test::atomics(di.data(), df.data(), dd.data(), du.data(), blocks, threads);
    std::vector<int> i = di.download();
    CHECK(i[0] == n);
    CHECK(i[1] == n - 1);
    CHECK(i[2] == -(n - 1));
    CHECK(i[3] == 7);
    CHECK(i[4] == n);
    CHECK(i[5] == -2 * n);
    CHECK(df.download()[0] == 0.5f * n);  // exact: multiples of 0.5 up to 128
    CHECK(dd.download()[0] == 0.25 * n);
    CHECK(du.download()[0] == 3ull * n);
  }
}

TEST_CASE("EMU_ORDER orders the blocks of a launch too: forward, reverse, a seeded permutation") {
  // On a GPU the order of blocks is unspecified; the CPU layer varies it with EMU_ORDER, so a result
  // that depends on it (float atomics from several blocks into one address) changes between orders.
  REQUIRE_DEVICE();
  const int bx = 5, by = 3, n = bx * by;
  auto ranks = [&](const char* order) {
    ScopedEnv env("EMU_ORDER", order);
    ScopedEnv one("EMU_HOST_THREADS", "1");  // with two workers the ranks interleave
    cu::DeviceBuffer<int> counter(1), out{size_t(n)};
    counter.upload(std::vector<int>{0});
    emu_test::block_tickets(counter.data(), out.data(), bx, by);
    CHECK(counter.download()[0] == n);
    std::vector<int> r = out.download();
    std::vector<int> sorted = r;
    std::sort(sorted.begin(), sorted.end());
    for (int i = 0; i < n; ++i) CHECK(sorted[size_t(i)] == i);  // every block ran once, whatever the layer
    return r;
  };
  std::vector<int> fwd = ranks("forward"), rev = ranks("reverse"), rnd7 = ranks("random:7"),
                   rnd8 = ranks("random:8");
  if (!cu::on_cpu_layer()) return;
  for (int b = 0; b < n; ++b) {
    CAPTURE(b);
    CHECK(fwd[size_t(b)] == b);          // linear block index order: x fastest, then y
    CHECK(rev[size_t(b)] == n - 1 - b);  // the last block first
  }
  CHECK(rnd7 != fwd);
  CHECK(rnd7 != rev);
  CHECK(rnd7 != rnd8);
  CHECK(ranks("random:7") == rnd7);  // seeded: the same order every run
}

TEST_CASE("static __shared__ is per block; dynamic shared memory above 48 KiB needs cudaFuncSetAttribute") {
  REQUIRE_DEVICE();
  for (const char* nw : {"1", "2"}) {
    CAPTURE(nw);
    ScopedEnv env("EMU_HOST_THREADS", nw);
    const int blocks = 7;
    cu::DeviceBuffer<int> out(blocks);
    emu_test::static_shared_per_block(out.data(), blocks);
    std::vector<int> got = out.download();
    for (int b = 0; b < blocks; ++b) CHECK(got[size_t(b)] == b + 1);
  }
  const int bytes = 64 * 1024, n = bytes / 4;
  float want = 0.0f;
  for (int i = 0; i < n; ++i) want += float(i);  // the kernel's thread 0 adds in the same order
  cu::DeviceBuffer<float> out(1);
  // Without the attribute the launch fails (on a GPU too: 48 KiB is the default limit).
  std::string msg = error_of([&] { emu_test::big_dynamic_smem(out.data(), bytes, false); });
  CHECK(!msg.empty());
  MESSAGE("caught as expected: " << msg);
  emu_test::big_dynamic_smem(out.data(), bytes, true);
  CHECK(out.download()[0] == want);
}

// ---- broken kernels ---------------------------------------------------------------------------------

TEST_CASE("missing second __syncthreads in the tiled matmul gives a wrong result (both orders run)") {
  REQUIRE_CPU_LAYER();
  std::mt19937_64 rng(13);
  const int M = 40, N = 24, K = 50;  // K spans 4 tiles: the bug needs a next tile to overwrite
  std::vector<float> a = randv(size_t(M) * K, rng), b = randv(size_t(K) * N, rng);
  MatD want = as_mat(a, M, K).cast<double>() * as_mat(b, K, N).cast<double>();
  double worst = 0;
  for (std::string order : {"forward", "reverse"}) {
    ScopedEnv env("EMU_ORDER", order.c_str());
    double err = rattn_test::compare(run_matmul(false, a, b, M, N, K), want).rel_rms;
    MESSAGE("missing barrier, EMU_ORDER=" << order << ": relative RMS error " << err);
    worst = std::max(worst, err);
    rattn_test::check_close("C (fixed kernel, same order)", run_matmul(true, a, b, M, N, K), want, 1e-5);
  }
  CHECK(worst > 1e-2);  // the fixed kernel is at ~1e-7
}

TEST_CASE("a race that forward order hides shows under reverse and random order") {
  REQUIRE_CPU_LAYER();
  const int n = 64;
  std::vector<float> in(n), want(n);
  for (int t = 0; t < n; ++t) in[size_t(t)] = float(t + 1);
  for (int t = 1; t < n; ++t) want[size_t(t)] = in[size_t(t - 1)];
  auto run = [&](const char* order, bool barrier) {
    ScopedEnv env("EMU_ORDER", order);
    cu::DeviceBuffer<float> din(n), dout(n);
    din.upload(in);
    dout.fill_nan();
    emu_test::neighbour_shift(din.data(), dout.data(), n, barrier);
    return dout.download();
  };
  for (const char* order : kOrders) CHECK(run(order, true) == want);  // with the barrier: always right
  CHECK(run("forward", false) == want);   // each thread writes before the next one reads: hidden
  CHECK(run("reverse", false) != want);   // the reader runs first: exposed
  std::vector<float> r1 = run("random:3", false), r2 = run("random:3", false);
  CHECK(r1 != want);
  CHECK(r1 == r2);  // a seed gives the same interleaving every time
}

TEST_CASE("a warp-synchronous reduction needs __syncwarp") {
  REQUIRE_DEVICE();
  std::vector<float> in(32);
  float want = 0;
  for (int l = 0; l < 32; ++l) want += in[size_t(l)] = float(l + 1);  // exact in float: 528
  auto run = [&](const char* order, bool legacy) {
    ScopedEnv env("EMU_ORDER", order);
    cu::DeviceBuffer<float> din(32), dout(1);
    din.upload(in);
    dout.fill_nan();
    emu_test::warp_reduce(din.data(), dout.data(), legacy);
    return dout.download()[0];
  };
  for (const char* order : kOrders) CHECK(run(order, false) == want);
  if (!cu::on_cpu_layer()) return;  // on a GPU the legacy version may or may not happen to work
  for (const char* order : {"forward", "reverse"}) {
    float got = run(order, true);
    MESSAGE("legacy warp reduction without __syncwarp, EMU_ORDER=" << std::string(order) << ": " << got
            << " (right: " << want << ")");
    CHECK(got != want);
  }
}

TEST_CASE("__syncthreads in divergent code is reported") {
  REQUIRE_CPU_LAYER();
  cu::DeviceBuffer<float> out(64);
  check_report(error_of([&] { emu_test::divergent_barrier(out.data()); }),
               {"__syncthreads", "reached by 16 threads", "48 threads have exited", "thread (16,0,0)"});
}

TEST_CASE("__syncthreads after an early return is reported") {
  REQUIRE_CPU_LAYER();
  cu::DeviceBuffer<float> out(64);
  check_report(error_of([&] { emu_test::early_return_barrier(out.data()); }),
               {"__syncthreads", "reached by 40 threads", "24 threads have exited", "early return"});
}

TEST_CASE("threads at two different __syncthreads are reported") {
  REQUIRE_CPU_LAYER();
  cu::DeviceBuffer<float> out(64);
  check_report(error_of([&] { emu_test::two_barriers(out.data()); }), {"different barriers", "thread (32,0,0)"});
}

TEST_CASE("a full-mask shuffle inside `if (lane < 16)` is reported") {
  REQUIRE_CPU_LAYER();
  cu::DeviceBuffer<float> out(32);
  check_report(error_of([&] { emu_test::shuffle_in_divergent_code(out.data()); }),
               {"__shfl_xor_sync", "0xffffffff", "lane 16", "has exited"});
}

TEST_CASE("warp-op mask misuse is reported") {
  REQUIRE_CPU_LAYER();
  cu::DeviceBuffer<float> out(64);
  check_report(error_of([&] { emu_test::caller_not_in_mask(out.data()); }),
               {"__shfl_sync", "0x00000001", "does not contain its own lane"});  // which lane: order-dependent
  check_report(error_of([&] { emu_test::full_mask_in_partial_warp(out.data()); }),
               {"__shfl_xor_sync", "lanes that do not exist", "0x0000ffff"});
  check_report(error_of([&] { emu_test::shuffle_reads_outside_mask(out.data()); }),
               {"__shfl_down_sync", "reads lane 16", "not in the mask"});
  check_report(error_of([&] { emu_test::mismatched_masks(out.data()); }),
               {"__ballot_sync", "disagree on the mask", "0x0000ffff", "0xffffffff"});
}

TEST_CASE("an out-of-bounds write is caught by the guard band") {
  REQUIRE_DEVICE();
  for (int n : {1, 33, 256}) {
    CAPTURE(n);
    cu::DeviceBuffer<float> out{size_t(n)};
    CHECK(out.guards_intact());
    emu_test::write_past_end(out.data(), n);  // one element past the end: into the trailing band
    CHECK_FALSE(out.guards_intact());
  }
}

// ---- the CPU layer's runtime checks -------------------------------------------------------------------

#ifndef RATTN_CUDA_RUNTIME
// Run f in a child process; return its stderr and whether it died of SIGSEGV.
template <class F>
std::pair<std::string, bool> in_child(F f) {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGSEGV, SIG_DFL);  // not the test framework's crash handler: the CPU layer's, then die
    dup2(fds[1], 2);
    close(fds[0]);
    f();
    _exit(0);
  }
  close(fds[1]);
  std::string err;
  char buf[512];
  for (ssize_t k; (k = read(fds[0], buf, sizeof buf)) > 0;) err.append(buf, size_t(k));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return {err, WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV};
}
#endif

TEST_CASE("CPU layer: far out-of-bounds and host accesses to device memory fault, with a report") {
  REQUIRE_CPU_LAYER();
#ifndef RATTN_CUDA_RUNTIME
  // A raw 256-byte allocation ends right at an inaccessible page: out[64] faults in the kernel.
  auto [kernel_err, kernel_segv] = in_child([] {
    float* p = nullptr;
    cu::check(cudaMalloc(&p, 256), "cudaMalloc");
    emu_test::write_past_end(p, 64);
  });
  INFO(kernel_err);
  CHECK(kernel_segv);
  CHECK(kernel_err.find("SIGSEGV in CUDA thread (0,0,0) of block (0,0,0)") != std::string::npos);
  CHECK(kernel_err.find("0 bytes past the end of the 256-byte device allocation") != std::string::npos);
  // Host code must not dereference device pointers (it would fault on a GPU system too).
  auto [host_err, host_segv] = in_child([] {
    cu::DeviceBuffer<float> b(4);
    volatile float x = b.data()[0];
    (void)x;
  });
  INFO(host_err);
  CHECK(host_segv);
  CHECK(host_err.find("SIGSEGV in host code") != std::string::npos);
#endif
}

TEST_CASE("CPU layer: launch and runtime API misuse") {
  REQUIRE_CPU_LAYER();
#ifndef RATTN_CUDA_RUNTIME
  // A host pointer as a kernel argument.
  std::vector<float> host(64);
  std::string msg = error_of([&] { emu_test::write_past_end(host.data(), 0); });
  INFO(msg);
  CHECK(msg.find("not device memory") != std::string::npos);
  // cudaMemcpy past the end of an allocation, or in a direction that does not match the pointers.
  cu::DeviceBuffer<float> b(4);
  float h[8] = {};
  CHECK(cudaMemcpy(b.data(), h, 5 * sizeof(float) + cu::DeviceBuffer<float>::kGuardBytes, cudaMemcpyHostToDevice) ==
        cudaErrorInvalidValue);
  CHECK(cudaMemcpy(h, b.data(), 4 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(cudaFree(h) == cudaErrorInvalidValue);
  // Fresh device memory is poisoned with NaN; so is memory fill_nan() touched.
  for (float x : b.download()) CHECK(std::isnan(x));
  // Intrinsics outside a kernel, and bad launch configurations.
  CHECK_THROWS_AS(__syncthreads(), emu::Error);
  cu::DeviceBuffer<float> in(64), out(64 * 6);
  CHECK(!error_of([&] { emu_test::shuffles(in.data(), out.data(), 2048, 0, 1, 1, 32); }).empty());  // > 1024
  CHECK(!error_of([&] { emu_test::shuffles(in.data(), out.data(), 64, 0, 1, 1, 3); }).empty());     // width 3
  // EMU_ORDER must be valid.
  ScopedEnv env("EMU_ORDER", "sideways");
  CHECK(error_of([&] { emu_test::votes(b.data(), reinterpret_cast<unsigned*>(b.data()), 32); }).find("EMU_ORDER") !=
        std::string::npos);
#endif
}
