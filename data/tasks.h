// data/tasks.h: what the tiny model trains on. Everything is bytes (vocab 256) and everything is
// generated from a seed: the synthetic tasks need no files, and the same seed gives the same data.
//
//   RecallTask   distance-controlled multi-query associative recall (MQAR):
//                  k0 v0 k1 v1 ... k_{n-1} v_{n-1}  . . . gap . . .  k_p0 v_p0 k_p1 v_p1 ...  . . pad
//                the n key-value pairs, a filler gap, then the same keys in random order, each
//                followed by its value. Only the values are scored (the target at a query key is its
//                value), and each query knows its key-to-query distance d = t_query - t_key.
//                Gap lengths are mixed so that a chosen fraction of queries (default 40%) has d <= w,
//                with at least a quarter of the sequences drawing a gap that puts most queries past w.
//                With far_beyond = D > w, no gap that puts a key in (w, D] is drawn: every query is
//                either within w or farther than D (D = layers * w: past the reach of a stack of
//                SWA layers, whose receptive field grows by w per layer).
//                The harder regime (RecallOptions): the filler bytes drawn at random from their own
//                alphabet; distractors: keys of the sequence that recur in the gap, each followed
//                by a filler byte instead of a value, so that a key's latest occurrence before its
//                query need not be the one that holds its value, and a linear state that sums every
//                (key, next byte) binding holds wrong bindings for the very keys asked for; and the
//                pairs anywhere (after a filler lead of random length), so that a model cannot tie
//                the pairs to the start of the sequence, and a longer sequence with its queries at
//                the end is a layout it has seen.
//   PasskeyTask  a short random lowercase string hidden at a controlled depth in filler text:
//                  filler ... #abcde ... filler ... #abcde
//                the second copy (the question) ends the sequence and its letters are scored;
//                d = distance between the two '#' markers.
//   TextTask     --text FILE: a byte-level LM on the file's bytes, fixed split: the first 90% train,
//                the last 10% validation; every position is scored.
//
// A Batch holds B sequences of T tokens, row-major: entry b*T + t is position t of sequence b.
#pragma once
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

namespace data {

struct Batch {
  int B = 0, T = 0;
  std::vector<int> tokens;   // (B*T) input bytes
  std::vector<int> targets;  // (B*T) the byte to predict at this position; -1 = not scored
  std::vector<int> dist;     // (B*T) at scored positions of the synthetic tasks: distance from this
                             // position back to the key / hidden copy it must recall; -1 otherwise
  void resize(int B_, int T_);
  // Sequence b's tokens / targets as vectors (the model runs one sequence at a time).
  std::vector<int> seq_tokens(int b) const;
  std::vector<int> seq_targets(int b) const;
};

// The one random-integer helper, so the data do not depend on a standard library's distributions:
// uniform in [0, n) for n >= 1 (n is tiny next to 2^64, so modulo bias is negligible).
inline int rand_below(std::mt19937_64& rng, int n) { return int(rng() % uint64_t(n)); }
inline size_t rand_below(std::mt19937_64& rng, size_t n) { return size_t(rng() % uint64_t(n)); }

class Task {
 public:
  virtual ~Task() = default;
  virtual std::string name() const = 0;
  virtual int seq_len() const = 0;
  // Fill out with B training sequences drawn from rng.
  virtual void sample(std::mt19937_64& rng, int B, Batch& out) const = 0;
  // The fixed validation set of n sequences: the same for the same seed (the synthetic tasks draw
  // it from their generator with that seed; text takes windows of the validation split).
  virtual void eval_set(int n, uint64_t seed, Batch& out) const;
  // Accuracy of a model that guesses uniformly among the possible answers.
  virtual double chance() const = 0;
  virtual bool synthetic() const { return true; }
};

// Byte alphabets of the recall task: keys, values and the filler are disjoint. The constant filler
// is '.'; the random filler draws from the 64 bytes [0x20, 0x60), which hold '.' and no key or value.
constexpr int kRecallKeyBase = 0x80, kRecallValueBase = 0xC0, kRecallAlphabet = 64;
constexpr int kFiller = '.';
constexpr int kRandomFillerBase = 0x20, kRandomFillerAlphabet = 64;

// The recall data's regime. The default (constant filler, no distractors) is the easy one.
struct RecallOptions {
  bool random_filler = false;  // filler bytes uniform over [kRandomFillerBase, +kRandomFillerAlphabet)
  int distractors = 0;         // keys of the sequence that recur in the gap (as many as fit, see make())
  bool pairs_anywhere = false; // the pairs after a filler lead of random length, not at position 0
};

class RecallTask : public Task {
 public:
  // T: sequence length (>= 4 * pairs); pairs: key-value pairs; w: the model's window, used only to
  // mix gap lengths so that about in_window_frac of the queries have d <= w (see gap_for());
  // far_beyond: 0, or D > w: only gaps with no key-to-query distance in (w, D] (needs
  // w >= 4 * pairs - 2, so that one gap puts every query within w, and a gap with every key past D).
  RecallTask(int T, int pairs, int w, double in_window_frac, int far_beyond = 0, RecallOptions opt = {});
  std::string name() const override { return "recall"; }
  int seq_len() const override { return T_; }
  void sample(std::mt19937_64& rng, int B, Batch& out) const override;
  double chance() const override { return 1.0 / kRecallAlphabet; }
  // Fill one sequence of this task's T: `lead` filler bytes, the pairs, a filler gap of `gap` bytes
  // (with the distractors), the queries, filler to the end. gap = -1: drawn from the gap mixture (what
  // sample() does, lead 0), and with pairs_anywhere the lead too, uniform over what fits. Needs
  // lead >= 0, gap >= -1 and lead + 4 * pairs + gap <= T.
  void make(std::mt19937_64& rng, int lead, int gap, int* tokens, int* targets, int* dist) const;
  int pairs() const { return pairs_; }
  const RecallOptions& options() const { return opt_; }

  // Expected fraction of queries with d <= w for a sequence with this gap (queries in random order).
  double in_window_fraction(int gap) const;
  // Expected fraction of queries with d <= w over the gap mixture this task draws from.
  double expected_in_window() const { return expected_in_window_; }
  int max_gap() const { return T_ - 4 * pairs_; }
  int far_beyond() const { return far_beyond_; }

 private:
  static constexpr double kMaxNear = 0.75;  // most sequences drawn from the near gaps
  int gap_for(std::mt19937_64& rng) const;
  int filler(std::mt19937_64& rng) const;
  // Some key-to-query distance of a sequence with this gap lies in (w, far_beyond].
  bool in_skipped_band(int gap) const;
  int T_, pairs_, w_, far_beyond_;
  RecallOptions opt_;
  double p_near_ = 0;          // probability of drawing from the near gaps
  std::vector<int> near_gaps_; // gaps whose queries are mostly (>= half) in the window
  std::vector<int> far_gaps_;  // the other gaps
  double expected_in_window_ = 0;
};

class PasskeyTask : public Task {
 public:
  PasskeyTask(int T, int key_len);
  std::string name() const override { return "passkey"; }
  int seq_len() const override { return T_; }
  void sample(std::mt19937_64& rng, int B, Batch& out) const override;
  double chance() const override { return 1.0 / 26; }
  // Fill one sequence with the key hidden at position `hide` (0 <= hide <= max_hide()).
  void make(std::mt19937_64& rng, int hide, int* tokens, int* targets, int* dist) const;
  int max_hide() const { return T_ - 2 * (key_len_ + 1); }

 private:
  int T_, key_len_;
};

class TextTask : public Task {
 public:
  // Reads the whole file; throws std::runtime_error with a clear message when it is missing, not a
  // regular file, larger than kMaxTextBytes (io::FileRefused, before reading), empty, or too short for
  // one window of T+1 bytes in each split.
  // The largest text file read (256 MiB; a tiny model's corpus is a few MiB).
  static constexpr uint64_t kMaxTextBytes = uint64_t(256) << 20;
  TextTask(const std::string& path, int T);
  std::string name() const override { return "text"; }
  int seq_len() const override { return T_; }
  void sample(std::mt19937_64& rng, int B, Batch& out) const override;  // random training windows
  void eval_set(int n, uint64_t seed, Batch& out) const override;        // evenly spaced val windows
  double chance() const override { return 1.0 / 256; }
  bool synthetic() const override { return false; }
  size_t train_bytes() const { return split_; }
  size_t val_bytes() const { return bytes_.size() - split_; }
  const std::vector<unsigned char>& bytes() const { return bytes_; }  // the whole file, as read

 private:
  void window(size_t start, int* tokens, int* targets, int* dist) const;
  std::vector<unsigned char> bytes_;
  size_t split_;  // bytes_[0, split_) train, [split_, end) validation
  int T_;
};

}  // namespace data
