// train_tiny.cpp: train tiny RATTENTION models on 2 CPU cores (the README's `make train`).
//
//   bin/train_tiny                       the demonstration (= --demo): RATTENTION and sliding-window attention,
//                                        same shape, window and data, recall side by side
//   bin/train_tiny --demo --seed 2       the demonstration, any flag changed
//   bin/train_tiny --single              one model with the defaults that --help lists
//   bin/train_tiny --local swa --window 8 --steps 2000     one model (any flag without --demo)
//   bin/train_tiny --text FILE           byte-level LM on any text file (90/10 train/val split)
//   bin/train_tiny --resume runs/tiny.ckpt --steps 3000     continue a run bit-exactly
//   bin/train_tiny --help                every flag with its range and default
//   mpirun -np 4 bin/train_tiny ...      data parallel over 4 processes, the same losses bit for bit as one
//                                        (a --batch of 4 x a power of two; docs/scaling.md)
//   mpirun -np 2 bin/gpu/train_tiny --device cuda ...    the same over 2 GPUs, gradients all-reduced with NCCL
//                                        (bin/gpu/: the GPU build, make gpu-build; model/device_reduce.h)
//
// Exit status (the same in infer and rattn-op): 0 done; 2 bad input (one line on stderr names the flag
// and the allowed values; also a missing, empty, too short or too large --text file or one that is not a
// regular file, a bad --resume checkpoint, a --text changed since that checkpoint, a --ckpt path that may
// not be replaced); 3 the loss became NaN/inf (training stopped, the last good checkpoint kept); 1 the
// environment failed (permission denied, disk full, out of memory, ...).
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/files.h"
#include "model/checkpoint.h"
#include "model/cli.h"
#include "model/compare.h"
#include "model/config.h"
#include "model/device_reduce.h"
#include "model/mpi_job.h"
#include "model/trainer.h"

namespace {

// The demonstration: a local-only stack (2 layers of window 16) on multi-query recall with 4 key-value
// pairs and no key in (w, layers x w], the band two stacked windows can relay: every key is either
// inside one window or out of reach of every chain of windows. Then the same model with SWA layers.
// Flags given with --demo override these; --far-beyond follows --layers x --window unless given.
const std::vector<std::pair<std::string, std::string>> kDemo = {
    {"local", "rattn"}, {"pattern", "L"}, {"layers", "2"},        {"window", "16"}, {"pairs", "4"},
    {"steps", "1500"},  {"compare", "swa"}, {"eval-interval", "0"}, {"ckpt", "runs/demo.ckpt"}};

const char* kModeHelp =
    "  --demo                 the demonstration (what no flags at all run): --local rattn --compare swa --layers 2\n"
    "                         --pattern L --window 16 --pairs 4 --far-beyond layers*window --steps 1500; flags after\n"
    "                         it override these\n"
    "  --single               one model with the defaults below (the same as giving any flag without --demo)\n";

int run_train_tiny(int argc, char** argv);

}  // namespace

int main(int argc, char** argv) {
  // Under mpirun (model/mpi_job.h): every rank runs the same command line; rank 0 alone prints. A bad
  // command line or file is refused identically by every rank, so only rank 0 says so.
  std::unique_ptr<model::DataParallel> job;
  const int status = model::cli_main_guard("train_tiny", [&]() -> int {
    job = model::join_mpi_job(&argc, &argv);
    model::set_data_parallel(job.get());  // none: one process
    if (!job || job->leader()) return run_train_tiny(argc, argv);
    if (!std::freopen("/dev/null", "w", stdout)) throw std::runtime_error("rank " + std::to_string(job->rank()) +
                                                                         ": cannot silence its output");
    try {
      return run_train_tiny(argc, argv);
    } catch (const model::UsageError&) {
      return 2;
    } catch (const io::FileRefused&) {
      return 2;
    }
  });
  return model::leave_mpi_job(std::move(job), status);
}

namespace {

int run_train_tiny(int argc, char** argv) {
  // --demo / --single select the preset; every other argument goes to the flag table.
  bool demo = argc == 1, single = false;
  std::vector<char*> args = {argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--demo") demo = true;
    else if (a == "--single") single = true;
    else args.push_back(argv[i]);
  }
  if (demo && single) throw model::UsageError("--demo and --single: expected one of them, got both");

  model::Config c;
  model::RunConfig run;
  model::FlagSet fs("train_tiny");
  model::bind_train_tiny_flags(fs, c, run);
  fs.parse(int(args.size()), args.data());
  if (fs.help_requested()) {
    std::cout << fs.usage() << kModeHelp
              << (model::built_with_mpi()
                      ? "  mpirun -np N train_tiny ...   data parallel over N processes (--batch: N x a power of two)\n"
                      : "  (built without MPI: no mpirun; install OpenMPI with scripts/deps.sh and rebuild)\n")
              << (model::built_with_nccl()
                      ? "  --device cuda under mpirun     one GPU per rank, device gradients all-reduced with NCCL\n"
                      : "  --device cuda under mpirun     device gradients all-reduced over MPI through host memory\n");
    return 0;
  }
  if (demo) {
    if (!run.resume.empty()) throw model::UsageError("--demo: cannot be combined with --resume");
    for (const auto& [name, value] : kDemo)
      if (!fs.was_set(name)) fs.set(name, value);
    if (!fs.was_set("far-beyond")) c.train.far_beyond = c.model.n_layers * c.model.window;
    std::cout << "train_tiny: the demonstration (bin/train_tiny --help: every flag; --single: one model)\n";
  }
  if (fs.was_set("text")) {
    if (fs.was_set("task") && c.train.task != "text")
      throw model::UsageError("--text: implies --task text, got --task " + c.train.task);
    c.train.task = "text";
  }
  if (!run.resume.empty()) {
    if (run.compare != "none") throw model::UsageError("--compare: cannot be combined with --resume");
    model::Config from_ckpt;
    try {
      from_ckpt = model::read_checkpoint_config(run.resume);
    } catch (const model::CheckpointError& e) {  // missing, not a regular file, too large, corrupt
      throw model::UsageError(std::string("--resume: ") + e.what());
    }
    c = model::resolve_resume(from_ckpt, c, fs.set_names());
    if (!fs.was_set("ckpt")) run.ckpt = run.resume;  // keep writing to the resumed file
  } else {
    std::cout << model::clamp_warmup(c);
  }
  model::validate(c);
  (void)model::share_of(c.train.batch, model::data_parallel().rank(), model::data_parallel().size());  // --batch
  // A task that cannot be drawn from these flags (a missing, empty or too short --text file; recall with a
  // --far-beyond that leaves no gap inside the window or none beyond it) is a bad command line
  // (status 2), found before training.
  try {
    (void)model::make_task(c);
  } catch (const io::FileFailed&) {
    throw;  // permission denied, an I/O error: the environment, status 1
  } catch (const std::runtime_error& e) {
    throw model::UsageError(std::string("--text: ") + e.what());
  } catch (const std::invalid_argument& e) {
    const char* flags = c.train.task == "recall"
                            ? "--seq-len, --pairs, --window, --data-window, --far-beyond, --in-window-frac"
                            : "--seq-len, --passkey-len";
    throw model::UsageError("--task " + c.train.task + ": cannot draw its data with these flags (" + flags +
                            "): " + e.what());
  }
  // Where the checkpoints go, checked before training (status 2, nothing trained or written): an
  // existing file there is replaced only when it is a rattn checkpoint (on --resume: of this run), never
  // when it is the --text file or anything but a regular file; a stale "<path>.tmp" must be one too.
  if (!run.ckpt.empty()) {
    std::vector<io::NamedInput> inputs;
    if (c.train.task == "text") inputs.emplace_back("--text", c.train.text_file);
    const std::string flag = fs.was_set("ckpt") ? "--ckpt" : "--resume";
    model::check_checkpoint_output(run.ckpt, flag, inputs, run.resume.empty() ? nullptr : &c);
    if (run.compare != "none")
      model::check_checkpoint_output(model::sibling_checkpoint(run.ckpt, run.compare), flag, inputs);
  }
  std::ostream discard(nullptr);  // the other ranks' copy of a numerical stop's message
  std::ostream& err = model::data_parallel().leader() ? std::cerr : discard;
  if (run.compare != "none") return model::train_compare(c, run, std::cout, err);
  const model::TrainOutcome r = model::train(c, run, std::cout);
  if (!r.stop_message.empty()) err << "train_tiny: " << r.stop_message << "\n";
  return r.status;
}

}  // namespace
