// Exercise 5 of 8: a backward, checked by finite differences: the RMS norm of one block.
// Paper §3.2 ("two separate RMS norms"); docs/spec.md §2.5 and §4.5. Replaces ref::detail::rms_block_backward
// (ref/norm.h), the step shared by ref::rmsnorm_backward and ref::group_rmsnorm_backward (the branch norms
// GRMS_swa, GRMS_rla: one block = the D values of one (token, head)).
// Run it: make exercise E=rms_backward        (checks: bin/tests/test_norm, the finite-difference cases)
//
// In the forward pass this was (detail::rms_block_forward, above):
//     r = sqrt(mean(x^2) + eps),    y = x / r * gamma         (elementwise; x, gamma, y: (1, D))
// so now, given dy = dL/dy:
//     dgamma += ?          (accumulate: dgamma sums over every token; do not overwrite it)
//     dx      = ?          (two terms: y depends on x directly, and through r, which every x_i feeds)
// Work it out on paper first: d(1/r)/dx_i = -x_i / (D r^3). The checks perturb each x_i and gamma_d by
// +-1e-5 and compare (f(x+h) - f(x-h)) / 2h with your dx, dgamma (relative RMS 1e-6).
//
// Shapes: x, gamma, dy: (1, D) row blocks (Eigen expressions); dx: (1, D), assigned; dgamma: (1, D), +=.
// Hint: Eigen's .array() makes * elementwise; .sum() and .squaredNorm() reduce; end with .matrix().
// On failure: "dgamma" wrong by a constant: accumulate with +=, do not assign; "dx" wrong: the term through r
//   (every x_j feeds r), or eps left out of r; the checks name the element and both values.
template <class Real, class X, class Gm, class DY, class DX, class DG>
void rms_block_backward(const X& x, const Gm& gamma, Real eps, const DY& dy, DX&& dx, DG&& dgamma) {
  const Real D = Real(x.size());
  // TODO(exercise 5): dgamma += ...;  dx = ...;
  (void)gamma;
  (void)eps;
  (void)dy;
  (void)D;
  (void)dgamma;
  dx.setZero();
}
