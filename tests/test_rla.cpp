// Tests for ref/rla.h and ref/rla_resume.h: residual linear attention (spec §2.3, §2.6, §3.1, §3.2, §3.3, §4).
//   - the masked, recurrent and chunked forward forms agree (double, 1e-12), T <= w+1 gives 0;
//   - masked and chunked backward agree, and match finite differences for dq, dk, dv, dh0;
//   - GQA with one state per kv head equals the kv heads repeated to H heads;
//   - the keys RLA uses for query t are exactly [0, t-w-1];
//   - split-and-resume (rla_step, rla_forward_chunked_resume) equals one run;
//   - float agrees with double.
// Each agreement test prints the worst figure it measured.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <functional>

#include "ref/rla.h"
#include "ref/rla_resume.h"
#include "tests/check.h"

using ref::FeatureMap;
using ref::Mat;
using ref::RlaState;
using namespace rattn_test;

namespace {

const FeatureMap kAllMaps[] = {FeatureMap::sm2, FeatureMap::relu2, FeatureMap::identity};

template <class S>
struct Inputs {
  Mat<S> q, k, v;
  RlaState<S> h0;
};

Inputs<double> make_inputs(int T, int H, int G, int D, FeatureMap fm, std::mt19937_64& rng) {
  Inputs<double> in;
  in.q = randn<Mat<double>>(T, H * D, rng);
  in.k = randn<Mat<double>>(T, G * D, rng);
  in.v = randn<Mat<double>>(T, G * D, rng);
  for (int g = 0; g < G; ++g) in.h0.push_back(randn<Mat<double>>(ref::feature_dim(fm, D), D, rng, 0.5));
  return in;
}

template <class S>
RlaState<S> cast_state(const RlaState<double>& st) {
  RlaState<S> out;
  for (const Mat<double>& m : st) out.push_back(m.cast<S>());
  return out;
}

// Window values to try for a sequence of length T: no window, the edges, and past the end.
std::vector<int> windows_for(int T) {
  std::vector<int> ws = {-1, 0, 1, 3, T - 1, T + 3};
  std::sort(ws.begin(), ws.end());
  ws.erase(std::unique(ws.begin(), ws.end()), ws.end());
  ws.erase(std::remove_if(ws.begin(), ws.end(), [](int w) { return w < -1; }), ws.end());
  return ws;
}

}  // namespace

TEST_CASE("rla_mask is [j <= t-w-1] and partitions the causal triangle with the SWA window") {
  const int T = 9;
  for (int w : {-1, 0, 1, 3, 8, 12}) {
    Mat<double> M = ref::rla_mask<double>(T, w);
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < T; ++j) {
        const bool in_rla = M(t, j) == 1.0;
        const bool in_swa = w < 0 ? j <= t : (j >= std::max(0, t - w) && j <= t);  // SWA window (spec §2.2)
        if (w < 0) {
          CHECK(in_rla == (j <= t));  // w = -1: inclusive linear attention, no window
        } else {
          CHECK(in_rla == (j <= t - w - 1));
          CHECK(!(in_rla && in_swa));               // disjoint
          CHECK((in_rla || in_swa) == (j <= t));    // union = causal prefix [0, t]
        }
      }
  }
}

TEST_CASE("RLA: masked, recurrent and chunked forward agree (double, 1e-12)") {
  std::mt19937_64 rng(21);
  const int H = 4, G = 2;
  double worst_rec = 0, worst_chk = 0;
  int n_cases = 0, n_zero = 0;
  for (FeatureMap fm : kAllMaps)
    for (int T : {1, 5, 13, 33}) {
      const int D = (T % 2) ? 4 : 6;
      Inputs<double> in = make_inputs(T, H, G, D, fm, rng);
      for (int w : windows_for(T))
        for (bool with_h0 : {false, true}) {
          CAPTURE(ref::to_string(fm));
          CAPTURE(T);
          CAPTURE(w);
          CAPTURE(with_h0);
          const RlaState<double>* h0 = with_h0 ? &in.h0 : nullptr;
          Mat<double> om = ref::rla_forward_masked(in.q, in.k, in.v, H, G, w, fm, h0);
          Mat<double> orec = ref::rla_forward_recurrent(in.q, in.k, in.v, H, G, w, fm, h0);
          REQUIRE(om.rows() == T);
          REQUIRE(om.cols() == H * D);
          check_close("recurrent vs masked", orec, om, 1e-12);
          worst_rec = std::max(worst_rec, compare(orec, om).rel_rms);
          for (int C : {1, 4, 16}) {
            CAPTURE(C);
            Mat<double> oc = ref::rla_forward_chunked(in.q, in.k, in.v, H, G, w, fm, C, h0);
            check_close("chunked vs masked", oc, om, 1e-12);
            worst_chk = std::max(worst_chk, compare(oc, om).rel_rms);
            if (T <= w + 1 && !with_h0) CHECK(oc.isZero(0.0));
          }
          if (T <= w + 1 && !with_h0) {  // every key is still inside the window: RLA is exactly 0
            CHECK(om.isZero(0.0));
            CHECK(orec.isZero(0.0));
            ++n_zero;
          } else {
            CHECK(om.norm() > 0.0);  // a non-trivial comparison
          }
          ++n_cases;
        }
    }
  std::printf("RLA forward forms, %d cases (%d with T <= w+1, exactly 0): recurrent vs masked worst rel RMS "
              "%.2e, chunked vs masked worst %.2e\n",
              n_cases, n_zero, worst_rec, worst_chk);
}

TEST_CASE("RLA: masked backward equals chunked backward (double, 1e-12)") {
  std::mt19937_64 rng(22);
  const int H = 4, G = 2;
  double worst = 0;
  for (FeatureMap fm : kAllMaps)
    for (int T : {1, 5, 13, 33}) {
      const int D = (T % 2) ? 6 : 4;
      Inputs<double> in = make_inputs(T, H, G, D, fm, rng);
      Mat<double> dout = randn<Mat<double>>(T, H * D, rng);
      for (int w : windows_for(T))
        for (bool with_h0 : {false, true}) {
          const RlaState<double>* h0 = with_h0 ? &in.h0 : nullptr;
          ref::RlaGrads<double> gm = ref::rla_backward_masked(in.q, in.k, in.v, dout, H, G, w, fm, h0);
          for (int C : {1, 4, 16}) {
            CAPTURE(ref::to_string(fm));
            CAPTURE(T);
            CAPTURE(w);
            CAPTURE(C);
            CAPTURE(with_h0);
            ref::RlaGrads<double> gc = ref::rla_backward_chunked(in.q, in.k, in.v, dout, H, G, w, fm, C, h0);
            // dq, dk are exactly zero when no key has left the window (w >= T-1): the family's scale.
            const double sg = family_rms(gm.dq, gm.dk, gm.dv);
            check_close("dq chunked vs masked", gc.dq, gm.dq, 1e-12, sg);
            check_close("dk chunked vs masked", gc.dk, gm.dk, 1e-12, sg);
            check_close("dv chunked vs masked", gc.dv, gm.dv, 1e-12, sg);
            REQUIRE(gc.dh0.size() == size_t(G));
            for (int g = 0; g < G; ++g) check_close("dh0 chunked vs masked", gc.dh0[g], gm.dh0[g], 1e-12, sg);
            worst = std::max({worst, compare(gc.dq, gm.dq).rel_rms, compare(gc.dk, gm.dk).rel_rms,
                              compare(gc.dv, gm.dv).rel_rms});
            for (int g = 0; g < G; ++g) worst = std::max(worst, compare(gc.dh0[g], gm.dh0[g]).rel_rms);
          }
        }
    }
  std::printf("RLA backward chunked vs masked (dq, dk, dv, dh0): worst rel RMS %.2e\n", worst);
}

// Central finite differences of a scalar f with respect to x (the same h as grad_check).
static Mat<double> numeric_grad(const std::function<double()>& f, Mat<double>& x, double h = 1e-5) {
  Mat<double> g(x.rows(), x.cols());
  for (long i = 0; i < x.size(); ++i) {
    const double saved = x.data()[i];
    x.data()[i] = saved + h;
    const double fp = f();
    x.data()[i] = saved - h;
    const double fm = f();
    x.data()[i] = saved;
    g.data()[i] = (fp - fm) / (2 * h);
  }
  return g;
}

static double g_worst_fd = 0;  // worst relative RMS of any analytic gradient vs finite differences

// Analytic vs finite-difference gradient, checked to 1e-6 relative RMS and recorded.
static void fd_check(const std::string& name, const std::function<double()>& f, Mat<double>& x,
                     const Mat<double>& analytic) {
  const Mat<double> numeric = numeric_grad(f, x);
  check_close("d" + name + " (analytic vs finite differences)", analytic, numeric, 1e-6);
  g_worst_fd = std::max(g_worst_fd, compare(analytic, numeric).rel_rms);
}

// Finite differences of loss = sum(o * R) for one form, each input checked separately.
static void fd_check_form(const char* form, int C, FeatureMap fm, int T, int D, int w,
                          std::mt19937_64& rng) {
  const int H = 4, G = 2;
  Inputs<double> in = make_inputs(T, H, G, D, fm, rng);
  Mat<double> R = randn<Mat<double>>(T, H * D, rng);
  const bool masked = C == 0;
  auto forward = [&] {
    return masked ? ref::rla_forward_masked(in.q, in.k, in.v, H, G, w, fm, &in.h0)
                  : ref::rla_forward_chunked(in.q, in.k, in.v, H, G, w, fm, C, &in.h0);
  };
  auto loss = [&] { return (forward().array() * R.array()).sum(); };
  ref::RlaGrads<double> gr = masked ? ref::rla_backward_masked(in.q, in.k, in.v, R, H, G, w, fm, &in.h0)
                                    : ref::rla_backward_chunked(in.q, in.k, in.v, R, H, G, w, fm, C, &in.h0);
  CAPTURE(form);
  CAPTURE(C);
  CAPTURE(ref::to_string(fm));
  CAPTURE(T);
  CAPTURE(D);
  CAPTURE(w);
  fd_check("q", loss, in.q, gr.dq);
  fd_check("k", loss, in.k, gr.dk);
  fd_check("v", loss, in.v, gr.dv);
  for (int g = 0; g < G; ++g) fd_check("h0[" + std::to_string(g) + "]", loss, in.h0[g], gr.dh0[g]);
}

TEST_CASE("RLA masked backward matches finite differences (dq, dk, dv, dh0)") {
  std::mt19937_64 rng(23);
  for (FeatureMap fm : kAllMaps)
    for (int T : {1, 5, 13})
      for (int w : {-1, 0, 2, T - 1, T + 1}) fd_check_form("masked", 0, fm, T, (T + w) % 2 ? 4 : 6, w, rng);
  std::printf("RLA masked backward vs finite differences: worst rel RMS %.2e\n", g_worst_fd);
  g_worst_fd = 0;
}

TEST_CASE("RLA chunked backward matches finite differences (dq, dk, dv, dh0)") {
  std::mt19937_64 rng(24);
  for (FeatureMap fm : kAllMaps)
    for (int T : {1, 5, 13})
      for (int w : {-1, 0, 2, T - 1})
        for (int C : {1, 4}) fd_check_form("chunked", C, fm, T, (T + w + C) % 2 ? 4 : 6, w, rng);
  std::printf("RLA chunked backward vs finite differences: worst rel RMS %.2e\n", g_worst_fd);
  g_worst_fd = 0;
}

TEST_CASE("RLA GQA: one state per kv head equals kv heads repeated to H heads") {
  std::mt19937_64 rng(25);
  const int T = 13, H = 6, G = 2, D = 4, r = H / G, C = 4;
  for (FeatureMap fm : kAllMaps)
    for (int w : {-1, 0, 3}) {
      CAPTURE(ref::to_string(fm));
      CAPTURE(w);
      Inputs<double> in = make_inputs(T, H, G, D, fm, rng);
      // Repeat each kv head to its r query heads: head h of the repeated tensors is kv head h / r.
      Mat<double> k_rep(T, H * D), v_rep(T, H * D);
      RlaState<double> h0_rep;
      for (int h = 0; h < H; ++h) {
        k_rep.middleCols(h * D, D) = in.k.middleCols((h / r) * D, D);
        v_rep.middleCols(h * D, D) = in.v.middleCols((h / r) * D, D);
        h0_rep.push_back(in.h0[h / r]);
      }
      Mat<double> o_gqa = ref::rla_forward_chunked(in.q, in.k, in.v, H, G, w, fm, C, &in.h0);
      Mat<double> o_rep = ref::rla_forward_masked(in.q, k_rep, v_rep, H, H, w, fm, &h0_rep);
      check_close("GQA output vs repeated kv heads", o_gqa, o_rep, 1e-13);
      // Gradients: the GQA dk, dv, dh0 of kv head g are the sums over its r repeated heads.
      Mat<double> dout = randn<Mat<double>>(T, H * D, rng);
      ref::RlaGrads<double> gg = ref::rla_backward_chunked(in.q, in.k, in.v, dout, H, G, w, fm, C, &in.h0);
      ref::RlaGrads<double> gr = ref::rla_backward_masked(in.q, k_rep, v_rep, dout, H, H, w, fm, &h0_rep);
      Mat<double> dk_sum = Mat<double>::Zero(T, G * D), dv_sum = Mat<double>::Zero(T, G * D);
      RlaState<double> dh0_sum = ref::rla_zero_state<double>(G, D, fm);
      for (int h = 0; h < H; ++h) {
        dk_sum.middleCols((h / r) * D, D) += gr.dk.middleCols(h * D, D);
        dv_sum.middleCols((h / r) * D, D) += gr.dv.middleCols(h * D, D);
        dh0_sum[h / r] += gr.dh0[h];
      }
      check_close("GQA dq vs repeated", gg.dq, gr.dq, 1e-13);
      check_close("GQA dk vs repeated (summed over the group)", gg.dk, dk_sum, 1e-13);
      check_close("GQA dv vs repeated (summed over the group)", gg.dv, dv_sum, 1e-13);
      for (int g = 0; g < G; ++g) check_close("GQA dh0 vs repeated (summed)", gg.dh0[g], dh0_sum[g], 1e-13);
    }
}

TEST_CASE("RLA window partition: query t depends on exactly the keys [0, t-w-1]") {
  // Perturb token j's k and v; the outputs that move must be exactly the queries t with
  // j <= t-w-1 (or j <= t for w = -1), in all three forms. Unaffected outputs must be bitwise equal.
  std::mt19937_64 rng(26);
  const int T = 9, H = 2, G = 1, D = 4;
  for (FeatureMap fm : kAllMaps)
    for (int w : {-1, 0, 2, 5, 8}) {
      Inputs<double> in = make_inputs(T, H, G, D, fm, rng);
      in.q = in.q.cwiseAbs();  // positive q and perturbed k: phi(q).phi(k_j) != 0 also for relu2
      auto run = [&](const Mat<double>& k, const Mat<double>& v, int form) {
        if (form == 0) return ref::rla_forward_masked(in.q, k, v, H, G, w, fm);
        if (form == 1) return ref::rla_forward_recurrent(in.q, k, v, H, G, w, fm);
        return ref::rla_forward_chunked(in.q, k, v, H, G, w, fm, 4);
      };
      for (int form = 0; form < 3; ++form) {
        const Mat<double> base = run(in.k, in.v, form);
        for (int j = 0; j < T; ++j) {
          Mat<double> k2 = in.k, v2 = in.v;
          k2.row(j) = k2.row(j).cwiseAbs();
          k2(j, 0) += 0.7;  // not a constant shift, which softmax would ignore
          v2.row(j).array() += 0.5;
          const Mat<double> moved = run(k2, v2, form);
          for (int t = 0; t < T; ++t) {
            CAPTURE(ref::to_string(fm));
            CAPTURE(w);
            CAPTURE(form);
            CAPTURE(j);
            CAPTURE(t);
            const double change = (moved.row(t) - base.row(t)).norm();
            const bool uses = j <= t - (w + 1);
            if (uses) CHECK(change > 1e-6);
            else CHECK(change == 0.0);
          }
        }
      }
    }
}

TEST_CASE("RLA split-and-resume equals one run (rla_step and rla_forward_chunked_resume)") {
  std::mt19937_64 rng(27);
  const int T = 13, H = 4, G = 2, D = 4;
  double worst = 0;
  for (FeatureMap fm : kAllMaps)
    for (int w : {-1, 0, 2, 5, 12, 15})
      for (bool with_h0 : {false, true}) {
        Inputs<double> in = make_inputs(T, H, G, D, fm, rng);
        const RlaState<double>* h0 = with_h0 ? &in.h0 : nullptr;
        // Token t through the decode step, or rows [first, first+count) through the chunked resume.
        auto step = [&](ref::RlaCarry<double>& c, int t) {
          return ref::rla_step(c, Mat<double>(in.q.row(t)), Mat<double>(in.k.row(t)),
                               Mat<double>(in.v.row(t)), H, G, w, fm);
        };
        auto chunk = [&](ref::RlaCarry<double>& c, int first, int count, int C) {
          return ref::rla_forward_chunked_resume(
              Mat<double>(in.q.middleRows(first, count)), Mat<double>(in.k.middleRows(first, count)),
              Mat<double>(in.v.middleRows(first, count)), H, G, w, fm, C, c);
        };
        auto record = [&](const char* what, const Mat<double>& got, const Mat<double>& want) {
          check_close(what, got, want, 1e-12);
          worst = std::max(worst, compare(got, want).rel_rms);
        };
        const Mat<double> whole = ref::rla_forward_masked(in.q, in.k, in.v, H, G, w, fm, h0);
        // The state after the whole sequence, from its definition: h0 + sum_{j <= T-w-2} phi(k_j)^T v_j,
        // and the rows still pending: the last min(w+1, T) raw k, v rows.
        RlaState<double> S_end = with_h0 ? in.h0 : ref::rla_zero_state<double>(G, D, fm);
        for (int j = 0; j <= T - w - 2; ++j)
          ref::rla_fold(S_end, Mat<double>(in.k.row(j)), Mat<double>(in.v.row(j)), G, fm);
        const int keep = std::min(w + 1, T);
        for (int T1 : {0, 1, 3, 6, 12, 13}) {
          CAPTURE(ref::to_string(fm));
          CAPTURE(w);
          CAPTURE(with_h0);
          CAPTURE(T1);
          // (a) recurrent: token by token with rla_step, the carry copied between the two parts
          ref::RlaCarry<double> c1 = ref::rla_carry_init<double>(G, D, fm, h0);
          Mat<double> o_rec(T, H * D);
          for (int t = 0; t < T1; ++t) o_rec.row(t) = step(c1, t);
          ref::RlaCarry<double> c2 = c1;  // what a decode cache would carry between the parts
          CHECK(c2.k_pending.rows() == std::min(w + 1, T1));
          for (int t = T1; t < T; ++t) o_rec.row(t) = step(c2, t);
          record("split-and-resume recurrent vs one run", o_rec, whole);
          // (b) chunked: part one, then part two resumed from the carry, with different chunk sizes
          ref::RlaCarry<double> cc = ref::rla_carry_init<double>(G, D, fm, h0);
          Mat<double> o_chk(T, H * D);
          o_chk.topRows(T1) = chunk(cc, 0, T1, 4);
          o_chk.bottomRows(T - T1) = chunk(cc, T1, T - T1, 3);
          record("split-and-resume chunked vs one run", o_chk, whole);
          // Both carries end in the same place: S_end and the last min(w+1, T) raw rows.
          for (const ref::RlaCarry<double>* c : {&c2, &cc}) {
            CHECK(c->n == T);
            for (int g = 0; g < G; ++g) check_close("carried S vs definition", c->St[g], S_end[g], 1e-12);
            check_close("pending k rows", c->k_pending, Mat<double>(in.k.bottomRows(keep)), 0.0);
            check_close("pending v rows", c->v_pending, Mat<double>(in.v.bottomRows(keep)), 0.0);
          }
        }
        // (c) mixed: chunked prefill of 6 tokens, three decode steps, the remaining 4 chunked.
        ref::RlaCarry<double> cm = ref::rla_carry_init<double>(G, D, fm, h0);
        Mat<double> o_mix(T, H * D);
        o_mix.topRows(6) = chunk(cm, 0, 6, 16);
        for (int t = 6; t < 9; ++t) o_mix.row(t) = step(cm, t);
        o_mix.bottomRows(4) = chunk(cm, 9, 4, 2);
        record("chunked prefill + steps + chunked vs one run", o_mix, whole);
      }
  std::printf("RLA split-and-resume vs one run: worst rel RMS %.2e\n", worst);
}

TEST_CASE("RLA float agrees with double (forward forms and backward)") {
  std::mt19937_64 rng(28);
  const int T = 33, H = 4, G = 2, D = 8, C = 8;
  for (FeatureMap fm : kAllMaps)
    for (int w : {-1, 3}) {
      CAPTURE(ref::to_string(fm));
      CAPTURE(w);
      Inputs<double> in = make_inputs(T, H, G, D, fm, rng);
      const Mat<double> dout = randn<Mat<double>>(T, H * D, rng);
      const Mat<float> q = in.q.cast<float>(), k = in.k.cast<float>(), v = in.v.cast<float>();
      const Mat<float> doutf = dout.cast<float>();
      const RlaState<float> h0 = cast_state<float>(in.h0);
      const Mat<double> o64 = ref::rla_forward_masked(in.q, in.k, in.v, H, G, w, fm, &in.h0);
      const double e_m = compare(ref::rla_forward_masked(q, k, v, H, G, w, fm, &h0), o64).rel_rms;
      const double e_r = compare(ref::rla_forward_recurrent(q, k, v, H, G, w, fm, &h0), o64).rel_rms;
      const double e_c = compare(ref::rla_forward_chunked(q, k, v, H, G, w, fm, C, &h0), o64).rel_rms;
      const ref::RlaGrads<double> g64 =
          ref::rla_backward_chunked(in.q, in.k, in.v, dout, H, G, w, fm, C, &in.h0);
      const ref::RlaGrads<float> g32c = ref::rla_backward_chunked(q, k, v, doutf, H, G, w, fm, C, &h0);
      const ref::RlaGrads<float> g32m = ref::rla_backward_masked(q, k, v, doutf, H, G, w, fm, &h0);
      double e_b = 0;
      for (const ref::RlaGrads<float>* g : {&g32c, &g32m}) {
        e_b = std::max({e_b, compare(g->dq, g64.dq).rel_rms, compare(g->dk, g64.dk).rel_rms,
                        compare(g->dv, g64.dv).rel_rms});
        for (int i = 0; i < G; ++i) e_b = std::max(e_b, compare(g->dh0[i], g64.dh0[i]).rel_rms);
      }
      std::printf("RLA %-8s w=%2d float vs double: forward masked %.2e recurrent %.2e chunked %.2e; "
                  "backward worst %.2e\n", ref::to_string(fm), w, e_m, e_r, e_c, e_b);
      CHECK(e_m <= 1e-6);
      CHECK(e_r <= 1e-6);
      CHECK(e_c <= 1e-6);
      CHECK(e_b <= 1e-5);
    }
}

TEST_CASE("RLA rejects bad shapes and arguments") {
  std::mt19937_64 rng(29);
  const FeatureMap fm = FeatureMap::sm2;
  Inputs<double> in = make_inputs(5, 4, 2, 4, fm, rng);
  CHECK_THROWS_AS(ref::rla_forward_masked(in.q, in.k, in.v, 4, 3, 0, fm), std::invalid_argument);
  CHECK_THROWS_AS(ref::rla_forward_chunked(in.q, in.k, in.v, 4, 2, -2, fm, 4), std::invalid_argument);
  CHECK_THROWS_AS(ref::rla_forward_chunked(in.q, in.k, in.v, 4, 2, 0, fm, 0), std::invalid_argument);
  Mat<double> k_short = in.k.topRows(4);
  CHECK_THROWS_AS(ref::rla_forward_recurrent(in.q, k_short, in.v, 4, 2, 0, fm), std::invalid_argument);
  // (4, 4) states, but sm2 needs (8, 4)
  RlaState<double> bad_h0 = ref::rla_zero_state<double>(2, 4, FeatureMap::identity);
  CHECK_THROWS_AS(ref::rla_forward_masked(in.q, in.k, in.v, 4, 2, 0, fm, &bad_h0), std::invalid_argument);
  ref::RlaCarry<double> c = ref::rla_carry_init<double>(2, 4, fm);
  c.k_pending = in.k.topRows(3);
  c.v_pending = in.v.topRows(3);  // 3 pending rows, but w = 1 keeps at most 2
  CHECK_THROWS_AS(ref::rla_forward_chunked_resume(in.q, in.k, in.v, 4, 2, 1, fm, 4, c),
                  std::invalid_argument);
}
