// The data (data/tasks.h): every recall query's distance is what it claims and its key comes first;
// the gap mixture puts 30-50% of the queries within w; the harder regime's alphabets are disjoint, its
// filler random and its distractor keys where it says; the training, validation and test streams share
// no sequence; passkey questions point at the hidden copy; --data-window sets the window of the gap mix
// apart from the model's; the same seed gives the same data; the text split is 90/10 and a bad file is
// a clear error.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <set>
#include <fstream>
#include <string>
#include <tuple>
#include <utility>

#include "data/tasks.h"
#include "model/config.h"
#include "model/trainer.h"

using namespace data;

TEST_CASE("recall: each scored query's key sits d positions earlier, followed by the value asked for") {
  RecallTask task(128, 8, 16, 0.4);
  std::mt19937_64 rng(1);
  Batch b;
  task.sample(rng, 64, b);
  REQUIRE(b.B == 64);
  REQUIRE(b.T == 128);
  for (int s = 0; s < b.B; ++s) {
    const int* tok = b.tokens.data() + s * b.T;
    const int* tgt = b.targets.data() + s * b.T;
    const int* dst = b.dist.data() + s * b.T;
    int scored = 0;
    for (int t = 0; t < b.T; ++t) {
      if (tgt[t] < 0) {
        CHECK(dst[t] == -1);
        continue;
      }
      ++scored;
      const int d = dst[t];
      REQUIRE(d > 0);
      REQUIRE(t - d >= 0);  // the key precedes the query
      CHECK(tok[t] >= kRecallKeyBase);
      CHECK(tok[t] < kRecallKeyBase + kRecallAlphabet);
      CHECK(tok[t - d] == tok[t]);           // the same key, d positions back
      CHECK(tok[t - d + 1] == tgt[t]);       // followed there by the value to recall
      CHECK(tok[t + 1] == tgt[t]);           // and the value follows the query too (teacher forcing)
      CHECK(tgt[t] >= kRecallValueBase);
      // the key occurs nowhere else between its pair and the query
      for (int j = t - d + 1; j < t; ++j) CHECK(tok[j] != tok[t]);
    }
    CHECK(scored == 8);
  }
}

TEST_CASE("recall: the gap mixture puts 30-50% of the queries within w, and spans distances past 4w") {
  for (auto [w, pairs] : {std::pair{16, 8}, std::pair{32, 8}, std::pair{8, 4}, std::pair{8, 8}}) {
    CAPTURE(w);
    CAPTURE(pairs);
    RecallTask task(128, pairs, w, 0.4);
    std::mt19937_64 rng(7);
    Batch b;
    task.sample(rng, 2000, b);
    long in = 0, total = 0, far = 0;
    for (size_t i = 0; i < b.targets.size(); ++i) {
      if (b.targets[i] < 0) continue;
      ++total;
      in += b.dist[i] <= w;
      far += b.dist[i] > 4 * w;
    }
    const double frac = double(in) / double(total);
    CHECK(std::abs(frac - task.expected_in_window()) < 0.03);  // the analytic expectation holds
    if (w >= 2 * pairs) {
      CHECK(frac >= 0.30);
      CHECK(frac <= 0.50);
      if (4 * w < 100) CHECK(far > 0);  // distances reach T - 2 = 126
    } else {
      // w < 2 * pairs: the key-value block alone is longer than the window, so even with no gap
      // only a few queries can reach their key (for 8 pairs, w = 8: 10 of 64 pairs (i, j)); gap 0
      // is drawn for at most 3/4 of the sequences, so keys far beyond the window still occur.
      CHECK(task.expected_in_window() < 10.0 / 64);
      CHECK(task.expected_in_window() > 0.75 * 10.0 / 64 - 1e-12);
      CHECK(far > 0);
    }
  }
}

TEST_CASE("recall far_beyond: no key in (w, D], 40% of the queries within w, the rest past D") {
  // D = 2w: past the reach of two stacked SWA layers. w = 16, 4 pairs: only gaps 0..2 put every
  // query within w (d = gap + 2 .. gap + 14), and gaps >= 31 put every key past 32.
  for (auto [T, pairs, w, D] : {std::tuple{128, 4, 16, 32}, std::tuple{512, 4, 16, 32}, std::tuple{128, 2, 8, 24},
                                std::tuple{256, 8, 32, 64}}) {
    CAPTURE(T);
    CAPTURE(pairs);
    CAPTURE(w);
    RecallTask task(T, pairs, w, 0.4, D);
    CHECK(task.far_beyond() == D);
    std::mt19937_64 rng(11);
    Batch b;
    task.sample(rng, 2000, b);
    long in = 0, total = 0, band = 0, past = 0;
    for (size_t i = 0; i < b.targets.size(); ++i) {
      if (b.targets[i] < 0) continue;
      ++total;
      in += b.dist[i] <= w;
      band += b.dist[i] > w && b.dist[i] <= D;
      past += b.dist[i] > D;
    }
    CHECK(band == 0);
    CHECK(in + past == total);
    CHECK(std::abs(double(in) / double(total) - 0.4) < 0.03);
    CHECK(task.expected_in_window() == doctest::Approx(0.4));
  }
  // Without far_beyond the same task does put keys in (w, 2w]: the option is what removes them.
  RecallTask plain(128, 4, 16, 0.4);
  std::mt19937_64 rng(11);
  Batch b;
  plain.sample(rng, 2000, b);
  long band = 0;
  for (size_t i = 0; i < b.targets.size(); ++i) band += b.targets[i] >= 0 && b.dist[i] > 16 && b.dist[i] <= 32;
  CHECK(band > 0);
  // Refused: D <= w; a block of pairs longer than the window (8 pairs need w >= 30); no room past D.
  CHECK_THROWS_WITH_AS(RecallTask(128, 4, 16, 0.4, 16), doctest::Contains("larger than the window"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(RecallTask(128, 8, 16, 0.4, 32), doctest::Contains("needs w >= 4 * pairs - 2 = 30"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(RecallTask(64, 4, 16, 0.4, 60), doctest::Contains("farther than 60"), std::invalid_argument);
}

TEST_CASE("recall: in_window_fraction counts (query slot, pair) combinations exactly") {
  RecallTask task(64, 4, 10, 0.4);
  // n = 4, gap 0: d = 8 + 2(i - j) <= 10  <=>  i - j <= 1; the pairs with i - j >= 2 are
  // (2,0), (3,0), (3,1): 3 of 16 are out.
  CHECK(task.in_window_fraction(0) == doctest::Approx(13.0 / 16));
  // gap 2: d = 10 + 2(i - j) <= 10  <=>  i <= j: 10 of 16
  CHECK(task.in_window_fraction(2) == doctest::Approx(10.0 / 16));
}

TEST_CASE("same seed, same data; another seed, other data (every task)") {
  RecallTask recall(96, 6, 8, 0.4);
  PasskeyTask passkey(96, 5);
  for (const Task* task : {static_cast<const Task*>(&recall), static_cast<const Task*>(&passkey)}) {
    CAPTURE(task->name());
    Batch a, b, c;
    std::mt19937_64 r1(42), r2(42), r3(43);
    task->sample(r1, 8, a);
    task->sample(r2, 8, b);
    task->sample(r3, 8, c);
    CHECK(a.tokens == b.tokens);
    CHECK(a.targets == b.targets);
    CHECK(a.dist == b.dist);
    CHECK(a.tokens != c.tokens);
    Batch e1, e2;
    task->eval_set(5, 9, e1);
    task->eval_set(5, 9, e2);
    CHECK(e1.tokens == e2.tokens);
  }
}

TEST_CASE("recall --data-window: the gap mix follows the data window, not the model's window") {
  // A full-attention model (window 512 >= T) with --data-window 16 must see the very data of a
  // w = 16 model, and without it the data of w = 512 (almost every query in the window).
  model::Config w16, full_same_data, full_own_data;
  w16.model.window = 16;
  full_same_data.model.window = 512;
  full_same_data.train.data_window = 16;
  full_own_data.model.window = 512;
  CHECK(model::data_window(w16) == 16);
  CHECK(model::data_window(full_same_data) == 16);
  CHECK(model::data_window(full_own_data) == 512);
  Batch a, b, c;
  std::mt19937_64 r1(5), r2(5), r3(5);
  model::make_task(w16)->sample(r1, 64, a);
  model::make_task(full_same_data)->sample(r2, 64, b);
  model::make_task(full_own_data)->sample(r3, 64, c);
  CHECK(a.tokens == b.tokens);
  CHECK(a.dist == b.dist);
  CHECK(a.tokens != c.tokens);
  // The flag survives the checkpoint's config block; an old block without it means "the model's window".
  CHECK(model::config_from_text(model::config_to_text(full_same_data)).train.data_window == 16);
  CHECK(model::config_from_text("window=512\n").train.data_window == -1);
}

TEST_CASE("passkey: the question's letters are the hidden key, d positions after it") {
  PasskeyTask task(80, 5);
  std::mt19937_64 rng(3);
  Batch b;
  task.sample(rng, 50, b);
  for (int s = 0; s < b.B; ++s) {
    const int* tok = b.tokens.data() + s * b.T;
    const int* tgt = b.targets.data() + s * b.T;
    const int* dst = b.dist.data() + s * b.T;
    const int ask = b.T - 6;  // '#' then 5 letters end the sequence
    CHECK(tok[ask] == '#');
    int markers = 0;
    for (int t = 0; t < b.T; ++t) markers += tok[t] == '#';
    CHECK(markers == 2);
    for (int i = 0; i < 5; ++i) {
      const int t = ask + i, d = dst[t];
      REQUIRE(d > 0);
      CHECK(tok[t - d] == tok[t]);          // '#' or letter i-1 of the hidden copy
      CHECK(tok[t - d + 1] == tgt[t]);      // letter i of the hidden copy
      CHECK(tgt[t] == tok[t + 1]);
      CHECK(tgt[t] >= 'a');
      CHECK(tgt[t] <= 'z');
    }
    int scored = 0;
    for (int t = 0; t < b.T; ++t) scored += tgt[t] >= 0;
    CHECK(scored == 5);
  }
}

TEST_CASE("text: 90/10 split, windows inside their split, every position scored; bad files are errors") {
  const std::string path = (std::filesystem::temp_directory_path() / "rattn_test_tasks_text.txt").string();
  {
    std::ofstream f(path, std::ios::binary);
    for (int i = 0; i < 1000; ++i) f << char('a' + i % 26);
  }
  TextTask task(path, 16);
  CHECK(task.train_bytes() == 900);
  CHECK(task.val_bytes() == 100);
  std::mt19937_64 rng(1);
  Batch b;
  task.sample(rng, 20, b);
  for (size_t i = 0; i < b.tokens.size(); ++i) {
    CHECK(b.targets[i] == 'a' + (b.tokens[i] - 'a' + 1) % 26);  // the next byte of the file
  }
  Batch v;
  task.eval_set(4, 0, v);
  // the first validation window starts at byte 900 exactly
  CHECK(v.tokens[0] == 'a' + 900 % 26);
  std::remove(path.c_str());

  CHECK_THROWS_WITH_AS(TextTask("no_such_file_here.txt", 16), doctest::Contains("cannot open"), std::runtime_error);
  { std::ofstream f(path, std::ios::binary); }
  CHECK_THROWS_WITH_AS(TextTask(path, 16), doctest::Contains("is empty"), std::runtime_error);
  {
    std::ofstream f(path, std::ios::binary);
    f << "short";
  }
  CHECK_THROWS_WITH_AS(TextTask(path, 16), doctest::Contains("needs at least"), std::runtime_error);
  std::remove(path.c_str());
}

TEST_CASE("recall, the harder regime: disjoint alphabets, random filler, distractor keys, answers as claimed") {
  for (int pairs : {8, 16}) {
    CAPTURE(pairs);
    RecallTask task(128, pairs, 16, 0.4, 0, RecallOptions{true, 8});
    std::mt19937_64 rng(21);
    Batch b;
    task.sample(rng, 500, b);
    auto is_key = [](int x) { return x >= kRecallKeyBase && x < kRecallKeyBase + kRecallAlphabet; };
    auto is_value = [](int x) { return x >= kRecallValueBase && x < kRecallValueBase + kRecallAlphabet; };
    auto is_filler = [](int x) { return x >= kRandomFillerBase && x < kRandomFillerBase + kRandomFillerAlphabet; };
    // The three alphabets are disjoint, and the constant filler is one of the random ones.
    for (int x = 0; x < 256; ++x) CHECK(int(is_key(x)) + int(is_value(x)) + int(is_filler(x)) <= 1);
    CHECK(is_filler(kFiller));
    std::vector<long> filler_seen(256, 0);
    long sequences_with_distractors = 0, queries_behind_own_distractor = 0;
    for (int s = 0; s < b.B; ++s) {
      const int* tok = b.tokens.data() + s * b.T;
      const int* tgt = b.targets.data() + s * b.T;
      const int* dst = b.dist.data() + s * b.T;
      // Layout: pairs at [0, 2n), the gap, the queries; the gap is what lies between.
      int first_query = b.T;
      for (int t = 0; t < b.T; ++t)
        if (tgt[t] >= 0) first_query = std::min(first_query, t);
      const int gap = first_query - 2 * pairs;
      REQUIRE(gap >= 0);
      std::vector<int> keys;
      for (int j = 0; j < pairs; ++j) {
        CHECK(is_key(tok[2 * j]));
        CHECK(is_value(tok[2 * j + 1]));
        keys.push_back(tok[2 * j]);
      }
      // The gap holds filler and distractors: keys of this sequence, each followed by filler.
      int distractors = 0;
      for (int t = 2 * pairs; t < first_query; ++t) {
        if (is_key(tok[t])) {
          ++distractors;
          CHECK(std::find(keys.begin(), keys.end(), tok[t]) != keys.end());
          REQUIRE(t + 1 < first_query);
          CHECK(is_filler(tok[t + 1]));
        } else {
          CHECK(is_filler(tok[t]));
          ++filler_seen[size_t(tok[t])];
        }
      }
      CHECK(distractors == std::min(8, gap / 2));
      sequences_with_distractors += distractors > 0;
      for (int t = first_query + 2 * pairs; t < b.T; ++t) CHECK(is_filler(tok[t]));
      // Each query: its key sits d back, followed by the value asked for, and that is the only earlier
      // occurrence of the key followed by a value.
      for (int t = first_query; t < first_query + 2 * pairs; t += 2) {
        REQUIRE(tgt[t] >= 0);
        const int d = dst[t];
        REQUIRE(d > 0);
        CHECK(tok[t - d] == tok[t]);
        CHECK(tok[t - d + 1] == tgt[t]);
        int bound = 0;
        for (int j = 0; j + 1 < t; ++j) bound += tok[j] == tok[t] && is_value(tok[j + 1]);
        CHECK(bound == 1);
        for (int j = t - d + 1; j < first_query; ++j) queries_behind_own_distractor += tok[j] == tok[t];
      }
    }
    // Distractors are common (every sequence whose gap holds two bytes; at 16 pairs most draw gap 0,
    // the only one that puts queries within w), and some stand between a query and its key: the key's
    // latest occurrence is then not the one that holds the value.
    CHECK(sequences_with_distractors > b.B / 5);
    CHECK(queries_behind_own_distractor > 0);
    // The filler is random: every byte of its alphabet occurs.
    long filler_bytes = 0;
    for (int x = kRandomFillerBase; x < kRandomFillerBase + kRandomFillerAlphabet; ++x)
      filler_bytes += filler_seen[size_t(x)] > 0;
    CHECK(filler_bytes == kRandomFillerAlphabet);
  }
  CHECK_THROWS_AS(RecallTask(128, 4, 16, 0.4, 0, RecallOptions{false, -1}), std::invalid_argument);
}

TEST_CASE("recall, the default regime: a constant filler byte and no distractor; make() places what it says") {
  RecallTask task(128, 4, 16, 0.4);
  std::mt19937_64 rng(5);
  Batch b;
  task.sample(rng, 200, b);
  for (size_t i = 0; i < b.tokens.size(); ++i) {
    const int x = b.tokens[i];
    CHECK((x == kFiller || x >= kRecallKeyBase));
  }
  // make() with a lead: the pairs start at `lead`, the queries end at lead + 4n + gap, distances as claimed.
  for (auto [lead, gap] : {std::pair{0, 0}, std::pair{50, 10}, std::pair{112, 0}, std::pair{0, 112}}) {
    CAPTURE(lead);
    CAPTURE(gap);
    std::vector<int> tok(128), tgt(128), dst(128);
    task.make(rng, lead, gap, tok.data(), tgt.data(), dst.data());
    int scored = 0;
    for (int t = 0; t < 128; ++t) {
      if (tgt[t] < 0) continue;
      ++scored;
      CHECK(t >= lead + 8 + gap);
      CHECK(t < lead + 16 + gap);
      CHECK(tok[t - dst[t]] == tok[t]);
      CHECK(t - dst[t] >= lead);
      CHECK(t - dst[t] < lead + 8);
    }
    CHECK(scored == 4);
    for (int t = 0; t < lead; ++t) CHECK(tok[t] == kFiller);
  }
  std::vector<int> tok(128), tgt(128), dst(128);
  CHECK_THROWS_AS(task.make(rng, 100, 20, tok.data(), tgt.data(), dst.data()), std::invalid_argument);
}

TEST_CASE("the training, validation and test streams are disjoint: seeds and sequences") {
  // The seeds: the training stream's, and each split's at every evaluation length, all different.
  for (long seed : {1L, 2L, 3L}) {
    model::Config c;
    c.train.seed = seed;
    std::vector<uint64_t> seeds{model::train_seed(c)};
    for (int m = 1; m <= 64; ++m) {
      seeds.push_back(model::eval_seed(c, model::Split::validation, m));
      seeds.push_back(model::eval_seed(c, model::Split::test, m));
    }
    std::sort(seeds.begin(), seeds.end());
    CHECK(std::adjacent_find(seeds.begin(), seeds.end()) == seeds.end());
    CHECK(model::eval_seed(c) == model::eval_seed(c, model::Split::validation, 1));
  }
  // The sequences, at the quick grid's counts: 1500 steps of 32 training sequences, 256 validation and
  // 256 test sequences (train_tiny), for the easy regime (4 pairs, the smallest space of sequences) and
  // the hard one: no test sequence is a training or validation sequence, none of validation is in training.
  for (bool hard : {false, true}) {
    CAPTURE(hard);
    model::Config c;
    c.model.window = 16;
    c.train.seq_len = 128;
    c.train.pairs = hard ? 8 : 4;
    c.train.far_beyond = hard ? 0 : 32;
    c.train.filler = hard ? "random" : "constant";
    c.train.distractors = hard ? 8 : 0;
    const std::unique_ptr<Task> task = model::make_task(c);
    auto sequences = [&](const Batch& b) {
      std::vector<std::vector<int>> out;
      for (int s = 0; s < b.B; ++s) out.push_back(b.seq_tokens(s));
      return out;
    };
    std::set<std::vector<int>> train;
    std::mt19937_64 rng(model::train_seed(c));
    Batch b;
    for (int step = 0; step < 1500; ++step) {
      task->sample(rng, 32, b);
      for (auto& seq : sequences(b)) train.insert(std::move(seq));
    }
    CHECK(train.size() > 1500 * 32 * 99 / 100);  // the training stream itself hardly repeats
    Batch val, test;
    task->eval_set(256, model::eval_seed(c, model::Split::validation), val);
    task->eval_set(256, model::eval_seed(c, model::Split::test), test);
    const std::vector<std::vector<int>> v = sequences(val), t = sequences(test);
    long test_in_train = 0, test_in_val = 0, val_in_train = 0;
    for (const auto& seq : t) {
      test_in_train += train.count(seq);
      test_in_val += std::count(v.begin(), v.end(), seq);
    }
    for (const auto& seq : v) val_in_train += train.count(seq);
    CHECK(test_in_train == 0);
    CHECK(test_in_val == 0);
    CHECK(val_in_train == 0);
  }
}

TEST_CASE("recall, pairs anywhere: a filler lead of random length, the layout and distances as claimed") {
  RecallTask task(128, 8, 16, 0.4, 0, RecallOptions{true, 8, true});
  std::mt19937_64 rng(8);
  Batch b;
  task.sample(rng, 400, b);
  std::set<int> leads;
  long tail_after_queries = 0;
  for (int s = 0; s < b.B; ++s) {
    const int* tok = b.tokens.data() + s * b.T;
    const int* tgt = b.targets.data() + s * b.T;
    const int* dst = b.dist.data() + s * b.T;
    int lead = 0;
    while (lead < b.T && !(tok[lead] >= kRecallKeyBase && tok[lead + 1] >= kRecallValueBase)) ++lead;
    leads.insert(lead);
    int last_query = -1;
    for (int t = 0; t < b.T; ++t) {
      if (tgt[t] < 0) continue;
      last_query = t;
      CHECK(tok[t - dst[t]] == tok[t]);
      CHECK(tok[t - dst[t] + 1] == tgt[t]);
      CHECK(t - dst[t] >= lead);       // every key in the pair block, after the lead
      CHECK(t - dst[t] < lead + 16);
    }
    tail_after_queries += last_query + 2 < b.T;
  }
  CHECK(leads.size() > 30);           // the lead varies widely
  CHECK(leads.count(0) == 1);         // position 0 is one of its values
  CHECK(tail_after_queries > 0);      // and some filler still follows the queries
  // The default places the pairs at 0.
  RecallTask start(128, 8, 16, 0.4, 0, RecallOptions{true, 8, false});
  start.sample(rng, 50, b);
  for (int s = 0; s < b.B; ++s) CHECK(b.tokens[size_t(s) * 128] >= kRecallKeyBase);
}
