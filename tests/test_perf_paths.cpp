// The fast paths of the training step held equal to the reference they replace:
//   ref/attention_blocked.h  swa_forward_blocked / swa_backward_blocked  ==  ref/attention.h swa_forward /
//                            swa_backward (one query, one key at a time), every window edge case, GQA,
//                            block sizes from 1 to past T, float and double;
//   ref/rope.h               the cached cos/sin table == the angles computed directly (bit for bit).
#include <doctest/doctest.h>

#include <random>
#include <vector>

#include "ref/attention.h"
#include "ref/attention_blocked.h"
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

}  // namespace

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
