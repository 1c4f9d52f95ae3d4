// The RATTENTION attention core and layer (ref/rattention.h): the window partition between the SWA
// and RLA branches, the limits (w >= T-1, linear = RLA over [0,t]), and every gradient of the core
// and of the full layer against central finite differences in double, for every kind.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>

#include "ref/attention.h"
#include "ref/norm.h"
#include "ref/rattention.h"
#include "ref/rla.h"
#include "ref/rope.h"
#include "tests/attn_setup.h"
#include "tests/check.h"

using ref::AttnConfig;
using ref::AttnParams;
using ref::FeatureMap;
using ref::LocalKind;
using ref::Mat;
using namespace rattn_test;

namespace {

double dot_all(const Mat<double>& W, const Mat<double>& y) { return (W.array() * y.array()).sum(); }

// Random q: (T, H*D), k, v: (T, G*D), gammas (H, D) and cotangent W: (T, H*D); every gradient of
// the core (dq, dk, dv, dgamma_swa, dgamma_rla) against central differences of sum(W * core(q, k, v)).
void check_core_grads(const AttnConfig& cfg, int T, std::mt19937_64& rng) {
  const int H = cfg.H, G = cfg.G, D = cfg.D;
  Mat<double> q = randn<Mat<double>>(T, H * D, rng), k = randn<Mat<double>>(T, G * D, rng),
              v = randn<Mat<double>>(T, G * D, rng), W = randn<Mat<double>>(T, H * D, rng);
  Mat<double> gs = rand_gamma(H, D, rng), gr = rand_gamma(H, D, rng);
  ref::CoreGrads<double> g = ref::attn_core_backward(cfg, q, k, v, gs, gr, W);
  auto f = [&] { return dot_all(W, ref::attn_core_forward(cfg, q, k, v, gs, gr)); };
  if (!cfg.global && cfg.kind == LocalKind::linear && T == 1) {
    // One token, one RLA key: o_rla = (phi(q).phi(k)) v is a scalar times v, and GRMS removes
    // the scalar, so q and k get a gradient of order eps only (finite differences of it are
    // noise). Check that it is that small instead.
    CHECK(g.dq.norm() < 1e-5 * g.dv.norm());
    CHECK(g.dk.norm() < 1e-5 * g.dv.norm());
  } else {
    CHECK(grad_check("q (core)", f, q, g.dq));
    CHECK(grad_check("k (core)", f, k, g.dk));
  }
  CHECK(grad_check("v (core)", f, v, g.dv));
  CHECK(grad_check("gamma_swa (core)", f, gs, g.dgamma_swa));
  CHECK(grad_check("gamma_rla (core)", f, gr, g.dgamma_rla));
}

// With qk-norm (spec §2.9): random (1, D) scales; every gradient of the core, dq_norm and dk_norm
// included, against central differences of sum(W * core(q, k, v)).
void check_core_grads_qk(const AttnConfig& cfg, int T, std::mt19937_64& rng) {
  const int H = cfg.H, G = cfg.G, D = cfg.D;
  Mat<double> q = randn<Mat<double>>(T, H * D, rng), k = randn<Mat<double>>(T, G * D, rng),
              v = randn<Mat<double>>(T, G * D, rng), W = randn<Mat<double>>(T, H * D, rng);
  Mat<double> gs = rand_gamma(H, D, rng), gr = rand_gamma(H, D, rng);
  Mat<double> qn = rand_gamma(1, D, rng), kn = rand_gamma(1, D, rng);
  const ref::QkNormScales<double> qkn{&qn, &kn};
  ref::CoreGrads<double> g = ref::attn_core_backward(cfg, q, k, v, gs, gr, W, nullptr, qkn);
  auto f = [&] { return dot_all(W, ref::attn_core_forward(cfg, q, k, v, gs, gr, nullptr, qkn)); };
  CHECK(grad_check("q (core, qk-norm)", f, q, g.dq));
  CHECK(grad_check("k (core, qk-norm)", f, k, g.dk));
  CHECK(grad_check("v (core, qk-norm)", f, v, g.dv));
  CHECK(grad_check("gamma_swa (core, qk-norm)", f, gs, g.dgamma_swa));
  CHECK(grad_check("gamma_rla (core, qk-norm)", f, gr, g.dgamma_rla));
  CHECK(grad_check("q_norm (core)", f, qn, g.dq_norm));
  CHECK(grad_check("k_norm (core)", f, kn, g.dk_norm));
}

}  // namespace

TEST_CASE("LocalKind parses and prints") {
  for (LocalKind k : {LocalKind::swa, LocalKind::rattn, LocalKind::linear})
    CHECK(ref::parse_local_kind(ref::to_string(k)) == k);
  CHECK_THROWS_AS(ref::parse_local_kind("gla"), std::invalid_argument);
}

TEST_CASE("window partition: for query t, SWA keys and RLA keys are disjoint and cover [0, t]") {
  // Through the layer's own functions: perturb v[j] and see which branch output of query t moves.
  const int T = 13, H = 4, G = 2, D = 4;
  for (int w : {0, 1, 3, 7}) {
    CAPTURE(w);
    AttnConfig cfg = make_cfg(H, G, D, w, false, LocalKind::rattn);
    std::mt19937_64 rng(40 + w);
    Mat<double> q = randn<Mat<double>>(T, H * D, rng), k = randn<Mat<double>>(T, G * D, rng),
                v = randn<Mat<double>>(T, G * D, rng);
    Mat<double> gs = rand_gamma(H, D, rng), gr = rand_gamma(H, D, rng);
    ref::CoreCache<double> base;
    ref::attn_core_forward(cfg, q, k, v, gs, gr, &base);
    for (int j = 0; j < T; ++j) {
      Mat<double> v2 = v;
      v2.row(j).array() += 0.5;
      ref::CoreCache<double> pert;
      ref::attn_core_forward(cfg, q, k, v2, gs, gr, &pert);
      for (int t = 0; t < T; ++t) {
        CAPTURE(t);
        CAPTURE(j);
        const bool swa_sees = (pert.o_swa.row(t) - base.o_swa.row(t)).norm() > 0;
        const bool rla_sees = (pert.o_rla.row(t) - base.o_rla.row(t)).norm() > 0;
        CHECK(swa_sees == (j <= t && j >= t - w));  // [t-w, t]
        CHECK(rla_sees == (j <= t - w - 1));         // [0, t-w-1]
        CHECK(!(swa_sees && rla_sees));              // disjoint
        CHECK((swa_sees || rla_sees) == (j <= t));   // union = [0, t]
      }
    }
  }
}

TEST_CASE("RATTENTION with w >= T-1 equals GRMS(SWA) and its RLA output is exactly 0") {
  const int T = 9, H = 4, G = 2, D = 6;
  std::mt19937_64 rng(41);
  Mat<double> q = randn<Mat<double>>(T, H * D, rng), k = randn<Mat<double>>(T, G * D, rng),
              v = randn<Mat<double>>(T, G * D, rng);
  Mat<double> gs = rand_gamma(H, D, rng), gr = rand_gamma(H, D, rng);
  for (int w : {T - 1, T, 2 * T}) {
    CAPTURE(w);
    ref::CoreCache<double> cache;
    Mat<double> c_rattn = ref::attn_core_forward(make_cfg(H, G, D, w, false, LocalKind::rattn), q, k, v, gs, gr, &cache);
    Mat<double> c_swa = ref::attn_core_forward(make_cfg(H, G, D, w, false, LocalKind::swa), q, k, v, gs, gr);
    CHECK(cache.o_rla.isZero(0.0));
    check_close("rattn(w >= T-1) vs GRMS(SWA)", c_rattn, c_swa, 0.0);
    // and GRMS(SWA) with w >= T-1 is GRMS of global causal attention on the RoPE'd q, k
    Mat<double> qr = ref::rope_forward(q, H, 100.0), kr = ref::rope_forward(k, G, 100.0);
    Mat<double> want = ref::group_rmsnorm_forward(ref::swa_forward(qr, kr, v, H, G, -1, 1.0 / std::sqrt(double(D))), gs, 1e-8);
    check_close("swa kind (w >= T-1) vs GRMS(global causal of RoPE'd q, k)", c_swa, want, 1e-15);
  }
  // With w < T-1 the RLA branch contributes (the test above can fail).
  Mat<double> c_rattn = ref::attn_core_forward(make_cfg(H, G, D, T - 2, false, LocalKind::rattn), q, k, v, gs, gr);
  Mat<double> c_swa = ref::attn_core_forward(make_cfg(H, G, D, T - 2, false, LocalKind::swa), q, k, v, gs, gr);
  CHECK(compare(c_rattn, c_swa).rel_rms > 1e-3);
}

TEST_CASE("core pieces: the branches are the named ops (RoPE on SWA only, raw q/k on RLA)") {
  const int T = 11, H = 4, G = 2, D = 4, w = 2;
  std::mt19937_64 rng(42);
  Mat<double> q = randn<Mat<double>>(T, H * D, rng), k = randn<Mat<double>>(T, G * D, rng),
              v = randn<Mat<double>>(T, G * D, rng);
  Mat<double> gs = rand_gamma(H, D, rng), gr = rand_gamma(H, D, rng);
  const double scale = 1.0 / std::sqrt(double(D));
  Mat<double> qr = ref::rope_forward(q, H, 100.0), kr = ref::rope_forward(k, G, 100.0);
  // rattn = GRMS_swa(SWA(RoPE q, RoPE k)) + GRMS_rla(RLA masked form on raw q, k)
  Mat<double> want = ref::group_rmsnorm_forward(ref::swa_forward(qr, kr, v, H, G, w, scale), gs, 1e-8) +
                     ref::group_rmsnorm_forward(ref::rla_forward_masked(q, k, v, H, G, w, FeatureMap::sm2), gr, 1e-8);
  check_close("rattn core vs its definition", ref::attn_core_forward(make_cfg(H, G, D, w, false, LocalKind::rattn), q, k, v, gs, gr), want, 1e-13);
  // linear = GRMS_rla(RLA over [0, t], w = -1); the config's w is ignored
  Mat<double> want_lin = ref::group_rmsnorm_forward(ref::rla_forward_masked(q, k, v, H, G, -1, FeatureMap::sm2), gr, 1e-8);
  check_close("linear core vs its definition", ref::attn_core_forward(make_cfg(H, G, D, w, false, LocalKind::linear), q, k, v, gs, gr), want_lin, 1e-13);
  // global = plain causal softmax attention, no RoPE, no norm (the core runs the blocked form of
  // swa_forward, ref/attention_blocked.h: equal up to rounding)
  check_close("global core vs its definition", ref::attn_core_forward(make_cfg(H, G, D, w, true, LocalKind::rattn), q, k, v, gs, gr),
              ref::swa_forward(q, k, v, H, G, -1, scale), 1e-13);
}

TEST_CASE("attention core backward against finite differences, every kind (dq, dk, dv, dgamma_swa, dgamma_rla)") {
  const int H = 4, G = 2;
  for (const Flavour& fl : kFlavours)
    for (int T : {1, 5, 13})
      for (int D : {4, 6})
        for (int w : {0, 2, 12}) {
          CAPTURE(std::string(fl.name));
          CAPTURE(T);
          CAPTURE(D);
          CAPTURE(w);
          std::mt19937_64 rng(700 + 13 * T + D + 5 * w + int(fl.kind) * 101 + (fl.global ? 1000 : 0));
          check_core_grads(make_cfg(H, G, D, w, fl.global, fl.kind, FeatureMap::sm2, 4), T, rng);
        }
}

TEST_CASE("attention core backward with the other feature maps (relu2, identity)") {
  const int H = 4, G = 2, D = 4, T = 9, w = 2;
  for (FeatureMap fm : {FeatureMap::relu2, FeatureMap::identity})
    for (LocalKind kind : {LocalKind::rattn, LocalKind::linear}) {
      CAPTURE(std::string(ref::to_string(fm)));
      CAPTURE(std::string(ref::to_string(kind)));
      std::mt19937_64 rng(800 + int(fm) * 7 + int(kind));
      check_core_grads(make_cfg(H, G, D, w, false, kind, fm, 3), T, rng);
    }
}

TEST_CASE("attention layer backward against finite differences: every parameter and x, every kind") {
  const int H = 4, G = 2, C = 8;
  struct Shape {
    int T, D, w;
  };
  for (const Flavour& fl : kFlavours)
    for (Shape s : {Shape{13, 4, 3}, Shape{5, 6, 0}, Shape{6, 4, 7}}) {
      CAPTURE(std::string(fl.name));
      CAPTURE(s.T);
      CAPTURE(s.D);
      CAPTURE(s.w);
      AttnConfig cfg = make_cfg(H, G, s.D, s.w, fl.global, fl.kind, FeatureMap::sm2, 4);
      std::mt19937_64 rng(900 + s.T + s.D + int(fl.kind) * 31 + (fl.global ? 500 : 0));
      AttnParams<double> p = random_params<double>(C, H, G, s.D, rng);
      Mat<double> x = randn<Mat<double>>(s.T, C, rng), W = randn<Mat<double>>(s.T, C, rng);
      AttnParams<double> dp = ref::attn_params_zero<double>(cfg, C);
      dp.Wq.array() += 1.0;  // parameter gradients accumulate: start from a known non-zero value
      Mat<double> dx = ref::attention_layer_backward(cfg, p, x, W, dp);
      dp.Wq.array() -= 1.0;
      auto f = [&] { return dot_all(W, ref::attention_layer_forward(cfg, p, x)); };
      CHECK(grad_check("x (layer)", f, x, dx));
      CHECK(grad_check("Wq (layer)", f, p.Wq, dp.Wq));
      CHECK(grad_check("Wk (layer)", f, p.Wk, dp.Wk));
      CHECK(grad_check("Wv (layer)", f, p.Wv, dp.Wv));
      CHECK(grad_check("Wo (layer)", f, p.Wo, dp.Wo));
      CHECK(grad_check("gamma_swa (layer)", f, p.gamma_swa, dp.gamma_swa));
      CHECK(grad_check("gamma_rla (layer)", f, p.gamma_rla, dp.gamma_rla));
    }
}

TEST_CASE("attention layer: float forward agrees with double") {
  const int H = 4, G = 2, C = 8, D = 4, T = 17;
  for (const Flavour& fl : kFlavours) {
    CAPTURE(std::string(fl.name));
    AttnConfig cfg = make_cfg(H, G, D, 3, fl.global, fl.kind);
    std::mt19937_64 rng(950);
    AttnParams<double> p = random_params<double>(C, H, G, D, rng, 0.35);
    AttnParams<float> pf = cast_params<float>(p);
    Mat<double> x = randn<Mat<double>>(T, C, rng);
    Mat<float> xf = x.cast<float>();
    check_close("layer float vs double", ref::attention_layer_forward(cfg, pf, xf), ref::attention_layer_forward(cfg, p, x), 1e-5);
  }
}

TEST_CASE("AttnConfig validation") {
  CHECK_THROWS(ref::validate(make_cfg(3, 2, 4, 1, false, LocalKind::swa)));     // H % G != 0
  CHECK_THROWS(ref::validate(make_cfg(2, 1, 5, 1, false, LocalKind::rattn)));   // odd D with RoPE
  CHECK_THROWS(ref::validate(make_cfg(2, 1, 4, -1, false, LocalKind::rattn)));  // rattn needs w >= 0
  CHECK_NOTHROW(ref::validate(make_cfg(2, 1, 5, 1, true, LocalKind::rattn)));   // global: no RoPE
  CHECK_NOTHROW(ref::validate(make_cfg(2, 1, 5, -1, false, LocalKind::linear)));
}

// ---- qk-norm (spec §2.9) ----

TEST_CASE("qk-norm is an RMSNorm over D of each (token, head) row, one scale shared by the heads") {
  const int T = 7, n = 3, D = 6;
  std::mt19937_64 rng(1500);
  Mat<double> x = randn<Mat<double>>(T, n * D, rng), s = rand_gamma(1, D, rng), dy = randn<Mat<double>>(T, n * D, rng);
  // the same op as ref/norm.h's group norm with the scale row repeated for every head
  Mat<double> s_heads = s.replicate(n, 1);
  const double eps = 1e-5;
  check_close("qk_norm_forward vs group_rmsnorm_forward", ref::qk_norm_forward(x, s, eps),
              ref::group_rmsnorm_forward(x, s_heads, eps), 1e-14);
  // backward: dx the same, dscale = the group norm's dgamma summed over the heads
  Mat<double> ds = Mat<double>::Ones(1, D), dg = Mat<double>::Zero(n, D);  // ds accumulates onto 1
  Mat<double> dx = ref::qk_norm_backward(x, s, eps, dy, ds);
  Mat<double> dx_want = ref::group_rmsnorm_backward(x, s_heads, eps, dy, dg);
  check_close("qk_norm_backward dx", dx, dx_want, 1e-14);
  check_close("qk_norm_backward dscale (+= 1)", Mat<double>(ds.array() - 1.0),
              Mat<double>(dg.colwise().sum()), 1e-13);
  CHECK_THROWS_AS(ref::qk_norm_forward(Mat<double>(randn<Mat<double>>(T, 10, rng)), s, eps), std::invalid_argument);
}

TEST_CASE("qk-norm core pieces: RoPE, then the norm, on the softmax attention only; RLA reads raw q, k") {
  const int T = 11, H = 4, G = 2, D = 4, w = 2;
  std::mt19937_64 rng(1510);
  Mat<double> q = randn<Mat<double>>(T, H * D, rng), k = randn<Mat<double>>(T, G * D, rng),
              v = randn<Mat<double>>(T, G * D, rng);
  Mat<double> gs = rand_gamma(H, D, rng), gr = rand_gamma(H, D, rng);
  Mat<double> qn = rand_gamma(1, D, rng), kn = rand_gamma(1, D, rng);
  const ref::QkNormScales<double> qkn{&qn, &kn};
  const double scale = 1.0 / std::sqrt(double(D)), eps = 1e-5;
  const Mat<double> qh = ref::qk_norm_forward(Mat<double>(ref::rope_forward(q, H, 100.0)), qn, eps);
  const Mat<double> kh = ref::qk_norm_forward(Mat<double>(ref::rope_forward(k, G, 100.0)), kn, eps);
  const Mat<double> rla = ref::group_rmsnorm_forward(ref::rla_forward_masked(q, k, v, H, G, w, FeatureMap::sm2), gr, 1e-8);
  const Mat<double> want = ref::group_rmsnorm_forward(ref::swa_forward(qh, kh, v, H, G, w, scale), gs, 1e-8) + rla;
  const AttnConfig cfg = with_qk_norm(make_cfg(H, G, D, w, false, LocalKind::rattn));
  ref::CoreCache<double> cc;
  check_close("rattn core, qk-norm, vs its definition", ref::attn_core_forward(cfg, q, k, v, gs, gr, &cc, qkn), want, 1e-13);
  // the RLA branch is the one without qk-norm, bit for bit
  ref::CoreCache<double> off;
  ref::attn_core_forward(make_cfg(H, G, D, w, false, LocalKind::rattn), q, k, v, gs, gr, &off);
  CHECK(cc.o_rla == off.o_rla);
  CHECK(!(cc.o_swa == off.o_swa));
  // norm then RoPE would differ once the scale is not 1 (the order is part of the definition)
  const Mat<double> q_other = ref::rope_forward(ref::qk_norm_forward(q, qn, eps), H, 100.0);
  CHECK(compare(q_other, qh).rel_rms > 1e-3);
  // global: QKN(q), QKN(k) with no RoPE, then causal softmax attention
  check_close("global core, qk-norm, vs its definition",
              ref::attn_core_forward(with_qk_norm(make_cfg(H, G, D, w, true, LocalKind::rattn)), q, k, v, gs, gr, nullptr, qkn),
              ref::swa_forward(ref::qk_norm_forward(q, qn, eps), ref::qk_norm_forward(k, kn, eps), v, H, G, -1, scale), 1e-13);
  // linear: no softmax attention, so qk-norm changes nothing and needs no scales
  const AttnConfig lin = make_cfg(H, G, D, w, false, LocalKind::linear);
  CHECK(ref::attn_core_forward(with_qk_norm(lin), q, k, v, gs, gr) == ref::attn_core_forward(lin, q, k, v, gs, gr));
  // a layer with qk-norm and no scales is refused
  CHECK_THROWS_AS(ref::attn_core_forward(cfg, q, k, v, gs, gr), std::invalid_argument);
}

TEST_CASE("qk-norm: attention core backward against finite differences (swa, rattn, global; dq_norm, dk_norm)") {
  const int H = 4, G = 2;
  for (const Flavour& fl : kFlavours) {
    if (!fl.global && fl.kind == LocalKind::linear) continue;  // no softmax attention: qk-norm is a no-op
    for (int T : {5, 13})
      for (int D : {4, 6})
        for (int w : {0, 2}) {
          CAPTURE(std::string(fl.name));
          CAPTURE(T);
          CAPTURE(D);
          CAPTURE(w);
          std::mt19937_64 rng(1600 + 13 * T + D + 5 * w + int(fl.kind) * 101 + (fl.global ? 1000 : 0));
          check_core_grads_qk(with_qk_norm(make_cfg(H, G, D, w, fl.global, fl.kind, FeatureMap::sm2, 4)), T, rng);
        }
  }
}

TEST_CASE("qk-norm: attention layer backward against finite differences, q_norm and k_norm included") {
  const int H = 4, G = 2, C = 8;
  struct Shape {
    int T, D, w;
  };
  for (const Flavour& fl : kFlavours) {
    if (!fl.global && fl.kind == LocalKind::linear) continue;
    for (Shape s : {Shape{13, 4, 3}, Shape{6, 6, 1}}) {
      CAPTURE(std::string(fl.name));
      CAPTURE(s.T);
      CAPTURE(s.D);
      AttnConfig cfg = with_qk_norm(make_cfg(H, G, s.D, s.w, fl.global, fl.kind, FeatureMap::sm2, 4));
      std::mt19937_64 rng(1700 + s.T + s.D + int(fl.kind) * 31 + (fl.global ? 500 : 0));
      AttnParams<double> p = random_params<double>(C, H, G, s.D, rng);
      add_qk_scales(p, s.D, rng);
      Mat<double> x = randn<Mat<double>>(s.T, C, rng), W = randn<Mat<double>>(s.T, C, rng);
      AttnParams<double> dp = ref::attn_params_zero<double>(cfg, C);
      dp.q_norm.array() += 1.0;  // parameter gradients accumulate: start from a known non-zero value
      Mat<double> dx = ref::attention_layer_backward(cfg, p, x, W, dp);
      dp.q_norm.array() -= 1.0;
      auto f = [&] { return dot_all(W, ref::attention_layer_forward(cfg, p, x)); };
      CHECK(grad_check("x (layer, qk-norm)", f, x, dx));
      CHECK(grad_check("Wq (layer, qk-norm)", f, p.Wq, dp.Wq));
      CHECK(grad_check("Wk (layer, qk-norm)", f, p.Wk, dp.Wk));
      CHECK(grad_check("Wv (layer, qk-norm)", f, p.Wv, dp.Wv));
      CHECK(grad_check("Wo (layer, qk-norm)", f, p.Wo, dp.Wo));
      CHECK(grad_check("gamma_swa (layer, qk-norm)", f, p.gamma_swa, dp.gamma_swa));
      CHECK(grad_check("gamma_rla (layer, qk-norm)", f, p.gamma_rla, dp.gamma_rla));
      CHECK(grad_check("q_norm (layer)", f, p.q_norm, dp.q_norm));
      CHECK(grad_check("k_norm (layer)", f, p.k_norm, dp.k_norm));
      CHECK(dp.q_norm.norm() > 0);
    }
  }
}
