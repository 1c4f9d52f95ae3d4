// The checkpoint format (model/checkpoint.h): exact round trip, --resume continues bit-exactly,
// and truncated, corrupted, wrong-version, wrong-magic, wrong-size and wrong-precision files are
// rejected with a message that says which.
#include <doctest/doctest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <sstream>

#include "model/checkpoint.h"
#include "model/trainer.h"
#include "tests/train_setup.h"

using namespace model;
using rattn_test::file_bytes;
using rattn_test::quiet_run;
using rattn_test::tiny_run;
namespace fs = std::filesystem;

namespace {

std::string tmp_path(const std::string& name) { return (fs::temp_directory_path() / ("rattn_test_ckpt_" + name)).string(); }

void write_bytes(const std::string& p, const std::vector<unsigned char>& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), std::streamsize(b.size()));
}

// The same bytes with the checksum recomputed: what an intact file that no run wrote looks like.
std::vector<unsigned char> with_checksum(std::vector<unsigned char> b) {
  b.resize(b.size() - 8);
  const uint64_t sum = fnv1a64(b.data(), b.size());
  b.insert(b.end(), reinterpret_cast<const unsigned char*>(&sum), reinterpret_cast<const unsigned char*>(&sum) + 8);
  return b;
}

// Where a format 2 file's training-text record starts: after the fixed header, the config and the
// generator state (each a u32 length and its bytes).
size_t text_record_at(const std::vector<unsigned char>& b) {
  size_t at = 8 + 4 + 4 + 8;
  for (int block = 0; block < 2; ++block) {
    uint32_t len;
    std::memcpy(&len, b.data() + at, 4);
    at += 4 + len;
  }
  return at;
}

TrainState<float> some_state() {
  TrainState<float> st;
  st.config = tiny_run(200);  // a run of 200 steps saved at step 123
  st.params = init_params<float>(st.config.model, 3, 1.0);
  st.m = init_params<float>(st.config.model, 4, 0.1);
  st.v = init_params<float>(st.config.model, 5, 0.01);
  for (auto& t : named_tensors(st.config.model, st.v)) *t.t = t.t->cwiseAbs();  // a second moment is >= 0
  st.step = 123;
  std::mt19937_64 rng(77);
  rng.discard(5);
  std::ostringstream os;
  os << rng;
  st.data_rng = os.str();
  return st;
}

}  // namespace

TEST_CASE("checkpoint round trip is exact; the write leaves no temporary file") {
  const std::string path = tmp_path("rt.ckpt");
  // A stale temporary file from a killed writer (the start of a checkpoint) is replaced.
  write_bytes(path + ".tmp", {'R', 'A', 'T', 'T', 'N', 'C', 'K', 'P', 1, 2, 3});
  TrainState<float> st = some_state();
  save_checkpoint(path, st);
  CHECK(!fs::exists(path + ".tmp"));
  TrainState<float> back = load_checkpoint<float>(path);
  CHECK(back.step == 123);
  CHECK(back.data_rng == st.data_rng);
  CHECK(config_to_text(back.config) == config_to_text(st.config));
  auto A = named_tensors(st.config.model, st.params), B = named_tensors(back.config.model, back.params);
  auto Am = named_tensors(st.config.model, st.m), Bm = named_tensors(back.config.model, back.m);
  auto Av = named_tensors(st.config.model, st.v), Bv = named_tensors(back.config.model, back.v);
  REQUIRE(A.size() == B.size());
  for (size_t i = 0; i < A.size(); ++i) {
    CAPTURE(A[i].name);
    CHECK(A[i].name == B[i].name);
    CHECK(*A[i].t == *B[i].t);
    CHECK(*Am[i].t == *Bm[i].t);
    CHECK(*Av[i].t == *Bv[i].t);
  }
  // The documented header fields sit where the format says.
  const std::vector<unsigned char> b = file_bytes(path);
  CHECK(std::memcmp(b.data(), "RATTNCKP", 8) == 0);
  uint32_t version, scalar;
  uint64_t step;
  std::memcpy(&version, b.data() + 8, 4);
  std::memcpy(&scalar, b.data() + 12, 4);
  std::memcpy(&step, b.data() + 16, 8);
  CHECK(version == kCheckpointVersion);
  CHECK(scalar == 4);
  CHECK(step == 123);
  uint64_t sum;
  std::memcpy(&sum, b.data() + b.size() - 8, 8);
  CHECK(sum == fnv1a64(b.data(), b.size() - 8));
  fs::remove(path);
}

TEST_CASE("bad checkpoints are rejected with a clear error") {
  const std::string path = tmp_path("good.ckpt"), bad = tmp_path("bad.ckpt");
  save_checkpoint(path, some_state());
  const std::vector<unsigned char> good = file_bytes(path);
  auto rejects = [&](const std::vector<unsigned char>& bytes, const std::string& why) {
    write_bytes(bad, bytes);
    CAPTURE(why);
    CHECK_THROWS_WITH_AS(load_checkpoint<float>(bad), doctest::Contains(why.c_str()), CheckpointError);
  };
  // truncated anywhere: in the header, in the config, inside a tensor, just before the checksum
  for (size_t n : {size_t(0), size_t(5), size_t(20), size_t(40), good.size() / 2, good.size() - 9, good.size() - 1}) {
    CAPTURE(n);
    std::vector<unsigned char> t(good.begin(), good.begin() + long(n));
    const std::string why = n < 8 ? "bad magic" : "truncated";
    rejects(t, why);
  }
  // one flipped bit inside the tensor data
  std::vector<unsigned char> flipped = good;
  flipped[good.size() / 2] ^= 0x10;
  rejects(flipped, "checksum mismatch");
  // another format version (0, or one newer than this program)
  for (unsigned char v : {0, int(kCheckpointVersion) + 1}) {
    std::vector<unsigned char> other = good;
    other[8] = v;
    rejects(other, "format version " + std::to_string(v) + " is not supported");
  }
  // not a checkpoint at all
  std::vector<unsigned char> magic = good;
  magic[0] = 'X';
  rejects(magic, "bad magic");
  // a correctly checksummed file whose config block asks for another model than its tensors hold:
  // refused by parameter_count before anything of that size is allocated
  {
    Config wider = some_state().config;
    wider.model.d_model = 24;
    const std::string text = config_to_text(some_state().config), wide_text = config_to_text(wider);
    const size_t at = 8 + 4 + 4 + 8;  // magic, version, scalar size, step; then u32 length + the config
    uint32_t len;
    std::memcpy(&len, good.data() + at, 4);
    REQUIRE(std::string(good.begin() + long(at + 4), good.begin() + long(at + 4 + len)) == text);
    std::vector<unsigned char> b(good.begin(), good.begin() + long(at));
    const uint32_t wide_len = uint32_t(wide_text.size());
    b.insert(b.end(), reinterpret_cast<const unsigned char*>(&wide_len), reinterpret_cast<const unsigned char*>(&wide_len) + 4);
    b.insert(b.end(), wide_text.begin(), wide_text.end());
    b.insert(b.end(), good.begin() + long(at + 4 + len), good.end() - 8);
    const uint64_t sum = fnv1a64(b.data(), b.size());
    b.insert(b.end(), reinterpret_cast<const unsigned char*>(&sum), reinterpret_cast<const unsigned char*>(&sum) + 8);
    rejects(b, "numbers, its config needs " + std::to_string(parameter_count(wider.model)));
  }
  // Intact files (checksums repaired) that no run writes: refused behind the checksum.
  {
    std::vector<unsigned char> b = good;  // the step: 2^63, and one beyond the run's --steps
    const uint64_t huge = uint64_t(1) << 63, past = 201;
    std::memcpy(b.data() + 16, &huge, 8);
    rejects(with_checksum(b), "step 9223372036854775808 is outside [0, 200]");
    std::memcpy(b.data() + 16, &past, 8);
    rejects(with_checksum(b), "step 201 is outside [0, 200]");
  }
  {
    // NaN in the last parameter number, inf in an AdamW moment, a negative second moment: the last tensor's
    // three parts are the file's last 3 * n * 4 bytes before the checksum.
    TrainState<float> st = some_state();
    const auto P = named_tensors(st.config.model, st.params);
    const size_t n = size_t(P.back().t->size()) * 4, end = good.size() - 8;
    const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity(), neg = -1;
    std::vector<unsigned char> b = good;
    std::memcpy(b.data() + end - 2 * n - 4, &nan, 4);
    rejects(with_checksum(b), "parameter " + P.back().name + " holds a non-finite value");
    b = good;
    std::memcpy(b.data() + end - n - 4, &inf, 4);
    rejects(with_checksum(b), "AdamW first moment " + P.back().name + " holds a non-finite value");
    b = good;
    std::memcpy(b.data() + end - 4, &neg, 4);
    rejects(with_checksum(b), "AdamW second moment " + P.back().name + " holds a negative value");
  }
  {
    // a config key given twice (the second would silently win)
    const std::string text = config_to_text(some_state().config);
    const size_t at = 8 + 4 + 4 + 8;
    uint32_t len;
    std::memcpy(&len, good.data() + at, 4);
    const std::string twice = text + "seed=5\n";
    std::vector<unsigned char> b(good.begin(), good.begin() + long(at));
    const uint32_t twice_len = uint32_t(twice.size());
    b.insert(b.end(), reinterpret_cast<const unsigned char*>(&twice_len),
             reinterpret_cast<const unsigned char*>(&twice_len) + 4);
    b.insert(b.end(), twice.begin(), twice.end());
    b.insert(b.end(), good.begin() + long(at + 4 + len), good.end());
    rejects(with_checksum(b), "config key 'seed' appears twice");
  }
  // a float32 file read by the double model
  CHECK_THROWS_WITH_AS(load_checkpoint<double>(path), doctest::Contains("float32"), CheckpointError);
  // a missing file
  CHECK_THROWS_WITH_AS(load_checkpoint<float>(tmp_path("missing.ckpt")), doctest::Contains("cannot open"),
                       CheckpointError);
  fs::remove(path);
  fs::remove(bad);
}

TEST_CASE("resumed run equals the uninterrupted run bit for bit") {
  const std::string full = tmp_path("full.ckpt"), part = tmp_path("part.ckpt"), resumed = tmp_path("resumed.ckpt");
  std::ostringstream log;
  const Config c = tiny_run(8);
  const TrainOutcome a = train(c, quiet_run(full), log);
  REQUIRE(a.losses.size() == 8);

  // The same run, "killed" during step 6 after the checkpoint of step 4 ...
  RunConfig r = quiet_run(part);
  r.ckpt_interval = 4;
  struct Killed {};
  CHECK_THROWS_AS(train(c, r, log, [](long step, ModelParams<float>&) {
                    if (step == 6) throw Killed{};
                  }),
                  Killed);
  CHECK(load_checkpoint<float>(part).step == 4);
  // ... and resumed from that checkpoint.
  RunConfig rr = quiet_run(resumed);
  rr.resume = part;
  const TrainOutcome b = train(c, rr, log);
  REQUIRE(b.first_step == 5);
  REQUIRE(b.losses.size() == 4);
  for (int i = 0; i < 4; ++i) {
    CAPTURE(i);
    CHECK(b.losses[size_t(i)] == a.losses[size_t(i) + 4]);  // exact
  }
  // Same final weights, optimizer state and generator state: the files are identical.
  CHECK(file_bytes(resumed) == file_bytes(full));
  // Resuming with a different model flag is refused by the trainer too.
  Config other = c;
  other.model.window = 5;
  CHECK_THROWS_AS(train(other, rr, log), UsageError);
  for (const std::string& p : {full, part, resumed}) fs::remove(p);
}

namespace {
// The bytes of `good` (a version 2 file) as version 1 wrote them: no text record, checksum redone.
std::vector<unsigned char> as_version_1(const std::vector<unsigned char>& good) {
  std::vector<unsigned char> b = good;
  b[8] = 1;
  const size_t at = text_record_at(b);
  b.erase(b.begin() + long(at), b.begin() + long(at + 16));  // the training text's size and hash
  return with_checksum(b);
}
}  // namespace

TEST_CASE("any --text path round-trips through the checkpoint byte for byte") {
  // Newlines (the config block is one line per key), backslashes, the escape sequences themselves, '=',
  // trailing spaces, bytes that are not UTF-8.
  const std::string paths[] = {"a\nb.txt", "line one\nline two\n", "back\\slash", "\\n literally",
                               "x=y=z", " trailing ", "\xff\xfe\x01\t.txt", "\\", "\n"};
  const std::string path = tmp_path("paths.ckpt");
  for (const std::string& p : paths) {
    CAPTURE(p);
    TrainState<float> st = some_state();
    st.config.train.task = "text";
    st.config.train.text_file = p;
    st.text = TextFingerprint{true, 12345, 0xDEADBEEFull};
    save_checkpoint(path, st);
    const TrainState<float> back = load_checkpoint<float>(path);
    CHECK(back.config.train.text_file == p);
    CHECK(read_checkpoint_config(path).train.text_file == p);
    CHECK(back.text == st.text);
    CHECK(config_to_text(back.config) == config_to_text(st.config));
  }
  // An escape that no writer produces is refused, naming the key.
  CHECK_THROWS_WITH_AS(config_from_text("text=a\\qb\n"), doctest::Contains("config key 'text': bad escape"),
                       UsageError);
  CHECK_THROWS_WITH_AS(config_from_text("text=ends in \\\n"), doctest::Contains("bad escape"), UsageError);
  fs::remove(path);
}

TEST_CASE("a version 1 checkpoint still loads, with no record of the training text") {
  const std::string path = tmp_path("v1.ckpt");
  TrainState<float> st = some_state();
  save_checkpoint(path, st);
  const std::vector<unsigned char> v2 = file_bytes(path);
  write_bytes(path, as_version_1(v2));
  const TrainState<float> back = load_checkpoint<float>(path);
  CHECK(back.step == st.step);
  CHECK_FALSE(back.text.recorded);
  CHECK(config_to_text(back.config) == config_to_text(st.config));
  const auto P = named_tensors(st.config.model, st.params);
  const auto Q = named_tensors(back.config.model, const_cast<ModelParams<float>&>(back.params));
  for (size_t i = 0; i < P.size(); ++i) CHECK(*P[i].t == *Q[i].t);
  // A synthetic run records zeros; anything else there is corruption behind a valid checksum.
  std::vector<unsigned char> b = v2;
  b[text_record_at(b)] = 7;
  write_bytes(path, with_checksum(b));
  CHECK_THROWS_WITH_AS(load_checkpoint<float>(path), doctest::Contains("records a training text"), CheckpointError);
  fs::remove(path);
}

TEST_CASE("--resume refuses a training text that changed since the checkpoint, saying what changed") {
  const std::string text_path = tmp_path("resume_text.txt"), ckpt = tmp_path("resume_text.ckpt");
  std::string text;
  for (int i = 0; i < 4000; ++i) text += char('a' + (i * 7 + i / 13) % 26);
  auto write_text = [&](const std::string& t) { std::ofstream(text_path, std::ios::binary | std::ios::trunc) << t; };
  write_text(text);
  Config c = tiny_run(3);
  c.train.task = "text";
  c.train.text_file = text_path;
  std::ostringstream log;
  REQUIRE(train(c, quiet_run(ckpt), log).status == 0);
  const TrainState<float> saved = load_checkpoint<float>(ckpt);
  CHECK(saved.text == fingerprint_of(std::vector<unsigned char>(text.begin(), text.end())));

  RunConfig r = quiet_run(ckpt);
  r.resume = ckpt;
  Config more = c;
  more.train.steps = 5;
  const std::vector<unsigned char> before = file_bytes(ckpt);
  std::string edited = text;
  edited[2000] = edited[2000] == 'x' ? 'y' : 'x';  // one byte, same size
  for (const std::string& changed : {edited, text + "!", text.substr(0, 3000)}) {
    write_text(changed);
    CAPTURE(changed.size());
    CHECK_THROWS_WITH_AS(train(more, r, log),
                         doctest::Contains(("changed since the checkpoint was written: it was " +
                                            std::to_string(text.size()) + " bytes").c_str()),
                         UsageError);
    CHECK(file_bytes(ckpt) == before);  // nothing written
  }
  write_text(text);  // the same text again: the run continues
  CHECK(train(more, r, log).status == 0);
  CHECK(load_checkpoint<float>(ckpt).step == 5);
  fs::remove(text_path);
  fs::remove(ckpt);
}

TEST_CASE("qk-norm: its checkpoint round-trips with the scales; off, the config block has no qk-norm key") {
  // spec §2.9: q_norm, k_norm (1, D) on every layer with softmax attention (both layers of L G)
  TrainState<float> st;
  st.config = tiny_run(200);
  st.config.model.qk_norm = 1;
  const ModelConfig& m = st.config.model;
  st.params = init_params<float>(m, 3, 1.0);
  st.m = init_params<float>(m, 4, 0.1);
  st.v = init_params<float>(m, 5, 0.01);
  for (auto& t : named_tensors(m, st.v)) *t.t = t.t->cwiseAbs();  // a second moment is >= 0
  std::mt19937_64 rng(9);
  std::normal_distribution<float> n(1.0f, 0.2f);
  int scales = 0;
  for (auto& t : named_tensors(m, st.params))
    if (t.name.ends_with("attn.q_norm") || t.name.ends_with("attn.k_norm")) {
      ++scales;
      CHECK_FALSE(t.decay);  // norm scales: no weight decay
      CHECK(t.t->rows() == 1);
      CHECK(t.t->cols() == m.head_dim);
      for (long i = 0; i < t.t->size(); ++i) t.t->data()[i] = n(rng);
    }
  CHECK(scales == 4);
  long count = 0;
  for (auto& t : named_tensors(m, st.params)) count += t.t->size();
  CHECK(count == parameter_count(m));
  st.step = 5;
  st.data_rng = "1 2 3";
  const std::string path = tmp_path("qk.ckpt");
  save_checkpoint(path, st);
  TrainState<float> back = load_checkpoint<float>(path);
  CHECK(back.config.model.qk_norm == 1);
  CHECK(config_to_text(back.config).find("\nqk-norm=1\n") != std::string::npos);
  auto A = named_tensors(m, st.params), B = named_tensors(back.config.model, back.params);
  REQUIRE(A.size() == B.size());
  for (size_t i = 0; i < A.size(); ++i) {
    CAPTURE(A[i].name);
    CHECK(A[i].name == B[i].name);
    CHECK(*A[i].t == *B[i].t);
  }
  fs::remove(path);

  // Off: no key (the config block of a model without qk-norm is what it was before the option), and
  // a config block without the key, an older checkpoint's, reads as off.
  Config off = tiny_run(200);
  const std::string text = config_to_text(off);
  CHECK(text.find("qk-norm") == std::string::npos);
  CHECK(config_from_text(text).model.qk_norm == 0);
  CHECK(config_from_text(text + "qk-norm=1\n").model.qk_norm == 1);
  CHECK_THROWS_AS(config_from_text(text + "qk-norm=2\n"), UsageError);
  // and no qk-norm tensor is listed
  ModelParams<float> p = init_params<float>(off.model, 3, 1.0);
  for (auto& t : named_tensors(off.model, p)) CHECK(t.name.find("_norm") == std::string::npos);
}
