// tests/cuda/test_matmul.cpp: cu::matmul (every version, every transpose, beta 0 and 1) and the
// linear layer against the reference in double; on a real GPU also against cuBLAS.
// Shapes: sizes that are not multiples of the 16 / 64 tiles, partial last tiles, several blocks.
#include <random>
#include <tuple>

#include "cuda/matmul.h"
#include "ref/linear.h"
#include "tests/cuda/ops_check.h"

using namespace cuops_test;

namespace {

struct Shape { int M, N, K; };

std::vector<Shape> shapes() {
  if (small_run()) return {{7, 5, 3}, {65, 33, 17}};
  return {{1, 1, 1}, {7, 5, 3}, {16, 16, 16}, {70, 33, 50}, {65, 129, 17}, {64, 64, 65}, {3, 130, 1}};
}

// op(X): X itself or its transpose, in any scalar type.
template <class M>
M op(const M& x, bool t) { return t ? M(x.transpose()) : x; }

}  // namespace

TEST_CASE("matmul: every version, transpose and beta against ref64") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(1234);
  for (Shape s : shapes())
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (float beta : {0.0f, 1.0f}) {
          // storage shapes: A (M,K) or (K,M); B (K,N) or (N,K)
          MatF A = rattn_test::randn<MatF>(ta ? s.K : s.M, ta ? s.M : s.K, rng);
          MatF B = rattn_test::randn<MatF>(tb ? s.N : s.K, tb ? s.K : s.N, rng);
          MatF C0 = rattn_test::randn<MatF>(s.M, s.N, rng);
          MatD want64 = op(MatD(A.cast<double>()), ta) * op(MatD(B.cast<double>()), tb);
          MatF want32 = op(A, ta) * op(B, tb);
          if (beta != 0) {
            want64 += C0.cast<double>();
            want32 += C0;
          }
          cu::DeviceBuffer<float> dA(A.size()), dB(B.size()), dC(C0.size());
          to_device(dA, A);
          to_device(dB, B);
          for (int version = 1; version <= cu::kMatmulVersions; ++version) {
            CAPTURE(version);
            CAPTURE(s.M); CAPTURE(s.N); CAPTURE(s.K); CAPTURE(ta); CAPTURE(tb); CAPTURE(beta);
            if (beta == 0) dC.fill_nan();  // beta = 0 must not read C
            else to_device(dC, C0);
            cu::matmul(dA.data(), dB.data(), dC.data(), s.M, s.N, s.K, ta, tb, beta, version);
            check_vs_ref("C", from_device(dC, s.M, s.N), want32, want64, kFloorFwd, rattn_test::family_rms(want64));
            CHECK(dC.guards_intact());
          }
          // On a real GPU, cuBLAS computes the same product: an independent oracle.
          if (beta == 0) dC.fill_nan();
          else to_device(dC, C0);
          if (cu::matmul_cublas(dA.data(), dB.data(), dC.data(), s.M, s.N, s.K, ta, tb, beta))
            check_vs_ref("C (cuBLAS oracle)", from_device(dC, s.M, s.N), want32, want64, kFloorFwd,
                         rattn_test::family_rms(want64));
          CHECK(dA.guards_intact());
          CHECK(dB.guards_intact());
        }
}

TEST_CASE("matmul: K = 0 gives beta * C") {
  REQUIRE_DEVICE();
  cu::DeviceBuffer<float> dA(1), dB(1), dC(6);
  MatF C0 = MatF::Constant(2, 3, 1.5f);
  for (int version = 1; version <= cu::kMatmulVersions; ++version) {
    to_device(dC, C0);
    cu::matmul(dA.data(), dB.data(), dC.data(), 2, 3, 0, false, false, 1.0f, version);
    CHECK(from_device(dC, 2, 3) == C0);
    dC.fill_nan();
    cu::matmul(dA.data(), dB.data(), dC.data(), 2, 3, 0, false, false, 0.0f, version);
    CHECK(from_device(dC, 2, 3) == MatF::Zero(2, 3));
  }
  CHECK_THROWS(cu::matmul(dA.data(), dB.data(), dC.data(), 2, 3, 1, false, false, 0.0f, 4));
}

TEST_CASE("linear_forward / linear_backward against ref/linear.h") {
  REQUIRE_DEVICE();
  std::mt19937_64 rng(99);
  for (auto [N, in, out] : {std::tuple{5, 7, 3}, std::tuple{67, 33, 70}}) {
    MatF x = rattn_test::randn<MatF>(N, in, rng), W = rattn_test::randn<MatF>(in, out, rng, 0.2);
    MatF dy = rattn_test::randn<MatF>(N, out, rng), dW0 = rattn_test::randn<MatF>(in, out, rng);
    MatD x64 = x.cast<double>(), W64 = W.cast<double>(), dy64 = dy.cast<double>();
    MatF y32 = ref::linear_forward(x, W);
    MatD y64 = ref::linear_forward(x64, W64);
    MatF dW32 = dW0;
    MatD dW64 = dW0.cast<double>();
    MatF dx32 = ref::linear_backward(x, W, dy, dW32);
    MatD dx64 = ref::linear_backward(x64, W64, dy64, dW64);

    cu::DeviceBuffer<float> dx_in(x.size()), dWt(W.size()), dyb(dy.size()), y(N * out), dx(N * in), dW(W.size());
    to_device(dx_in, x);
    to_device(dWt, W);
    to_device(dyb, dy);
    for (int version = 1; version <= cu::kMatmulVersions; ++version) {
      CAPTURE(version); CAPTURE(N); CAPTURE(in); CAPTURE(out);
      y.fill_nan();
      dx.fill_nan();
      to_device(dW, dW0);
      cu::linear_forward(dx_in.data(), dWt.data(), y.data(), N, in, out, version);
      cu::linear_backward(dx_in.data(), dWt.data(), dyb.data(), dx.data(), dW.data(), N, in, out, version);
      check_vs_ref("y", from_device(y, N, out), y32, y64, kFloorFwd, rattn_test::family_rms(y64));
      const double grad_scale = rattn_test::family_rms(dx64, dW64);
      check_vs_ref("dx", from_device(dx, N, in), dx32, dx64, kFloorBwd, grad_scale);
      check_vs_ref("dW (+=)", from_device(dW, in, out), dW32, dW64, kFloorBwd, grad_scale);
      CHECK(y.guards_intact());
      CHECK(dx.guards_intact());
      CHECK(dW.guards_intact());
    }
  }
}
