// tests/test_faults.cpp: faults from outside: a training run killed at random moments, a checkpoint
// that cannot be written, a checkpoint whose header asks for absurd sizes, and NaN/inf inputs.
//
// What is promised (model/checkpoint.h, tools/rattn-op.cpp):
//   - a SIGKILL at any moment leaves on disk either the previous or the new checkpoint, complete;
//     a run resumed from it continues exactly as the uninterrupted run would have;
//   - a checkpoint that cannot be written stops training with a message and status 1, and the
//     previous checkpoint is still there and loads; a folder in the way of its temporary file is
//     refused before training (status 2);
//   - a small checkpoint file cannot make the loader allocate more than the file justifies;
//   - bin/rattn-op refuses NaN/inf in any input with status 2 and one line naming the file and the
//     element, and writes nothing.
//   - a checkpoint whose finite weights overflow float32 stops bin/infer (--logits, the evaluation,
//     generation) with status 3 and one line naming the checkpoint, and writes nothing.
#include <doctest/doctest.h>
#include <sys/resource.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "io/npy.h"
#include "model/checkpoint.h"
#include "tests/check.h"
#include "tests/proc.h"
#include "tests/tiny_state.h"

namespace {
using rattn_test::TempDir;
namespace fs = std::filesystem;

// A small model whose checkpoint (about 2 MB) takes a noticeable share of each step to write, so
// that random kills land inside writes; checkpoint every step; constant lr (so --steps can change
// on --resume without changing any step's update).
std::vector<std::string> kill_run_flags(const std::string& ckpt, long steps) {
  return {"--d-model", "96",          "--heads",         "2",  "--kv-heads",   "1", "--head-dim", "16",
          "--layers",  "2",           "--pattern",       "LG", "--window",     "4", "--seq-len",  "16",
          "--pairs",   "2",           "--batch",         "1",  "--warmup",     "0", "--cosine",   "0",
          "--steps",   std::to_string(steps), "--eval-interval", "0", "--eval-seqs", "1", "--ckpt-interval", "1",
          "--ckpt",    ckpt,          "--threads",       "1",  "--log-every",  "1"};
}

// step -> loss, from train_tiny's progress lines "step      5/40 | loss 5.5432 | ...".
std::map<long, std::string> step_losses(const std::string& out) {
  std::map<long, std::string> m;
  size_t pos = 0;
  while ((pos = out.find("step ", pos)) != std::string::npos) {
    long step = 0, total = 0;
    char loss[32] = {0};
    if (std::sscanf(out.c_str() + pos, "step %ld/%ld | loss %31s", &step, &total, loss) == 3) m[step] = loss;
    pos += 5;
  }
  return m;
}

bool file_exists(const std::string& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}
}  // namespace

TEST_CASE("faults: SIGKILL at random moments during checkpoint writes never leaves a bad checkpoint") {
  TempDir dir("faults_kill");
  const std::string ckpt = dir / "run.ckpt";
  const long kBig = 100000;  // the killed runs would go on for ever
  std::mt19937_64 rng(20260611);
  long last_step = 0;
  int kills = 0, mid_write = 0, loads = 0;
  const int kRounds = 16;
  // Each round: start (or resume) the run, let it live base..base+0.6 s, SIGKILL it, then the file on
  // disk must load and must not have gone backwards. base starts at 0.15 s and doubles (up to 4 s)
  // after a round that saved nothing, so a slow machine or a sanitizer build still makes progress.
  long base_ms = 150;
  for (int round = 0; round < kRounds; ++round) {
    std::vector<std::string> args = kill_run_flags(ckpt, kBig);
    if (file_exists(ckpt)) args.insert(args.end(), {"--resume", ckpt});
    const pid_t pid = rattn_test::start_program("train_tiny", args, dir, "kill");
    const long delay_ms = base_ms + long(rng() % 600);
    ::usleep(useconds_t(delay_ms * 1000));
    ::kill(pid, SIGKILL);
    const rattn_test::Run r = rattn_test::wait_program(pid, dir, "kill");
    INFO("round " << round << ", killed after " << delay_ms << " ms; stderr: " << r.err);
    REQUIRE_MESSAGE(r.status == 128 + SIGKILL, "train_tiny ended before the kill (status " << r.status << ")");
    ++kills;
    if (file_exists(ckpt + ".tmp")) ++mid_write;  // killed between creating the temporary and the rename
    if (!file_exists(ckpt)) {  // killed before the first checkpoint
      base_ms = std::min(2 * base_ms, 4000L);
      continue;
    }
    model::TrainState<float> st;
    REQUIRE_NOTHROW(st = model::load_checkpoint<float>(ckpt));
    ++loads;
    CHECK(st.step >= last_step);
    if (st.step == last_step) base_ms = std::min(2 * base_ms, 4000L);
    last_step = st.step;
  }
  MESSAGE(kills << " kills, " << mid_write << " of them left a half-written temporary file; the checkpoint loaded "
                << loads << " times, last at step " << last_step);
  REQUIRE(last_step > 0);

  // Resume to a fixed end, then run the same config uninterrupted: every step after the last
  // checkpoint has the same loss (printed to 4 decimals; test_checkpoint.cpp checks bit-exactness
  // in-process), and both end with identical checkpoint files.
  const long end = last_step + 3;
  std::vector<std::string> args = kill_run_flags(ckpt, end);
  args.insert(args.end(), {"--resume", ckpt});
  const rattn_test::Run resumed = rattn_test::run_program("train_tiny", args, 120);
  INFO("resumed: " << resumed.err);
  REQUIRE(resumed.status == 0);
  const rattn_test::Run fresh = rattn_test::run_program("train_tiny", kill_run_flags(dir / "fresh.ckpt", end), 300);
  INFO("fresh: " << fresh.err);
  REQUIRE(fresh.status == 0);
  const auto a = step_losses(resumed.out), b = step_losses(fresh.out);
  for (long s = last_step + 1; s <= end; ++s) {
    CAPTURE(s);
    REQUIRE(a.count(s) == 1);
    REQUIRE(b.count(s) == 1);
    CHECK(a.at(s) == b.at(s));
  }
  CHECK(rattn_test::slurp_file(ckpt) == rattn_test::slurp_file(dir / "fresh.ckpt"));
}

TEST_CASE("faults: a checkpoint that cannot be written stops training and keeps the previous one") {
  TempDir dir("faults_write");
  const std::string ckpt = dir / "run.ckpt";
  const rattn_test::Run first = rattn_test::run_program("train_tiny", kill_run_flags(ckpt, 2), 120);
  INFO("first run: " << first.err);
  REQUIRE(first.status == 0);
  const std::string before = rattn_test::slurp_file(ckpt);
  REQUIRE(model::load_checkpoint<float>(ckpt).step == 2);

  SUBCASE("a folder in the way of the temporary file is refused before training") {
    // The writer creates "<ckpt>.tmp" exclusively; a folder of that name is not a stale temporary it may
    // remove, so the run is refused up front (status 2, nothing trained), naming the path.
    fs::create_directories(ckpt + ".tmp/blocker");
    std::vector<std::string> args = kill_run_flags(ckpt, 6);
    args.insert(args.end(), {"--resume", ckpt});
    const rattn_test::Run r = rattn_test::run_program("train_tiny", args, 120);
    INFO("exit " << r.status << "\nstdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.status == 2);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find(ckpt + ".tmp") != std::string::npos);  // says which file is in the way
    CHECK(step_losses(r.out).empty());                       // nothing was trained
    CHECK(rattn_test::slurp_file(ckpt) == before);           // the previous checkpoint is untouched
    CHECK(fs::exists(ckpt + ".tmp/blocker"));
  }
  SUBCASE("the disk fills up while writing (file size limit: write fails with EFBIG)") {
    // The child gets RLIMIT_FSIZE of 64 KiB (the checkpoint is about 2 MB) and ignores SIGXFSZ, so
    // write() fails as on a full disk; both are inherited through exec.
    const pid_t pid = ::fork();
    if (pid == 0) {
      struct rlimit lim = {64 << 10, 64 << 10};
      ::setrlimit(RLIMIT_FSIZE, &lim);
      ::signal(SIGXFSZ, SIG_IGN);
      std::vector<std::string> args = kill_run_flags(ckpt, 6);
      args.insert(args.end(), {"--resume", ckpt});
      const rattn_test::Run r = rattn_test::run_program("train_tiny", args, 120);
      std::ofstream(dir / "child.txt") << r.status << "\n" << r.err;
      ::_exit(0);
    }
    int ws = 0;
    ::waitpid(pid, &ws, 0);
    const std::string report = rattn_test::slurp_file(dir / "child.txt");
    INFO("child report (status, stderr): " << report);
    CHECK(report.rfind("1\n", 0) == 0);  // status 1: an error, reported
    CHECK(report.find(ckpt) != std::string::npos);
    CHECK(rattn_test::slurp_file(ckpt) == before);
    CHECK(model::load_checkpoint<float>(ckpt).step == 2);
    CHECK_FALSE(file_exists(ckpt + ".tmp"));  // the partial temporary is removed
  }
}

// A 1 KB file whose config block asks for the largest model the flags allow (about 90 GB of
// parameters and moments) must be refused from its size alone, not by trying to allocate.
TEST_CASE("faults: a tiny checkpoint with a huge config is refused without allocating it") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  RATTN_SKIP("RLIMIT_AS cannot bound memory under a sanitizer; the plain build runs this test");
  return;
#else
  TempDir dir("faults_huge");
  const std::string path = dir / "huge.ckpt";
  model::Config c;
  c.model.d_model = 1024, c.model.n_heads = 64, c.model.n_kv_heads = 64, c.model.head_dim = 256;
  c.model.ffn_dim = 16384, c.model.n_layers = 64;
  std::string body("RATTNCKP", 8);
  auto u32 = [&](uint32_t x) { body.append(reinterpret_cast<const char*>(&x), 4); };
  auto u64 = [&](uint64_t x) { body.append(reinterpret_cast<const char*>(&x), 8); };
  u32(model::kCheckpointVersion), u32(4), u64(1);
  const std::string cfg = model::config_to_text(c);
  u32(uint32_t(cfg.size())), body += cfg;
  u32(1), body += "1";
  u32(0);  // no tensors
  u64(model::fnv1a64(reinterpret_cast<const unsigned char*>(body.data()), body.size()));
  std::ofstream(path, std::ios::binary) << body;
  // In a child limited to 1 GB of address space: the load must end in a CheckpointError.
  const pid_t pid = ::fork();
  if (pid == 0) {
    struct rlimit lim = {1L << 30, 1L << 30};
    ::setrlimit(RLIMIT_AS, &lim);
    int code = 3;
    try {
      (void)model::load_checkpoint<float>(path);
      code = 4;
    } catch (const model::CheckpointError&) {
      code = 0;
    } catch (const std::bad_alloc&) {
      code = 5;
    } catch (...) {
      code = 6;
    }
    ::_exit(code);
  }
  int ws = 0;
  ::waitpid(pid, &ws, 0);
  const int code = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  INFO("child exit " << code << " (0 CheckpointError, 4 accepted, 5 std::bad_alloc: it tried to allocate the "
                                "config's tensors before checking the file holds them, 6 another exception)");
  CHECK(code == 0);
#endif
}

TEST_CASE("faults: NaN and inf in any rattn-op input are refused, naming the file and the element") {
  TempDir dir("faults_nan");
  const long B = 1, T = 3, H = 2, G = 1, D = 2;
  std::vector<double> q(size_t(B * T * H * D), 0.5), kv(size_t(B * T * G * D), -0.25), gamma(size_t(H * D), 1.0);
  std::vector<double> h0(size_t(B * G * 2 * D * D), 0.0);
  struct Poison {
    std::string op, file;
    long index;
    double value;
    std::string says;
  };
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  const std::vector<Poison> cases = {
      {"swa", "q.npy", 5, nan, "nan"},         {"swa", "k.npy", 0, inf, "inf"},
      {"swa", "v.npy", 5, -inf, "-inf"},       {"swa", "do.npy", 11, nan, "nan"},
      {"rla", "h0.npy", 3, inf, "inf"},        {"rattn", "gamma_swa.npy", 2, nan, "nan"},
      {"rattn", "gamma_rla.npy", 3, -inf, "-inf"}, {"rattn", "q.npy", 0, 1e300 * 1e300, "inf"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const Poison& p = cases[i];
    const std::string in = dir / ("in" + std::to_string(i)), out = dir / ("out" + std::to_string(i));
    fs::create_directories(in);
    auto save = [&](const std::string& name, const std::vector<long>& shape, std::vector<double> x, bool f32) {
      if (name == p.file) x[size_t(p.index)] = p.value;
      if (f32) {
        std::vector<float> xf(x.begin(), x.end());
        io::write_npy(in + "/" + name, io::make_npy(shape, xf.data()));
      } else {
        io::write_npy(in + "/" + name, io::make_npy(shape, x.data()));
      }
    };
    const bool f32 = i % 2 == 0;  // both dtypes
    save("q.npy", {B, T, H, D}, q, f32);
    save("k.npy", {B, T, G, D}, kv, f32);
    save("v.npy", {B, T, G, D}, kv, f32);
    save("do.npy", {B, T, H, D}, q, f32);
    if (p.op == "rattn") save("gamma_swa.npy", {H, D}, gamma, f32), save("gamma_rla.npy", {H, D}, gamma, f32);
    if (p.op == "rla") save("h0.npy", {B, G, 2 * D, D}, h0, f32);
    std::vector<std::string> args = {p.op, "--in", in, "--out", out};
    if (p.op == "rattn") args.insert(args.end(), {"--window", "1"});
    const rattn_test::Run r = rattn_test::run_program("rattn-op", args, 60);
    INFO(p.op << " with " << p.file << "[" << p.index << "] = " << p.value << ": exit " << r.status << ", stderr: " << r.err);
    CHECK(r.status == 2);
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
    CHECK(r.err.find(p.file) != std::string::npos);
    CHECK(r.err.find(" is " + p.says + " ") != std::string::npos);
    CHECK_FALSE(fs::exists(out));
  }
}

TEST_CASE("faults: finite weights that overflow float32 stop infer with status 3, naming the checkpoint") {
  TempDir dir("faults_overflow");
  // An output matrix of 3e38 (finite, so the checkpoint passes its validation): every logit, a sum of
  // d_model products of order 3e38, overflows to inf. (Weights inside the blocks would not do: the RMS
  // norms rescale whatever reaches them.)
  model::TrainState<float> st = rattn_test::tiny_train_state();
  for (auto& t : model::named_tensors(st.config.model, st.params))
    if (t.name == "W_out") t.t->setConstant(3e38f);
  const std::string ckpt = dir / "huge.ckpt", out = dir / "logits.npy";
  model::save_checkpoint(ckpt, st);
  const rattn_test::Run logits = rattn_test::run_program("infer", {"--logits", ckpt, "--prompt", "abc", "--out", out}, 60);
  const rattn_test::Run eval = rattn_test::run_program("infer", {"--ckpt", ckpt, "--eval-seqs", "2", "--mem-len", "4"}, 60);
  const rattn_test::Run gen =
      rattn_test::run_program("infer", {"--ckpt", ckpt, "--eval", "0", "--prompt", "ab", "--gen", "3", "--mem-len", "4"}, 60);
  for (const rattn_test::Run* r : {&logits, &eval, &gen}) {
    INFO("exit " << r->status << ", stderr: " << r->err);
    CHECK(r->status == 3);
    CHECK(std::count(r->err.begin(), r->err.end(), '\n') == 1);
    CHECK(r->err.find(ckpt) != std::string::npos);
    CHECK(r->err.find("non-finite") != std::string::npos);
  }
  CHECK(logits.err.find("position 0") != std::string::npos);  // the first non-finite logit, located
  CHECK_FALSE(file_exists(out));
  // The same checkpoint with ordinary weights: both succeed (the check is not a refusal of everything).
  model::save_checkpoint(ckpt, rattn_test::tiny_train_state());
  CHECK(rattn_test::run_program("infer", {"--logits", ckpt, "--prompt", "abc", "--out", out}, 60).status == 0);
  CHECK(rattn_test::run_program("infer", {"--ckpt", ckpt, "--eval-seqs", "2", "--mem-len", "4"}, 60).status == 0);
  CHECK(rattn_test::run_program("infer", {"--ckpt", ckpt, "--eval", "0", "--prompt", "ab", "--gen", "3", "--mem-len", "4"},
                                60).status == 0);
}
