// Exercise 2 of 8: softmax attention over the window, forward.
// Paper §2.1 (the SWA equation); docs/spec.md §2.2. Replaces ref::swa_forward (ref/attention.h).
// Run it: make exercise E=swa_forward         (checks: bin/tests/test_rope_swa, the "swa*" cases)
//
// For query t, query head h, and its kv head g = h / (H/G) (GQA: r = H/G query heads share one kv head):
//     s_j     = scale * q[t,h] . k[j,g]                    for j in [window_start(t, w), t]
//     p_j     = exp(s_j - max_i s_i) / sum_i exp(s_i - max_i s_i)     (softmax, row maximum subtracted)
//     o[t,h]  = sum_j p_j v[j,g]
// Head h is the D columns [h*D, (h+1)*D) of a row: q.row(t).segment(h * D, D), k.row(j).segment(g * D, D).
// window_start is exercise 1 (ref/attention.h): the window holds w+1 keys, the query's own included.
//
// Shapes: q: (T, H*D), k, v: (T, G*D) -> o: (T, H*D). scale is 1/sqrt(D) in the model.
//
// Hint: two loops (t, h), then two passes over the window: one for the scores and their maximum, one
// for the exponentials, their sum l and the weighted sum of v; divide by l at the end. Without the
// maximum the result is the same in exact arithmetic but exp overflows for large scores. (The project
// writes the inner part once, as ref::attend_row, for the decode step too; write your own here.)
// On failure: "got 0" everywhere: o was never written; wrong only where the window is cut: its bounds (the
//   last key is t, included); wrong only for some heads: g = h / r; a float-only failure: the row maximum.
template <class Real>
Mat<Real> swa_forward(const Mat<Real>& q, const Mat<Real>& k, const Mat<Real>& v, int H, int G, int w, Real scale) {
  detail::check_attention_shapes("swa_forward", q.rows(), q.cols(), q.rows(), k.cols(), v.rows(),
                                 v.cols(), H, G);
  expect_shape("k", k, q.rows(), k.cols());
  const long T = q.rows(), D = q.cols() / H;
  const int r = H / G;  // query heads per kv head: head h reads kv head g = h / r
  Mat<Real> o = Mat<Real>::Zero(T, q.cols());
  // TODO(exercise 2): fill o row by row, head by head (see above).
  (void)D;
  (void)r;
  (void)w;
  (void)scale;
  return o;
}
