// tests/test_cli.cpp: every bad command line of bin/train_tiny, bin/infer and bin/rattn-op is refused
// with exit status 2 and ONE line on stderr that names the flag (or the input file) at fault; nothing
// is trained, loaded or written.
//
// Each case runs the real program (tests/proc.h finds it next to this binary, so `make test
// SANITIZE=1` checks the sanitizer build of the programs). train_tiny cases start from a tiny valid
// config, so a case that is wrongly accepted trains one tiny step instead of hanging the suite.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "io/files.h"
#include "io/npy.h"
#include "model/checkpoint.h"
#include "model/cli.h"
#include "tests/check.h"
#include "tests/proc.h"
#include "tests/tiny_state.h"

namespace {
using rattn_test::run_program;
using rattn_test::TempDir;
namespace fs = std::filesystem;

struct BadCase {
  std::vector<std::string> args;
  std::string must_name;  // the flag (or file) the one line must mention
};

std::string show(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += " " + (a.size() > 60 ? a.substr(0, 20) + "...(" + std::to_string(a.size()) + " bytes)" : a);
  return s;
}

// Run every case; each must exit 2 with exactly one non-empty line on stderr naming must_name.
// prefix is "--flag value" pairs; a flag the case gives itself is left out of it, so that the case is
// refused for its own value, not because the flag was given twice.
void expect_refused(const std::string& program, const std::vector<std::string>& prefix, const std::vector<BadCase>& cases) {
  for (const BadCase& c : cases) {
    std::vector<std::string> args;
    for (size_t i = 0; i + 1 < prefix.size(); i += 2) {
      bool overridden = false;
      for (const std::string& a : c.args) overridden = overridden || a.substr(0, a.find('=')) == prefix[i];
      if (!overridden) args.insert(args.end(), {prefix[i], prefix[i + 1]});
    }
    args.insert(args.end(), c.args.begin(), c.args.end());
    const rattn_test::Run r = run_program(program, args, 60);
    INFO(program << show(c.args) << "\n  exit " << r.status << ", stderr: " << r.err);
    CHECK(r.status == 2);
    const size_t newlines = size_t(std::count(r.err.begin(), r.err.end(), '\n'));
    CHECK_MESSAGE(newlines == 1, "stderr must be one line");
    CHECK_MESSAGE(r.err.size() > program.size() + 4, "the line must say what is wrong");
    CHECK_MESSAGE(r.err.find(c.must_name) != std::string::npos, "the line must name " << c.must_name);
  }
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// A valid checkpoint of the smallest model (tests/tiny_state.h), written without training.
void write_tiny_checkpoint(const std::string& path) { model::save_checkpoint(path, rattn_test::tiny_train_state()); }
}  // namespace

TEST_CASE("cli: every failure is one line on stderr with the status of its kind") {
  // The guard every program's main runs in: bad input 2, the environment 1; out of memory says so.
  std::ostringstream err;
  std::streambuf* const old = std::cerr.rdbuf(err.rdbuf());
  const int usage = model::cli_main_guard("prog", []() -> int { throw model::UsageError("--x: bad"); });
  const int refused = model::cli_main_guard("prog", []() -> int { throw io::FileRefused("--y: a folder"); });
  const int oom = model::cli_main_guard("prog", []() -> int { throw std::bad_alloc(); });
  const int other = model::cli_main_guard("prog", []() -> int { throw std::runtime_error("disk full"); });
  std::cerr.rdbuf(old);
  CHECK(usage == 2);
  CHECK(refused == 2);
  CHECK(oom == 1);
  CHECK(other == 1);
  CHECK(err.str() == "prog: --x: bad\nprog: --y: a folder\n"
                     "prog: out of memory: the model, batch and sequence length asked for do not fit in this "
                     "machine's memory; lower --batch, --seq-len or the model size (--d-model, --layers)\n"
                     "prog: error: disk full\n");
}

TEST_CASE("cli: an out-of-range integer flag names its allowed range in full") {
  // "[0, 1048576]", not a rounded "1.04858e+06" a user cannot type back
  const rattn_test::Run r = run_program("train_tiny", {"--window", "99999999999"}, 60);
  INFO("stderr: " << r.err);
  CHECK(r.status == 2);
  CHECK(r.err.find("--window") != std::string::npos);
  CHECK(r.err.find("[0, 1048576]") != std::string::npos);
  const rattn_test::Run d = run_program("train_tiny", {"--data-window", "-2"}, 60);
  INFO("stderr: " << d.err);
  CHECK(d.status == 2);
  CHECK(d.err.find("[-1, 1048576]") != std::string::npos);
}

TEST_CASE("cli: train_tiny refuses every bad flag with exit 2 and one line naming it") {
  TempDir dir("cli_train");
  write_text(dir / "empty.txt", "");
  write_text(dir / "short.txt", "only a few bytes of text");
  // Tiny and valid: whatever a case gets wrong is the only thing wrong.
  const std::vector<std::string> prefix = {"--d-model", "8",  "--heads", "1",         "--kv-heads", "1",
                                           "--head-dim", "2", "--layers", "1",        "--seq-len",  "16",
                                           "--pairs",   "2",  "--batch",  "1",        "--steps",    "1",
                                           "--warmup",  "0",  "--eval-seqs", "1",     "--ckpt",     dir / "x.ckpt"};
  expect_refused("train_tiny", prefix,
                 {
                     {{"--bogus", "1"}, "--bogus"},                    // unknown flag
                     {{"--steps"}, "--steps"},                         // missing value
                     {{"--steps", "abc"}, "--steps"},                  // not a number
                     {{"--d-model", "6x"}, "--d-model"},
                     {{"--lr", "fast"}, "--lr"},
                     {{"--lr", "nan"}, "--lr"},
                     {{"--lr", "inf"}, "--lr"},
                     {{"--steps", "0"}, "--steps"},                    // zero / negative sizes
                     {{"--batch", "-1"}, "--batch"},
                     {{"--d-model", "0"}, "--d-model"},
                     {{"--heads", "0"}, "--heads"},
                     {{"--kv-heads", "-2"}, "--kv-heads"},
                     {{"--head-dim", "-4"}, "--head-dim"},
                     {{"--layers", "0"}, "--layers"},
                     {{"--chunk", "0"}, "--chunk"},
                     {{"--seq-len", "-16"}, "--seq-len"},
                     {{"--head-dim", "3"}, "--head-dim"},              // odd: RoPE rotates pairs
                     {{"--steps", "99999999999999999999"}, "--steps"}, // overflows a long
                     {{"--heads", "3", "--kv-heads", "2"}, "--kv-heads"},  // H not a multiple of G
                     {{"--window", "-2"}, "--window"},                 // window < -1
                     {{"--window", "-1"}, "--window"},                 // the model's local layers need w >= 0
                     {{"--data-window", "-2"}, "--data-window"},       // -1 (= --window) or a window
                     {{"--data-window", "x"}, "--data-window"},
                     {{"--data-window"}, "--data-window"},             // missing value
                     {{"--seq-len", "4"}, "--seq-len"},                // below what the model takes
                     {{"--seq-len", "70000"}, "--seq-len"},            // above it
                     {{"--seq-len", "16", "--pairs", "8"}, "--seq-len"},  // too short for the recall task
                     {{"--task", "passkey", "--seq-len", "8", "--passkey-len", "8"}, "--seq-len"},
                     {{"--task", "sorting"}, "--task"},
                     {{"--local", "global"}, "--local"},
                     {{"--pattern", "LXG"}, "--pattern"},
                     {{"--text", dir / "missing.txt"}, "--text"},      // missing data file
                     {{"--text", dir / "empty.txt"}, "--text"},        // empty data file
                     {{"--text", dir / "short.txt"}, "--text"},        // too short for one window
                     {{"--window", "2", "--far-beyond", "17"}, "--far-beyond"},  // no key can lie beyond 17 at T = 16
                     {{"--window", "4", "--window", "8"}, "--window: given twice"},  // which one was meant?
                     {{"--lr=0.1", "--lr", "0.1"}, "--lr: given twice"},
                     {{"--compare", "rattn"}, "--compare"},            // the same kind as --local
                     {{"--compare", "full"}, "--compare"},
                     {{"--demo", "--single"}, "--demo"},               // two presets
                     {{"--demo", "--resume", dir / "x.ckpt"}, "--resume"},
                     {{"--resume", dir / "missing.ckpt"}, "--resume"},  // exit 2, as bin/infer --ckpt
                     {{"--resume", dir / "short.txt"}, "--resume"},      // not a checkpoint
                     {{"--compare", "swa", "--resume", dir / "x.ckpt"}, "--compare"},
                     {{"positional"}, "positional"},
                 });
  CHECK_FALSE(fs::exists(dir / "x.ckpt"));  // nothing was trained or saved
}

TEST_CASE("cli: --resume with --steps below the checkpoint's step is refused, naming --steps; nothing is written") {
  TempDir dir("cli_resume_steps");
  model::TrainState<float> st = rattn_test::tiny_train_state();
  st.config.train.steps = 8;
  st.step = 5;
  const std::string ckpt = dir / "r.ckpt";
  model::save_checkpoint(ckpt, st);
  std::ifstream in0(ckpt, std::ios::binary);
  const std::string before((std::istreambuf_iterator<char>(in0)), std::istreambuf_iterator<char>());
  const rattn_test::Run r = run_program("train_tiny", {"--resume", ckpt, "--steps", "3"}, 60);
  INFO("exit " << r.status << ", stdout: " << r.out << ", stderr: " << r.err);
  CHECK(r.status == 2);
  CHECK(r.err.find("--steps") != std::string::npos);
  CHECK(r.err.find("step 5") != std::string::npos);
  CHECK(r.out.find("checkpoint: " + ckpt + " (step") == std::string::npos);  // no claim of a write
  std::ifstream in1(ckpt, std::ios::binary);
  CHECK(std::string((std::istreambuf_iterator<char>(in1)), std::istreambuf_iterator<char>()) == before);
}

TEST_CASE("cli: a training text changed since the checkpoint is refused by --resume and by infer, exit 2") {
  TempDir dir("cli_text_changed");
  std::string text;
  for (int i = 0; i < 3000; ++i) text += char('a' + (i * 11 + i / 7) % 26);
  const std::string txt = dir / "corpus.txt", ckpt = dir / "t.ckpt";
  write_text(txt, text);
  const rattn_test::Run t = run_program("train_tiny", {"--text", txt, "--d-model", "8", "--heads", "1", "--kv-heads", "1",
                                                       "--head-dim", "2", "--layers", "1", "--seq-len", "16",
                                                       "--batch", "1", "--steps", "2", "--warmup", "0",
                                                       "--eval-seqs", "1", "--ckpt", ckpt}, 60);
  REQUIRE_MESSAGE(t.status == 0, t.err);
  const rattn_test::Run ok = run_program("infer", {"--ckpt", ckpt, "--eval-seqs", "1", "--mem-len", "4"}, 60);
  CHECK_MESSAGE(ok.status == 0, ok.err);
  write_text(txt, text + "one more line\n");
  const rattn_test::Run r = run_program("train_tiny", {"--resume", ckpt, "--steps", "3"}, 60);
  const rattn_test::Run i = run_program("infer", {"--ckpt", ckpt, "--eval-seqs", "1", "--mem-len", "4"}, 60);
  for (const rattn_test::Run* run : {&r, &i}) {
    INFO("exit " << run->status << ", stderr: " << run->err);
    CHECK(run->status == 2);
    CHECK(std::count(run->err.begin(), run->err.end(), '\n') == 1);
    CHECK(run->err.find(txt) != std::string::npos);
    CHECK(run->err.find("changed since the checkpoint was written: it was 3000 bytes") != std::string::npos);
  }
  CHECK(r.err.find("--resume") != std::string::npos);
  CHECK(i.err.find("--ckpt") != std::string::npos);
  CHECK(i.err.find("--eval 0") != std::string::npos);  // the way around for infer
  CHECK(model::load_checkpoint<float>(ckpt).step == 2);  // the resume wrote nothing
  const rattn_test::Run no_eval = run_program("infer", {"--ckpt", ckpt, "--eval", "0", "--mem-len", "4"}, 60);
  CHECK_MESSAGE(no_eval.status == 0, no_eval.err);
}

TEST_CASE("cli: a warmup longer than the run is cut to --steps with a note, not refused") {
  TempDir dir("cli_warmup");
  const rattn_test::Run r = run_program("train_tiny", {"--d-model", "8", "--heads", "1", "--kv-heads", "1",
                                                       "--head-dim", "2", "--layers", "1", "--seq-len", "16",
                                                       "--pairs", "2", "--batch", "1", "--steps", "3", "--eval-seqs",
                                                       "1", "--ckpt", dir / "w.ckpt"},
                                        60);  // the default --warmup (50) is longer than 3 steps
  INFO("exit " << r.status << "\nstdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.status == 0);
  CHECK(r.out.find("note: --warmup 50 is longer than --steps 3") != std::string::npos);
  CHECK(r.out.find("warmup 3,") != std::string::npos);  // the schedule the run used
  CHECK(fs::exists(dir / "w.ckpt"));
}

TEST_CASE("cli: --help prints every default as a person would type it") {
  const rattn_test::Run r = run_program("train_tiny", {"--help"}, 60);
  CHECK(r.status == 0);
  CHECK(r.out.find("default 1e-05)") != std::string::npos);  // --norm-eps, not 1.0000000000000001e-05
  CHECK(r.out.find("default 0.4)") != std::string::npos);    // --in-window-frac
  CHECK(r.out.find("0000000") == std::string::npos);
  CHECK(r.out.find("--demo") != std::string::npos);
  CHECK(r.out.find("--single") != std::string::npos);
}

TEST_CASE("cli: --demo trains RATTENTION and SWA on the same data and prints them side by side") {
  TempDir dir("cli_demo");
  // The demonstration's preset with every size cut down: 2 local layers of window 6, so the table has a
  // "beyond the stack's reach" row at d > 12.
  const rattn_test::Run r = run_program("train_tiny", {"--demo", "--d-model", "8", "--heads", "1", "--kv-heads", "1",
                                                       "--head-dim", "2", "--window", "6", "--seq-len", "32",
                                                       "--pairs", "2", "--batch", "2", "--steps", "40",
                                                       "--eval-seqs", "4", "--threads", "1", "--ckpt", dir / "d.ckpt"},
                                        120);
  INFO("exit " << r.status << "\nstdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("== model 1 of 2: RATTENTION") != std::string::npos);
  CHECK(r.out.find("== model 2 of 2: SWA") != std::string::npos);
  CHECK(r.out.find("no key at a distance in (w, 12]") != std::string::npos);  // --far-beyond = layers x w
  CHECK(r.out.find("beyond the stack's reach, d > 12") != std::string::npos);
  CHECK(r.out.find("queries of the held-out test set") != std::string::npos);
  CHECK(r.out.find("chance 1.6 %") != std::string::npos);
  // about 20 progress lines per model (steps / 20, plus the first step), never one per step
  long progress = 0;
  for (size_t at = 0; (at = r.out.find("\nstep ", at)) != std::string::npos; ++at) ++progress;
  CHECK(progress <= 2 * 22);
  CHECK(progress >= 2 * 19);
  CHECK(fs::exists(dir / "d.ckpt"));
  CHECK(fs::exists(dir / "d-swa.ckpt"));
}

TEST_CASE("cli: infer refuses every bad flag with exit 2 and one line naming it") {
  TempDir dir("cli_infer");
  const std::string ckpt = dir / "tiny.ckpt";
  write_tiny_checkpoint(ckpt);
  write_text(dir / "empty.ckpt", "");
  // The longest sequence the model flags allow is --seq-len 65536; a longer prompt is refused.
  const std::string long_prompt(70000, 'a');
  write_text(dir / "long_prompt.txt", long_prompt);
  expect_refused("infer", {},
                 {
                     {{"--bogus", "1"}, "--bogus"},
                     {{"--gen", "5", "--gen", "6"}, "--gen: given twice"},
                     {{"--gen"}, "--gen"},
                     {{"--gen", "x"}, "--gen"},
                     {{"--gen", "0"}, "--gen"},
                     {{"--gen", "-5"}, "--gen"},
                     {{"--eval-seqs", "0"}, "--eval-seqs"},
                     {{"--temperature", "-1"}, "--temperature"},
                     {{"--temperature", "hot"}, "--temperature"},
                     {{"--mem-len", "-1"}, "--mem-len"},
                     {{"--threads", "-1"}, "--threads"},
                     {{"--eval", "2"}, "--eval"},
                     {{"--ckpt", dir / "missing.ckpt"}, "--ckpt"},     // missing data file
                     {{"--ckpt", dir / "empty.ckpt"}, "--ckpt"},       // empty data file
                     {{"--ckpt", ckpt, "--eval", "0", "--prompt", long_prompt}, "--prompt"},  // prompt too long
                     {{"--export", dir / "out"}, "--export"},          // missing CHECKPOINT
                     {{"--logits", ckpt}, "--prompt"},                 // no prompt
                     {{"--logits", ckpt, "--prompt-file", dir / "missing.txt"}, "--prompt-file"},
                     {{"--logits", ckpt, "--prompt-file", dir / "long_prompt.txt"}, "--prompt"},
                 });
  CHECK_FALSE(fs::exists(dir / "out"));
}

TEST_CASE("cli: rattn-op refuses every bad flag and input with exit 2 and one line naming it") {
  TempDir dir("cli_op");
  const std::string in = dir / "in", bad = dir / "bad", zero = dir / "zero", out = dir / "out";
  fs::create_directories(in);
  fs::create_directories(bad);
  fs::create_directories(zero);
  std::vector<double> x(2 * 4 * 3 * 4, 0.25);
  auto save = [](const std::string& path, const std::vector<long>& shape, const double* data) {
    io::write_npy(path, io::make_npy(shape, data));
  };
  // Valid: B=2, T=4, H=2, G=1, D=4. bad: H=3 query heads over G=2 kv heads. zero: T=0.
  save(in + "/q.npy", {2, 4, 2, 4}, x.data());
  save(in + "/k.npy", {2, 4, 1, 4}, x.data());
  save(in + "/v.npy", {2, 4, 1, 4}, x.data());
  save(in + "/gamma_swa.npy", {2, 4}, x.data());
  save(in + "/gamma_rla.npy", {2, 4}, x.data());
  save(bad + "/q.npy", {2, 4, 3, 4}, x.data());
  save(bad + "/k.npy", {2, 4, 2, 4}, x.data());
  save(bad + "/v.npy", {2, 4, 2, 4}, x.data());
  save(zero + "/q.npy", {2, 0, 2, 4}, x.data());
  save(zero + "/k.npy", {2, 0, 1, 4}, x.data());
  save(zero + "/v.npy", {2, 0, 1, 4}, x.data());
  const std::string empty = dir / "empty";
  fs::create_directories(empty);
  write_text(empty + "/q.npy", "");
  fs::copy_file(in + "/k.npy", empty + "/k.npy");
  fs::copy_file(in + "/v.npy", empty + "/v.npy");

  const std::vector<std::string> io_flags = {"--in", in, "--out", out};
  auto with_io = [&](std::string op, std::vector<std::string> more) {
    std::vector<std::string> a = {op, "--in", in, "--out", out};
    a.insert(a.end(), more.begin(), more.end());
    return a;
  };
  expect_refused("rattn-op", {},
                 {
                     {{}, "OP"},
                     {{"softmax", "--in", in, "--out", out}, "softmax"},
                     {with_io("swa", {"--bogus", "1"}), "--bogus"},
                     {with_io("swa", {"--window", "1", "--window=2"}), "--window: given twice"},
                     {{"swa", "--out", out, "--in"}, "--in"},           // missing value
                     {with_io("swa", {"--window"}), "--window"},
                     {with_io("swa", {"--window", "abc"}), "--window"},  // not a number
                     {with_io("swa", {"--window", "1.5"}), "--window"},
                     {with_io("swa", {"--window", "-2"}), "--window"},   // window < -1
                     {with_io("swa", {"--window", "99999999999"}), "--window"},
                     {with_io("rla", {"--chunk", "0"}), "--chunk"},      // zero / negative sizes
                     {with_io("rla", {"--chunk", "-3"}), "--chunk"},
                     {with_io("rla", {"--feature", "softmax"}), "--feature"},
                     {with_io("rattn", {"--window", "-1"}), "--window"}, // rattn needs a window
                     {with_io("rattn", {"--window", "2", "--eps", "-1"}), "--eps"},
                     {with_io("rattn", {"--window", "2", "--rope-theta", "0"}), "--rope-theta"},
                     {with_io("rattn", {"--window", "2", "--rope-theta", "x"}), "--rope-theta"},
                     {with_io("swa", {"--feature", "sm2"}), "--feature"},  // does not apply to swa
                     {with_io("swa", {"--device", "tpu"}), "--device"},
                     {with_io("swa", {"--window", "1", "--window", "2"}), "--window"},
                     {{"swa", "--out", out}, "--in"},                     // required flag missing
                     {{"swa", "--in", in}, "--out"},
                     {{"swa", "--in", dir / "nowhere", "--out", out}, "--in"},  // missing data
                     {{"swa", "--in", empty, "--out", out}, "q.npy"},           // empty data file
                     {{"swa", "--in", bad, "--out", out}, "G = 2"},             // H % G != 0
                     {{"swa", "--in", zero, "--out", out}, "q.npy"},            // zero size
                 });
  CHECK_FALSE(fs::exists(out));  // all or nothing: no output for a refused run
}
