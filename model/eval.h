// model/eval.h: loss and accuracy on a fixed set of sequences, with the accuracy split by where the
// key-to-query distance d lies relative to the reach of a stack of L local layers of window w:
//
//   within one layer's reach       d <= w + 1   a first layer binds each value to its key (one
//                                               position back); one window then reads the value,
//                                               which sits at d - 1 <= w from the query
//   within the stack's relay reach w + 1 < d <= L * w   chains of windows, each w further back
//   beyond the stack's reach       d > L * w    no chain of windows reaches the key: only a summary
//                                               of the past (the RLA state, a global layer) can
//
// (With L * w < w + 2, e.g. one local layer, the relay bucket is empty. w < 0 is no window: every
// key is within one layer's reach.) The buckets describe the data, not the model: a stack with a
// global layer reaches every key, and its buckets still say how far back the key was.
//
// A position is scored when its target is >= 0; it is correct when the argmax of its logits is
// the target (ties go to the lower byte). evaluate() runs the full forward or, with use_decode,
// the constant-memory decode (ref/decode.h) token by token over each sequence.
#pragma once
#include <algorithm>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "data/tasks.h"
#include "model/config.h"
#include "model/model.h"

namespace model {

struct DistanceBucket {
  std::string key;    // short name for machine-readable output (near, relay, beyond, beyondT)
  std::string label;  // what it means, for people
  long lo, hi;        // d in [lo, hi]; lo > hi: empty by construction
  long correct = 0, total = 0;
  double accuracy() const { return total ? double(correct) / double(total) : 0.0; }
};

enum class Reach { one_layer = 0, relay = 1, beyond = 2 };

// The reach bucket of a key at distance d >= 1 for L local layers of window w (see the top).
inline Reach reach_of(long d, int w, int L) {
  if (w < 0 || d <= long(w) + 1) return Reach::one_layer;
  if (d <= long(L) * w) return Reach::relay;
  return Reach::beyond;
}

struct EvalResult {
  double loss_sum = 0;  // sum of per-position cross-entropy (nats)
  long scored = 0, correct = 0;
  int w = 0, layers = 1;  // the reach the buckets refer to: L = layers local layers of window w
  // buckets[0..2]: the reach buckets, in the order of Reach; then any others a caller adds (they
  // may overlap the reach buckets: a position counts in every bucket whose range holds its d).
  std::vector<DistanceBucket> buckets;
  double loss() const { return scored ? loss_sum / double(scored) : 0.0; }
  double accuracy() const { return scored ? double(correct) / double(scored) : 0.0; }
  const DistanceBucket& reach(Reach r) const { return buckets[size_t(r)]; }
};

// Empty result with the three reach buckets of L local layers of window w.
inline EvalResult empty_eval(int w, int L) {
  EvalResult r;
  r.w = w;
  r.layers = L;
  const long big = std::numeric_limits<long>::max();
  if (w < 0) {
    r.buckets.push_back({"near", "within one layer's reach (no window)", 1, big});
    r.buckets.push_back({"relay", "within the stack's relay reach", 1, 0});
    r.buckets.push_back({"beyond", "beyond the stack's reach", 1, 0});
    return r;
  }
  const long one = long(w) + 1, relay = std::max(one, long(L) * w);
  r.buckets.push_back({"near", "within one layer's reach, d <= w+1 = " + std::to_string(one), 1, one});
  r.buckets.push_back({"relay", "within the stack's relay reach, " + std::to_string(one) + " < d <= " +
                                    std::to_string(L) + "w = " + std::to_string(relay),
                       one + 1, relay});
  r.buckets.push_back({"beyond", "beyond the stack's reach, d > " + std::to_string(relay), relay + 1, big});
  return r;
}

// Score one sequence: logits (T, V), targets/dist (T). loss_mean: its mean cross-entropy.
template <class S>
void score_sequence(const Mat<S>& logits, const int* targets, const int* dist, double loss_mean,
                    EvalResult& r) {
  long n = 0;
  for (long t = 0; t < logits.rows(); ++t) {
    if (targets[t] < 0) continue;
    ++n;
    long best = 0;
    for (long c = 1; c < logits.cols(); ++c)
      if (logits(t, c) > logits(t, best)) best = c;
    const bool ok = best == targets[t];
    r.correct += ok;
    if (dist[t] < 0) continue;  // text: no distance
    for (DistanceBucket& b : r.buckets)
      if (dist[t] >= b.lo && dist[t] <= b.hi) {
        b.correct += ok;
        b.total += 1;
      }
  }
  r.scored += n;
  r.loss_sum += loss_mean * double(n);
}

inline void merge_into(EvalResult& into, const EvalResult& from) {
  into.loss_sum += from.loss_sum;
  into.scored += from.scored;
  into.correct += from.correct;
  for (size_t i = 0; i < into.buckets.size(); ++i) {
    into.buckets[i].correct += from.buckets[i].correct;
    into.buckets[i].total += from.buckets[i].total;
  }
}

// The local layers of a stack: the L of its relay reach L * w.
inline int local_layers(const ModelConfig& m) {
  int n = 0;
  for (int l = 0; l < m.n_layers; ++l) n += !m.is_global(l);
  return n;
}

// The reach buckets of a run's data: its data window (data_window(c)) and its local layers.
inline EvalResult empty_eval(const Config& c) { return empty_eval(data_window(c), local_layers(c.model)); }

// Evaluate every sequence of batch (in parallel; merged in sequence order, so deterministic), with
// the buckets of `empty` (empty_eval(w, L) and any added).
template <class S>
EvalResult evaluate(const Model<S>& model, const ModelParams<S>& p, const data::Batch& batch, bool use_decode,
                    const EvalResult& empty) {
  const int B = batch.B, T = batch.T;
  std::vector<EvalResult> per(size_t(B), empty);
  std::exception_ptr error = nullptr;
#pragma omp parallel for schedule(dynamic, 1)
  for (int b = 0; b < B; ++b) {
    try {
      const std::vector<int> tokens = batch.seq_tokens(b), targets = batch.seq_targets(b);
      Mat<S> logits;
      if (use_decode) {
        DecodeState<S> st = model.decode_init();
        logits = model.prefill(p, st, tokens);
      } else {
        logits = model.forward(p, tokens);
      }
      const double loss = double(model.backend().cross_entropy(logits, targets, nullptr));
      score_sequence(logits, targets.data(), batch.dist.data() + long(b) * T, loss, per[size_t(b)]);
    } catch (...) {
#pragma omp critical
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  EvalResult r = empty;
  for (const EvalResult& e : per) merge_into(r, e);
  return r;
}

// The closing table: accuracy per reach bucket, then over all queries, next to chance.
inline std::string bucket_table(const EvalResult& r, double chance) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line,
                "accuracy by key-to-query distance d, for %d local layer%s of window w = %d (chance %.1f%%):\n",
                r.layers, r.layers == 1 ? "" : "s", r.w, 100 * chance);
  out += line;
  for (const DistanceBucket& b : r.buckets) {
    if (b.total == 0) continue;
    std::snprintf(line, sizeof line, "  %-52s %6.1f%%  (%ld / %ld)\n", b.label.c_str(), 100.0 * b.accuracy(),
                  b.correct, b.total);
    out += line;
  }
  std::snprintf(line, sizeof line, "  %-52s %6.1f%%  (%ld queries), loss %.4f\n", "all", 100 * r.accuracy(), r.scored,
                r.loss());
  out += line;
  return out;
}

}  // namespace model
