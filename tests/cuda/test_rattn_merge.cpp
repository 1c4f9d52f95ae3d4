// tests/cuda/test_rattn_merge.cpp: cu::rattn_merge_forward / _backward (every version) against two
// ref/norm.h group RMSNorms and their sum, in double. out, do_swa, do_rla, dgamma_swa and dgamma_rla
// (accumulated, +=) are each checked separately; rows of zeros in o_rla (what RLA gives for t <= w)
// are included. Outputs NaN-filled before every launch, guard bands checked after.
#include <cmath>
#include <random>
#include <vector>

#include "cuda/rattn_merge.h"
#include "ref/norm.h"
#include "tests/cuda/ops_check.h"

using namespace cuops_test;

namespace {

template <class S>
struct RefOut {
  ref::Mat<S> out, do_swa, do_rla, dg_swa, dg_rla;
};

// x: (N, H*D) rows of all tokens of all sequences (a batch is just more rows for a per-row op).
template <class S>
RefOut<S> reference(const MatF& xs, const MatF& xr, const MatF& gs, const MatF& gr, const MatF& dout,
                    const MatF& dg0_s, const MatF& dg0_r, float eps) {
  RefOut<S> r;
  ref::Mat<S> xs_ = xs.cast<S>(), xr_ = xr.cast<S>(), gs_ = gs.cast<S>(), gr_ = gr.cast<S>(), d = dout.cast<S>();
  r.out = ref::group_rmsnorm_forward(xs_, gs_, S(eps)) + ref::group_rmsnorm_forward(xr_, gr_, S(eps));
  r.dg_swa = dg0_s.cast<S>();
  r.dg_rla = dg0_r.cast<S>();
  // out = y_swa + y_rla: both norms receive dout
  r.do_swa = ref::group_rmsnorm_backward(xs_, gs_, S(eps), d, r.dg_swa);
  r.do_rla = ref::group_rmsnorm_backward(xr_, gr_, S(eps), d, r.dg_rla);
  return r;
}

void run_case(int B, int T, int H, int D, std::mt19937_64& rng) {
  CAPTURE(B); CAPTURE(T); CAPTURE(H); CAPTURE(D);
  const float eps = 1e-8f;
  const long N = long(B) * T, HD = long(H) * D;
  MatF xs = rattn_test::randn<MatF>(N, HD, rng), xr = rattn_test::randn<MatF>(N, HD, rng, 3.0),
       dout = rattn_test::randn<MatF>(N, HD, rng);
  for (long n = 0; n < N; n += 3) xr.row(n).setZero();  // RLA is exactly 0 for t <= w
  MatF gs = (rattn_test::randn<MatF>(H, D, rng, 0.3).array() + 1.0f).matrix(),
       gr = (rattn_test::randn<MatF>(H, D, rng, 0.3).array() + 1.0f).matrix();
  MatF dg0_s = rattn_test::randn<MatF>(H, D, rng), dg0_r = rattn_test::randn<MatF>(H, D, rng);
  RefOut<double> r64 = reference<double>(xs, xr, gs, gr, dout, dg0_s, dg0_r, eps);
  RefOut<float> r32 = reference<float>(xs, xr, gs, gr, dout, dg0_s, dg0_r, eps);

  cu::DeviceBuffer<float> bxs(xs.size()), bxr(xr.size()), bgs(gs.size()), bgr(gr.size()), bd(dout.size()),
      bout(xs.size()), bdxs(xs.size()), bdxr(xr.size()), bdgs(gs.size()), bdgr(gr.size());
  to_device(bxs, xs);
  to_device(bxr, xr);
  to_device(bgs, gs);
  to_device(bgr, gr);
  to_device(bd, dout);
  for (int version = 1; version <= cu::kMergeVersions; ++version) {
    CAPTURE(version);
    for (auto* b : {&bout, &bdxs, &bdxr}) b->fill_nan();
    to_device(bdgs, dg0_s);  // dgamma accumulates: start from a non-zero value
    to_device(bdgr, dg0_r);
    cu::rattn_merge_forward(bxs.data(), bxr.data(), bgs.data(), bgr.data(), bout.data(), B, T, H, D, eps, version);
    cu::rattn_merge_backward(bxs.data(), bxr.data(), bgs.data(), bgr.data(), bd.data(), bdxs.data(), bdxr.data(),
                             bdgs.data(), bdgr.data(), B, T, H, D, eps, version);
    check_vs_ref("out", from_device(bout, N, HD), r32.out, r64.out, kFloorFwd, rattn_test::family_rms(r64.out));
    const double grad_scale = rattn_test::family_rms(r64.do_swa, r64.do_rla, r64.dg_swa, r64.dg_rla);
    check_vs_ref("do_swa", from_device(bdxs, N, HD), r32.do_swa, r64.do_swa, kFloorBwd, grad_scale);
    check_vs_ref("do_rla", from_device(bdxr, N, HD), r32.do_rla, r64.do_rla, kFloorBwd, grad_scale);
    check_vs_ref("dgamma_swa (+=)", from_device(bdgs, H, D), r32.dg_swa, r64.dg_swa, kFloorBwd, grad_scale);
    check_vs_ref("dgamma_rla (+=)", from_device(bdgr, H, D), r32.dg_rla, r64.dg_rla, kFloorBwd, grad_scale);
    for (auto* b : {&bxs, &bxr, &bgs, &bgr, &bd, &bout, &bdxs, &bdxr, &bdgs, &bdgr}) CHECK(b->guards_intact());
  }
}

}  // namespace

TEST_CASE("rattn_merge: every version matches two ref group RMSNorms and their sum") {
  REQUIRE_DEVICE();
  Eigen::setNbThreads(1);  // the references are small: OpenMP threads would only spin (2-core CI)
  std::mt19937_64 rng(1e8);
  struct S { int B, T, H, D; };
  std::vector<S> shapes = {{1, 1, 1, 16}, {1, 7, 2, 16}, {2, 63, 4, 32}, {1, 64, 3, 64}, {2, 65, 2, 48},
                           {1, 257, 2, 32}, {1, 5, 2, 128}, {1, 3, 1, 7}};
  if (small_run()) shapes = {{1, 7, 2, 16}, {2, 65, 2, 48}};
  for (const S& s : shapes) run_case(s.B, s.T, s.H, s.D, rng);
}
