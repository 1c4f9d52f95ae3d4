// tests/cuda/test_adamw.cpp: cu::adamw_step (every version; several steps, decay on/off, lengths not a
// multiple of 4) and cu::clip_grad_norm against ref/optim.h in double.
#include <random>

#include "cuda/adamw.h"
#include "ref/optim.h"
#include "tests/cuda/ops_check.h"

using namespace cuops_test;

TEST_CASE("adamw_step against ref64 over several steps") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(11);
  const ref::AdamW rcfg{3e-2, 0.9, 0.95, 1e-8, 0.1};
  const cu::AdamW cfg{3e-2, 0.9, 0.95, 1e-8, 0.1};
  for (long n : {1L, 5L, 1000L, 1027L, 4099L})
    for (bool decay : {false, true}) {
      MatF p0 = rattn_test::randn<MatF>(1, n, rng);
      std::vector<MatF> grads;
      for (int s = 0; s < 3; ++s) grads.push_back(rattn_test::randn<MatF>(1, n, rng, s == 2 ? 1e-3 : 1.0));
      for (int version = 1; version <= cu::kAdamwVersions; ++version) {
        CAPTURE(version); CAPTURE(n); CAPTURE(decay);
        MatF p32 = p0, m32 = MatF::Zero(1, n), v32 = MatF::Zero(1, n);
        MatD p64 = p0.cast<double>(), m64 = MatD::Zero(1, n), v64 = MatD::Zero(1, n);
        cu::DeviceBuffer<float> bp(n), bg(n), bm(n), bv(n);
        to_device(bp, p0);
        to_device(bm, MatF::Zero(1, n));
        to_device(bv, MatF::Zero(1, n));
        for (long step = 1; step <= 3; ++step) {
          const MatF& g = grads[size_t(step - 1)];
          ref::adamw_step(p32, g, m32, v32, step, rcfg, decay);
          MatD g64 = g.cast<double>();
          ref::adamw_step(p64, g64, m64, v64, step, rcfg, decay);
          to_device(bg, g);
          cu::adamw_step(bp.data(), bg.data(), bm.data(), bv.data(), n, step, cfg, decay, version);
        }
        check_vs_ref("param", from_device(bp, 1, n), p32, p64, kFloorBwd, rattn_test::family_rms(p64));
        check_vs_ref("m", from_device(bm, 1, n), m32, m64, kFloorBwd, rattn_test::family_rms(m64));
        check_vs_ref("v", from_device(bv, 1, n), v32, v64, kFloorBwd, rattn_test::family_rms(v64));
        for (auto* b : {&bp, &bm, &bv}) CHECK(b->guards_intact());
      }
    }
  cu::DeviceBuffer<float> b(4);
  CHECK_THROWS(cu::adamw_step(b.data(), b.data(), b.data(), b.data(), 4, 0, cfg, true, 2));
  CHECK_THROWS(cu::adamw_step(b.data(), b.data(), b.data(), b.data(), 4, 1, cfg, true, 3));
}

TEST_CASE("clip_grad_norm against ref64 (clipping and not clipping)") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(12);
  for (float max_norm : {1.0f, 1e6f}) {
    std::vector<MatF> g32 = {rattn_test::randn<MatF>(3, 7, rng), rattn_test::randn<MatF>(1, 1, rng),
                             rattn_test::randn<MatF>(65, 33, rng)};
    std::vector<MatD> g64;
    for (auto& g : g32) g64.push_back(g.cast<double>());
    std::vector<cu::DeviceBuffer<float>> bufs;
    std::vector<float*> ptrs;
    std::vector<long> sizes;
    for (auto& g : g32) {
      bufs.emplace_back(g.size());
      to_device(bufs.back(), g);
    }
    for (auto& b : bufs) ptrs.push_back(b.data()), sizes.push_back(long(b.size()));
    std::vector<MatF*> r32;
    std::vector<MatD*> r64;
    for (auto& g : g32) r32.push_back(&g);
    for (auto& g : g64) r64.push_back(&g);
    MatF n32(1, 1), got(1, 1);
    MatD n64(1, 1);
    n32(0, 0) = ref::clip_grad_norm(r32, max_norm);
    n64(0, 0) = ref::clip_grad_norm(r64, double(max_norm));
    got(0, 0) = cu::clip_grad_norm(ptrs.data(), sizes.data(), int(ptrs.size()), max_norm);
    CAPTURE(max_norm);
    // The gradients are clipped together: their scale is the family's (one of them is a single number).
    double g_sq = 0, g_n = 0;
    for (const MatD& g : g64) g_sq += g.squaredNorm(), g_n += double(g.size());
    const double g_scale = std::sqrt(g_sq / g_n);
    check_vs_ref("norm", got, n32, n64, kFloorFwd, rattn_test::family_rms(n64));
    for (size_t i = 0; i < bufs.size(); ++i) {
      check_vs_ref("g" + std::to_string(i), from_device(bufs[i], g32[i].rows(), g32[i].cols()), g32[i], g64[i],
                   kFloorBwd, g_scale);
      CHECK(bufs[i].guards_intact());
    }
  }
}
