// io/export.h: a trained model out to NumPy / PyTorch, so that anyone can rebuild it and compare.
//
//   bin/infer --export DIR CHECKPOINT
//       DIR/NAME.npy for every parameter (float32; NAME as in model/params.h, e.g. block0.attn.Wq),
//       DIR/config.json: the model's shape, every layer's kind, the exact formulas and conventions
//       (with qk-norm on, the layers' "qk_norm" flags and its formula, spec §2.9; nothing of it when off),
//       and the list of parameter files with their shapes.
//   bin/infer --logits CHECKPOINT (--prompt TEXT | --prompt-file FILE) [--out FILE.npy]
//       the logits (T, V) of the full-sequence forward over the prompt's bytes: written as a float32
//       .npy with --out, otherwise printed, one line per position: "t byte logit_0 ... logit_{V-1}".
//
// Norm scales, stored (1, C) in the checkpoint, are exported as vectors (C,), the qk-norm scales (1, D) as
// (D,); every other parameter keeps its (rows, cols) shape, with linear maps stored (in, out): y = x @ W.
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "io/npy.h"
#include "model/checkpoint.h"

namespace io {

// The parameters of st as (NAME, float32 array) in checkpoint order (model::named_tensors).
std::vector<std::pair<std::string, NpyArray>> model_tensors(const model::TrainState<float>& st);

// config.json for st: see the file's "conventions" for what each field means.
std::string model_config_json(const model::TrainState<float>& st, const std::string& checkpoint);

// Load CHECKPOINT and write DIR/NAME.npy + DIR/config.json (all or nothing).
void export_model(const std::string& dir, const std::string& checkpoint);

// The entry point of `infer --export ...` and `infer --logits ...` (argv as infer got it).
// Throws model::UsageError for a bad command line.
int infer_export_main(int argc, char** argv);

// True when argv asks for one of the modes above (argv[1] is --export or --logits).
bool is_export_command(int argc, char** argv);

}  // namespace io
