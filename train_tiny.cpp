// train_tiny.cpp: train a tiny RATTENTION model on 2 CPU cores (the README's `make train`).
//
//   bin/train_tiny                       the default: recall task, see model/config.h for the values
//   bin/train_tiny --local swa --window 8 --steps 2000
//   bin/train_tiny --text FILE           byte-level LM on any text file (90/10 train/val split)
//   bin/train_tiny --resume runs/tiny.ckpt --steps 3000     continue a run bit-exactly
//   bin/train_tiny --help                every flag with its range and default
//
// Exit status: 0 done; 2 bad command line (one line on stderr names the flag and the allowed
// values; also a missing, empty or too short --text file); 3 the loss became NaN/inf (training
// stopped, the last good checkpoint kept); 1 other errors (unreadable checkpoint, failed write, ...).
#include <iostream>
#include <stdexcept>
#include <string>

#include "model/checkpoint.h"
#include "model/cli.h"
#include "model/config.h"
#include "model/trainer.h"

int main(int argc, char** argv) {
  return model::cli_main_guard("train_tiny", [&]() -> int {
    model::Config c;
    model::RunConfig run;
    model::FlagSet fs("train_tiny");
    model::bind_model_flags(fs, c.model);
    model::bind_train_flags(fs, c.train);
    model::bind_run_flags(fs, run);
    fs.parse(argc, argv);
    if (fs.help_requested()) {
      std::cout << fs.usage();
      return 0;
    }
    if (fs.was_set("text")) {
      if (fs.was_set("task") && c.train.task != "text")
        throw model::UsageError("--text: implies --task text, got --task " + c.train.task);
      c.train.task = "text";
    }
    if (!run.resume.empty()) {
      c = model::resolve_resume(model::read_checkpoint_config(run.resume), c, fs.set_names());
      if (!fs.was_set("ckpt")) run.ckpt = run.resume;  // keep writing to the resumed file
    }
    model::validate(c);
    // A missing, empty or too short --text file is a bad command line (status 2), found before training.
    if (c.train.task == "text") {
      try {
        (void)model::make_task(c);
      } catch (const std::runtime_error& e) {
        throw model::UsageError(std::string("--text: ") + e.what());
      }
    }
    const model::TrainOutcome r = model::train(c, run, std::cout);
    return r.status;
  });
}
