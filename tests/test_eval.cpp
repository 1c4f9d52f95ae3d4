// The reach buckets of model/eval.h: a key at distance d is within one layer's reach when d <= w+1,
// within the relay reach of L local layers when d <= L*w, beyond it otherwise; the buckets' ranges
// agree with reach_of() at every distance, each distance falls in exactly one of them, and scoring
// counts each query in its bucket.
#include <doctest/doctest.h>

#include <limits>

#include "model/backend_cpu.h"
#include "model/eval.h"

using namespace model;

TEST_CASE("reach_of at the edges: w+1, w+2, L*w, L*w+1") {
  for (auto [w, L] : {std::pair{16, 2}, std::pair{8, 3}, std::pair{5, 4}}) {
    CAPTURE(w);
    CAPTURE(L);
    CHECK(reach_of(1, w, L) == Reach::one_layer);
    CHECK(reach_of(w, w, L) == Reach::one_layer);
    CHECK(reach_of(w + 1, w, L) == Reach::one_layer);  // a first layer binds, one window reads d - 1 = w
    CHECK(reach_of(w + 2, w, L) == Reach::relay);
    CHECK(reach_of(long(L) * w, w, L) == Reach::relay);
    CHECK(reach_of(long(L) * w + 1, w, L) == Reach::beyond);
    CHECK(reach_of(1000000, w, L) == Reach::beyond);
  }
  // One local layer (L*w < w+2): no relay; beyond starts at w+2. No window (w < 0): every key in reach.
  CHECK(reach_of(9, 8, 1) == Reach::one_layer);
  CHECK(reach_of(10, 8, 1) == Reach::beyond);
  CHECK(reach_of(1000, -1, 2) == Reach::one_layer);
}

TEST_CASE("empty_eval: the three buckets partition d >= 1 exactly as reach_of does") {
  for (auto [w, L] : {std::pair{16, 2}, std::pair{8, 1}, std::pair{0, 2}, std::pair{1, 2}, std::pair{-1, 2},
                      std::pair{7, 5}}) {
    CAPTURE(w);
    CAPTURE(L);
    const EvalResult r = empty_eval(w, L);
    REQUIRE(r.buckets.size() == 3);
    CHECK(r.buckets[0].key == "near");
    CHECK(r.buckets[1].key == "relay");
    CHECK(r.buckets[2].key == "beyond");
    for (long d = 1; d <= 300; ++d) {
      CAPTURE(d);
      int in = 0;
      for (const DistanceBucket& b : r.buckets) in += d >= b.lo && d <= b.hi;
      CHECK(in == 1);
      const DistanceBucket& mine = r.reach(reach_of(d, w, L));
      CHECK(d >= mine.lo);
      CHECK(d <= mine.hi);
    }
  }
}

TEST_CASE("score_sequence counts each query in its reach bucket, right or wrong") {
  // w = 4, L = 2: near d <= 5, relay 6..8, beyond >= 9. Six scored positions at the edges, V = 3.
  const int dist[] = {5, 6, 8, 9, 1, 50, -1};
  const int target[] = {1, 2, 0, 1, 2, 0, -1};
  const int guess[] = {1, 0, 0, 1, 1, 0, 2};  // argmax of each row: right, wrong, right, right, wrong, right
  Mat<float> logits = Mat<float>::Zero(7, 3);
  for (int t = 0; t < 7; ++t) logits(t, guess[t]) = 1.0f;
  EvalResult r = empty_eval(4, 2);
  score_sequence(logits, target, dist, 0.5, r);
  CHECK(r.scored == 6);
  CHECK(r.correct == 4);
  CHECK(r.reach(Reach::one_layer).total == 2);  // d = 5, 1
  CHECK(r.reach(Reach::one_layer).correct == 1);
  CHECK(r.reach(Reach::relay).total == 2);      // d = 6, 8
  CHECK(r.reach(Reach::relay).correct == 1);
  CHECK(r.reach(Reach::beyond).total == 2);     // d = 9, 50
  CHECK(r.reach(Reach::beyond).correct == 2);
  // A bucket added after the reach buckets (beyond a training length of 8) overlaps them.
  EvalResult s = empty_eval(4, 2);
  s.buckets.push_back({"beyondT", "beyond T", 9, std::numeric_limits<long>::max()});
  score_sequence(logits, target, dist, 0.5, s);
  CHECK(s.buckets[3].total == 2);
  CHECK(s.reach(Reach::beyond).total == 2);
  EvalResult m = empty_eval(4, 2);
  merge_into(m, r);
  merge_into(m, r);
  CHECK(m.reach(Reach::relay).total == 4);
  CHECK(m.correct == 8);
}
