// tests/test_mpi.cpp: `mpirun -np N bin/train_tiny` (model/data_parallel.h, model/mpi_job.h) on this machine,
// N processes oversubscribing its cores:
//   - 1, 2 and 4 ranks train the same bits as one process without mpirun: the same progress lines and the
//     same checkpoint, byte for byte (parameters, AdamW moments, data generator state);
//   - a checkpoint written by 4 ranks resumes with 2, then with 1, and ends where one uninterrupted process ends;
//   - a rank killed mid-run: mpirun exits non-zero naming it, the other ranks' one-line stop messages (those
//     mpirun forwards) name the last complete checkpoint, and that checkpoint loads and resumes;
//   - a --batch that does not split into power-of-two shares is refused with status 2 and one line;
//   - --device cuda across 2 and 4 ranks (the device-resident step, gradients all-reduced as the NCCL
//     reducer does on GPUs; here on the CPU execution layer) follows the one-device run.
// Skipped, with the reason, when bin/train_tiny was built without MPI (always so in the sanitizer builds) or
// mpirun is not on the PATH.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "tests/check.h"
#include "tests/proc.h"

namespace {
using rattn_test::Run;
using rattn_test::TempDir;
namespace fs = std::filesystem;

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path ? path : "");
  std::string dir;
  while (std::getline(dirs, dir, ':'))
    if (!dir.empty() && ::access((fs::path(dir) / name).c_str(), X_OK) == 0) return (fs::path(dir) / name).string();
  return "";
}

// Why the MPI tests cannot run here ("" when they can).
std::string why_not() {
#if defined(__SANITIZE_ADDRESS__)
  // OpenMPI keeps thousands of start-up allocations until exit, which LeakSanitizer reports in every rank
  // (about 120 kB in 3,300 allocations, for MPI_Init alone), so the sanitizer builds leave MPI out (Makefile).
  // The MPI-free part (the tree and the combination of the ranks' nodes) runs under ASan in test_tree_reduce.
  return "the sanitizer builds leave MPI out: OpenMPI's start-up allocations are leaks to LeakSanitizer; "
         "test_tree_reduce checks the tree and the combination of the ranks' nodes";
#else
  if (find_on_path("mpirun").empty()) return "mpirun not found: scripts/deps.sh installs OpenMPI";
  const Run help = rattn_test::run_program("train_tiny", {"--help"}, 60);
  if (help.out.find("mpirun -np N") == std::string::npos)
    return "bin/train_tiny built without MPI: scripts/deps.sh installs OpenMPI, then rebuild";
  return "";
#endif
}

// mpirun for tests: N processes on however few cores there are, no binding (each rank's OpenMP threads may
// use any core), allowed as root (CI), no single-copy shared memory (not permitted in every container).
std::vector<std::string> mpirun(int ranks) {
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
  ::setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
  ::setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
  return {find_on_path("mpirun"), "--oversubscribe", "--bind-to", "none", "-np", std::to_string(ranks),
          rattn_test::program_path("train_tiny")};
}

Run run_mpi(int ranks, const std::vector<std::string>& args, const TempDir& dir, const std::string& tag) {
  std::vector<std::string> argv = mpirun(ranks);
  argv.insert(argv.end(), args.begin(), args.end());
  return rattn_test::wait_program(rattn_test::start_command(argv, dir, tag), dir, tag, 120);
}

// A tiny model on the recall task, 1 OpenMP thread per rank, a progress line every step; constant lr
// (so that --steps can grow on --resume without changing any step).
std::vector<std::string> tiny_run(const std::string& ckpt, long steps, int batch = 8) {
  return {"--single",   "--d-model",   "16", "--heads",     "2", "--kv-heads",      "1", "--head-dim",
          "8",          "--layers",    "2",  "--pattern",   "LG", "--window",       "4", "--seq-len",
          "16",         "--pairs",     "2",  "--batch",     std::to_string(batch),  "--warmup", "0",
          "--cosine",   "0",           "--steps", std::to_string(steps),  "--eval-interval", "0",
          "--eval-seqs", "4",          "--threads", "1", "--log-every", "1", "--ckpt", ckpt};
}

// The progress lines without the run's length and the timings: "step 3 | loss 5.9711 | lr 3.00e-03 | grad norm
// 2.511 " from "step      3/6 | loss 5.9711 | lr 3.00e-03 | grad norm   2.511 |     0.3 ms | ...".
std::string progress(const std::string& out) {
  std::istringstream in(out);
  std::string line, kept;
  while (std::getline(in, line)) {
    long step = 0;
    if (line.rfind("step ", 0) != 0 || std::sscanf(line.c_str(), "step %ld/", &step) != 1) continue;
    const size_t first = line.find('|');
    size_t bar = first;
    for (int k = 0; k < 3 && bar != std::string::npos; ++k) bar = line.find('|', bar + 1);
    kept += "step " + std::to_string(step) + " " + line.substr(first, bar - first) + "\n";
  }
  return kept;
}

long count_of(const std::string& text, const std::string& what) {
  long n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// The pid of rank `rank` among mpirun's children (OpenMPI sets OMPI_COMM_WORLD_RANK in each); 0 if none.
pid_t rank_pid(pid_t launcher, int rank) {
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream status(e.path() / "status");
    std::string line;
    long ppid = -1;
    while (std::getline(status, line))
      if (line.rfind("PPid:", 0) == 0) ppid = std::atol(line.c_str() + 5);
    if (ppid != launcher) continue;
    const std::string env = rattn_test::slurp_file((e.path() / "environ").string());
    if (env.find(std::string("OMPI_COMM_WORLD_RANK=") + std::to_string(rank) + '\0') != std::string::npos)
      return pid_t(std::atol(name.c_str()));
  }
  return 0;
}

}  // namespace

TEST_CASE("mpirun -np 1, 2, 4: the same progress lines and checkpoint, byte for byte, as one process") {
  if (const std::string why = why_not(); !why.empty()) RATTN_SKIP(why.c_str());
  TempDir dir("mpi_same");
  const Run one = rattn_test::run_program("train_tiny", tiny_run(dir / "one.ckpt", 4), 120);
  REQUIRE(one.status == 0);
  REQUIRE(count_of(progress(one.out), "step ") == 4);
  const std::string one_ckpt = rattn_test::slurp_file(dir / "one.ckpt");
  REQUIRE(!one_ckpt.empty());
  for (const int ranks : {1, 2, 4}) {
    CAPTURE(ranks);
    const std::string ckpt = dir / ("np" + std::to_string(ranks) + ".ckpt");
    const Run r = run_mpi(ranks, tiny_run(ckpt, 4), dir, "np" + std::to_string(ranks));
    INFO("stdout:\n" << r.out << "stderr:\n" << r.err);
    REQUIRE(r.status == 0);
    CHECK(count_of(r.out, std::to_string(ranks) + " ranks (MPI) of " + std::to_string(8 / ranks) + " sequences") ==
          (ranks > 1 ? 1 : 0));
    CHECK(count_of(r.out, "train_tiny: new run") == 1);  // rank 0 alone prints
    CHECK(progress(r.out) == progress(one.out));
    CHECK(rattn_test::slurp_file(ckpt) == one_ckpt);
  }
}

// The numbers of the progress lines: loss and gradient norm per step, as printed (%.4f, %.3f).
std::vector<std::pair<double, double>> losses_and_norms(const std::string& out) {
  std::vector<std::pair<double, double>> v;
  std::istringstream in(progress(out));
  std::string line;
  while (std::getline(in, line)) {
    long step = 0;
    double loss = 0, lr = 0, norm = 0;
    if (std::sscanf(line.c_str(), "step %ld | loss %lf | lr %lf | grad norm %lf", &step, &loss, &lr, &norm) == 4)
      v.push_back({loss, norm});
  }
  return v;
}

TEST_CASE("mpirun --device cuda: 2 and 4 ranks follow one device, the same bits on every run, resume anywhere") {
  // The device-resident step across ranks (model/device_reduce.h), here with the kernels on the CPU
  // execution layer, whose device gradients the MPI job moves with the shards and tree that the NCCL
  // reducer uses on GPUs. A DeviceTrainer sums a share's rows inside its kernels, so N ranks agree with one
  // to fp32 rounding, not bit for bit: the printed losses (4 decimals) and gradient norms (3 decimals)
  // agree to their last printed digit, while a share lost, counted twice or scaled by the wrong N moves
  // the first step's loss or norm by far more.
  if (const std::string why = why_not(); !why.empty()) RATTN_SKIP(why.c_str());
  TempDir dir("mpi_device");
  std::vector<std::string> args = tiny_run(dir / "one.ckpt", 4);
  args.insert(args.end(), {"--device", "cuda"});
  const Run one = rattn_test::run_program("train_tiny", args, 300);
  INFO("one device:\n" << one.out << one.err);
  REQUIRE(one.status == 0);
  const auto want = losses_and_norms(one.out);
  REQUIRE(want.size() == 4);
  const std::string one_ckpt = rattn_test::slurp_file(dir / "one.ckpt");
  // make gpu-check runs this case with RATTN_BIN=bin/gpu (NCCL, one GPU per rank) and RATTN_GPUS = the GPUs
  // it has: rank counts above it are left out (NCCL refuses two ranks on one GPU).
  const int gpus = std::getenv("RATTN_GPUS") ? std::atoi(std::getenv("RATTN_GPUS")) : 4;
  for (const int ranks : {1, 2, 4}) {
    if (ranks > gpus) continue;
    CAPTURE(ranks);
    const std::string tag = "dev" + std::to_string(ranks), ckpt = dir / (tag + ".ckpt");
    args = tiny_run(ckpt, 4);
    args.insert(args.end(), {"--device", "cuda"});
    const Run r = run_mpi(ranks, args, dir, tag);
    INFO("stdout:\n" << r.out << "stderr:\n" << r.err);
    REQUIRE(r.status == 0);
    CHECK(count_of(r.out, "train_tiny: new run") == 1);
    CHECK(count_of(r.out, "device gradients all-reduced by ") == (ranks > 1 ? 1 : 0));
    const auto got = losses_and_norms(r.out);
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      CAPTURE(i);
      CHECK(std::abs(got[i].first - want[i].first) <= 1.5e-4);
      CHECK(std::abs(got[i].second - want[i].second) <= 1.5e-3);
    }
    if (ranks == 1) CHECK(rattn_test::slurp_file(ckpt) == one_ckpt);  // one rank: no reducer, the same step
    if (ranks == 2) {  // the same rank count again: the same checkpoint, byte for byte
      std::vector<std::string> again_args = tiny_run(dir / "again.ckpt", 4);
      again_args.insert(again_args.end(), {"--device", "cuda"});
      const Run again = run_mpi(2, again_args, dir, tag + "again");
      REQUIRE(again.status == 0);
      CHECK(rattn_test::slurp_file(ckpt) == rattn_test::slurp_file(dir / "again.ckpt"));
      CHECK(progress(again.out) == progress(r.out));
    }
  }
  // a checkpoint of several device ranks resumes on one device and on 2 ranks of the CPU reference
  const std::vector<std::string> more = {"--resume", dir / (gpus >= 4 ? "dev4.ckpt" : "dev2.ckpt"), "--steps", "6", "--threads", "1",
                                         "--log-every", "1", "--eval-seqs", "4"};
  std::vector<std::string> on_device = more;
  on_device.insert(on_device.end(), {"--device", "cuda", "--ckpt", dir / "resumed_dev.ckpt"});
  const Run r1 = rattn_test::run_program("train_tiny", on_device, 300);
  INFO(r1.err);
  CHECK(r1.status == 0);
  CHECK(losses_and_norms(r1.out).size() == 2);
  std::vector<std::string> on_cpu = more;
  on_cpu.insert(on_cpu.end(), {"--ckpt", dir / "resumed_cpu.ckpt"});
  const Run r2 = run_mpi(2, on_cpu, dir, "resume_cpu");
  INFO(r2.err);
  CHECK(r2.status == 0);
  CHECK(losses_and_norms(r2.out).size() == 2);
}

TEST_CASE("mpirun: a checkpoint of 4 ranks resumes with 2, then 1, and ends where one process ends") {
  if (const std::string why = why_not(); !why.empty()) RATTN_SKIP(why.c_str());
  TempDir dir("mpi_resume");
  const std::string ckpt = dir / "run.ckpt";
  REQUIRE(run_mpi(4, tiny_run(ckpt, 2), dir, "np4").status == 0);
  std::vector<std::string> resume2 = {"--resume", ckpt, "--steps", "4", "--threads", "1", "--log-every", "1",
                                      "--eval-seqs", "4"};
  const Run r2 = run_mpi(2, resume2, dir, "np2");
  INFO("stderr:\n" << r2.err);
  REQUIRE(r2.status == 0);
  CHECK(count_of(r2.out, "resuming") == 1);
  std::vector<std::string> resume1 = resume2;
  resume1[3] = "5";
  const Run r1 = rattn_test::run_program("train_tiny", resume1, 120);
  REQUIRE(r1.status == 0);
  const Run whole = rattn_test::run_program("train_tiny", tiny_run(dir / "whole.ckpt", 5), 120);
  REQUIRE(whole.status == 0);
  CHECK(progress(r2.out) + progress(r1.out) == [&] {
    const std::string p = progress(whole.out);
    return p.substr(p.find("step 3 "));
  }());
  CHECK(rattn_test::slurp_file(ckpt) == rattn_test::slurp_file(dir / "whole.ckpt"));
}

TEST_CASE("mpirun: a rank killed mid-run stops the job with a message, and the last checkpoint is intact") {
  if (const std::string why = why_not(); !why.empty()) RATTN_SKIP(why.c_str());
  TempDir dir("mpi_kill");
  const std::string ckpt = dir / "run.ckpt";
  std::vector<std::string> args = mpirun(4), run = tiny_run(ckpt, 1000000, 4);
  run.resize(run.size() - 2);  // without its "--ckpt FILE": given below, with a checkpoint every step
  for (size_t i = 0; i + 1 < run.size(); ++i)
    if (run[i] == "--log-every") run[i + 1] = "1000";  // few progress lines
  args.insert(args.end(), run.begin(), run.end());
  args.insert(args.end(), {"--ckpt", ckpt, "--ckpt-interval", "1"});
  struct EndJob {  // on a failed REQUIRE, the job must not train on in the background
    pid_t pid;
    ~EndJob() {
      if (pid <= 0) return;
      ::kill(pid, SIGTERM);
      int ws = 0;
      ::waitpid(pid, &ws, 0);
    }
  } job{rattn_test::start_command(args, dir, "killed")};
  const pid_t launcher = job.pid;
  // Wait until rank 0 has written a checkpoint, then kill rank 2 while the job goes on.
  pid_t victim = 0;
  for (int waited_ms = 0; waited_ms < 60000 && (victim == 0 || !fs::exists(ckpt)); waited_ms += 20) {
    ::usleep(20000);
    if (victim == 0) victim = rank_pid(launcher, 2);
  }
  REQUIRE(victim > 0);
  REQUIRE(fs::exists(ckpt));
  ::usleep(200000);
  REQUIRE(::kill(victim, SIGKILL) == 0);
  const auto t0 = std::chrono::steady_clock::now();
  const Run r = rattn_test::wait_program(launcher, dir, "killed", 60);
  job.pid = 0;
  INFO("stderr:\n" << r.err);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(50));  // mpirun ended the job, not the test
  CHECK(r.status != 0);
  CHECK(r.err.find("rank 2") != std::string::npos);  // mpirun names the rank that died
  // Each other rank writes one line as mpirun ends it; mpirun may drop some of them while it tears the job
  // down, so their number is not checked, only what they say: never the dead rank, and rank 0's line names
  // the last checkpoint it completed (the file holds that step, or the next one if a write ended in between).
  const long lines = count_of(r.err, "stopped by mpirun, another rank of the job ended first");
  CAPTURE(lines);
  CHECK(lines <= 3);
  CHECK(count_of(r.err, "rank 2 of 4: stopped") == 0);
  const model::TrainState<float> st = model::load_checkpoint<float>(ckpt);  // loads: complete and intact
  CHECK(st.step >= 1);
  const size_t named = r.err.find("rank 0 of 4: stopped by mpirun");
  if (named != std::string::npos) {
    long step = -1;
    const size_t at = r.err.find("(step ", named);
    REQUIRE(at != std::string::npos);
    step = std::atol(r.err.c_str() + at + 6);
    CHECK((st.step == step || st.step == step + 1));
  }
  // The run resumes from it in one process.
  const Run resumed = rattn_test::run_program(
      "train_tiny", {"--resume", ckpt, "--steps", std::to_string(st.step + 1), "--threads", "1", "--eval-seqs", "4"},
      120);
  CHECK(resumed.status == 0);
}

TEST_CASE("mpirun: a --batch that does not split into power-of-two shares is refused with status 2, one line") {
  if (const std::string why = why_not(); !why.empty()) RATTN_SKIP(why.c_str());
  TempDir dir("mpi_batch");
  for (const auto& [ranks, batch] : std::vector<std::pair<int, int>>{{2, 12}, {4, 2}}) {
    CAPTURE(ranks);
    CAPTURE(batch);
    const Run r = run_mpi(ranks, tiny_run(dir / "never.ckpt", 2, batch), dir, "bad");
    INFO("stderr:\n" << r.err);
    CHECK(r.status == 2);
    CHECK(count_of(r.err, "train_tiny: --batch: " + std::to_string(ranks) + " ranks need a batch of") == 1);
    CHECK(r.out.find("step ") == std::string::npos);  // nothing trained
    CHECK(!fs::exists(dir / "never.ckpt"));
  }
}
