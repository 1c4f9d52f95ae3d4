// The data (data/tasks.h): every recall query's distance is what it claims and its key comes first;
// the gap mixture puts 30-50% of the queries within w; passkey questions point at the hidden copy;
// --data-window sets the window of the gap mix apart from the model's; the same seed gives the same
// data; the text split is 90/10 and a bad file is a clear error.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
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
