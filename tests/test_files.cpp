// tests/test_files.cpp: what the programs do with the files they are given (io/files.h).
//
//   1. No existing file is overwritten unless it is the program's own output of the same kind: a
//      checkpoint path replaces only a rattn checkpoint (on --resume, only one of its own run), never a
//      folder, a device, a fifo, a link, a file of another kind or an input of the run; temporaries are
//      created exclusively, never through a link; rattn-op's --out never mixes the outputs of two runs.
//   2. Every read is bounded and refuses what is not a regular file, before reading: a folder, a fifo,
//      an endless device, a file larger than the stated limit; the message names the flag or the file.
// Each class is run against every program and flag that reads or writes such a path; a refused path
// is a bad command line: exit status 2 and one line on stderr, and the file at the path is unchanged.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "io/files.h"
#include "io/npy.h"
#include "model/checkpoint.h"
#include "tests/check.h"
#include "tests/proc.h"
#include "tests/tiny_state.h"

namespace {
using rattn_test::Run;
using rattn_test::TempDir;
namespace fs = std::filesystem;

constexpr long kMemLimit = 4L << 30;  // a program that reads an endless file runs out of this quickly

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }
std::string slurp(const std::string& p) { return rattn_test::slurp_file(p); }

// The smallest training run (tests/test_cli.cpp's), writing its checkpoint to ckpt.
std::vector<std::string> tiny_train(const std::string& ckpt, std::vector<std::string> more = {}) {
  std::vector<std::string> a = {"--d-model", "8",  "--heads", "1",  "--kv-heads", "1",  "--head-dim", "2",
                                "--layers",  "1",  "--seq-len", "16", "--pairs",  "2",  "--batch",    "1",
                                "--steps",   "1",  "--warmup", "0",  "--eval-seqs", "1", "--threads", "1",
                                "--ckpt",    ckpt};
  a.insert(a.end(), more.begin(), more.end());
  return a;
}

// One refused run: status 2, one line on stderr that names every string of must_name, none of the
// messages that name nothing ("Is a directory" alone, std::bad_alloc, "Success").
void expect_refused(const std::string& what, const Run& r, const std::vector<std::string>& must_name) {
  INFO(what << "\n  exit " << r.status << "\n  stderr: " << r.err);
  CHECK(r.status == 2);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  for (const std::string& s : must_name) CHECK_MESSAGE(r.err.find(s) != std::string::npos, "stderr must name " << s);
  CHECK(r.err.find("bad_alloc") == std::string::npos);
  CHECK(r.err.find("underflow") == std::string::npos);
  CHECK(r.err.find("Success") == std::string::npos);
}

// A character device inside dir: a real node when this user may create one, else a link to /dev/null
// (never /dev/null itself: a program that wrongly replaces it would break the machine).
std::string make_char_device(const TempDir& dir, const std::string& name) {
  const std::string p = dir / name;
  if (::mknod(p.c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0) return p;
  fs::create_symlink("/dev/null", p);
  return p;
}

bool is_char_device(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISCHR(st.st_mode);
}
bool is_fifo(const std::string& p) {
  struct stat st{};
  return ::lstat(p.c_str(), &st) == 0 && S_ISFIFO(st.st_mode);
}

// A file of `size` bytes that takes no disk space (a hole); false when the file system cannot hold it.
bool make_sparse(const std::string& p, const std::string& head, uint64_t size) {
  write_text(p, head);
  return ::truncate(p.c_str(), off_t(size)) == 0;
}

// Text for --text that starts like a checkpoint: only the rule "never an input of the run" refuses it.
std::string checkpoint_like_text() {
  std::string t = "RATTNCKP";
  while (t.size() < 600) t += "the quick brown fox jumps over the lazy dog. ";
  return t;
}

std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> s;
  for (auto& e : fs::directory_iterator(dir)) s.insert(e.path().filename().string());
  return s;
}

void write_op_inputs(const std::string& in, bool with_do) {
  fs::create_directories(in);
  std::vector<double> x(1 * 4 * 2 * 4, 0.25);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.1 * double(i % 7) - 0.3;
  io::write_npy(in + "/q.npy", io::make_npy({1, 4, 2, 4}, x.data()));
  io::write_npy(in + "/k.npy", io::make_npy({1, 4, 1, 4}, x.data()));
  io::write_npy(in + "/v.npy", io::make_npy({1, 4, 1, 4}, x.data()));
  if (with_do) io::write_npy(in + "/do.npy", io::make_npy({1, 4, 2, 4}, x.data()));
}
}  // namespace

// ---- the library ---------------------------------------------------------------------------------

TEST_CASE("files: read_bounded refuses every non-regular file and every file above its limit, before reading") {
  TempDir dir("files_read");
  const std::string fifo = dir / "fifo", folder = dir / "folder", small = dir / "small.txt";
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  fs::create_directories(folder);
  write_text(small, "0123456789");
  struct Case {
    std::string path, says;
  };
  for (const Case& c : std::vector<Case>{{folder, "is a directory, not a regular file"},
                                         {fifo, "is a fifo, not a regular file"},
                                         {"/dev/zero", "is a character device, not a regular file"},
                                         {"/dev/urandom", "is a character device, not a regular file"},
                                         {small, "10 bytes, larger than the 9 bytes allowed for a test file"},
                                         {dir / "absent", "cannot open"}}) {
    CAPTURE(c.path);
    CHECK_THROWS_WITH_AS(io::read_bounded(c.path, 9, "input '" + c.path + "'", "a test file"),
                         doctest::Contains(("input '" + c.path + "': " + c.says).c_str()), io::FileRefused);
  }
  CHECK(io::read_bounded(small, 10, "small", "a test file") == "0123456789");
  CHECK(io::bytes_text(256 * io::kMiB) == "256 MiB");
}

TEST_CASE("files: create_exclusive never writes through a link and removes only a stale file of its kind") {
  TempDir dir("files_create");
  const io::OutputKind kind{"a test output", [](const std::string& head) { return head.rfind("OURS", 0) == 0; }};
  const std::string victim = dir / "victim.txt", tmp = dir / "out.tmp";
  write_text(victim, "precious");
  SUBCASE("a link at the temporary name is refused; its target is unchanged") {
    fs::create_symlink(victim, tmp);
    CHECK_THROWS_WITH_AS(io::create_exclusive(tmp, kind, "--flag"), doctest::Contains("a symbolic link"),
                         io::FileRefused);
    CHECK(slurp(victim) == "precious");
    CHECK(fs::is_symlink(tmp));
  }
  SUBCASE("a foreign regular file is refused and kept") {
    write_text(tmp, "someone else's");
    CHECK_THROWS_WITH_AS(io::create_exclusive(tmp, kind, "--flag"), doctest::Contains("is not a test output"),
                         io::FileRefused);
    CHECK(slurp(tmp) == "someone else's");
  }
  SUBCASE("a stale temporary of ours, or an empty one, is replaced") {
    for (const std::string& stale : {std::string("OURS, half written"), std::string()}) {
      write_text(tmp, stale);
      const int fd = io::create_exclusive(tmp, kind, "--flag");
      REQUIRE(fd >= 0);
      CHECK(io::write_all(fd, "OURS new", 8));
      ::close(fd);
      CHECK(slurp(tmp) == "OURS new");
    }
  }
}

TEST_CASE("files: save_checkpoint refuses a link or a foreign file at <path>.tmp and at <path>") {
  TempDir dir("files_save");
  const std::string ckpt = dir / "a.ckpt", victim = dir / "victim.txt";
  write_text(victim, "precious");
  const auto st = rattn_test::tiny_train_state();
  fs::create_symlink(victim, ckpt + ".tmp");
  CHECK_THROWS_AS(model::save_checkpoint(ckpt, st), model::CheckpointError);
  CHECK(slurp(victim) == "precious");
  CHECK_FALSE(fs::exists(ckpt));
  fs::remove(ckpt + ".tmp");
  write_text(ckpt, "not a checkpoint");
  CHECK_THROWS_WITH_AS(model::save_checkpoint(ckpt, st), doctest::Contains("is not a rattn checkpoint"),
                       model::CheckpointError);
  CHECK(slurp(ckpt) == "not a checkpoint");
  CHECK_FALSE(fs::exists(ckpt + ".tmp"));
  fs::remove(ckpt);
  model::save_checkpoint(ckpt, st);  // a new file, then its own checkpoint replaced
  model::save_checkpoint(ckpt, st);
  CHECK(model::load_checkpoint<float>(ckpt).step == st.step);
}

// ---- property 1: no existing file is overwritten unless it is the program's own output ---------

TEST_CASE("files: train_tiny --ckpt replaces only a rattn checkpoint, never an input or a non-regular file") {
  TempDir dir("files_ckpt");
  const std::string text = dir / "text.txt";
  write_text(text, checkpoint_like_text());
  const std::string victim = dir / "victim.txt";
  write_text(victim, "precious");

  // (path to give as --ckpt, how it was made, extra flags, what stderr must name)
  struct Case {
    std::string what, path;
    std::vector<std::string> more;
    std::string says;
  };
  const std::string folder = dir / "folder.ckpt", fifo = dir / "fifo.ckpt", foreign = dir / "notes.txt";
  fs::create_directories(folder);
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  const std::string device = make_char_device(dir, "device.ckpt");
  write_text(foreign, "a text file that is not a checkpoint");
  const std::string link = dir / "link.ckpt";
  fs::create_symlink(victim, link);
  const std::string tmp_link = dir / "tmplink.ckpt";  // a stale "<path>.tmp" that is a link to the victim
  fs::create_symlink(victim, tmp_link + ".tmp");
  const std::string tmp_foreign = dir / "tmpforeign.ckpt";
  write_text(tmp_foreign + ".tmp", "someone else's file");
  const std::vector<Case> cases = {
      {"a folder", folder, {}, "is a directory"},
      {"a fifo", fifo, {}, "is a fifo"},
      {"a character device", device, {}, "is a"},
      {"a link to another file", link, {}, "is a symbolic link"},
      {"a text file", foreign, {}, "is not a rattn checkpoint"},
      {"the --text file (which starts like a checkpoint)", text, {"--text", text}, "is the --text file"},
      {"a path whose .tmp is a link", tmp_link, {}, "a symbolic link"},
      {"a path whose .tmp is a foreign file", tmp_foreign, {}, "is not a rattn checkpoint"},
  };
  for (const Case& c : cases) {
    const std::string before = fs::is_regular_file(fs::symlink_status(c.path)) ? slurp(c.path) : "";
    const Run r = rattn_test::run_program("train_tiny", tiny_train(c.path, c.more), 60, kMemLimit);
    expect_refused("--ckpt " + c.what, r, {"--ckpt", c.path, c.says});
    CHECK(r.out.find("step ") == std::string::npos);  // refused before training
    if (!before.empty()) CHECK(slurp(c.path) == before);
  }
  CHECK(fs::is_directory(folder));
  CHECK(is_fifo(fifo));
  CHECK((is_char_device(device) || fs::is_symlink(device)));
  CHECK(fs::is_symlink(link));
  CHECK(fs::is_symlink(tmp_link + ".tmp"));
  CHECK(slurp(victim) == "precious");
  CHECK(slurp(text) == checkpoint_like_text());
  CHECK(slurp(tmp_foreign + ".tmp") == "someone else's file");

  SUBCASE("a rattn checkpoint, even another run's, is replaced; so is a stale temporary of one") {
    const std::string other = dir / "other.ckpt";
    model::save_checkpoint(other, rattn_test::tiny_train_state());
    write_text(other + ".tmp", "RATTNCKP and a write that was killed");
    const Run r = rattn_test::run_program("train_tiny", tiny_train(other), 60, kMemLimit);
    INFO("stderr: " << r.err);
    CHECK(r.status == 0);
    CHECK(model::load_checkpoint<float>(other).config.model.d_model == 8);
    CHECK_FALSE(fs::exists(other + ".tmp"));
  }
  SUBCASE("--resume writes to its own checkpoint, never over another run's") {
    const std::string mine = dir / "mine.ckpt", theirs = dir / "theirs.ckpt";
    REQUIRE(rattn_test::run_program("train_tiny", tiny_train(mine), 60, kMemLimit).status == 0);
    model::save_checkpoint(theirs, rattn_test::tiny_train_state());  // another config
    const std::string theirs_before = slurp(theirs);
    const Run r = rattn_test::run_program("train_tiny", {"--resume", mine, "--steps", "2", "--ckpt", theirs}, 60,
                                          kMemLimit);
    expect_refused("--resume into another run's checkpoint", r, {"--ckpt", theirs, "another run"});
    CHECK(slurp(theirs) == theirs_before);
    const Run own = rattn_test::run_program("train_tiny", {"--resume", mine, "--steps", "2"}, 60, kMemLimit);
    INFO("stderr: " << own.err);
    CHECK(own.status == 0);
    CHECK(model::load_checkpoint<float>(mine).step == 2);
  }
}

TEST_CASE("files: infer --logits --out replaces only an earlier .npy, never the checkpoint or the prompt") {
  TempDir dir("files_out");
  const std::string ckpt = dir / "m.ckpt", prompt = dir / "prompt.txt", victim = dir / "victim.txt";
  model::save_checkpoint(ckpt, rattn_test::tiny_train_state());
  write_text(prompt, "hello");
  write_text(victim, "precious");
  const std::string ckpt_bytes = slurp(ckpt);
  const std::string folder = dir / "folder.npy", link = dir / "link.npy", text = dir / "text.npy";
  fs::create_directories(folder);
  fs::create_symlink(victim, link);
  write_text(text, "not numpy");
  struct Case {
    std::string what, out, says;
  };
  for (const Case& c : std::vector<Case>{{"the checkpoint", ckpt, "is the checkpoint file"},
                                         {"the prompt file", prompt, "is the --prompt-file file"},
                                         {"a folder", folder, "is a directory"},
                                         {"a link", link, "is a symbolic link"},
                                         {"a file that is not .npy", text, "is not a .npy file"}}) {
    const Run r = rattn_test::run_program("infer", {"--logits", ckpt, "--prompt-file", prompt, "--out", c.out}, 60,
                                          kMemLimit);
    expect_refused("--out " + c.what, r, {"--out", c.out, c.says});
  }
  CHECK(slurp(ckpt) == ckpt_bytes);
  CHECK(slurp(prompt) == "hello");
  CHECK(slurp(victim) == "precious");
  CHECK(slurp(text) == "not numpy");
  CHECK(fs::is_directory(folder));
  // An earlier .npy output is replaced.
  const std::string npy = dir / "logits.npy";
  for (int i = 0; i < 2; ++i) {
    const Run r = rattn_test::run_program("infer", {"--logits", ckpt, "--prompt", "hi", "--out", npy}, 60, kMemLimit);
    INFO("stderr: " << r.err);
    CHECK(r.status == 0);
    CHECK(io::read_npy(npy).shape == std::vector<long>{2, 256});
  }
}

TEST_CASE("files: rattn-op --out never mixes two runs and replaces only .npy files") {
  TempDir dir("files_op");
  const std::string in = dir / "in", in_fwd = dir / "in_fwd", out = dir / "out";
  write_op_inputs(in, true);
  write_op_inputs(in_fwd, false);
  const Run with_grads = rattn_test::run_program("rattn-op", {"swa", "--in", in, "--out", out, "--window", "1"}, 60);
  REQUIRE(with_grads.status == 0);
  CHECK(files_in(out) == std::set<std::string>{"o.npy", "dq.npy", "dk.npy", "dv.npy"});
  // A forward-only run into the same folder: the gradients of the earlier run are removed.
  const Run fwd = rattn_test::run_program("rattn-op", {"swa", "--in", in_fwd, "--out", out, "--window", "1"}, 60);
  REQUIRE(fwd.status == 0);
  CHECK(files_in(out) == std::set<std::string>{"o.npy"});

  // A file of the output set that is not a regular .npy file: refused, kept, nothing written.
  const std::string victim = dir / "victim.txt";
  write_text(victim, "precious");
  struct Case {
    std::string what, name;
  };
  for (const Case& c : std::vector<Case>{{"a text file at a stale name", "dq.npy"},
                                         {"a folder at o.npy", "o.npy"},
                                         {"a link at o.npy", "o.npy"}}) {
    const std::string o2 = dir / ("out_" + std::to_string(c.what.size()));
    fs::create_directories(o2);
    const std::string p = o2 + "/" + c.name;
    if (c.what.find("text") != std::string::npos) write_text(p, "my own notes");
    else if (c.what.find("folder") != std::string::npos) fs::create_directories(p);
    else fs::create_symlink(victim, p);
    const Run r = rattn_test::run_program("rattn-op", {"swa", "--in", in_fwd, "--out", o2, "--window", "1"}, 60);
    expect_refused("--out with " + c.what, r, {"--out", p});
    CHECK(files_in(o2) == std::set<std::string>{c.name});
    if (c.what.find("text") != std::string::npos) CHECK(slurp(p) == "my own notes");
  }
  CHECK(slurp(victim) == "precious");
  // --out that is a file, not a folder.
  const Run r = rattn_test::run_program("rattn-op", {"swa", "--in", in_fwd, "--out", victim, "--window", "1"}, 60);
  expect_refused("--out a regular file", r, {"--out", victim, "not a folder"});
  CHECK(slurp(victim) == "precious");
}

TEST_CASE("files: infer --export replaces an earlier export as a whole and nothing else") {
  TempDir dir("files_export");
  model::TrainState<float> two = rattn_test::tiny_train_state();
  two.config.model.n_layers = 2;
  two.params = model::init_params<float>(two.config.model, 1);
  two.m = model::params_filled<float>(two.config.model, 0.0f);
  two.v = model::params_filled<float>(two.config.model, 0.0f);
  const std::string ck1 = dir / "one.ckpt", ck2 = dir / "two.ckpt", out = dir / "export";
  model::save_checkpoint(ck1, rattn_test::tiny_train_state());
  model::save_checkpoint(ck2, two);
  REQUIRE(rattn_test::run_program("infer", {"--export", out, ck2}, 60).status == 0);
  REQUIRE(fs::exists(out + "/block1.attn.Wq.npy"));
  write_text(out + "/notes.txt", "mine");  // not part of any export: left alone
  const Run r = rattn_test::run_program("infer", {"--export", out, ck1}, 60);
  INFO("stderr: " << r.err);
  REQUIRE(r.status == 0);
  CHECK_FALSE(fs::exists(out + "/block1.attn.Wq.npy"));  // the 2-layer export's extra layer is gone
  CHECK(fs::exists(out + "/block0.attn.Wq.npy"));
  CHECK(slurp(out + "/notes.txt") == "mine");
  // A config.json that is not an export's is never replaced.
  const std::string other = dir / "other";
  fs::create_directories(other);
  write_text(other + "/config.json", "{\"mine\": true}");
  const Run refused = rattn_test::run_program("infer", {"--export", other, ck1}, 60);
  expect_refused("--export into a folder with a foreign config.json", refused, {"--export", "config.json"});
  CHECK(files_in(other) == std::set<std::string>{"config.json"});
}

// ---- property 2: every read is bounded and refuses what is not a regular file --------------------

TEST_CASE("files: every input path refuses a folder, a fifo, an endless device and an oversized file, at once") {
  TempDir dir("files_inputs");
  const std::string folder = dir / "folder", fifo = dir / "fifo";
  fs::create_directories(folder);
  REQUIRE(::mkfifo(fifo.c_str(), 0644) == 0);
  const std::string ckpt = dir / "m.ckpt", out = dir / "out";
  model::save_checkpoint(ckpt, rattn_test::tiny_train_state());

  // Oversized regular files, as holes: a text above 256 MiB, a checkpoint above the largest the flags
  // allow, a prompt above 65536 bytes, an .npy longer than its header says.
  const std::string big_text = dir / "big.txt", big_ckpt = dir / "big.ckpt", big_prompt = dir / "big_prompt.txt";
  const bool sparse = make_sparse(big_text, "text", (256 << 20) + 1) &&
                      make_sparse(big_ckpt, "RATTNCKP", model::max_checkpoint_bytes() + 1) &&
                      make_sparse(big_prompt, "prompt", 1 << 20);

  struct Case {
    std::string program;
    std::vector<std::string> args;  // with "@" where the path goes
    std::string flag;               // what stderr must name besides the path
  };
  const std::vector<Case> readers = {
      {"train_tiny", tiny_train(dir / "t.ckpt", {"--text", "@"}), "--text"},
      {"train_tiny", {"--resume", "@", "--ckpt", dir / "r.ckpt"}, "--resume"},
      {"infer", {"--ckpt", "@", "--eval", "0", "--mem-len", "8"}, "--ckpt"},
      {"infer", {"--logits", "@", "--prompt", "hi"}, "--logits"},
      {"infer", {"--logits", ckpt, "--prompt-file", "@"}, "--prompt-file"},
      {"infer", {"--export", out, "@"}, "--export"},
  };
  struct Source {
    std::string what, path, says;
  };
  std::vector<Source> sources = {{"a folder", folder, "is a directory, not a regular file"},
                                 {"a fifo", fifo, "is a fifo, not a regular file"},
                                 {"/dev/zero", "/dev/zero", "is a character device, not a regular file"},
                                 {"/dev/urandom", "/dev/urandom", "is a character device, not a regular file"}};
  for (const Case& c : readers)
    for (const Source& s : sources) {
      std::vector<std::string> args = c.args;
      for (auto& a : args)
        if (a == "@") a = s.path;
      const Run r = rattn_test::run_program(c.program, args, 60, kMemLimit);
      expect_refused(c.program + " " + c.flag + " " + s.what, r, {c.flag, s.path, s.says});
    }
  if (!sparse) {
    MESSAGE("this file system cannot hold large sparse files: the size limits are not checked here");
  } else {
    struct Big {
      std::string program;
      std::vector<std::string> args;
      std::vector<std::string> says;
    };
    for (const Big& b : std::vector<Big>{
             {"train_tiny", tiny_train(dir / "t.ckpt", {"--text", big_text}), {"--text", "256 MiB", "a text file"}},
             {"train_tiny", {"--resume", big_ckpt, "--ckpt", dir / "r.ckpt"}, {"--resume", "allowed for a checkpoint"}},
             {"infer", {"--ckpt", big_ckpt}, {"--ckpt", "allowed for a checkpoint"}},
             {"infer", {"--logits", ckpt, "--prompt-file", big_prompt}, {"--prompt-file", "65536 bytes"}}}) {
      const Run r = rattn_test::run_program(b.program, b.args, 60, kMemLimit);
      expect_refused(b.program + " " + b.says[0] + " oversized", r, b.says);
    }
  }
  CHECK_FALSE(fs::exists(out));
  CHECK_FALSE(fs::exists(dir / "t.ckpt"));
  CHECK_FALSE(fs::exists(dir / "r.ckpt"));
}

TEST_CASE("files: rattn-op refuses an input .npy that is not a regular file or is longer than its header says") {
  TempDir dir("files_npy");
  const std::string in = dir / "in", out = dir / "out";
  write_op_inputs(in, false);
  const std::string q = in + "/q.npy";
  const std::string q_bytes = slurp(q);
  struct Case {
    std::string what, says;
  };
  for (const Case& c : std::vector<Case>{{"a folder", "is a directory, not a regular file"},
                                         {"a fifo", "is a fifo, not a regular file"},
                                         {"a link to /dev/zero", "is a character device, not a regular file"},
                                         {"an .npy with 64 GiB of data past its header",
                                          "the header does not describe"}}) {
    fs::remove_all(q);
    if (c.what == "a folder") fs::create_directories(q);
    else if (c.what == "a fifo") REQUIRE(::mkfifo(q.c_str(), 0644) == 0);
    else if (c.what == "a link to /dev/zero") fs::create_symlink("/dev/zero", q);
    else if (!make_sparse(q, q_bytes, uint64_t(64) << 30)) {
      MESSAGE("no large sparse file here: the header bound is not checked");
      continue;
    }
    const Run r = rattn_test::run_program("rattn-op", {"swa", "--in", in, "--out", out}, 60, kMemLimit);
    expect_refused("q.npy " + c.what, r, {q, c.says});
  }
  CHECK_FALSE(fs::exists(out));
  // The reader itself, on a header that promises less than the file holds: refused before the data.
  fs::remove_all(q);
  REQUIRE(make_sparse(q, q_bytes, q_bytes.size() + 5));
  CHECK_THROWS_WITH_AS(io::read_npy(q), doctest::Contains("the header does not describe the data"), io::NpyError);
}
