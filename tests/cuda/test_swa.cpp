// tests/cuda/test_swa.cpp: cu::swa_forward / cu::swa_backward (every kernel version) against
// ref/attention.h in double. o, the saved lse, dq, dk and dv are each checked separately, over
// T in {1, 7, 63, 64, 65, 257}, D in {16, 32, 64, 128}, windows w in {0, 1, 5, T-1, >= T, -1 (global)},
// GQA and B*H > 1. Outputs are NaN-filled before every launch and guard bands checked after.
#include <cmath>
#include <random>
#include <vector>

#include "cuda/swa.h"
#include "ref/attention.h"
#include "tests/cuda/ops_check.h"

using namespace cuops_test;

namespace {

struct Shape {
  int B, T, H, G, D, w;
};

// The logsumexp of each row's scaled, windowed scores, the quantity the forward saves.
// q: (T, H*D), k: (T, G*D) -> lse: (H, T)
template <class S>
ref::Mat<S> lse_of(const ref::Mat<S>& q, const ref::Mat<S>& k, int H, int G, int w, S scale) {
  const long T = q.rows(), D = q.cols() / H;
  ref::Mat<S> lse(H, T);
  for (int h = 0; h < H; ++h) {
    const int g = h / (H / G);
    for (long t = 0; t < T; ++t) {
      std::vector<S> s;
      for (long j = ref::window_start(t, w); j <= t; ++j)
        s.push_back(scale * q.row(t).segment(h * D, D).dot(k.row(j).segment(g * D, D)));
      S mx = s[0];
      for (S x : s) mx = std::max(mx, x);
      S z = 0;
      for (S x : s) z += std::exp(x - mx);
      lse(h, t) = mx + std::log(z);
    }
  }
  return lse;
}

// Reference for a batch: the tensors are (B*T, heads*D) (sequence b = rows [b*T, (b+1)*T)), as on the device.
template <class S>
struct RefOut {
  ref::Mat<S> o, lse /*(B*H, T)*/, dq, dk, dv;
};
template <class S>
RefOut<S> reference(const Shape& s, const MatF& q, const MatF& k, const MatF& v, const MatF& dout) {
  RefOut<S> r;
  r.o.resize(q.rows(), q.cols());
  r.dq.resize(q.rows(), q.cols());
  r.dk.resize(k.rows(), k.cols());
  r.dv.resize(v.rows(), v.cols());
  r.lse.resize(long(s.B) * s.H, s.T);
  const S scale = S(1) / std::sqrt(S(s.D));
  for (int b = 0; b < s.B; ++b) {
    const long r0 = long(b) * s.T;
    ref::Mat<S> qb = q.middleRows(r0, s.T).cast<S>(), kb = k.middleRows(r0, s.T).cast<S>(),
                vb = v.middleRows(r0, s.T).cast<S>(), db = dout.middleRows(r0, s.T).cast<S>();
    ref::Mat<S> dq, dk, dv;
    r.o.middleRows(r0, s.T) = ref::swa_forward(qb, kb, vb, s.H, s.G, s.w, scale);
    ref::swa_backward(qb, kb, vb, db, s.H, s.G, s.w, scale, dq, dk, dv);
    r.dq.middleRows(r0, s.T) = dq;
    r.dk.middleRows(r0, s.T) = dk;
    r.dv.middleRows(r0, s.T) = dv;
    r.lse.middleRows(long(b) * s.H, s.H) = lse_of(qb, kb, s.H, s.G, s.w, scale);
  }
  return r;
}

void run_case(const Shape& s, std::mt19937_64& rng) {
  CAPTURE(s.B); CAPTURE(s.T); CAPTURE(s.H); CAPTURE(s.G); CAPTURE(s.D); CAPTURE(s.w);
  const long rows = long(s.B) * s.T;
  MatF q = rattn_test::randn<MatF>(rows, long(s.H) * s.D, rng), k = rattn_test::randn<MatF>(rows, long(s.G) * s.D, rng),
       v = rattn_test::randn<MatF>(rows, long(s.G) * s.D, rng), dout = rattn_test::randn<MatF>(rows, long(s.H) * s.D, rng);
  RefOut<double> r64 = reference<double>(s, q, k, v, dout);
  RefOut<float> r32 = reference<float>(s, q, k, v, dout);

  cu::DeviceBuffer<float> bq(q.size()), bk(k.size()), bv(v.size()), bdout(dout.size()), bo(q.size()),
      blse(size_t(s.B) * s.H * s.T), bdq(q.size()), bdk(k.size()), bdv(v.size()), bdelta(size_t(s.B) * s.H * s.T);
  to_device(bq, q);
  to_device(bk, k);
  to_device(bv, v);
  to_device(bdout, dout);
  const float scale = 1.0f / std::sqrt(float(s.D));
  for (int version = 1; version <= cu::kSwaVersions; ++version) {
    CAPTURE(version);
    for (auto* b : {&bo, &blse, &bdq, &bdk, &bdv, &bdelta}) b->fill_nan();
    cu::swa_forward(bq.data(), bk.data(), bv.data(), bo.data(), blse.data(), s.B, s.T, s.H, s.G, s.D, s.w, scale,
                    version);
    cu::swa_backward(bq.data(), bk.data(), bv.data(), bo.data(), blse.data(), bdout.data(), bdq.data(), bdk.data(),
                     bdv.data(), bdelta.data(), s.B, s.T, s.H, s.G, s.D, s.w, scale, version);
    // o is a convex combination of the values: their scale. lse is never near zero for all rows.
    // dq and dk are exactly zero at w = 0 (softmax over one key): the gradients share the family's scale.
    check_vs_ref("o", from_device(bo, rows, long(s.H) * s.D), r32.o, r64.o, kFloorFwd, rattn_test::family_rms(r64.o, v));
    check_vs_ref("lse", from_device(blse, long(s.B) * s.H, s.T), r32.lse, r64.lse, kFloorFwd,
                 rattn_test::family_rms(r64.lse));
    const double grad_scale = rattn_test::family_rms(r64.dq, r64.dk, r64.dv);
    check_vs_ref("dq", from_device(bdq, rows, long(s.H) * s.D), r32.dq, r64.dq, kFloorBwd, grad_scale);
    check_vs_ref("dk", from_device(bdk, rows, long(s.G) * s.D), r32.dk, r64.dk, kFloorBwd, grad_scale);
    check_vs_ref("dv", from_device(bdv, rows, long(s.G) * s.D), r32.dv, r64.dv, kFloorBwd, grad_scale);
    for (auto* b : {&bq, &bk, &bv, &bdout, &bo, &blse, &bdq, &bdk, &bdv, &bdelta}) CHECK(b->guards_intact());
  }
}

}  // namespace

TEST_CASE("swa: every version matches ref/attention.h over T, D, w, GQA and batch") {
  REQUIRE_DEVICE();
  Eigen::setNbThreads(1);  // the references are small: OpenMP threads would only spin (2-core CI)
  std::mt19937_64 rng(20250618);
  std::vector<Shape> shapes = {
      // B  T   H  G  D   w
      {1, 1, 1, 1, 16, 0},    {2, 1, 2, 1, 32, -1},
      {1, 7, 2, 1, 16, 0},    {1, 7, 2, 1, 16, 1},   {1, 7, 2, 1, 16, 5},  {1, 7, 2, 1, 16, 6},
      {1, 7, 2, 1, 16, 7},    {1, 7, 2, 1, 16, -1},
      {2, 63, 4, 2, 32, 0},   {2, 63, 4, 2, 32, 5},  {2, 63, 4, 2, 32, 62}, {2, 63, 4, 2, 32, 100},
      {2, 63, 4, 2, 32, -1},
      {1, 64, 2, 2, 64, 1},   {1, 64, 2, 2, 64, 31}, {1, 64, 2, 2, 64, 63}, {1, 64, 2, 2, 64, -1},
      {1, 65, 3, 1, 16, 5},   {1, 65, 3, 1, 16, 32}, {1, 65, 3, 1, 16, 64}, {1, 65, 3, 1, 16, -1},
      {1, 257, 2, 1, 32, 1},  {1, 257, 2, 1, 32, 40}, {1, 257, 2, 1, 32, 256}, {1, 257, 2, 1, 32, -1},
      {1, 257, 2, 2, 64, 5},  {2, 70, 2, 1, 128, 33},  // the paper's head dim
  };
  if (small_run()) shapes = {{1, 7, 2, 1, 16, 1}, {2, 63, 4, 2, 32, 5}, {1, 65, 3, 1, 16, -1}};
  for (const Shape& s : shapes) run_case(s, rng);
}

TEST_CASE("swa: the window boundary is [t-w, t]: a key one step outside changes nothing") {
  // A direct check of the convention, independent of ref/: with w = 3, query t = 10 must not move when
  // key 6 = t-w-1 changes, and must move when key 7 = t-w changes (spec §2.2).
  REQUIRE_DEVICE();
  Eigen::setNbThreads(1);  // the references are small: OpenMP threads would only spin (2-core CI)
  const int B = 1, T = 12, H = 1, G = 1, D = 16, w = 3, t = 10;
  std::mt19937_64 rng(7);
  MatF q = rattn_test::randn<MatF>(T, D, rng), k = rattn_test::randn<MatF>(T, D, rng),
       v = rattn_test::randn<MatF>(T, D, rng);
  cu::DeviceBuffer<float> bq(q.size()), bk(k.size()), bv(v.size()), bo(q.size()), blse(T);
  to_device(bq, q);
  to_device(bv, v);
  auto row_t = [&](const MatF& kk, int version) {
    to_device(bk, kk);
    bo.fill_nan();
    cu::swa_forward(bq.data(), bk.data(), bv.data(), bo.data(), blse.data(), B, T, H, G, D, w, 0.25f, version);
    return MatF(from_device(bo, T, D).row(t));
  };
  for (int version = 1; version <= cu::kSwaVersions; ++version) {
    CAPTURE(version);
    MatF base = row_t(k, version);
    MatF k_out = k, k_in = k;
    k_out.row(t - w - 1).array() += 3.0f;
    k_in.row(t - w).array() += 3.0f;
    CHECK((row_t(k_out, version) - base).norm() == 0.0f);
    CHECK((row_t(k_in, version) - base).norm() > 1e-3f);
  }
}
