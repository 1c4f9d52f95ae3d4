// model/trainer.h: the training loop behind bin/train_tiny (float32), and what it needs around it.
//
// One step: draw B sequences from the task's generator (its state is part of the checkpoint),
// batch loss and gradient (model/model.h), clip the global gradient norm, AdamW with the warmup +
// cosine schedule (ref/optim.h). Printed: the config, one line per step (step, loss, lr, ms/step,
// tokens/s), a validation line every --eval-interval steps (text: with a generated sample), and at
// the end the accuracy by key-to-query distance relative to w.
//
// Under mpirun (model/data_parallel.h, docs/scaling.md) every rank draws the same batch, computes its
// share, and the ranks' gradients are combined in the reduction tree before the clip: every rank takes
// the step of one process, bit for bit. Rank 0 alone prints, evaluates and writes checkpoints.
//
// Checkpoints every --ckpt-interval steps and at the end (model/checkpoint.h). --resume continues
// a saved run bit-exactly: the same losses as the run that was never interrupted. A non-finite loss
// or gradient stops the run with status kStatusNonFinite, before any update, and the last good
// checkpoint is left untouched.
#pragma once
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include "data/tasks.h"
#include "model/checkpoint.h"
#include "model/config.h"
#include "model/eval.h"

namespace model {

constexpr int kStatusNonFinite = 3;

struct TrainOutcome {
  int status = 0;              // 0: finished; kStatusNonFinite: stopped on NaN/inf
  long first_step = 0;         // first step run by this call (1-based)
  long last_step = 0;          // last step completed (its update applied)
  std::vector<double> losses;  // the loss of every step run by this call
  EvalResult final_eval;       // the closing evaluation (status 0 only)
  double seconds = 0;          // wall time of the step loop
  std::string stop_message;    // kStatusNonFinite: what stopped the run and what is kept (one line, for stderr)
};

// Test hook: called before step `step` (1-based) with the parameters about to be used.
using BeforeStepHook = std::function<void(long step, ModelParams<float>& params)>;

// The task of a config (recall / passkey / text), sized by the config.
std::unique_ptr<data::Task> make_task(const Config& c);
// The synthetic tasks' fixed evaluation sets, each drawn from a generator seeded apart from the
// training stream (whose seed is train_seed):
//   validation  the progress lines and every choice of settings;
//   test        held out: the reported numbers (train_tiny's closing table, bin/pareto_eval).
// mult > 1: the set of the same split at mult x T (bin/pareto_eval), a seed of its own. The streams
// share no sequence at realistic counts (tests/test_tasks.cpp). The text task ignores the seed: its
// one held-out split is the file's last 10 %.
enum class Split { validation, test };
uint64_t eval_seed(const Config& c, Split split = Split::validation, int mult = 1);
uint64_t train_seed(const Config& c);

// --resume: the config of the run comes from the checkpoint. Model and train flags given on the
// command line must agree with it, except --steps (the run may be extended); anything else throws
// UsageError naming the flag.
Config resolve_resume(const Config& from_ckpt, const Config& from_cli, const std::vector<std::string>& cli_set);

// Ask the C allocator to keep freed memory for reuse instead of returning it to the system: a step
// frees and reallocates the same few megabytes of Eigen temporaries, and each return to the system
// cost a page fault per 4 KiB on the next step (perf: about 6 % of a step, plus the kernel zeroing the
// pages). Called by train() and bin/bench_cpu; process-wide, harmless to call twice.
void keep_freed_memory();

// Run the training described by c and run (resuming from run.resume when set), printing to out.
TrainOutcome train(const Config& c, const RunConfig& run, std::ostream& out, const BeforeStepHook& hook = {});

}  // namespace model
