// tests/attn_setup.h: random attention layers for the layer tests (tests/test_rattention.cpp,
// tests/test_decode.cpp): the four layer flavours, a config for each, random parameters.
#pragma once
#include <cmath>
#include <random>

#include "ref/rattention.h"
#include "tests/check.h"

namespace rattn_test {

// The four layer flavours: local swa, rattn, linear, and global.
struct Flavour {
  const char* name;
  bool global;
  ref::LocalKind kind;
};
inline const Flavour kFlavours[] = {{"swa", false, ref::LocalKind::swa},
                                    {"rattn", false, ref::LocalKind::rattn},
                                    {"linear", false, ref::LocalKind::linear},
                                    {"global", true, ref::LocalKind::swa}};

// RoPE base 100: large angles, so a RoPE position off by one shows at T ~ 10.
inline ref::AttnConfig make_cfg(int H, int G, int D, int w, bool global, ref::LocalKind kind,
                                ref::FeatureMap fm = ref::FeatureMap::sm2, int chunk = 4) {
  ref::AttnConfig cfg;
  cfg.H = H;
  cfg.G = G;
  cfg.D = D;
  cfg.w = w;
  cfg.global = global;
  cfg.kind = kind;
  cfg.fm = fm;
  cfg.chunk = chunk;
  cfg.rope_theta = 100.0;
  return cfg;
}
inline ref::AttnConfig make_cfg(int H, int G, int D, int w, const Flavour& fl,
                                ref::FeatureMap fm = ref::FeatureMap::sm2, int chunk = 4) {
  return make_cfg(H, G, D, w, fl.global, fl.kind, fm, chunk);
}

// gamma: (H, D) near 1 but not 1, so dgamma and the per-head scaling are really tested.
inline ref::Mat<double> rand_gamma(int H, int D, std::mt19937_64& rng) {
  return (ref::Mat<double>::Ones(H, D) + randn<ref::Mat<double>>(H, D, rng, 0.3)).eval();
}

// The same parameters in scalar S (float: rounded).
template <class S>
ref::AttnParams<S> cast_params(const ref::AttnParams<double>& p) {
  return ref::AttnParams<S>{p.Wq.cast<S>(),        p.Wk.cast<S>(),        p.Wv.cast<S>(),
                            p.Wo.cast<S>(),        p.gamma_swa.cast<S>(), p.gamma_rla.cast<S>(),
                            p.q_norm.cast<S>(),    p.k_norm.cast<S>()};
}

// The qk-norm scales (1, D) of a layer (spec §2.9), near 1 but not 1, drawn in double after the other
// parameters (so turning qk-norm on leaves the draws of random_params as they were).
template <class S>
void add_qk_scales(ref::AttnParams<S>& p, int D, std::mt19937_64& rng) {
  p.q_norm = rand_gamma(1, D, rng).cast<S>();
  p.k_norm = rand_gamma(1, D, rng).cast<S>();
}
inline ref::AttnConfig with_qk_norm(ref::AttnConfig cfg) {
  cfg.qk_norm = true;
  return cfg;
}

// A layer's parameters, drawn in double whatever S is (float and double tests see the same draws):
// Wq (C, H*D), Wk, Wv (C, G*D), Wo (H*D, C) ~ N(0, scale^2), then gamma_swa, gamma_rla (H, D) by rand_gamma.
template <class S>
ref::AttnParams<S> random_params(int C, int H, int G, int D, std::mt19937_64& rng, double scale) {
  ref::AttnParams<double> p;
  p.Wq = randn<ref::Mat<double>>(C, H * D, rng, scale);
  p.Wk = randn<ref::Mat<double>>(C, G * D, rng, scale);
  p.Wv = randn<ref::Mat<double>>(C, G * D, rng, scale);
  p.Wo = randn<ref::Mat<double>>(H * D, C, rng, scale);
  p.gamma_swa = rand_gamma(H, D, rng);
  p.gamma_rla = rand_gamma(H, D, rng);
  return cast_params<S>(p);
}
// scale 1/sqrt(C): unit-variance inputs give unit-variance projections.
template <class S>
ref::AttnParams<S> random_params(int C, int H, int G, int D, std::mt19937_64& rng) {
  return random_params<S>(C, H, G, D, rng, 1.0 / std::sqrt(double(C)));
}

}  // namespace rattn_test
