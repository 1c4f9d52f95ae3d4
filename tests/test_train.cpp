// The training loop (model/trainer.h) and the command line (model/cli.h): a few steps lower the
// loss, the same seed gives the same losses bit for bit, NaN stops training before any update and
// leaves the last checkpoint untouched, and every bad flag is one clear UsageError (exit status 2).
#include <doctest/doctest.h>

#include <filesystem>
#include <limits>
#include <sstream>

#include "model/backend_cpu.h"
#include "model/cli.h"
#include "model/config.h"
#include "model/trainer.h"
#include "tests/train_setup.h"

using namespace model;
using rattn_test::file_bytes;
using rattn_test::quiet_run;
using rattn_test::tiny_run;
namespace fs = std::filesystem;

namespace {

std::string tmp_path(const std::string& name) { return (fs::temp_directory_path() / ("rattn_test_train_" + name)).string(); }

}  // namespace

TEST_CASE("a few training steps lower the loss") {
  std::ostringstream log;
  const TrainOutcome r = train(tiny_run(40), quiet_run(tmp_path("lower.ckpt")), log);
  REQUIRE(r.status == 0);
  REQUIRE(r.losses.size() == 40);
  const double first = (r.losses[0] + r.losses[1] + r.losses[2]) / 3;
  const double last = (r.losses[37] + r.losses[38] + r.losses[39]) / 3;
  CAPTURE(first);
  CAPTURE(last);
  CHECK(last < first - 0.5);
  CHECK(log.str().find("step     40/40") != std::string::npos);
  CHECK(log.str().find("accuracy by key-to-query distance") != std::string::npos);
  fs::remove(tmp_path("lower.ckpt"));
}

TEST_CASE("same seed: the same losses bit for bit; another seed: other losses") {
  std::ostringstream log;
  const TrainOutcome a = train(tiny_run(6), quiet_run(tmp_path("a.ckpt")), log);
  const TrainOutcome b = train(tiny_run(6), quiet_run(tmp_path("b.ckpt")), log);
  Config c = tiny_run(6);
  c.train.seed = 2;
  const TrainOutcome d = train(c, quiet_run(tmp_path("d.ckpt")), log);
  REQUIRE(a.losses.size() == 6);
  CHECK(a.losses == b.losses);  // exact equality
  CHECK(a.losses != d.losses);
  CHECK(file_bytes(tmp_path("a.ckpt")) == file_bytes(tmp_path("b.ckpt")));
  for (const char* n : {"a.ckpt", "b.ckpt", "d.ckpt"}) fs::remove(tmp_path(n));
}

TEST_CASE("NaN loss stops training before the update and keeps the last good checkpoint") {
  const std::string ckpt = tmp_path("nan.ckpt");
  RunConfig run = quiet_run(ckpt);
  run.ckpt_interval = 2;
  std::vector<unsigned char> before;
  std::ostringstream log;
  const TrainOutcome r = train(tiny_run(10), run, log, [&](long step, ModelParams<float>& p) {
    if (step == 5) {
      before = file_bytes(ckpt);  // the checkpoint of step 4
      p.blocks[0].attn.Wq(0, 0) = std::numeric_limits<float>::quiet_NaN();
    }
  });
  CHECK(r.status == kStatusNonFinite);
  CHECK(r.last_step == 4);
  CHECK(r.losses.size() == 4);
  CHECK(r.stop_message.find("step 5: the loss is nan; stopping") != std::string::npos);
  CHECK(r.stop_message.find("left untouched") != std::string::npos);
  CHECK(log.str().find("stopping") == std::string::npos);  // the message is for stderr, not the progress log
  REQUIRE(!before.empty());
  CHECK(file_bytes(ckpt) == before);               // not overwritten
  CHECK(load_checkpoint<float>(ckpt).step == 4);   // and still loadable
  CHECK(!fs::exists(ckpt + ".tmp"));
  fs::remove(ckpt);
}

TEST_CASE("command line: unknown flag, missing value, non-number, out of range: one UsageError naming the flag") {
  auto parse = [](std::vector<std::string> args) {
    Config c;
    RunConfig r;
    FlagSet fs("train_tiny");
    bind_model_flags(fs, c.model);
    bind_train_flags(fs, c.train);
    bind_run_flags(fs, r);
    std::vector<char*> argv = {const_cast<char*>("train_tiny")};
    for (std::string& a : args) argv.push_back(a.data());
    fs.parse(int(argv.size()), argv.data());
    validate(c);
    return c;
  };
  CHECK_THROWS_WITH_AS(parse({"--d-modle", "64"}), doctest::Contains("unknown flag --d-modle"), UsageError);
  CHECK_THROWS_WITH_AS(parse({"--steps"}), doctest::Contains("--steps: missing value"), UsageError);
  CHECK_THROWS_WITH_AS(parse({"--lr", "fast"}), doctest::Contains("--lr: expected a number in [1e-08, 1]"), UsageError);
  CHECK_THROWS_WITH_AS(parse({"--layers", "3.5"}), doctest::Contains("--layers: expected an integer in [1, 64]"), UsageError);
  CHECK_THROWS_WITH_AS(parse({"--heads", "0"}), doctest::Contains("--heads: expected an integer in [1, 64], got '0'"), UsageError);
  CHECK_THROWS_WITH_AS(parse({"--local", "mamba"}), doctest::Contains("--local: expected one of swa|rattn|linear"), UsageError);
  CHECK_THROWS_WITH_AS(parse({"--pattern", "LXG"}), doctest::Contains("--pattern: expected a string of L"), UsageError);
  CHECK_THROWS_WITH_AS(parse({"--heads", "4", "--kv-heads", "3"}), doctest::Contains("--kv-heads"), UsageError);
  CHECK_THROWS_WITH_AS(parse({"--seq-len", "16", "--pairs", "8"}), doctest::Contains("--seq-len"), UsageError);
  CHECK_THROWS_WITH_AS(parse({"stray"}), doctest::Contains("unexpected argument"), UsageError);
  CHECK_THROWS_WITH_AS(parse({"--window", "1e3"}), doctest::Contains("--window"), UsageError);
  // Good values, both spellings.
  const Config c = parse({"--d-model=32", "--window", "8", "--local", "swa", "--lr", "1e-3", "--pattern", "LLLG"});
  CHECK(c.model.d_model == 32);
  CHECK(c.model.window == 8);
  CHECK(c.model.local_kind == "swa");
  CHECK(c.train.lr == 1e-3);
  // The guard turns a UsageError into exit status 2 and other errors into 1.
  CHECK(cli_main_guard("t", [] () -> int { throw UsageError("--x: bad"); }) == 2);
  CHECK(cli_main_guard("t", [] () -> int { throw std::runtime_error("io"); }) == 1);
  CHECK(cli_main_guard("t", [] { return 0; }) == 0);
}

TEST_CASE("--device cuda-ops (and infer's cuda) gives the kernel checker (float only); an unknown device is refused") {
  CHECK(make_backend<float>("cuda-ops")->name().rfind("cuda", 0) == 0);  // tests/test_cuda_backend.cpp checks it
  CHECK(make_backend<float>("cuda")->name().rfind("cuda", 0) == 0);
  CHECK_THROWS_WITH_AS(make_backend<double>("cuda-ops"), doctest::Contains("fp32"), UsageError);
  CHECK_THROWS_AS(make_backend<float>("tpu"), UsageError);
  CHECK(make_backend<float>("cpu") != nullptr);
}

TEST_CASE("config text round-trips exactly") {
  Config c = tiny_run(17);
  c.train.lr = 0.1 + 0.2;  // not exactly representable in short decimal
  c.model.rope_theta = 12345.678;
  c.train.text_file = "some file.txt";
  const Config d = config_from_text(config_to_text(c));
  CHECK(config_to_text(d) == config_to_text(c));
  CHECK(d.train.lr == c.train.lr);
  CHECK(d.train.text_file == "some file.txt");
  CHECK_THROWS_AS(config_from_text("d-model=abc\n"), UsageError);
  CHECK_THROWS_AS(config_from_text("no-such-key=1\n"), UsageError);
}

TEST_CASE("resume: the command line must agree with the checkpoint except --steps") {
  const Config ck = tiny_run(10);
  Config cli = tiny_run(20);
  const Config r = resolve_resume(ck, cli, {"steps", "ckpt"});
  CHECK(r.train.steps == 20);
  cli.model.window = 7;
  CHECK_THROWS_WITH_AS(resolve_resume(ck, cli, {"window"}), doctest::Contains("--window"), UsageError);
  // a flag that was not given is taken from the checkpoint, whatever the parsed default
  CHECK(resolve_resume(ck, cli, {}).model.window == 4);
}

TEST_CASE("qk-norm: --qk-norm 0 is the run without the flag, byte for byte; --qk-norm 1 learns, another model") {
  // spec §2.9. (That a run without the flag writes the bytes it wrote before the option existed was
  // checked against a build of the previous version: the same checkpoint, cmp-equal.)
  std::ostringstream log;
  Config zero = tiny_run(6);
  RunConfig ignored;
  FlagSet flags("train_tiny");
  bind_train_tiny_flags(flags, zero, ignored);
  flags.set("qk-norm", "0");
  const TrainOutcome a = train(tiny_run(6), quiet_run(tmp_path("qk_absent.ckpt")), log);
  const TrainOutcome b = train(zero, quiet_run(tmp_path("qk_zero.ckpt")), log);
  CHECK(a.losses == b.losses);
  CHECK(file_bytes(tmp_path("qk_absent.ckpt")) == file_bytes(tmp_path("qk_zero.ckpt")));
  Config on = tiny_run(40);
  flags.set("qk-norm", "1");  // the flag table writes into `zero`; copy the switch
  on.model.qk_norm = zero.model.qk_norm;
  REQUIRE(on.model.qk_norm == 1);
  const TrainOutcome c = train(on, quiet_run(tmp_path("qk_on.ckpt")), log);
  REQUIRE(c.status == 0);
  REQUIRE(c.losses.size() == 40);
  CHECK(c.losses[0] != a.losses[0]);  // with qk-norm the first forward is already another function
  const double first = (c.losses[0] + c.losses[1] + c.losses[2]) / 3;
  const double last = (c.losses[37] + c.losses[38] + c.losses[39]) / 3;
  CAPTURE(first);
  CAPTURE(last);
  CHECK(last < first - 0.5);
  CHECK(file_bytes(tmp_path("qk_on.ckpt")).size() > file_bytes(tmp_path("qk_zero.ckpt")).size());
  CHECK_THROWS_AS(flags.set("qk-norm", "yes"), UsageError);
  for (const char* n : {"qk_absent.ckpt", "qk_zero.ckpt", "qk_on.ckpt"}) fs::remove(tmp_path(n));
}

TEST_CASE("set_rla_gain: the RLA branch-norm scale of RATTENTION local layers and nothing else; init_params starts there") {
  // --rla-gain-init and pareto_eval --rla-off both go through set_rla_gain: on a linear stack gamma_rla is
  // the only branch's scale and stays 1; global layers have no RLA branch.
  for (const char* kind : {"rattn", "linear", "swa"}) {
    CAPTURE(kind);
    ModelConfig m = tiny_run(1).model;
    m.local_kind = kind;
    m.n_layers = 3;  // L G L
    ModelParams<double> one = init_params<double>(m, 7, 1.0, 1.0), half = init_params<double>(m, 7, 1.0, 0.5);
    ModelParams<double> set = one;
    set_rla_gain(m, set, 0.5);
    const auto a = named_tensors(m, one), b = named_tensors(m, half), c = named_tensors(m, set);
    REQUIRE(a.size() == b.size());
    int changed = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      CAPTURE(a[i].name);
      if (std::string(kind) == "rattn" && a[i].name.ends_with("attn.gamma_rla")) {
        CHECK((b[i].t->array() == 0.5).all());
        ++changed;
      } else {
        CHECK(*b[i].t == *a[i].t);
      }
      CHECK(*c[i].t == *b[i].t);
    }
    CHECK(changed == (std::string(kind) == "rattn" ? 2 : 0));
  }
}

TEST_CASE("RLA branch scale: --rla-gain-init 0 --rla-hold N trains as SWA for N steps, then the branch grows") {
  // The two flags test why a RATTENTION layer may not learn what an SWA layer learns (docs/experiments.md):
  // with gamma_rla at 0 and held, the layer's output is its SWA branch alone.
  std::ostringstream log;
  Config swa = tiny_run(8);  // the same schedule (the cosine spans --steps)
  swa.model.local_kind = "swa";
  Config held = tiny_run(8);  // rattn (the default local kind)
  REQUIRE(held.model.local_kind == "rattn");
  held.train.rla_gain_init = 0;
  held.train.rla_hold = 4;
  const TrainOutcome s = train(swa, quiet_run(tmp_path("hold_swa.ckpt")), log);
  Config held4 = held;
  held4.train.steps = 4;
  const TrainOutcome h4 = train(held4, quiet_run(tmp_path("hold4.ckpt")), log);
  const TrainOutcome h8 = train(held, quiet_run(tmp_path("hold8.ckpt")), log);
  REQUIRE(s.losses.size() == 8);
  REQUIRE(h8.losses.size() == 8);
  // the same initial weights (norm scales draw no random numbers), the same data: the SWA model's losses,
  // bit for bit (the RLA term adds exact zeros, forward and backward); after the hold, other losses
  for (size_t i = 0; i < 4; ++i) CHECK(h8.losses[i] == s.losses[i]);
  CHECK(h8.losses[5] != s.losses[5]);
  const Mat<float> g4 = load_checkpoint<float>(tmp_path("hold4.ckpt")).params.blocks[0].attn.gamma_rla;
  const Mat<float> g8 = load_checkpoint<float>(tmp_path("hold8.ckpt")).params.blocks[0].attn.gamma_rla;
  CHECK(g4.cwiseAbs().maxCoeff() == 0.0f);  // held: not one update
  CHECK(g8.cwiseAbs().maxCoeff() > 0.0f);   // released at step 5
  // the branch's size is printed as it grows (branch_share.h), and the settings are in the run's header
  CHECK(log.str().find("gamma_rla: starts at 0, not updated in steps 1..4") != std::string::npos);

  // without the hold, gamma_rla moves from step 1; at the defaults the run is the run without the flags
  Config free = held4;
  free.train.rla_hold = 0;
  train(free, quiet_run(tmp_path("hold_free.ckpt")), log);
  CHECK(load_checkpoint<float>(tmp_path("hold_free.ckpt")).params.blocks[0].attn.gamma_rla.cwiseAbs().maxCoeff() > 0);
  Config defaults = tiny_run(4);
  defaults.train.rla_gain_init = 1.0;
  defaults.train.rla_hold = 0;
  train(defaults, quiet_run(tmp_path("hold_defaults.ckpt")), log);
  train(tiny_run(4), quiet_run(tmp_path("hold_none.ckpt")), log);
  CHECK(file_bytes(tmp_path("hold_defaults.ckpt")) == file_bytes(tmp_path("hold_none.ckpt")));
  CHECK(config_to_text(defaults).find("rla-") == std::string::npos);
  CHECK(config_from_text(config_to_text(held)).train.rla_hold == 4);

  // on a kind without both branches the flags would mean nothing: refused
  swa.train.rla_hold = 4;
  CHECK_THROWS_WITH_AS(train(swa, quiet_run(tmp_path("hold_bad.ckpt")), log), doctest::Contains("--rla-hold"),
                       UsageError);
  for (const char* n : {"hold_swa.ckpt", "hold4.ckpt", "hold8.ckpt", "hold_free.ckpt", "hold_defaults.ckpt",
                        "hold_none.ckpt", "hold_bad.ckpt"})
    fs::remove(tmp_path(n));
}
