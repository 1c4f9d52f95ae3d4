// tests/cuda/test_rattn_merge.cpp: cu::rattn_merge_forward / _backward (every version) against two
// ref/norm.h group RMSNorms and their sum, in double. out, do_swa, do_rla, dgamma_swa and dgamma_rla
// (accumulated, +=) are each checked separately; rows of zeros in o_rla (what RLA gives for t <= w)
// are included. Outputs NaN-filled before every launch, guard bands checked after. The backward gives the
// same bits in every fiber and block order and on every run (dgamma is summed over blocks in a fixed order).
#include <cmath>
#include <random>
#include <string>
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

// One shape's inputs, references and device buffers.
struct Case {
  int B, T, H, D;
  float eps = 1e-8f;
  long N, HD;
  MatF xs, xr, dout, gs, gr, dg0_s, dg0_r;
  RefOut<double> r64;
  RefOut<float> r32;
  cu::DeviceBuffer<float> bxs, bxr, bgs, bgr, bd, bout, bdxs, bdxr, bdgs, bdgr, scratch;

  Case(int B_, int T_, int H_, int D_, std::mt19937_64& rng)
      : B(B_), T(T_), H(H_), D(D_), N(long(B_) * T_), HD(long(H_) * D_),
        xs(rattn_test::randn<MatF>(N, HD, rng)), xr(rattn_test::randn<MatF>(N, HD, rng, 3.0)),
        dout(rattn_test::randn<MatF>(N, HD, rng)),
        gs((rattn_test::randn<MatF>(H, D, rng, 0.3).array() + 1.0f).matrix()),
        gr((rattn_test::randn<MatF>(H, D, rng, 0.3).array() + 1.0f).matrix()),
        dg0_s(rattn_test::randn<MatF>(H, D, rng)), dg0_r(rattn_test::randn<MatF>(H, D, rng)),
        bxs(xs.size()), bxr(xr.size()), bgs(gs.size()), bgr(gr.size()), bd(dout.size()), bout(xs.size()),
        bdxs(xs.size()), bdxr(xr.size()), bdgs(gs.size()), bdgr(gr.size()),
        scratch(cu::rattn_merge_scratch_size(B_, T_, H_, D_)) {
    for (long n = 0; n < N; n += 3) xr.row(n).setZero();  // RLA is exactly 0 for t <= w
    r64 = reference<double>(xs, xr, gs, gr, dout, dg0_s, dg0_r, eps);
    r32 = reference<float>(xs, xr, gs, gr, dout, dg0_s, dg0_r, eps);
    to_device(bxs, xs);
    to_device(bxr, xr);
    to_device(bgs, gs);
    to_device(bgr, gr);
    to_device(bd, dout);
  }
  void run(int version) {
    for (auto* b : {&bout, &bdxs, &bdxr, &scratch}) b->fill_nan();
    to_device(bdgs, dg0_s);  // dgamma accumulates: start from a non-zero value
    to_device(bdgr, dg0_r);
    cu::rattn_merge_forward(bxs.data(), bxr.data(), bgs.data(), bgr.data(), bout.data(), B, T, H, D, eps, version);
    cu::rattn_merge_backward(bxs.data(), bxr.data(), bgs.data(), bgr.data(), bd.data(), bdxs.data(), bdxr.data(),
                             bdgs.data(), bdgr.data(), scratch.data(), B, T, H, D, eps, version);
  }
  // The backward's results: do_swa, do_rla, dgamma_swa, dgamma_rla.
  std::vector<MatF> grads() const {
    return {from_device(bdxs, N, HD), from_device(bdxr, N, HD), from_device(bdgs, H, D), from_device(bdgr, H, D)};
  }
  void check_grads() const {
    const std::vector<MatF> g = grads();
    const double grad_scale = rattn_test::family_rms(r64.do_swa, r64.do_rla, r64.dg_swa, r64.dg_rla);
    check_vs_ref("do_swa", g[0], r32.do_swa, r64.do_swa, kFloorBwd, grad_scale);
    check_vs_ref("do_rla", g[1], r32.do_rla, r64.do_rla, kFloorBwd, grad_scale);
    check_vs_ref("dgamma_swa (+=)", g[2], r32.dg_swa, r64.dg_swa, kFloorBwd, grad_scale);
    check_vs_ref("dgamma_rla (+=)", g[3], r32.dg_rla, r64.dg_rla, kFloorBwd, grad_scale);
  }
  void check_guards() const {
    for (auto* b : {&bxs, &bxr, &bgs, &bgr, &bd, &bout, &bdxs, &bdxr, &bdgs, &bdgr, &scratch})
      CHECK(b->guards_intact());
  }
};

void run_case(int B, int T, int H, int D, std::mt19937_64& rng) {
  CAPTURE(B); CAPTURE(T); CAPTURE(H); CAPTURE(D);
  Case c(B, T, H, D, rng);
  for (int version = 1; version <= cu::kMergeVersions; ++version) {
    CAPTURE(version);
    c.run(version);
    check_vs_ref("out", from_device(c.bout, c.N, c.HD), c.r32.out, c.r64.out, kFloorFwd,
                 rattn_test::family_rms(c.r64.out));
    c.check_grads();
    c.check_guards();
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

TEST_CASE("rattn_merge backward: the same bits in every fiber and block order and on every run (no float atomics)") {
  // Each block of the v2 backward holds a partial dgamma over its rows. Added into dgamma with float
  // atomics, the last bits would follow the order the blocks run in; summed in block order they cannot.
  REQUIRE_DEVICE();
  Eigen::setNbThreads(1);  // the references are small: OpenMP threads would only spin (2-core CI)
  std::mt19937_64 rng(31);
  struct S { int B, T, H, D; };
  for (S s : {S{2, 257, 2, 48}, S{1, 300, 3, 128}}) {  // 9 and 5 blocks per head
    CAPTURE(s.B); CAPTURE(s.T); CAPTURE(s.H); CAPTURE(s.D);
    const size_t blocks = cu::rattn_merge_scratch_size(s.B, s.T, s.H, s.D) / (size_t(2) * s.H * s.D);
    CHECK(blocks > 2);  // several partials per (h, d): their order could matter
    Case c(s.B, s.T, s.H, s.D, rng);
    std::vector<MatF> first;
    const char* names[] = {"do_swa", "do_rla", "dgamma_swa", "dgamma_rla"};
    for (const OrderRun& run : kOrderRuns) {
      const std::string order_s = run.order, threads_s = run.host_threads;
      CAPTURE(order_s); CAPTURE(threads_s);
      ScopedEnv order("EMU_ORDER", run.order), threads("EMU_HOST_THREADS", run.host_threads);
      c.run(2);
      c.check_grads();
      const std::vector<MatF> got = c.grads();
      check_same_bits_as_first(first, got, names);
    }
    c.check_guards();
  }
}
