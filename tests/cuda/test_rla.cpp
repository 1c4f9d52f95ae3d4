// tests/cuda/test_rla.cpp: cu::rla_forward / cu::rla_backward (every kernel version) against ref/rla.h
// (masked form) in double. o, dq, dk, dv and dh0 are each checked separately, over T in
// {1, 7, 63, 64, 65, 257}, D in {16, 32, 64, 128}, w in {0, 1, 5, T-1, >= T, -1}, the three feature maps,
// chunk sizes C that do and do not divide T, save intervals m in {1, 2, 3}, GQA, B*H > 1, with and
// without an initial state h0. Outputs are NaN-filled before every launch and guard bands checked after.
// The backward at D = 128 (four value tiles) gives the same bits in every fiber and block order and on
// every run (dq, dk are summed over value tiles in a fixed order).
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "cuda/rla.h"
#include "ref/rla.h"
#include "tests/cuda/ops_check.h"

using namespace cuops_test;

namespace {

struct Shape {
  int B, T, H, G, D, w;
  cu::FeatureMap fm;
  int C, m;
  bool with_h0;
};

ref::FeatureMap to_ref(cu::FeatureMap fm) { return static_cast<ref::FeatureMap>(static_cast<int>(fm)); }

// Host tensors in the device layout: q (B*T, H*D), k, v (B*T, G*D), h0 (B*G*Dp, D).
struct Inputs {
  MatF q, k, v, dout, h0;
};

template <class S>
struct RefOut {
  ref::Mat<S> o, dq, dk, dv, dh0;
};

// ref/rla.h works on one sequence and takes h0 as G (Dp, D) matrices: loop over b, slice, stack.
template <class S>
RefOut<S> reference(const Shape& s, const Inputs& in) {
  const int Dp = cu::feature_dim(s.fm, s.D);
  const ref::FeatureMap fm = to_ref(s.fm);
  RefOut<S> r;
  r.o.resize(in.q.rows(), in.q.cols());
  r.dq.resize(in.q.rows(), in.q.cols());
  r.dk.resize(in.k.rows(), in.k.cols());
  r.dv.resize(in.v.rows(), in.v.cols());
  r.dh0.resize(long(s.B) * s.G * Dp, s.D);
  for (int b = 0; b < s.B; ++b) {
    const long r0 = long(b) * s.T;
    ref::Mat<S> q = in.q.middleRows(r0, s.T).cast<S>(), k = in.k.middleRows(r0, s.T).cast<S>(),
                v = in.v.middleRows(r0, s.T).cast<S>(), dout = in.dout.middleRows(r0, s.T).cast<S>();
    ref::RlaState<S> h0;
    for (int g = 0; g < s.G; ++g) h0.push_back(in.h0.middleRows((long(b) * s.G + g) * Dp, Dp).cast<S>());
    const ref::RlaState<S>* h0p = s.with_h0 ? &h0 : nullptr;
    r.o.middleRows(r0, s.T) = ref::rla_forward_masked(q, k, v, s.H, s.G, s.w, fm, h0p);
    ref::RlaGrads<S> gr = ref::rla_backward_masked(q, k, v, dout, s.H, s.G, s.w, fm, h0p);
    r.dq.middleRows(r0, s.T) = gr.dq;
    r.dk.middleRows(r0, s.T) = gr.dk;
    r.dv.middleRows(r0, s.T) = gr.dv;
    for (int g = 0; g < s.G; ++g) r.dh0.middleRows((long(b) * s.G + g) * Dp, Dp) = gr.dh0[size_t(g)];
  }
  return r;
}

Inputs make_inputs(const Shape& s, std::mt19937_64& rng) {
  const long rows = long(s.B) * s.T;
  const int Dp = cu::feature_dim(s.fm, s.D);
  Inputs in;
  in.q = rattn_test::randn<MatF>(rows, long(s.H) * s.D, rng);
  in.k = rattn_test::randn<MatF>(rows, long(s.G) * s.D, rng);
  in.v = rattn_test::randn<MatF>(rows, long(s.G) * s.D, rng);
  in.dout = rattn_test::randn<MatF>(rows, long(s.H) * s.D, rng);
  in.h0 = rattn_test::randn<MatF>(long(s.B) * s.G * Dp, s.D, rng, 0.5);
  return in;
}

// Device buffers for one shape.
struct Bufs {
  cu::DeviceBuffer<float> q, k, v, dout, h0, o, states, dq, dk, dv, dh0, scratch;
  explicit Bufs(const Shape& s, const Inputs& in)
      : q(in.q.size()), k(in.k.size()), v(in.v.size()), dout(in.dout.size()), h0(in.h0.size()),
        o(in.q.size()), states(cu::rla_states_size(s.B, s.T, s.G, s.D, s.fm, s.C, s.m)), dq(in.q.size()),
        dk(in.k.size()), dv(in.v.size()), dh0(in.h0.size()),
        scratch(cu::rla_backward_scratch_size(s.B, s.T, s.H, s.G, s.D, s.fm, s.C)) {
    to_device(q, in.q);
    to_device(k, in.k);
    to_device(v, in.v);
    to_device(dout, in.dout);
    to_device(h0, in.h0);
  }
  std::vector<cu::DeviceBuffer<float>*> all() {
    return {&q, &k, &v, &dout, &h0, &o, &states, &dq, &dk, &dv, &dh0, &scratch};
  }
  void run(const Shape& s, int version) {
    for (auto* b : {&o, &states, &dq, &dk, &dv, &dh0, &scratch}) b->fill_nan();
    const float* h0p = s.with_h0 ? h0.data() : nullptr;
    cu::rla_forward(q.data(), k.data(), v.data(), h0p, o.data(), states.data(), s.B, s.T, s.H, s.G, s.D, s.w, s.fm,
                    s.C, s.m, version);
    cu::rla_backward(q.data(), k.data(), v.data(), h0p, states.data(), dout.data(), dq.data(), dk.data(), dv.data(),
                     dh0.data(), scratch.data(), s.B, s.T, s.H, s.G, s.D, s.w, s.fm, s.C, s.m, version);
  }
};

void run_case(const Shape& s, std::mt19937_64& rng) {
  CAPTURE(s.B); CAPTURE(s.T); CAPTURE(s.H); CAPTURE(s.G); CAPTURE(s.D); CAPTURE(s.w);
  CAPTURE(static_cast<int>(s.fm)); CAPTURE(s.C); CAPTURE(s.m); CAPTURE(s.with_h0);
  const int Dp = cu::feature_dim(s.fm, s.D);
  const long rows = long(s.B) * s.T;
  Inputs in = make_inputs(s, rng);
  RefOut<double> r64 = reference<double>(s, in);
  RefOut<float> r32 = reference<float>(s, in);
  Bufs bufs(s, in);
  for (int version = 1; version <= cu::kRlaVersions; ++version) {
    CAPTURE(version);
    bufs.run(s, version);
    // o is exactly zero where no key has left the window (all of it when w >= T-1): its scale is
    // that of the values it sums. The gradients share the family's scale (dq, dk are zero there too).
    check_vs_ref("o", from_device(bufs.o, rows, long(s.H) * s.D), r32.o, r64.o, kFloorFwd,
                 rattn_test::family_rms(r64.o, in.v));
    const double grad_scale = rattn_test::family_rms(r64.dq, r64.dk, r64.dv, r64.dh0);
    check_vs_ref("dq", from_device(bufs.dq, rows, long(s.H) * s.D), r32.dq, r64.dq, kFloorBwd, grad_scale);
    check_vs_ref("dk", from_device(bufs.dk, rows, long(s.G) * s.D), r32.dk, r64.dk, kFloorBwd, grad_scale);
    check_vs_ref("dv", from_device(bufs.dv, rows, long(s.G) * s.D), r32.dv, r64.dv, kFloorBwd, grad_scale);
    check_vs_ref("dh0", from_device(bufs.dh0, long(s.B) * s.G * Dp, s.D), r32.dh0, r64.dh0, kFloorBwd, grad_scale);
    for (auto* b : bufs.all()) CHECK(b->guards_intact());
  }
}

using FM = cu::FeatureMap;

}  // namespace

TEST_CASE("rla: every version matches ref/rla.h over T, D, w, phi, C, m, GQA, batch and h0") {
  REQUIRE_DEVICE();
  Eigen::setNbThreads(1);  // the references are small: OpenMP threads would only spin (2-core CI)
  std::mt19937_64 rng(2506);
  std::vector<Shape> shapes = {
      // B  T   H  G  D   w    phi            C   m  h0
      {1, 1, 1, 1, 16, -1, FM::sm2, 4, 1, true},
      {2, 1, 2, 1, 16, 0, FM::relu2, 1, 2, true},
      {1, 7, 2, 1, 16, 0, FM::sm2, 2, 1, false},
      {1, 7, 2, 1, 16, 1, FM::sm2, 3, 2, true},
      {1, 7, 2, 1, 16, 5, FM::relu2, 7, 1, true},
      {1, 7, 2, 1, 16, 6, FM::identity, 8, 2, true},   // w = T-1: RLA reads only h0
      {1, 7, 2, 1, 16, 7, FM::sm2, 2, 2, false},       // w >= T: o = 0
      {1, 7, 2, 1, 16, -1, FM::sm2, 3, 1, true},
      {2, 63, 4, 2, 32, 0, FM::sm2, 16, 2, true},
      {2, 63, 4, 2, 32, 5, FM::sm2, 7, 1, false},
      {2, 63, 4, 2, 32, 62, FM::relu2, 16, 1, true},
      {2, 63, 4, 2, 32, 100, FM::sm2, 16, 2, true},
      {2, 63, 4, 2, 32, -1, FM::identity, 32, 2, true},
      {1, 64, 2, 2, 64, 1, FM::sm2, 16, 2, true},
      {1, 64, 2, 2, 64, 63, FM::sm2, 32, 1, true},
      {1, 64, 2, 2, 64, -1, FM::sm2, 64, 1, true},      // C = 64, D = 64: two value tiles (BV = 32)
      {1, 65, 3, 1, 16, 5, FM::relu2, 16, 2, true},
      {1, 65, 3, 1, 16, 64, FM::sm2, 16, 3, true},
      {1, 65, 3, 1, 16, -1, FM::identity, 13, 2, false},
      {1, 257, 2, 1, 32, 40, FM::sm2, 32, 2, true},
      {1, 257, 2, 1, 32, -1, FM::relu2, 64, 1, false},
      {1, 257, 2, 2, 64, 5, FM::sm2, 32, 3, true},
      {1, 40, 2, 1, 128, 3, FM::sm2, 32, 2, true},     // the paper's D = 128: 4 value tiles in the backward
  };
  if (small_run()) shapes = {{1, 7, 2, 1, 16, 1, FM::sm2, 3, 2, true}, {2, 63, 4, 2, 32, 5, FM::sm2, 16, 2, false}};
  for (const Shape& s : shapes) run_case(s, rng);
}

TEST_CASE("rla backward: the same bits in every fiber and block order and on every run (no float atomics)") {
  // dq and dk are sums over value tiles, one block per tile. Added in whatever order the blocks finish
  // (float atomics), their last bits would change with the block order once there are more than two
  // tiles; summed in a fixed order they cannot. Each run also matches the reference.
  REQUIRE_DEVICE();
  Eigen::setNbThreads(1);  // the references are small: OpenMP threads would only spin (2-core CI)
  std::mt19937_64 rng(7001);
  // D = 128, Dp = 256 (sm2, relu2) at C = 32: the backward's value tiles are 32 wide, so 4 of them.
  const std::vector<Shape> shapes = {
      // B  T   H  G  D    w   phi         C   m  h0
      {2, 40, 4, 2, 128, 3, FM::sm2, 32, 2, true},
      {1, 33, 2, 1, 128, -1, FM::relu2, 32, 1, false},
  };
  for (const Shape& s : shapes) {
    CAPTURE(s.T); CAPTURE(s.w); CAPTURE(static_cast<int>(s.fm));
    const long rows = long(s.B) * s.T, Dp = cu::feature_dim(s.fm, s.D);
    const size_t nq = size_t(rows) * s.H * s.D, nk = size_t(rows) * s.G * s.D;
    const size_t tiles = 1 + cu::rla_backward_scratch_size(s.B, s.T, s.H, s.G, s.D, s.fm, s.C) / (nq + nk);
    CHECK(tiles > 2);  // with two tiles even atomics from zero could not differ: 0 + a + b = 0 + b + a
    Inputs in = make_inputs(s, rng);
    RefOut<double> r64 = reference<double>(s, in);
    RefOut<float> r32 = reference<float>(s, in);
    Bufs bufs(s, in);
    std::vector<MatF> first;
    const char* names[] = {"dq", "dk", "dv", "dh0"};
    for (const OrderRun& run : kOrderRuns) {
      const std::string order_s = run.order, threads_s = run.host_threads;
      CAPTURE(order_s); CAPTURE(threads_s);
      ScopedEnv order("EMU_ORDER", run.order), threads("EMU_HOST_THREADS", run.host_threads);
      bufs.run(s, 2);
      std::vector<MatF> got = {from_device(bufs.dq, rows, long(s.H) * s.D), from_device(bufs.dk, rows, long(s.G) * s.D),
                               from_device(bufs.dv, rows, long(s.G) * s.D),
                               from_device(bufs.dh0, long(s.B) * s.G * Dp, s.D)};
      const double grad_scale = rattn_test::family_rms(r64.dq, r64.dk, r64.dv, r64.dh0);
      check_vs_ref("dq", got[0], r32.dq, r64.dq, kFloorBwd, grad_scale);
      check_vs_ref("dk", got[1], r32.dk, r64.dk, kFloorBwd, grad_scale);
      check_same_bits_as_first(first, got, names);
    }
    for (auto* b : bufs.all()) CHECK(b->guards_intact());
  }
}

TEST_CASE("rla: saving the state every m chunks and recomputing in between gives the same gradients") {
  // The backward recomputes the states between saved ones with the forward's own arithmetic, so on the
  // CPU layer (deterministic, no FMA contraction differences) m = 1 and m = 4 agree bit for bit.
  REQUIRE_DEVICE();
  Eigen::setNbThreads(1);  // the references are small: OpenMP threads would only spin (2-core CI)
  std::mt19937_64 rng(99);
  Shape s1{2, 100, 2, 1, 32, 9, FM::sm2, 8, 1, true};
  Inputs in = make_inputs(s1, rng);
  Shape s4 = s1;
  s4.m = 4;
  Bufs b1(s1, in), b4(s4, in);
  b1.run(s1, 2);
  b4.run(s4, 2);
  CHECK(b4.states.size() < b1.states.size());  // 4 saved states instead of 13
  const double tol = cu::on_cpu_layer() ? 0.0 : 1e-6;
  const long rows = long(s1.B) * s1.T;
  rattn_test::check_close("o (m=4 vs m=1)", from_device(b4.o, rows, 64), from_device(b1.o, rows, 64), tol);
  rattn_test::check_close("dq (m=4 vs m=1)", from_device(b4.dq, rows, 64), from_device(b1.dq, rows, 64), tol);
  rattn_test::check_close("dk (m=4 vs m=1)", from_device(b4.dk, rows, 32), from_device(b1.dk, rows, 32), tol);
  rattn_test::check_close("dv (m=4 vs m=1)", from_device(b4.dv, rows, 32), from_device(b1.dv, rows, 32), tol);
  rattn_test::check_close("dh0 (m=4 vs m=1)", from_device(b4.dh0, 2 * 64, 32), from_device(b1.dh0, 2 * 64, 32), tol);
}

TEST_CASE("rla: the shift is exact: key t-w-1 reaches query t, key t-w does not") {
  // Independent of ref/: with w = 3, o at t = 10 changes when k[6] changes and not when k[7] changes.
  REQUIRE_DEVICE();
  Eigen::setNbThreads(1);  // the references are small: OpenMP threads would only spin (2-core CI)
  const int T = 12, D = 16, w = 3, t = 10;
  std::mt19937_64 rng(5);
  MatF q = rattn_test::randn<MatF>(T, D, rng), k = rattn_test::randn<MatF>(T, D, rng),
       v = rattn_test::randn<MatF>(T, D, rng);
  cu::DeviceBuffer<float> bq(q.size()), bk(k.size()), bv(v.size()), bo(q.size()),
      bst(cu::rla_states_size(1, T, 1, D, FM::sm2, 4, 1));
  to_device(bq, q);
  to_device(bv, v);
  auto row_t = [&](const MatF& kk, int version) {
    to_device(bk, kk);
    bo.fill_nan();
    cu::rla_forward(bq.data(), bk.data(), bv.data(), nullptr, bo.data(), bst.data(), 1, T, 1, 1, D, w, FM::sm2, 4, 1,
                    version);
    return MatF(from_device(bo, T, D).row(t));
  };
  for (int version = 1; version <= cu::kRlaVersions; ++version) {
    CAPTURE(version);
    MatF base = row_t(k, version);
    MatF k_in = k, k_out = k;
    k_in(t - w - 1, 0) += 2.0f;  // one element: a constant shift of a row would not change softmax
    k_out(t - w, 0) += 2.0f;
    CHECK((row_t(k_in, version) - base).norm() > 1e-4f);
    CHECK((row_t(k_out, version) - base).norm() == 0.0f);
  }
}
