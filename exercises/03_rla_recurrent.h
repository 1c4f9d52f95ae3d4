// Exercise 3 of 8: residual linear attention (RLA), the recurrent form: fold, then read.
// Paper §2.2 and §3.1, eq. 4; docs/spec.md §2.3 and §3.1. Replaces ref::rla_forward_recurrent (ref/rla.h).
// Run it: make exercise E=rla_recurrent       (checks: bin/tests/test_rla, the forward-forms case)
//
// One state per kv head g, S: (Dp, D), Dp = feature_dim(fm, D) (2D for sm2):
//     S_t     = S_{t-1} + phi(k_t)^T v_t          S_{-1} = h0 (or zero)
//     o_rla_t = phi(q_t) S_{t-w-1}                (S_{<0} := S_{-1})
// so the RLA output of query t has seen exactly the keys j <= t-w-1: those that have LEFT the SWA window
// [t-w, t]. Step t therefore folds the one token j = t-w-1 that leaves the window now (when j >= 0),
// then reads. w = -1 (the `linear` kind, no window): j = t, the token itself, folded before the read.
//
// The two halves are given (ref/rla.h, above this function):
//     rla_fold(St, k_row, v_row, G, fm)      St[g] += phi(k_g)^T v_g for every kv head g
//     rla_read(St, q_row, H, G, fm)          -> (1, H*D): phi(q_h) St[h / (H/G)] for every query head h
// They take (1, cols) matrices: pass Mat<Real>(k.row(j)).
//
// Shapes: q: (T, H*D), k, v: (T, G*D), h0: G x (Dp, D) or null -> o: (T, H*D).
//
// Hint: start from RlaState<Real> St = h0 ? *h0 : rla_zero_state<Real>(G, d.D, fm); d.s = w+1 is the
// shift. The checks compare with the masked form (quadratic, the definition) to 1e-12.
// On failure: rows t <= w must be exactly 0 (without h0); wrong from row w+1 on: the folded token is off by
//   one (t-w-1, read after folding); a crash on Eigen's index assertion: a key row past the end or below 0
//   (the checks start with w = -1, where the token folded at step t is t itself).
template <class Real>
Mat<Real> rla_forward_recurrent(const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, int H, int G, int w,
                                FeatureMap fm, const RlaState<Real>* h0 = nullptr) {
  const detail::RlaDims d = detail::rla_dims("rla_forward_recurrent", q, k, v, H, G, w, fm, h0);
  Mat<Real> o = Mat<Real>::Zero(d.T, q.cols());
  // TODO(exercise 3): the state S_{-1}, then for each t: fold token t-w-1 if it exists, read o.row(t).
  return o;
}
