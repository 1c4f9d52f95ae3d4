// Exercise 1 of 8: the window of sliding-window attention (SWA).
// Paper §2.1; docs/spec.md §0 (the window convention) and §2.2. Replaces ref::window_start (ref/attention.h).
// Run it: make exercise E=window_start        (checks: bin/tests/test_rope_swa, the "swa*" cases)
//
// The convention: w is the number of keys to the LEFT of the query. SWA at query t reads the keys
//     [max(0, t-w), t]              w+1 keys, the query's own included (fewer near the start),
// and w < 0 means "no window": global causal attention over [0, t]. The RLA branch reads exactly the
// keys j <= t-w-1 that the window leaves out. The mask for T = 12, w = 3 (S = SWA, R = RLA):
//
//       j:  0  1  2  3  4  5  6  7  8  9 10 11
//   t =  3:  S  S  S  S  .  .  .  .  .  .  .  .
//   t =  4:  R  S  S  S  S  .  .  .  .  .  .  .
//   t = 11:  R  R  R  R  R  R  R  R  S  S  S  S        (bin/rattn-show --T 12 --w 3 prints all of it)
//
// window_start(t, w) is the FIRST key of the window of query t; the last one is always t.
// ref::swa_forward loops j = window_start(t, w) .. t, and so do the decode step and the tests.
//
// Hint: three cases: w < 0; t - w below 0 (the start of the sequence); the general case. The types
// are long for positions and int for w: mind std::max of a long and an int.
// On failure: window_start(t, 2) for t = 0..5 must read 0 0 0 1 2 3, and window_start(t, -1) is 0. A crash
//   (an Eigen index assertion) means a negative start: the max(0, ...) is missing.
// t: query position (0-based), w: keys to the left (-1: global) -> the first key j of the window
inline long window_start(long t, int w) {
  // TODO(exercise 1): return the first key of the window of query t (see above).
  (void)t;
  (void)w;
  return 0;
}
