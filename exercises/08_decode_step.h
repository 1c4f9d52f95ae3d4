// Exercise 8 of 8: the constant-memory decode step of a local layer: a ring of w+1, and the fold.
// Paper §3.4 (and eq. 4); docs/spec.md §3.1 and §3.4. Replaces ref::attention_layer_decode_step
// (ref/decode.h). Run it: make exercise E=decode_step   (checks: bin/tests/test_decode, every case)
//
// The cache of a local swa/rattn layer (AttnDecodeCache, ref/decode.h) holds a ring of w+1 slots of RAW
// (un-RoPE'd) k, v rows with their positions (ring_pos, -1 = empty), and for rattn the RLA state S, one
// (Dp, D) matrix per kv head. Step t (= cache.t) of a local layer, W1 = w+1 slots, slot = t mod W1:
//   1. the slot still holds token t-w-1 (or nothing yet): it leaves the window now. rattn folds it,
//          S += phi(k_{t-w-1})^T v_{t-w-1}        (rla_fold, exercise 3); now S = S_{t-w-1}
//   2. overwrite the slot with k_t, v_t and position t;
//   3. SWA over the window [window_start(t, w), t] read from the ring OLDEST FIRST (slot j mod W1 for
//      j = window_start .. t), each key RoPE'd at its stored position (rope_forward(row, G, cfg.rope_theta,
//      pos)), q_t RoPE'd at t; attend_row(q_rope, 0, k_win, v_win, 0, n-1, H, G, scale) gives o_swa (1, H*D);
//      c = group_rmsnorm_forward(o_swa, p.gamma_swa, eps);
//   4. rattn: c += group_rmsnorm_forward(rla_read(cache.state, q, H, G, fm), p.gamma_rla, eps).
// Memory: 2 (w+1) G D numbers plus G Dp D for the state, whatever t (bin/rattn-show --decode shows the ring).
// The checks run the full forward (ref::attention_layer_forward) and compare every position, every kind.
//
// Shapes: x_t: (1, C) -> y_t: (1, C); q: (1, H*D); k, v: (1, G*D); ring_k, ring_v: (w+1, G*D).
// Hint: fold BEFORE you overwrite the slot; the RLA branch reads raw q and the raw (ring) k; SWA reads
// RoPE'd ones. The global and linear branches are given: they show the calls.
// On failure: only rattn wrong: the fold (token t-w-1, taken from the slot BEFORE it is overwritten: wrong
//   already at t = 0 means the state received token t); swa wrong too: the ring read (oldest first) or the
//   RoPE positions (each key at its stored position).
template <class Real>
Mat<Real> attention_layer_decode_step(const AttnConfig& cfg, const AttnParams<Real>& p, AttnDecodeCache<Real>& cache,
                                      const Mat<Real>& x_t) {
  expect_shape("x_t", x_t, 1, p.Wq.rows());
  const long t = cache.t;
  const Real scale = Real(1.0 / std::sqrt(double(cfg.D)));
  const Real eps = Real(cfg.eps);
  // q_t = x_t W_Q, k_t = x_t W_K, v_t = x_t W_V   (spec §2.1)
  const Mat<Real> q = linear_forward(x_t, p.Wq), k = linear_forward(x_t, p.Wk), v = linear_forward(x_t, p.Wv);
  Mat<Real> c = Mat<Real>::Zero(1, q.cols());

  if (cfg.global) {
    // global: append to the full cache, attend over [0, t], no RoPE, no branch norm
    cache.k_all.conservativeResize(t + 1, Eigen::NoChange);
    cache.v_all.conservativeResize(t + 1, Eigen::NoChange);
    cache.k_all.row(t) = k;
    cache.v_all.row(t) = v;
    c = attend_row(q, 0, cache.k_all, cache.v_all, 0, t, cfg.H, cfg.G, scale);
  } else if (cfg.kind == LocalKind::linear) {
    // linear (w = -1, inclusive): S_t = S_{t-1} + phi(k_t)^T v_t;  o_rla = phi(q_t) S_t
    rla_fold(cache.state, k, v, cfg.G, cfg.fm);
    c = group_rmsnorm_forward(rla_read(cache.state, q, cfg.H, cfg.G, cfg.fm), p.gamma_rla, eps);
  } else {
    // TODO(exercise 8): local swa / rattn, steps 1-4 above: the fold, the ring, SWA over the ring, RLA.
  }
  cache.t = t + 1;
  // y_t = c W_O
  return linear_forward(c, p.Wo);
}
