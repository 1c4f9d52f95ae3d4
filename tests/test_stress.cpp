// tests/test_stress.cpp: numerics under stress on the CPU reference.
//
//   long sequences   T = 16384 (small D, H so it runs in seconds): the RLA state S_T =
//                    sum_j phi(k_j)^T v_j stays finite and equal to a direct double sum, the chunked
//                    and recurrent RLA agree, float32 stays close to float64, and the constant-memory
//                    decode (ref/decode.h) reproduces the full forward at every position.
//   large inputs     q, k with |x| ~ 1e3..1e4: phi (sm2 subtracts its max; relu2 and identity are
//                    linear) and the SWA softmax (max subtracted) do not overflow; forward outputs and
//                    every gradient are finite, in float32 and float64.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>

#include "ref/attention.h"
#include "ref/decode.h"
#include "ref/feature_map.h"
#include "ref/rattention.h"
#include "ref/rla.h"
#include "tests/check.h"

using ref::FeatureMap;
using ref::Mat;
using rattn_test::check_close;
using rattn_test::randn;

namespace {
constexpr int kLongT = 16384;

template <class S>
ref::AttnParams<S> random_layer(int C, const ref::AttnConfig& cfg, std::mt19937_64& rng) {
  const int HD = cfg.H * cfg.D, GD = cfg.G * cfg.D;
  ref::AttnParams<double> p;
  p.Wq = randn<Mat<double>>(C, HD, rng, 1.0 / std::sqrt(double(C)));
  p.Wk = randn<Mat<double>>(C, GD, rng, 1.0 / std::sqrt(double(C)));
  p.Wv = randn<Mat<double>>(C, GD, rng, 1.0 / std::sqrt(double(C)));
  p.Wo = randn<Mat<double>>(HD, C, rng, 1.0 / std::sqrt(double(HD)));
  p.gamma_swa = Mat<double>::Ones(cfg.H, cfg.D) + randn<Mat<double>>(cfg.H, cfg.D, rng, 0.1);
  p.gamma_rla = Mat<double>::Ones(cfg.H, cfg.D) + randn<Mat<double>>(cfg.H, cfg.D, rng, 0.1);
  return {p.Wq.cast<S>(),        p.Wk.cast<S>(),        p.Wv.cast<S>(), p.Wo.cast<S>(),
          p.gamma_swa.cast<S>(), p.gamma_rla.cast<S>(), Mat<S>(),       Mat<S>()};  // no qk-norm scales
}

template <class S>
bool all_finite(const Mat<S>& m) {
  return m.allFinite();
}
}  // namespace

TEST_CASE("stress: T = 16384, the RLA state stays finite and equals the direct sum; chunked = recurrent") {
  std::mt19937_64 rng(16384);
  const int H = 2, G = 1, D = 4;
  const Mat<double> q = randn<Mat<double>>(kLongT, H * D, rng), k = randn<Mat<double>>(kLongT, G * D, rng);
  const Mat<double> v = randn<Mat<double>>(kLongT, G * D, rng);
  for (FeatureMap fm : {FeatureMap::sm2, FeatureMap::relu2, FeatureMap::identity}) {
    const std::string fm_name = ref::to_string(fm);
    CAPTURE(fm_name);
    // S_T folded one token at a time (the decode path), in double and in float ...
    ref::RlaState<double> s64 = ref::rla_zero_state<double>(G, D, fm);
    ref::RlaState<float> s32 = ref::rla_zero_state<float>(G, D, fm);
    const Mat<float> k32 = k.cast<float>(), v32 = v.cast<float>();
    for (long t = 0; t < kLongT; ++t) {
      ref::rla_fold(s64, Mat<double>(k.row(t)), Mat<double>(v.row(t)), G, fm);
      ref::rla_fold(s32, Mat<float>(k32.row(t)), Mat<float>(v32.row(t)), G, fm);
    }
    // ... against the direct sum phi(K)^T V over all tokens.
    const Mat<double> direct = ref::phi_forward(fm, k).transpose() * v;
    CHECK(all_finite(s64[0]));
    CHECK(all_finite(s32[0]));
    check_close("S_T (double fold vs direct)", s64[0], direct, 1e-12);
    check_close("S_T (float fold vs double)", s32[0], direct, 1e-4);
    MESSAGE(fm_name << ": |S_T| max " << direct.cwiseAbs().maxCoeff() << ", float state rel RMS error "
                               << rattn_test::compare(s32[0], direct).rel_rms);

    for (int w : {-1, 64}) {
      CAPTURE(w);
      const Mat<double> chunked = ref::rla_forward_chunked(q, k, v, H, G, w, fm, 64);
      const Mat<double> recurrent = ref::rla_forward_recurrent(q, k, v, H, G, w, fm);
      CHECK(all_finite(chunked));
      check_close("RLA chunked vs recurrent, T = 16384", chunked, recurrent, 1e-10);
      const Mat<float> chunked32 = ref::rla_forward_chunked(q.cast<float>().eval(), k32, v32, H, G, w, fm, 64);
      CHECK(all_finite(chunked32));
      check_close("RLA float vs double, T = 16384", chunked32, chunked, 1e-4);
    }
  }
}

TEST_CASE("stress: T = 16384, decode reproduces the forward at every position (rattn and linear)") {
  std::mt19937_64 rng(4096);
  const int C = 8;
  for (ref::LocalKind kind : {ref::LocalKind::rattn, ref::LocalKind::linear}) {
    ref::AttnConfig cfg;
    cfg.H = 2, cfg.G = 1, cfg.D = 4, cfg.kind = kind, cfg.fm = FeatureMap::sm2, cfg.chunk = 64;
    cfg.w = kind == ref::LocalKind::linear ? -1 : 16;
    const std::string kind_name = ref::to_string(kind);
    CAPTURE(kind_name);
    const ref::AttnParams<double> p = random_layer<double>(C, cfg, rng);
    const Mat<double> x = randn<Mat<double>>(kLongT, C, rng);
    const Mat<double> y = ref::attention_layer_forward(cfg, p, x);
    REQUIRE(all_finite(y));
    // double decode: equal to the forward to rounding
    ref::AttnDecodeCache<double> cache = ref::attn_decode_init<double>(cfg);
    const Mat<double> yd = ref::attention_layer_prefill(cfg, p, cache, x);
    CHECK(cache.t == kLongT);
    CHECK(all_finite(cache.state[0]));
    check_close("decode vs forward (double), T = 16384", yd, y, 1e-10);
    // the last rows alone (where a drifting state would show most)
    check_close("decode vs forward (double), last 64 rows", Mat<double>(yd.bottomRows(64)), Mat<double>(y.bottomRows(64)),
                1e-10);
    // float decode: its float32 state summed over 16384 tokens stays close to the double forward
    const ref::AttnParams<float> p32 = random_layer<float>(C, cfg, rng = std::mt19937_64(4096 + int(kind)));
    const ref::AttnParams<double> p64 = random_layer<double>(C, cfg, rng = std::mt19937_64(4096 + int(kind)));
    ref::AttnDecodeCache<float> c32 = ref::attn_decode_init<float>(cfg);
    const Mat<float> yd32 = ref::attention_layer_prefill(cfg, p32, c32, x.cast<float>().eval());
    const Mat<double> y64 = ref::attention_layer_forward(cfg, p64, x);
    CHECK(all_finite(c32.state[0]));
    check_close("decode (float) vs forward (double), last 64 rows", Mat<double>(yd32.bottomRows(64).cast<double>()),
                Mat<double>(y64.bottomRows(64)), 1e-4);
    MESSAGE(kind_name << ": float decode vs double forward over T = 16384, rel RMS "
                                 << rattn_test::compare(yd32.cast<double>().eval(), y64).rel_rms);
  }
}

TEST_CASE("stress: large-magnitude q and k do not overflow phi or the softmax; gradients finite") {
  const int H = 2, G = 1, D = 4, T = 48;
  for (double mag : {1e3, 1e4}) {
    CAPTURE(mag);
    std::mt19937_64 rng{uint64_t(mag)};
    const Mat<double> q = randn<Mat<double>>(T, H * D, rng, mag), k = randn<Mat<double>>(T, G * D, rng, mag);
    const Mat<double> v = randn<Mat<double>>(T, G * D, rng), dout = randn<Mat<double>>(T, H * D, rng);
    const Mat<double> gamma = Mat<double>::Ones(H, D);

    // phi of huge inputs: sm2 halves are probability vectors (each row sums to 1, entries in [0, 1]).
    for (FeatureMap fm : {FeatureMap::sm2, FeatureMap::relu2, FeatureMap::identity}) {
      const std::string fm_name = ref::to_string(fm);
      CAPTURE(fm_name);
      const Mat<float> f32 = ref::phi_forward(fm, Mat<float>(k.cast<float>()));
      const Mat<double> f64 = ref::phi_forward(fm, k);
      CHECK(all_finite(f32));
      CHECK(all_finite(f64));
      if (fm == FeatureMap::sm2) {
        for (long r = 0; r < T; ++r)
          for (int half = 0; half < 2; ++half) {
            CHECK(std::abs(f64.row(r).segment(half * D, D).sum() - 1.0) < 1e-12);
            CHECK(f32.row(r).segment(half * D, D).minCoeff() >= 0.0f);
          }
      }
      const Mat<double> dphi = randn<Mat<double>>(T, ref::feature_dim(fm, D), rng);
      CHECK(all_finite(ref::phi_backward(fm, k, dphi)));
      CHECK(all_finite(ref::phi_backward(fm, Mat<float>(k.cast<float>()), Mat<float>(dphi.cast<float>()))));
    }

    // The whole attention core of every local kind, forward and backward, in float and double.
    for (ref::LocalKind kind : {ref::LocalKind::swa, ref::LocalKind::rattn, ref::LocalKind::linear}) {
      for (FeatureMap fm : {FeatureMap::sm2, FeatureMap::relu2}) {
        ref::AttnConfig cfg;
        cfg.H = H, cfg.G = G, cfg.D = D, cfg.kind = kind, cfg.fm = fm, cfg.chunk = 16;
        cfg.w = kind == ref::LocalKind::linear ? -1 : 8;
        const std::string kind_name = ref::to_string(kind), fm_name = ref::to_string(fm);
        CAPTURE(kind_name);
        CAPTURE(fm_name);
        const Mat<double> o = ref::attn_core_forward(cfg, q, k, v, gamma, gamma);
        CHECK(all_finite(o));
        const ref::CoreGrads<double> g = ref::attn_core_backward(cfg, q, k, v, gamma, gamma, dout);
        CHECK(all_finite(g.dq));
        CHECK(all_finite(g.dk));
        CHECK(all_finite(g.dv));
        CHECK(all_finite(g.dgamma_swa));
        CHECK(all_finite(g.dgamma_rla));
        const Mat<float> q32 = q.cast<float>(), k32 = k.cast<float>(), v32 = v.cast<float>();
        const Mat<float> g32 = gamma.cast<float>(), d32 = dout.cast<float>();
        CHECK(all_finite(ref::attn_core_forward(cfg, q32, k32, v32, g32, g32)));
        const ref::CoreGrads<float> gf = ref::attn_core_backward(cfg, q32, k32, v32, g32, g32, d32);
        CHECK(all_finite(gf.dq));
        CHECK(all_finite(gf.dk));
        CHECK(all_finite(gf.dv));
      }
    }

    // The global softmax (w = -1) at these magnitudes: scores up to ~1e8 in float; the max is
    // subtracted, so probabilities are finite and each output row is a convex mix of v rows.
    const float scale = 0.5f;
    const Mat<float> o32 = ref::swa_forward(Mat<float>(q.cast<float>()), Mat<float>(k.cast<float>()),
                                            Mat<float>(v.cast<float>()), H, G, -1, scale);
    REQUIRE(all_finite(o32));
    for (long t = 0; t < T; ++t)
      for (int h = 0; h < H; ++h)
        for (int d = 0; d < D; ++d) {
          const double lo = v.topRows(t + 1).col(d).minCoeff(), hi = v.topRows(t + 1).col(d).maxCoeff();
          const double x = o32(t, h * D + d);
          CHECK((x >= lo - 1e-5 && x <= hi + 1e-5));
        }
    Mat<float> dq, dk, dv;
    ref::swa_backward(Mat<float>(q.cast<float>()), Mat<float>(k.cast<float>()), Mat<float>(v.cast<float>()),
                      Mat<float>(dout.cast<float>()), H, G, -1, scale, dq, dk, dv);
    CHECK(all_finite(dq));
    CHECK(all_finite(dk));
    CHECK(all_finite(dv));
  }
}
