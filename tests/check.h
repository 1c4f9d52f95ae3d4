// tests/check.h: the one comparison helper and the one gradient checker every test uses.
//
//   check_close(name, got, want, tol, scale)
//                                       relative RMS error rms(got - want) / max(rms(want), scale)
//                                       <= tol (fla-org style); on failure it names the tensor, the
//                                       worst element's index and both values.
//   family_rms(a, b, ...)               the RMS over every element of several tensors: the scale of
//                                       a family of outputs (dq, dk, dv) or of the inputs.
//
// Why a scale: some exact outputs are all zero or nearly so (dq and dk at w = 0, where softmax has one
// key; the RLA output at w >= T-1, which reads no key). A kernel's fp32 result there is rounding noise
// whose size depends on the CPU's vector width, FMA contraction and summation order; an error relative
// to the zero tensor itself is then noise divided by zero, and a test built on it passes on one CPU and
// fails on another. Relative to the scale of the family (or of the inputs), that noise is what it is:
// a few float epsilons.
//   grad_check(name, f, x, analytic)    central finite differences of a scalar f(x) in double,
//                                       compared with the analytic gradient by check_close.
//   RATTN_SKIP(reason)                  mark the current test case skipped (counted, printed).
#pragma once
#include <doctest/doctest.h>

#include "ref/tensor.h"  // Eigen, with the GCC 12 AVX-512 warning workaround
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <sstream>
#include <string>

namespace rattn_test {

extern int g_skipped;

// The sanitizer builds (make test-sanitize, make tsan-test) run the same code 5-10x slower. A test whose
// length adds repetitions of code paths it has already run, not new ones, runs shorter there; the plain
// build runs it whole.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif

// Relative RMS error between two equally shaped arrays; both are read as flat double arrays.
struct CloseReport {
  double rel_rms = 0;      // rms(got - want) / max(rms(want), scale); see compare()
  long worst = -1;         // flat index of the largest |got - want|
  double worst_got = 0, worst_want = 0;
  bool shape_ok = true;
  bool finite = true;
};

// scale: an RMS value (e.g. family_rms of the output family, or of the inputs) below which want is not
// trusted as its own yardstick. scale = 0 and want all zero: the error is absolute, for comparisons whose
// both sides are exact zeros by construction.
template <class A, class B>
CloseReport compare(const A& got_in, const B& want_in, double scale = 0) {
  CloseReport r;
  if (got_in.rows() != want_in.rows() || got_in.cols() != want_in.cols()) {
    r.shape_ok = false;
    return r;
  }
  // Evaluate into row-major double so that "flat index" means row * cols + col.
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> got = got_in.template cast<double>();
  Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> want = want_in.template cast<double>();
  double num = 0, den = 0, worst_abs = -1;
  for (long i = 0; i < got.size(); ++i) {
    double g = got.data()[i], w = want.data()[i];
    if (!std::isfinite(g) || !std::isfinite(w)) r.finite = false;
    double d = std::abs(g - w);
    num += d * d;
    den += w * w;
    if (!(d <= worst_abs)) {  // also catches NaN
      worst_abs = d;
      r.worst = i;
      r.worst_got = g;
      r.worst_want = w;
    }
  }
  const double n = double(std::max<long>(got.size(), 1));
  const double yardstick = std::max(std::sqrt(den / n), scale);
  r.rel_rms = yardstick > 0 ? std::sqrt(num / n) / yardstick : std::sqrt(num / n);
  return r;
}

// The RMS over all elements of several tensors together.
template <class... M>
double family_rms(const M&... m) {
  double sum = 0, n = 0;
  ((sum += m.template cast<double>().squaredNorm(), n += double(m.size())), ...);
  return n > 0 ? std::sqrt(sum / n) : 0.0;
}

// CHECK that got matches want to relative RMS tol; report the worst element on failure.
template <class A, class B>
bool check_close(const std::string& name, const A& got, const B& want, double tol, double scale = 0) {
  CloseReport r = compare(got, want, scale);
  if (!r.shape_ok) {
    FAIL_CHECK(name << ": shape (" << got.rows() << ", " << got.cols() << ") vs expected ("
                    << want.rows() << ", " << want.cols() << ")");
    return false;
  }
  bool ok = r.finite && r.rel_rms <= tol;
  if (!ok) {
    long cols = want.cols() ? want.cols() : 1;
    std::ostringstream os;
    os.precision(17);
    os << name << ": relative RMS error " << r.rel_rms << " > tol " << tol;
    if (scale > 0) os << " (relative to max(rms(want), scale " << scale << "))";
    os
       << (r.finite ? "" : " (non-finite values)") << "; worst element [" << r.worst / cols << ", "
       << r.worst % cols << "] got " << r.worst_got << " want " << r.worst_want;
    FAIL_CHECK(os.str());
  }
  return ok;
}

// Central finite differences of a scalar function of x, compared with the analytic gradient.
// f must read x (the same object that is perturbed here). Double precision only.
template <class M>
bool grad_check(const std::string& name, const std::function<double()>& f, M& x, const M& analytic,
                double tol = 1e-6, double h = 1e-5, double scale = 0) {
  M numeric(x.rows(), x.cols());
  for (long i = 0; i < x.size(); ++i) {
    double saved = x.data()[i];
    x.data()[i] = saved + h;
    double fp = f();
    x.data()[i] = saved - h;
    double fm = f();
    x.data()[i] = saved;
    numeric.data()[i] = (fp - fm) / (2 * h);
  }
  return check_close("d" + name + " (analytic vs finite differences)", analytic, numeric, tol, scale);
}

// Deterministic random matrices for tests: fixed seeds, never std::random_device.
template <class M>
M randn(long rows, long cols, std::mt19937_64& rng, double scale = 1.0) {
  std::normal_distribution<double> n(0.0, scale);
  M m(rows, cols);
  for (long i = 0; i < m.size(); ++i) m.data()[i] = typename M::Scalar(n(rng));
  return m;
}

}  // namespace rattn_test

// Mark the current test case as skipped: it prints the reason and is counted as skipped,
// never as passed.
#define RATTN_SKIP(reason)                                    \
  do {                                                        \
    std::printf("SKIPPED (%s)\n", reason);                   \
    ++rattn_test::g_skipped;                                  \
    return;                                                   \
  } while (0)
