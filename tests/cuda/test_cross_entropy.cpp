// tests/cuda/test_cross_entropy.cpp: cu::cross_entropy_* (every version) against ref/loss.h in double:
// per-row losses, the mean over counted rows, dlogits with ignored targets (-1), large logits.
#include <random>

#include "cuda/cross_entropy.h"
#include "ref/loss.h"
#include "tests/cuda/ops_check.h"

using namespace cuops_test;

namespace {

void run_case(int N, int V, double scale, double p_ignore, std::mt19937_64& rng) {
  MatF logits = rattn_test::randn<MatF>(N, V, rng, scale);
  std::vector<int> targets(N);
  std::uniform_int_distribution<int> tok(0, V - 1);
  std::bernoulli_distribution ignore(p_ignore);
  for (int& t : targets) t = ignore(rng) ? -1 : tok(rng);
  long counted = 0;
  for (int t : targets) counted += (t >= 0);
  MatD logits64 = logits.cast<double>();

  // per-row losses: ref::cross_entropy of the single row (0 for an ignored row)
  MatF loss32(N, 1);
  MatD loss64(N, 1);
  for (int n = 0; n < N; ++n) {
    loss32(n, 0) = ref::cross_entropy(MatF(logits.row(n)), {targets[n]});
    loss64(n, 0) = ref::cross_entropy(MatD(logits64.row(n)), {targets[n]});
  }
  MatF dl32;
  MatD dl64;
  MatF mean32(1, 1);
  MatD mean64(1, 1);
  mean32(0, 0) = ref::cross_entropy(logits, targets, &dl32);
  mean64(0, 0) = ref::cross_entropy(logits64, targets, &dl64);
  const float dloss = counted ? 1.0f / float(counted) : 0.0f;

  cu::DeviceBuffer<float> bl(logits.size()), blosses(N), bdl(logits.size());
  cu::DeviceBuffer<int> bt(N);
  to_device(bl, logits);
  bt.upload(targets);
  for (int version = 1; version <= cu::kCrossEntropyVersions; ++version) {
    CAPTURE(version); CAPTURE(N); CAPTURE(V); CAPTURE(scale);
    blosses.fill_nan();
    bdl.fill_nan();
    cu::cross_entropy_forward(bl.data(), bt.data(), blosses.data(), N, V, version);
    cu::cross_entropy_backward(bl.data(), bt.data(), dloss, bdl.data(), N, V, version);
    MatF got = from_device(blosses, N, 1);
    check_vs_ref("losses", got, loss32, loss64, kFloorFwd, rattn_test::family_rms(loss64));
    MatF mean(1, 1);
    mean(0, 0) = counted ? float(got.cast<double>().sum() / double(counted)) : 0.0f;
    check_vs_ref("mean loss", mean, mean32, mean64, kFloorFwd, rattn_test::family_rms(loss64));
    check_vs_ref("dlogits", from_device(bdl, N, V), dl32, dl64, kFloorBwd, rattn_test::family_rms(dl64));
    CHECK(blosses.guards_intact());
    CHECK(bdl.guards_intact());
  }
}

}  // namespace

TEST_CASE("cross_entropy forward/backward against ref64 (V = 256 and odd V, ignored targets)") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(77);
  run_case(7, 256, 1.0, 0.3, rng);
  if (small_run()) return;
  run_case(1, 256, 1.0, 0.0, rng);
  run_case(65, 256, 1.0, 0.2, rng);
  run_case(130, 256, 30.0, 0.1, rng);  // large logits: only a max-subtracting logsumexp stays finite
  run_case(9, 37, 2.0, 0.2, rng);      // V < 64: some lanes own one element, V not a multiple of 32
  run_case(5, 300, 1.0, 0.2, rng);
  run_case(6, 3, 1.0, 0.0, rng);       // V < 32: most lanes of the warp own nothing
  run_case(4, 256, 1.0, 1.0, rng);     // every target ignored: losses 0, dlogits 0
}

TEST_CASE("cross_entropy: a target outside [-1, V) gives NaN, not a wild read") {
  REQUIRE_DEVICE();
  cu::DeviceBuffer<float> bl(2 * 4), blosses(2);
  cu::DeviceBuffer<int> bt(2);
  bl.upload(std::vector<float>(8, 0.5f));
  bt.upload(std::vector<int>{1, 4});
  for (int version = 1; version <= cu::kCrossEntropyVersions; ++version) {
    cu::cross_entropy_forward(bl.data(), bt.data(), blosses.data(), 2, 4, version);
    std::vector<float> l = blosses.download();
    CHECK(std::abs(l[0] - std::log(4.0f)) < 1e-6f);
    CHECK(std::isnan(l[1]));
  }
}
