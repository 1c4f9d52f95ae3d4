// Exercise 4 of 8: RLA, the chunked form: the inter-chunk state and the masked intra-chunk block.
// Paper §2.2, eqs. 2-3 (corrected); docs/spec.md §3.2. Replaces ref::detail::rla_chunked_core (ref/rla.h),
// the body of ref::rla_forward_chunked (and of the split-and-resume helpers of ref/rla_resume.h).
// Run it: make exercise E=rla_chunked         (checks: bin/tests/test_rla: forward forms, resume, partition)
//
// Shift s = w+1. The shifted keys K'_u = phi(k_{u-s}), V'_u = v_{u-s} exist only for u >= s, so RLA is
// inclusive causal linear attention over the shifted keys. Chunk i covers query rows [c0, c0+n),
// c0 = i*C, n = min(C, T-c0) (the last chunk may be short). Per kv head g, S_[0] = St[g] on entry:
//     O_[i]   = Q~_[i] S_[i]  +  ((Q~_[i] K'_[i]^T) ⊙ tril) V'_[i]          inter-chunk + intra-chunk
//     S_[i+1] = S_[i] + K'_[i]^T V'_[i]
// Q~ = phi(q) per query head (phi_forward_heads(fm, q, H): (T, H*Dp)), K~ = phi(kk) per kv head.
// tril keeps score (query c0+i, shifted position a+jj) iff a+jj <= c0+i: the diagonal belongs to RLA.
//
// Given helpers (ref/rla.h, above): chunk_keys(c0, n, s, P) -> {a, m, j0}: the chunk's shifted rows with a
// key are [a, c0+n), m = c0+n-a of them (m <= 0: none), and they read the key rows [j0, j0+m) of kk, vv.
// keep_causal(A, a - c0) zeroes the entries of an (n, m) score block A right of the diagonal.
//
// P: kk, vv start P rows EARLIER than q (pending rows of a previous call, ref/rla_resume.h); P = 0 in
// rla_forward_chunked. chunk_keys takes care of it: use the j0 it returns and never index kk by u-s.
// Shapes: q: (T, H*D), kk, vv: (P+T, G*D), St: G x (Dp, D), updated in place to the final state
// -> o: (T, H*D). Query head h reads kv head g = h / r, r = H/G; its columns are [h*Dp, (h+1)*Dp) in Q~.
//
// Hint: loop g, then chunks c0 = 0, C, 2C, ...; inside, every query head h of the group: Oc = Qc * S
// (before the state moves!), then the intra block; after the heads, S += K'^T V'. Eigen: Qf.block(c0,
// h * Dp, n, Dp), Kf.block(j0, g * Dp, m, Dp), vv.block(j0, g * D, m, D), o.block(c0, h * D, n, D).
// On failure: wrong already at T = 1, C = 1, w = -1 (one query, one key): the diagonal of the intra block
//   belongs to RLA (keep_causal(A, a - c0), the inclusive mask); the first chunk right and later ones wrong:
//   S must be read before it is updated; only split-and-resume wrong: use j0 from chunk_keys (it counts P).
template <class Real>
Mat<Real> rla_chunked_core(const Mat<Real>& q, const Mat<Real>& kk, const Mat<Real>& vv, int P, int H, int G,
                           int w, FeatureMap fm, int C, RlaState<Real>& St) {
  const int T = int(q.rows()), D = int(q.cols() / H), Dp = feature_dim(fm, D), r = H / G;
  const int s = w + 1;
  Mat<Real> o = Mat<Real>::Zero(T, q.cols());
  // TODO(exercise 4): the chunk loop above; St must hold the final state on return.
  (void)kk;
  (void)vv;
  (void)P;
  (void)Dp;
  (void)r;
  (void)s;
  (void)C;
  (void)St;
  return o;
}
