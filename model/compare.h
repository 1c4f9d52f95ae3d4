// model/compare.h: train two models that differ only in the kind of their local layers (e.g. RATTENTION
// and sliding-window attention), same shape, window, seed and data, and print their recall side by side.
// This is bin/train_tiny --compare, and the demonstration that `make train` runs.
#pragma once
#include <iosfwd>
#include <string>

#include "model/config.h"
#include "model/eval.h"
#include "model/trainer.h"

namespace model {

// Train c, then c with local kind run.compare, on the same data; print both runs and the table.
// The second model's checkpoint is run.ckpt with "-<kind>" before its extension. Returns the exit
// status (0, or the first run's non-zero status, whose stop message goes to err).
int train_compare(const Config& c, const RunConfig& run, std::ostream& out, std::ostream& err);

// "runs/tiny.ckpt", "swa" -> "runs/tiny-swa.ckpt"
std::string sibling_checkpoint(const std::string& path, const std::string& kind);

// The side-by-side table on the held-out test set: recall by reach bucket (model/eval.h: within one
// layer's reach, within the stack's relay reach, beyond it; empty buckets left out), then all, with chance.
std::string comparison_table(const Config& c, const std::string& kind_a, const EvalResult& a,
                             const std::string& kind_b, const EvalResult& b, double chance);

}  // namespace model
