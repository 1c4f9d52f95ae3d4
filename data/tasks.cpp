// data/tasks.cpp: the recall, passkey and text data (see tasks.h).
#include "data/tasks.h"

#include "io/files.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace data {

void Batch::resize(int B_, int T_) {
  B = B_;
  T = T_;
  tokens.assign(size_t(B) * T, kFiller);
  targets.assign(size_t(B) * T, -1);
  dist.assign(size_t(B) * T, -1);
}
std::vector<int> Batch::seq_tokens(int b) const {
  return std::vector<int>(tokens.begin() + long(b) * T, tokens.begin() + long(b + 1) * T);
}
std::vector<int> Batch::seq_targets(int b) const {
  return std::vector<int>(targets.begin() + long(b) * T, targets.begin() + long(b + 1) * T);
}

void Task::eval_set(int n, uint64_t seed, Batch& out) const {
  std::mt19937_64 rng(seed);
  sample(rng, n, out);
}

// ---- recall ----------------------------------------------------------------------------------

RecallTask::RecallTask(int T, int pairs, int w, double in_window_frac, int far_beyond, RecallOptions opt)
    : T_(T), pairs_(pairs), w_(w), far_beyond_(far_beyond), opt_(opt) {
  if (opt.distractors < 0)
    throw std::invalid_argument("recall: distractors must be >= 0, got " + std::to_string(opt.distractors));
  if (pairs < 1 || pairs > kRecallAlphabet)
    throw std::invalid_argument("recall: pairs must be in [1, " + std::to_string(kRecallAlphabet) + "]");
  if (T < 4 * pairs)
    throw std::invalid_argument("recall: T = " + std::to_string(T) + " is shorter than 4 * pairs");
  if (far_beyond != 0 && far_beyond <= w)
    throw std::invalid_argument("recall: far_beyond = " + std::to_string(far_beyond) +
                                " must be 0 (off) or larger than the window w = " + std::to_string(w));
  // Split the possible gaps into "near" (at least half the queries within w) and "far", and draw
  // near gaps with the probability p that makes the expected in-window fraction in_window_frac:
  //   p * mean_near f + (1 - p) * mean_far f = in_window_frac,  clamped to [0, kMaxNear].
  // The cap keeps a quarter of the sequences far, so long distances occur at every w: when w is
  // below the key-value block (w < 2 * pairs) no gap puts half the queries within w, and without
  // it every sequence would get gap 0 (no key farther back than 4 * pairs).
  std::vector<int>& far = far_gaps_;
  double f_near = 0, f_far = 0;
  for (int g = 0; g <= max_gap(); ++g) {
    if (in_skipped_band(g)) continue;
    double f = in_window_fraction(g);
    if (f >= 0.5) {
      near_gaps_.push_back(g);
      f_near += f;
    } else {
      far.push_back(g);
      f_far += f;
    }
  }
  if (far_beyond_ != 0 && (near_gaps_.empty() || far.empty()))
    throw std::invalid_argument(
        "recall: with far_beyond = " + std::to_string(far_beyond_) + " no gap puts " +
        (near_gaps_.empty() ? "every query within w = " + std::to_string(w_) + " (needs w >= 4 * pairs - 2 = " +
                                  std::to_string(4 * pairs_ - 2) + ")"
                            : "every key farther than " + std::to_string(far_beyond_) + " at T = " +
                                  std::to_string(T_) + " (needs T > far_beyond + 4 * pairs - 2)"));
  if (near_gaps_.empty()) {  // w too small for half the queries: use the shortest gap as "near"
    near_gaps_.push_back(0);
    f_near = in_window_fraction(0);
    far.erase(far.begin());
    f_far -= f_near;
  }
  f_near /= double(near_gaps_.size());
  f_far = far.empty() ? 0.0 : f_far / double(far.size());
  if (far.empty()) p_near_ = 1.0;
  else if (f_near - f_far < 1e-12) p_near_ = 0.0;
  else p_near_ = std::clamp((in_window_frac - f_far) / (f_near - f_far), 0.0, kMaxNear);
  expected_in_window_ = p_near_ * f_near + (1.0 - p_near_) * f_far;
}

// Query i (0-based, in query order) asks for pair j; its key is at 2j and the query at
// 2n + gap + 2i, so d = 2n + gap + 2(i - j). The query order is a uniform random permutation, so
// every (i, j) is equally likely: count the pairs with d <= w.
double RecallTask::in_window_fraction(int gap) const {
  const int n = pairs_;
  long in = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) in += (2 * n + gap + 2 * (i - j) <= w_);
  return double(in) / double(n * n);
}

bool RecallTask::in_skipped_band(int gap) const {
  if (far_beyond_ == 0) return false;
  const int n = pairs_;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      const int d = 2 * n + gap + 2 * (i - j);
      if (d > w_ && d <= far_beyond_) return true;
    }
  return false;
}

int RecallTask::gap_for(std::mt19937_64& rng) const {
  const bool near = p_near_ >= 1.0 || double(rng() >> 11) * 0x1.0p-53 < p_near_;
  if (near) return near_gaps_[size_t(rand_below(rng, int(near_gaps_.size())))];
  return far_gaps_[size_t(rand_below(rng, int(far_gaps_.size())))];
}

int RecallTask::filler(std::mt19937_64& rng) const {
  return opt_.random_filler ? kRandomFillerBase + rand_below(rng, kRandomFillerAlphabet) : kFiller;
}

void RecallTask::make(std::mt19937_64& rng, int lead, int gap, int* tok, int* tgt, int* dst) const {
  const int n = pairs_;
  if (lead < 0 || gap < -1 || lead + 4 * n + std::max(gap, 0) > T_)
    throw std::invalid_argument("recall: lead " + std::to_string(lead) + " + 4 * pairs " + std::to_string(4 * n) +
                                " + gap " + std::to_string(gap) + " does not fit in T = " + std::to_string(T_));
  for (int t = 0; t < T_; ++t) {  // kFiller marks the filler positions until the last loop below
    tok[t] = kFiller;
    tgt[t] = -1;
    dst[t] = -1;
  }
  // n distinct keys (partial Fisher-Yates), values with repetition.
  std::vector<int> alphabet(kRecallAlphabet), order(static_cast<size_t>(n)), key(order.size()), value(order.size());
  std::iota(alphabet.begin(), alphabet.end(), 0);
  for (int j = 0; j < n; ++j)
    std::swap(alphabet[size_t(j)], alphabet[size_t(j + rand_below(rng, kRecallAlphabet - j))]);
  for (int j = 0; j < n; ++j) {
    key[size_t(j)] = kRecallKeyBase + alphabet[size_t(j)];
    value[size_t(j)] = kRecallValueBase + rand_below(rng, kRecallAlphabet);
  }
  if (gap < 0) {
    gap = gap_for(rng);
    // Pairs anywhere: the filler the layout leaves over is split at random between a lead and the tail.
    if (opt_.pairs_anywhere) lead = rand_below(rng, T_ - 4 * n - gap + 1);
  }
  for (int j = 0; j < n; ++j) {
    tok[lead + 2 * j] = key[size_t(j)];
    tok[lead + 2 * j + 1] = value[size_t(j)];
  }
  std::iota(order.begin(), order.end(), 0);
  for (int i = n - 1; i > 0; --i) std::swap(order[size_t(i)], order[size_t(rand_below(rng, i + 1))]);
  const int g0 = lead + 2 * n, qs = g0 + gap;  // the gap is [g0, qs), the first query at qs
  for (int i = 0; i < n; ++i) {
    const int j = order[size_t(i)], t = qs + 2 * i;
    tok[t] = key[size_t(j)];
    tok[t + 1] = value[size_t(j)];
    tgt[t] = value[size_t(j)];     // predict the value right after seeing the query key
    dst[t] = t - (lead + 2 * j);   // key-to-query distance
  }
  // Distractors: the gap is cut into gap / 2 slots of two bytes; min(distractors, gap / 2) distinct
  // slots, drawn at random, start with a key of this sequence (drawn at random, repeats allowed) and
  // keep their second byte filler, so a distractor key is never followed by a value.
  const int slots = gap / 2, k = std::min(opt_.distractors, slots);
  if (k > 0) {
    std::vector<int> slot(static_cast<size_t>(slots));
    std::iota(slot.begin(), slot.end(), 0);
    for (int s = 0; s < k; ++s) {
      std::swap(slot[size_t(s)], slot[size_t(s + rand_below(rng, slots - s))]);
      tok[g0 + 2 * slot[size_t(s)]] = key[size_t(rand_below(rng, n))];
    }
  }
  if (opt_.random_filler)
    for (int t = 0; t < T_; ++t)
      if (tok[t] == kFiller) tok[t] = filler(rng);
}

void RecallTask::sample(std::mt19937_64& rng, int B, Batch& out) const {
  out.resize(B, T_);
  for (int b = 0; b < B; ++b)
    make(rng, 0, -1, out.tokens.data() + long(b) * T_, out.targets.data() + long(b) * T_,
         out.dist.data() + long(b) * T_);
}

// ---- passkey ---------------------------------------------------------------------------------

namespace {
const std::string kFillerText =
    "the grass is green. the sky is blue. the sun is warm. here we go. there and back again. ";
}

PasskeyTask::PasskeyTask(int T, int key_len) : T_(T), key_len_(key_len) {
  if (max_hide() < 2)
    throw std::invalid_argument("passkey: T = " + std::to_string(T) + " too short for a key of " +
                                std::to_string(key_len) + " letters");
}

void PasskeyTask::make(std::mt19937_64& rng, int hide, int* tok, int* tgt, int* dst) const {
  const int L = key_len_, offset = rand_below(rng, int(kFillerText.size()));
  for (int t = 0; t < T_; ++t) {
    tok[t] = (unsigned char)kFillerText[size_t(t + offset) % kFillerText.size()];
    tgt[t] = -1;
    dst[t] = -1;
  }
  std::string key(size_t(L), 'a');
  for (char& ch : key) ch = char('a' + rand_below(rng, 26));
  const int ask = T_ - L - 1;  // the question: '#' then the key, ending the sequence
  tok[hide] = tok[ask] = '#';
  for (int i = 0; i < L; ++i) {
    tok[hide + 1 + i] = tok[ask + 1 + i] = key[size_t(i)];
    tgt[ask + i] = key[size_t(i)];  // predict letter i at the position before it
    dst[ask + i] = ask - hide;
  }
}

void PasskeyTask::sample(std::mt19937_64& rng, int B, Batch& out) const {
  out.resize(B, T_);
  for (int b = 0; b < B; ++b) {
    const int hide = rand_below(rng, max_hide() + 1);
    make(rng, hide, out.tokens.data() + long(b) * T_, out.targets.data() + long(b) * T_,
         out.dist.data() + long(b) * T_);
  }
}

// ---- text ------------------------------------------------------------------------------------

TextTask::TextTask(const std::string& path, int T) : T_(T) {
  // A regular file of at most kMaxTextBytes, refused before reading otherwise (io::FileRefused).
  const std::string text = io::read_bounded(path, kMaxTextBytes, "text file '" + path + "'", "a text file");
  bytes_.assign(text.begin(), text.end());
  if (bytes_.empty()) throw std::runtime_error("text file '" + path + "' is empty");
  split_ = bytes_.size() * 9 / 10;
  const size_t need = size_t(T) + 1;
  if (split_ < need || bytes_.size() - split_ < need)
    throw std::runtime_error("text file '" + path + "' has " + std::to_string(bytes_.size()) +
                             " bytes; the 90/10 split needs at least " + std::to_string(need) +
                             " bytes of validation text (--seq-len " + std::to_string(T) + " + 1), i.e. about " +
                             std::to_string(need * 10) + " bytes in all");
}

void TextTask::window(size_t start, int* tok, int* tgt, int* dst) const {
  for (int t = 0; t < T_; ++t) {
    tok[t] = bytes_[start + size_t(t)];
    tgt[t] = bytes_[start + size_t(t) + 1];
    dst[t] = -1;
  }
}

void TextTask::sample(std::mt19937_64& rng, int B, Batch& out) const {
  out.resize(B, T_);
  for (int b = 0; b < B; ++b) {
    const size_t start = rand_below(rng, split_ - size_t(T_));  // window [start, start+T] in train
    window(start, out.tokens.data() + long(b) * T_, out.targets.data() + long(b) * T_,
           out.dist.data() + long(b) * T_);
  }
}

void TextTask::eval_set(int n, uint64_t, Batch& out) const {
  out.resize(n, T_);
  const size_t span = bytes_.size() - split_ - size_t(T_) - 1;  // last valid start offset in val
  for (int b = 0; b < n; ++b) {
    const size_t start = split_ + (n > 1 ? span * size_t(b) / size_t(n - 1) : 0);
    window(start, out.tokens.data() + long(b) * T_, out.targets.data() + long(b) * T_,
           out.dist.data() + long(b) * T_);
  }
}

}  // namespace data
