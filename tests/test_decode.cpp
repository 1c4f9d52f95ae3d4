// Constant-memory decode of one attention layer (ref/decode.h, spec §3.1): token-by-token decode and
// prefill-then-decode equal the full-sequence forward at every position, for every kind, for T well
// past w+1 (so the ring wraps and tokens are folded into the RLA state), GQA; cache sizes.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>

#include "ref/decode.h"
#include "ref/rattention.h"
#include "tests/attn_setup.h"
#include "tests/check.h"

using ref::AttnConfig;
using ref::AttnParams;
using ref::FeatureMap;
using ref::LocalKind;
using ref::Mat;
using namespace rattn_test;

namespace {

// Decode the whole sequence (after a prefill of T0 rows) and compare every position with the forward.
template <class S>
void check_decode_matches_forward(const AttnConfig& cfg, int C, int T, int T0, double tol, std::mt19937_64& rng) {
  AttnParams<S> p = random_params<S>(C, cfg.H, cfg.G, cfg.D, rng);
  Mat<S> x = randn<Mat<S>>(T, C, rng);
  Mat<S> y_full = ref::attention_layer_forward(cfg, p, x);
  ref::AttnDecodeCache<S> cache = ref::attn_decode_init<S>(cfg);
  Mat<S> y_dec(T, C);
  y_dec.topRows(T0) = ref::attention_layer_prefill(cfg, p, cache, Mat<S>(x.topRows(T0)));
  for (int t = T0; t < T; ++t) y_dec.row(t) = ref::attention_layer_decode_step(cfg, p, cache, Mat<S>(x.row(t)));
  CHECK(cache.t == T);
  for (int t = 0; t < T; ++t) {
    CAPTURE(t);
    check_close("decode row t vs forward row t", Mat<S>(y_dec.row(t)), Mat<S>(y_full.row(t)), tol);
  }
}

}  // namespace

TEST_CASE("decode step by step equals the forward at every position (double, 1e-10)") {
  const int H = 4, G = 2, D = 4, C = 8, T = 20;
  for (const Flavour& fl : kFlavours)
    for (int w : {0, 3, 6}) {
      CAPTURE(std::string(fl.name));
      CAPTURE(w);
      std::mt19937_64 rng(1200 + w + int(fl.kind) * 17 + (fl.global ? 300 : 0));
      check_decode_matches_forward<double>(make_cfg(H, G, D, w, fl), C, T, 0, 1e-10, rng);
    }
}

TEST_CASE("decode step by step equals the forward at every position (float, 1e-5)") {
  const int H = 4, G = 2, D = 6, C = 8, T = 20, w = 3;
  for (const Flavour& fl : kFlavours) {
    CAPTURE(std::string(fl.name));
    std::mt19937_64 rng(1300 + int(fl.kind) * 17 + (fl.global ? 300 : 0));
    check_decode_matches_forward<float>(make_cfg(H, G, D, w, fl), C, T, 0, 1e-5, rng);
  }
}

TEST_CASE("prefill (below and above w+1) then decode equals the forward") {
  const int H = 4, G = 2, D = 4, C = 8, T = 20, w = 3;
  for (const Flavour& fl : kFlavours)
    for (int T0 : {1, 2, 4, 5, 11}) {
      CAPTURE(std::string(fl.name));
      CAPTURE(T0);
      std::mt19937_64 rng(1400 + T0 + int(fl.kind) * 17 + (fl.global ? 300 : 0));
      check_decode_matches_forward<double>(make_cfg(H, G, D, w, fl), C, T, T0, 1e-10, rng);
    }
}

TEST_CASE("decode with the other feature maps and a short sequence (T <= w+1)") {
  const int H = 4, G = 2, D = 4, C = 8;
  for (FeatureMap fm : {FeatureMap::relu2, FeatureMap::identity})
    for (const Flavour& fl : kFlavours) {
      CAPTURE(std::string(ref::to_string(fm)));
      CAPTURE(std::string(fl.name));
      std::mt19937_64 rng(1500 + int(fm));
      check_decode_matches_forward<double>(make_cfg(H, G, D, 2, fl, fm), C, 15, 0, 1e-10, rng);
    }
  for (const Flavour& fl : kFlavours) {
    CAPTURE(std::string(fl.name));
    std::mt19937_64 rng(1600);
    check_decode_matches_forward<double>(make_cfg(H, G, D, 8, fl), C, 6, 0, 1e-10, rng);  // ring never wraps
  }
}

TEST_CASE("decode reaches the RLA branch: rattn equals swa up to t = w, differs after") {
  // The official decode tests never get past w+1 tokens; here the RLA state must carry the
  // difference. With the same parameters, GRMS_rla(0) = 0 for t <= w, so the outputs agree there.
  const int H = 4, G = 2, D = 4, C = 8, T = 12, w = 3;
  std::mt19937_64 rng(1700);
  AttnParams<double> p = random_params<double>(C, H, G, D, rng);
  Mat<double> x = randn<Mat<double>>(T, C, rng);
  AttnConfig cr = make_cfg(H, G, D, w, kFlavours[1]), cs = make_cfg(H, G, D, w, kFlavours[0]);
  auto dr = ref::attn_decode_init<double>(cr);
  auto ds = ref::attn_decode_init<double>(cs);
  for (int t = 0; t < T; ++t) {
    CAPTURE(t);
    Mat<double> yr = ref::attention_layer_decode_step(cr, p, dr, Mat<double>(x.row(t)));
    Mat<double> ys = ref::attention_layer_decode_step(cs, p, ds, Mat<double>(x.row(t)));
    if (t <= w)
      CHECK((yr - ys).norm() == 0.0);
    else
      CHECK((yr - ys).norm() > 1e-3 * ys.norm());
  }
}

TEST_CASE("decode cache size: constant for local layers, linear in t for global layers") {
  const int H = 4, G = 2, D = 4, C = 8, w = 3;
  std::mt19937_64 rng(1800);
  AttnParams<float> p = random_params<float>(C, H, G, D, rng);
  const size_t f = sizeof(float);
  const size_t ring = 2 * size_t(w + 1) * G * D * f + size_t(w + 1) * sizeof(long);
  const size_t state = size_t(G) * (2 * D) * D * f;  // sm2: Dp = 2D
  for (const Flavour& fl : kFlavours) {
    CAPTURE(std::string(fl.name));
    AttnConfig cfg = make_cfg(H, G, D, w, fl);
    auto cache = ref::attn_decode_init<float>(cfg);
    for (int t = 0; t < 25; ++t) {
      ref::attention_layer_decode_step(cfg, p, cache, randn<Mat<float>>(1, C, rng));
      size_t want = fl.global ? 2 * size_t(t + 1) * G * D * f
                    : fl.kind == LocalKind::swa   ? ring
                    : fl.kind == LocalKind::rattn ? ring + state
                                                  : state;
      CHECK(cache.bytes() == want);
    }
    CHECK(ref::full_attention_cache_bytes<float>(cfg, 25) == 2 * 25 * size_t(G) * D * f);
  }
}

TEST_CASE("decode rejects a local swa/rattn layer without a window") {
  AttnConfig cfg = make_cfg(4, 2, 4, -1, kFlavours[0]);
  CHECK_THROWS_AS(ref::attn_decode_init<double>(cfg), std::invalid_argument);
}
