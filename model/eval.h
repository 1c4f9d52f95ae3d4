// model/eval.h: loss and accuracy on a fixed set of sequences, with the accuracy split by the
// key-to-query distance d relative to the window w (in-window d <= w vs out-of-window d > w).
//
// A position is scored when its target is >= 0; it is correct when the argmax of its logits is
// the target (ties go to the lower byte). evaluate() runs the full forward or, with use_decode,
// the constant-memory decode (ref/decode.h) token by token over each sequence.
#pragma once
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "data/tasks.h"
#include "model/model.h"

namespace model {

struct DistanceBucket {
  std::string label;
  long lo, hi;  // d in [lo, hi]
  long correct = 0, total = 0;
};

struct EvalResult {
  double loss_sum = 0;  // sum of per-position cross-entropy (nats)
  long scored = 0, correct = 0;
  long in_correct = 0, in_total = 0, out_correct = 0, out_total = 0;  // d <= w vs d > w
  std::vector<DistanceBucket> buckets;
  // Beyond the reach of a stack of local layers: d > reach = (local layers) x w, a key no chain of
  // windows can relay to the query. reach < 0: the stack has a global layer, every key is in reach.
  long reach = -1, beyond_reach_correct = 0, beyond_reach_total = 0;
  double loss() const { return scored ? loss_sum / double(scored) : 0.0; }
  double accuracy() const { return scored ? double(correct) / double(scored) : 0.0; }
  double in_accuracy() const { return in_total ? double(in_correct) / double(in_total) : 0.0; }
  double out_accuracy() const { return out_total ? double(out_correct) / double(out_total) : 0.0; }
};

// Empty result with the distance buckets of window w: [1, w], (w, 2w], (2w, 4w], > 4w.
inline EvalResult empty_eval(int w) {
  EvalResult r;
  const long big = std::numeric_limits<long>::max();
  auto add = [&](const std::string& label, long lo, long hi) { r.buckets.push_back({label, lo, hi}); };
  if (w >= 1) {
    add("d <= w", 1, w);
    add("w < d <= 2w", long(w) + 1, 2L * w);
    add("2w < d <= 4w", 2L * w + 1, 4L * w);
    add("d > 4w", 4L * w + 1, big);
  } else {
    add("d > w", 1, big);
  }
  return r;
}

// Score one sequence: logits (T, V), targets/dist (T). loss_mean: its mean cross-entropy.
template <class S>
void score_sequence(const Mat<S>& logits, const int* targets, const int* dist, int w, double loss_mean,
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
    (dist[t] <= w ? r.in_correct : r.out_correct) += ok;
    (dist[t] <= w ? r.in_total : r.out_total) += 1;
    if (r.reach >= 0 && dist[t] > r.reach) {
      r.beyond_reach_correct += ok;
      r.beyond_reach_total += 1;
    }
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
  into.in_correct += from.in_correct;
  into.in_total += from.in_total;
  into.out_correct += from.out_correct;
  into.out_total += from.out_total;
  into.beyond_reach_correct += from.beyond_reach_correct;
  into.beyond_reach_total += from.beyond_reach_total;
  for (size_t i = 0; i < into.buckets.size(); ++i) {
    into.buckets[i].correct += from.buckets[i].correct;
    into.buckets[i].total += from.buckets[i].total;
  }
}

// The reach of a stack of windows: L local layers of window w carry a key's information at most
// L x w positions forward (each layer looks w back), whatever the local kind; -1 when a global layer
// sees every key.
inline long stack_reach(const ModelConfig& m) {
  for (int l = 0; l < m.n_layers; ++l)
    if (m.is_global(l)) return -1;
  return long(m.n_layers) * m.window;
}

// Evaluate every sequence of batch (in parallel; merged in sequence order, so deterministic).
template <class S>
EvalResult evaluate(const Model<S>& model, const ModelParams<S>& p, const data::Batch& batch, bool use_decode) {
  const int B = batch.B, T = batch.T, w = model.config().window;
  EvalResult empty = empty_eval(w);
  empty.reach = stack_reach(model.config());
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
      score_sequence(logits, targets.data(), batch.dist.data() + long(b) * T, w, loss, per[size_t(b)]);
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

// The closing table: accuracy per distance bucket, in/out of window, chance.
inline std::string bucket_table(const EvalResult& r, int w, double chance) {
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "accuracy by key-to-query distance d (window w = %d; chance %.1f%%):\n", w,
                100 * chance);
  out += line;
  for (const DistanceBucket& b : r.buckets) {
    if (b.total == 0) continue;
    const std::string range = b.hi == std::numeric_limits<long>::max()
                                  ? "d >= " + std::to_string(b.lo)
                                  : "d in [" + std::to_string(b.lo) + ", " + std::to_string(b.hi) + "]";
    std::snprintf(line, sizeof line, "  %-14s %-18s %6.1f%%  (%ld / %ld)\n", b.label.c_str(), range.c_str(),
                  100.0 * double(b.correct) / double(b.total), b.correct, b.total);
    out += line;
  }
  std::snprintf(line, sizeof line, "  in window  (d <= w): %6.1f%%  (%ld queries)\n", 100 * r.in_accuracy(), r.in_total);
  out += line;
  std::snprintf(line, sizeof line, "  out of window (d > w): %6.1f%%  (%ld queries)\n", 100 * r.out_accuracy(),
                r.out_total);
  out += line;
  std::snprintf(line, sizeof line, "  all: %.1f%%  (%ld queries), loss %.4f\n", 100 * r.accuracy(), r.scored, r.loss());
  out += line;
  return out;
}

}  // namespace model
