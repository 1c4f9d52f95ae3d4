// tests/cuda/test_swiglu.cpp: the SwiGLU gate kernels (every version, lengths not a multiple of 4)
// and the whole block cu::swiglu_forward / swiglu_backward against ref/mlp.h in double.
#include <random>

#include "cuda/swiglu.h"
#include "ref/mlp.h"
#include "tests/cuda/ops_check.h"

using namespace cuops_test;

TEST_CASE("swiglu gate kernels against the elementwise formula in double") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(5);
  for (long n : {1L, 3L, 4L, 37L, 1000L, 1027L, 5003L}) {
    MatF a = rattn_test::randn<MatF>(1, n, rng, 3.0), b = rattn_test::randn<MatF>(1, n, rng);
    MatF dg = rattn_test::randn<MatF>(1, n, rng);
    if (n > 2) a(0, 0) = -100.0f, a(0, 1) = 100.0f;  // saturated sigmoid: finite, no NaN
    auto fwd = [&](auto s) {
      using S = decltype(s);
      ref::Mat<S> g(1, n), da(1, n), db(1, n);
      for (long i = 0; i < n; ++i) {
        const S z = S(a(0, i)), bi = S(b(0, i)), d = S(dg(0, i)), sg = ref::detail::sigmoid(z);
        g(0, i) = z * sg * bi;
        db(0, i) = d * z * sg;
        da(0, i) = d * bi * sg * (S(1) + z * (S(1) - sg));
      }
      return std::tuple{g, da, db};
    };
    auto [g32, da32, db32] = fwd(0.0f);
    auto [g64, da64, db64] = fwd(0.0);
    cu::DeviceBuffer<float> ba(n), bb(n), bdg(n), bg(n), bda(n), bdb(n);
    to_device(ba, a);
    to_device(bb, b);
    for (int version = 1; version <= cu::kSwigluVersions; ++version) {
      CAPTURE(version); CAPTURE(n);
      bg.fill_nan();
      bdb.fill_nan();
      to_device(bdg, dg);
      cu::swiglu_gate_forward(ba.data(), bb.data(), bg.data(), n, version);
      cu::swiglu_gate_backward(ba.data(), bb.data(), bdg.data(), bda.data(), bdb.data(), n, version);
      check_vs_ref("g", from_device(bg, 1, n), g32, g64, kFloorFwd, rattn_test::family_rms(g64));
      const double grad_scale = rattn_test::family_rms(da64, db64);
      check_vs_ref("da", from_device(bda, 1, n), da32, da64, kFloorBwd, grad_scale);
      check_vs_ref("db", from_device(bdb, 1, n), db32, db64, kFloorBwd, grad_scale);
      // da written over dg (the aliasing swiglu_backward uses)
      to_device(bdg, dg);
      cu::swiglu_gate_backward(ba.data(), bb.data(), bdg.data(), bdg.data(), bdb.data(), n, version);
      check_vs_ref("da (in place over dg)", from_device(bdg, 1, n), da32, da64, kFloorBwd, grad_scale);
      for (auto* buf : {&bg, &bda, &bdb, &bdg}) CHECK(buf->guards_intact());
    }
  }
}

TEST_CASE("swiglu block forward/backward against ref/mlp.h") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(6);
  struct S { int N, C, F; };
  for (S s : small_run() ? std::vector<S>{{3, 5, 7}} : std::vector<S>{{3, 5, 7}, {33, 16, 40}, {65, 24, 66}}) {
    ref::SwiGLUParams<float> p{rattn_test::randn<MatF>(s.C, s.F, rng, 0.3), rattn_test::randn<MatF>(s.C, s.F, rng, 0.3),
                               rattn_test::randn<MatF>(s.F, s.C, rng, 0.3)};
    ref::SwiGLUParams<float> dp0{rattn_test::randn<MatF>(s.C, s.F, rng), rattn_test::randn<MatF>(s.C, s.F, rng),
                                 rattn_test::randn<MatF>(s.F, s.C, rng)};
    MatF x = rattn_test::randn<MatF>(s.N, s.C, rng), dy = rattn_test::randn<MatF>(s.N, s.C, rng);
    ref::SwiGLUParams<double> p64{p.W1.cast<double>(), p.W3.cast<double>(), p.W2.cast<double>()};
    ref::SwiGLUParams<float> dp32 = dp0;
    ref::SwiGLUParams<double> dp64{dp0.W1.cast<double>(), dp0.W3.cast<double>(), dp0.W2.cast<double>()};
    MatF y32 = ref::swiglu_forward(x, p), dx32 = ref::swiglu_backward(x, p, dy, dp32);
    MatD x64 = x.cast<double>(), dy64 = dy.cast<double>();
    MatD y64 = ref::swiglu_forward(x64, p64), dx64 = ref::swiglu_backward(x64, p64, dy64, dp64);

    const long NF = long(s.N) * s.F;
    cu::DeviceBuffer<float> bx(x.size()), bdy(dy.size()), W1(p.W1.size()), W3(p.W3.size()), W2(p.W2.size());
    cu::DeviceBuffer<float> a(NF), b(NF), g(NF), y(x.size()), dx(x.size()), dW1(p.W1.size()), dW3(p.W3.size()),
        dW2(p.W2.size()), scratch(cu::swiglu_scratch_size(s.N, s.F));
    to_device(bx, x);
    to_device(bdy, dy);
    to_device(W1, p.W1);
    to_device(W3, p.W3);
    to_device(W2, p.W2);
    for (int version = 1; version <= cu::kSwigluVersions; ++version) {
      CAPTURE(version); CAPTURE(s.N); CAPTURE(s.C); CAPTURE(s.F);
      for (auto* buf : {&a, &b, &g, &y, &dx, &scratch}) buf->fill_nan();
      to_device(dW1, dp0.W1);
      to_device(dW3, dp0.W3);
      to_device(dW2, dp0.W2);
      cu::swiglu_forward(bx.data(), W1.data(), W3.data(), W2.data(), a.data(), b.data(), g.data(), y.data(), s.N, s.C,
                         s.F, version);
      cu::swiglu_backward(bx.data(), W1.data(), W3.data(), W2.data(), a.data(), b.data(), g.data(), bdy.data(),
                          dx.data(), dW1.data(), dW3.data(), dW2.data(), scratch.data(), s.N, s.C, s.F, version);
      check_vs_ref("y", from_device(y, s.N, s.C), y32, y64, kFloorFwd, rattn_test::family_rms(y64));
      const double grad_scale = rattn_test::family_rms(dx64, dp64.W1, dp64.W3, dp64.W2);
      check_vs_ref("dx", from_device(dx, s.N, s.C), dx32, dx64, kFloorBwd, grad_scale);
      check_vs_ref("dW1 (+=)", from_device(dW1, s.C, s.F), dp32.W1, dp64.W1, kFloorBwd, grad_scale);
      check_vs_ref("dW3 (+=)", from_device(dW3, s.C, s.F), dp32.W3, dp64.W3, kFloorBwd, grad_scale);
      check_vs_ref("dW2 (+=)", from_device(dW2, s.F, s.C), dp32.W2, dp64.W2, kFloorBwd, grad_scale);
      for (auto* buf : {&a, &b, &g, &y, &dx, &dW1, &dW3, &dW2, &scratch}) CHECK(buf->guards_intact());
    }
  }
}
