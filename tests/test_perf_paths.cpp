// The fast paths of the training step held equal to the reference they replace:
//   ref/attention_blocked.h  swa_forward_blocked / swa_backward_blocked  ==  ref/attention.h swa_forward /
//                            swa_backward (one query, one key at a time), every window edge case, GQA,
//                            block sizes from 1 to past T, float and double;
//   ref/rope.h               the cached cos/sin table == the angles computed directly (bit for bit);
//   ref/rla_train.h          rla_forward_saved / rla_backward_saved  ==  ref/rla.h rla_forward_chunked /
//                            rla_backward_chunked, every window edge case, GQA, chunk sizes, float and double;
//   ref/rattention.h         the attention layer's backward from the forward's kept cache == the backward
//                            that recomputes the forward (bit for bit);
//   ref/mlp.h                the SwiGLU backward from the kept x W1, x W3 == the one that recomputes them.
#include <doctest/doctest.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "ref/attention.h"
#include "ref/attention_blocked.h"
#include "ref/mlp.h"
#include "ref/rattention.h"
#include "ref/rla.h"
#include "ref/rla_train.h"
#include "ref/rope.h"
#include "tests/check.h"

using ref::Mat;
using namespace rattn_test;

namespace {

template <class S>
void check_blocked_equals_reference(int T, int H, int G, int D, int w, int block, double tol, uint64_t seed) {
  std::mt19937_64 rng(seed);
  const Mat<S> q = randn<Mat<S>>(T, H * D, rng), k = randn<Mat<S>>(T, G * D, rng);
  const Mat<S> v = randn<Mat<S>>(T, G * D, rng), dout = randn<Mat<S>>(T, H * D, rng);
  const S scale = S(0.7);
  CAPTURE(T);
  CAPTURE(H);
  CAPTURE(G);
  CAPTURE(D);
  CAPTURE(w);
  CAPTURE(block);
  const Mat<S> o_ref = ref::swa_forward(q, k, v, H, G, w, scale);
  const Mat<S> o_blk = ref::swa_forward_blocked(q, k, v, H, G, w, scale, block);
  CHECK(check_close("o blocked vs reference", o_blk, o_ref, tol));
  Mat<S> dq, dk, dv, dq2, dk2, dv2;
  ref::swa_backward(q, k, v, dout, H, G, w, scale, dq, dk, dv);
  ref::swa_backward_blocked(q, k, v, dout, H, G, w, scale, dq2, dk2, dv2, block);
  // dq, dk are exactly zero at w = 0 (softmax over one key): errors relative to the family's scale.
  const double sg = family_rms(dq, dk, dv);
  CHECK(check_close("dq blocked vs reference", dq2, dq, tol, sg));
  CHECK(check_close("dk blocked vs reference", dk2, dk, tol, sg));
  CHECK(check_close("dv blocked vs reference", dv2, dv, tol, sg));
}

template <class S>
void check_rla_saved_equals_chunked(int T, int H, int G, int D, int w, int C, ref::FeatureMap fm, double tol,
                                    uint64_t seed) {
  std::mt19937_64 rng(seed);
  const Mat<S> q = randn<Mat<S>>(T, H * D, rng), k = randn<Mat<S>>(T, G * D, rng);
  const Mat<S> v = randn<Mat<S>>(T, G * D, rng), dout = randn<Mat<S>>(T, H * D, rng);
  CAPTURE(T);
  CAPTURE(H);
  CAPTURE(G);
  CAPTURE(D);
  CAPTURE(w);
  CAPTURE(C);
  ref::RlaSaved<S> saved;
  const Mat<S> o = ref::rla_forward_saved(q, k, v, H, G, w, fm, C, saved);
  const Mat<S> o_ref = ref::rla_forward_chunked(q, k, v, H, G, w, fm, C);
  CHECK(check_close("o saved vs chunked", o, o_ref, tol, family_rms(o_ref, q)));
  const ref::RlaGrads<S> g = ref::rla_backward_saved(v, dout, saved);
  const ref::RlaGrads<S> r = ref::rla_backward_chunked(q, k, v, dout, H, G, w, fm, C);
  // dq, dk, dv are exactly zero when no key leaves the window (T <= w+1): relative to the family.
  const double sg = std::max(family_rms(r.dq, r.dk, r.dv), family_rms(dout));
  CHECK(check_close("dq saved vs chunked", g.dq, r.dq, tol, sg));
  CHECK(check_close("dk saved vs chunked", g.dk, r.dk, tol, sg));
  CHECK(check_close("dv saved vs chunked", g.dv, r.dv, tol, sg));
  CHECK(g.dh0.empty());  // the training path has no initial state, so no dh0
}

}  // namespace

TEST_CASE("rla saved == rla chunked (double): windows, GQA, chunk sizes, feature maps") {
  uint64_t seed = 100;
  for (int T : {1, 7, 33, 70})
    for (int w : {-1, 0, 1, 5, 16, T - 1, T + 3})
      for (int C : {1, 4, 16, 100})
        check_rla_saved_equals_chunked<double>(T, 4, 2, 6, w, C, ref::FeatureMap::sm2, 1e-12, seed++);
  check_rla_saved_equals_chunked<double>(50, 3, 1, 4, 9, 8, ref::FeatureMap::relu2, 1e-12, seed++);  // r = 3
  check_rla_saved_equals_chunked<double>(50, 2, 2, 2, 9, 7, ref::FeatureMap::identity, 1e-12, seed++);
}

TEST_CASE("rla saved == rla chunked (float), at the model's shapes") {
  check_rla_saved_equals_chunked<float>(128, 2, 2, 32, 16, 32, ref::FeatureMap::sm2, 2e-6, 21);
  check_rla_saved_equals_chunked<float>(130, 4, 1, 16, -1, 32, ref::FeatureMap::sm2, 2e-6, 22);
}

TEST_CASE("rla saved: a wrong window is caught (the check can fail)") {
  std::mt19937_64 rng(6);
  const Mat<double> q = randn<Mat<double>>(20, 4, rng), k = randn<Mat<double>>(20, 4, rng), v = randn<Mat<double>>(20, 4, rng);
  ref::RlaSaved<double> saved;
  const Mat<double> o = ref::rla_forward_saved(q, k, v, 1, 1, 4, ref::FeatureMap::sm2, 8, saved);
  const Mat<double> o_off_by_one = ref::rla_forward_chunked(q, k, v, 1, 1, 3, ref::FeatureMap::sm2, 8);
  CHECK(((o_off_by_one - o).norm() / o.norm()) > 1e-3);
}

TEST_CASE("attention layer: the backward from the kept cache equals the one that recomputes, bit for bit") {
  std::mt19937_64 rng(9);
  for (const char* kind : {"swa", "rattn", "linear", "global"}) {
    CAPTURE(kind);
    ref::AttnConfig cfg;
    cfg.H = 4, cfg.G = 2, cfg.D = 8, cfg.w = 5, cfg.chunk = 8;
    cfg.global = std::string(kind) == "global";
    if (!cfg.global) cfg.kind = ref::parse_local_kind(kind);
    const int C = 12, T = 29;
    ref::AttnParams<float> p = ref::attn_params_zero<float>(cfg, C);
    for (Mat<float>* m : {&p.Wq, &p.Wk, &p.Wv, &p.Wo}) *m = randn<Mat<float>>(m->rows(), m->cols(), rng) * 0.3f;
    p.gamma_swa = Mat<float>::Constant(cfg.H, cfg.D, 1.1f);
    p.gamma_rla = Mat<float>::Constant(cfg.H, cfg.D, 0.9f);
    const Mat<float> x = randn<Mat<float>>(T, C, rng), dy = randn<Mat<float>>(T, C, rng);
    ref::LayerCache<float> kept;
    const Mat<float> y = ref::attention_layer_forward(cfg, p, x, &kept);
    CHECK((y - ref::attention_layer_forward(cfg, p, x)).cwiseAbs().maxCoeff() == 0.0f);
    ref::AttnParams<float> dp1 = ref::attn_params_zero<float>(cfg, C), dp2 = dp1;
    const Mat<float> dx1 = ref::attention_layer_backward(cfg, p, x, dy, dp1, &kept);
    const Mat<float> dx2 = ref::attention_layer_backward(cfg, p, x, dy, dp2);
    CHECK((dx1 - dx2).cwiseAbs().maxCoeff() == 0.0f);
    CHECK((dp1.Wq - dp2.Wq).cwiseAbs().maxCoeff() == 0.0f);
    CHECK((dp1.Wo - dp2.Wo).cwiseAbs().maxCoeff() == 0.0f);
    CHECK((dp1.gamma_rla - dp2.gamma_rla).cwiseAbs().maxCoeff() == 0.0f);
    CHECK(dx1.norm() > 0.0f);
  }
}

TEST_CASE("swa blocked == swa reference (double): windows, GQA, block sizes") {
  uint64_t seed = 1;
  for (int T : {1, 7, 33, 70})
    for (int w : {-1, 0, 1, 5, 16, T - 1, T + 3})
      for (int block : {0, 1, 4, 16, 100})
        check_blocked_equals_reference<double>(T, 4, 2, 6, w, block, 1e-12, seed++);
  check_blocked_equals_reference<double>(50, 3, 1, 4, 9, 0, 1e-12, seed++);  // r = 3 heads per kv head
  check_blocked_equals_reference<double>(50, 2, 2, 2, 9, 7, 1e-12, seed++);  // D = 2
}

TEST_CASE("swa blocked == swa reference (float)") {
  check_blocked_equals_reference<float>(130, 2, 2, 32, 16, 0, 2e-6, 11);
  check_blocked_equals_reference<float>(130, 2, 2, 32, -1, 0, 2e-6, 12);
  check_blocked_equals_reference<float>(200, 4, 1, 16, 64, 0, 2e-6, 13);
}

TEST_CASE("swa blocked: a wrong window is caught (the check can fail)") {
  std::mt19937_64 rng(5);
  const Mat<double> q = randn<Mat<double>>(20, 4, rng), k = randn<Mat<double>>(20, 4, rng), v = randn<Mat<double>>(20, 4, rng);
  const Mat<double> o_ref = ref::swa_forward(q, k, v, 1, 1, 3, 0.5);
  const Mat<double> o_off_by_one = ref::swa_forward_blocked(q, k, v, 1, 1, 4, 0.5);
  CHECK(((o_off_by_one - o_ref).norm() / o_ref.norm()) > 1e-3);
}

TEST_CASE("rope: the cached table gives the directly computed angles, bit for bit") {
  std::mt19937_64 rng(7);
  const long D = 8;
  const long edge = ref::detail::kRopeTablePositions;
  const Mat<double> x = randn<Mat<double>>(6, 2 * D, rng);
  // positions [edge-3, edge+3) are past the table: computed directly, row by row ...
  const Mat<double> direct = ref::rope_forward(x, 2, 5e5, int(edge - 3));
  // ... and the first three of them, alone, fit in the table.
  const Mat<double> tabled = ref::rope_forward(Mat<double>(x.topRows(3)), 2, 5e5, int(edge - 3));
  CHECK((tabled - direct.topRows(3)).cwiseAbs().maxCoeff() == 0.0);
  // A table grown one position at a time (decode) equals one call over all positions.
  const Mat<double> y = randn<Mat<double>>(40, D, rng);
  const Mat<double> whole = ref::rope_forward(y, 1, 1e4, 0);
  for (int t = 0; t < 40; ++t) {
    const Mat<double> row = ref::rope_forward(Mat<double>(y.row(t)), 1, 1e4, t);
    CHECK((row - whole.row(t)).cwiseAbs().maxCoeff() == 0.0);
  }
  // Float and double read the same table: same angles as before the table (float vs double test).
  const Mat<float> xf = x.cast<float>();
  CHECK(check_close("rope float vs double", ref::rope_forward(xf, 2, 5e5, 100), ref::rope_forward(x, 2, 5e5, 100), 1e-6));
}

TEST_CASE("swiglu: the backward from the kept a, b equals the one that recomputes them, bit for bit") {
  std::mt19937_64 rng(10);
  const int N = 37, C = 12, F = 40;
  ref::SwiGLUParams<float> p{randn<Mat<float>>(C, F, rng), randn<Mat<float>>(C, F, rng), randn<Mat<float>>(F, C, rng)};
  const Mat<float> x = randn<Mat<float>>(N, C, rng), dy = randn<Mat<float>>(N, C, rng);
  ref::SwiGLUCache<float> kept;
  const Mat<float> y = ref::swiglu_forward(x, p, &kept);
  CHECK((y - ref::swiglu_forward(x, p)).cwiseAbs().maxCoeff() == 0.0f);
  ref::SwiGLUParams<float> d1{Mat<float>::Zero(C, F), Mat<float>::Zero(C, F), Mat<float>::Zero(F, C)}, d2 = d1;
  const Mat<float> dx1 = ref::swiglu_backward(x, p, dy, d1, &kept), dx2 = ref::swiglu_backward(x, p, dy, d2);
  CHECK((dx1 - dx2).cwiseAbs().maxCoeff() == 0.0f);
  CHECK((d1.W1 - d2.W1).cwiseAbs().maxCoeff() == 0.0f);
  CHECK((d1.W2 - d2.W2).cwiseAbs().maxCoeff() == 0.0f);
  CHECK((d1.W3 - d2.W3).cwiseAbs().maxCoeff() == 0.0f);
  CHECK(dx1.norm() > 0.0f);
}
