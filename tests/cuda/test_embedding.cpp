// tests/cuda/test_embedding.cpp: cu::embedding_forward / embedding_backward (every version) against
// ref/embedding.h in double; repeated tokens (a small V), C not a multiple of 4, the deterministic
// backward (v2) giving identical bits in every fiber and block order and run, and out-of-range tokens.
#include <cmath>
#include <random>
#include <string>

#include "cuda/embedding.h"
#include "ref/embedding.h"
#include "tests/cuda/ops_check.h"

using namespace cuops_test;

TEST_CASE("embedding forward/backward against ref64") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(21);
  struct S { int N, V, C; };
  for (S s : small_run() ? std::vector<S>{{7, 5, 16}}
                         : std::vector<S>{{1, 256, 16}, {7, 5, 16}, {65, 256, 33}, {300, 3, 64}, {40, 256, 3}}) {
    MatF E = rattn_test::randn<MatF>(s.V, s.C, rng), dy = rattn_test::randn<MatF>(s.N, s.C, rng);
    MatF dE0 = rattn_test::randn<MatF>(s.V, s.C, rng);
    std::vector<int> tokens(s.N);
    std::uniform_int_distribution<int> tok(0, s.V - 1);
    for (int& t : tokens) t = tok(rng);
    MatF x32 = ref::embedding_forward(tokens, E);
    MatD x64 = ref::embedding_forward(tokens, MatD(E.cast<double>()));
    MatF dE32 = dE0;
    MatD dE64 = dE0.cast<double>();
    ref::embedding_backward(tokens, dy, dE32);
    ref::embedding_backward(tokens, MatD(dy.cast<double>()), dE64);

    cu::DeviceBuffer<int> bt(s.N);
    cu::DeviceBuffer<float> bE(E.size()), bx(x32.size()), bdy(dy.size()), bdE(E.size());
    bt.upload(tokens);
    to_device(bE, E);
    to_device(bdy, dy);
    for (int version = 1; version <= cu::kEmbeddingVersions; ++version) {
      CAPTURE(version); CAPTURE(s.N); CAPTURE(s.V); CAPTURE(s.C);
      bx.fill_nan();
      to_device(bdE, dE0);
      cu::embedding_forward(bt.data(), bE.data(), bx.data(), s.N, s.V, s.C, version);
      cu::embedding_backward(bt.data(), bdy.data(), bdE.data(), s.N, s.V, s.C, version);
      MatF x = from_device(bx, s.N, s.C);
      CHECK(x == x32);  // a copy: exact
      check_vs_ref("dE (+=)", from_device(bdE, s.V, s.C), dE32, dE64, kFloorBwd, rattn_test::family_rms(dE64));
      CHECK(bx.guards_intact());
      CHECK(bdE.guards_intact());
    }
    // v2 (the model's) is deterministic: the same bits in every fiber and block order and on every run
    MatF first;
    for (const OrderRun& run : kOrderRuns) {
      const std::string order_s = run.order, threads_s = run.host_threads;
      CAPTURE(order_s); CAPTURE(threads_s);
      ScopedEnv order("EMU_ORDER", run.order), threads("EMU_HOST_THREADS", run.host_threads);
      to_device(bdE, dE0);
      cu::embedding_backward(bt.data(), bdy.data(), bdE.data(), s.N, s.V, s.C, 2);
      const MatF got = from_device(bdE, s.V, s.C);
      if (first.size() == 0) first = got;
      else CHECK(bits_differ(got, first) == 0);
    }
  }
}

TEST_CASE("embedding: a token outside [0, V) gives a NaN row and no gradient, not a wild access") {
  REQUIRE_DEVICE();
  const int N = 3, V = 4, C = 8;
  cu::DeviceBuffer<int> bt(N);
  cu::DeviceBuffer<float> bE(V * C), bx(N * C), bdy(N * C), bdE(V * C);
  bt.upload(std::vector<int>{1, 4, -2});
  bE.upload(std::vector<float>(V * C, 2.0f));
  bdy.upload(std::vector<float>(N * C, 1.0f));
  for (int version = 1; version <= cu::kEmbeddingVersions; ++version) {
    bdE.upload(std::vector<float>(V * C, 0.0f));
    cu::embedding_forward(bt.data(), bE.data(), bx.data(), N, V, C, version);
    cu::embedding_backward(bt.data(), bdy.data(), bdE.data(), N, V, C, version);
    std::vector<float> x = bx.download(), dE = bdE.download();
    for (int c = 0; c < C; ++c) {
      CHECK(x[c] == 2.0f);
      CHECK(std::isnan(x[C + c]));
      CHECK(std::isnan(x[2 * C + c]));
    }
    double total = 0;
    for (float d : dE) total += d;
    CHECK(total == C);  // only token 1's row
    CHECK(dE[C] == 1.0f);
  }
}
