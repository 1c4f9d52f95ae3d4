// model/config.h: the model's shape and the training run's settings.
//
// Every field is a command-line flag (bind_model_flags / bind_train_flags) and a line of the
// checkpoint's config block (config_to_text / config_from_text), through one table in config.cpp.
#pragma once
#include <algorithm>
#include <string>
#include <vector>

#include "model/cli.h"

namespace model {

// The model: byte-level pre-norm Transformer (spec §0):
//   x = E[tokens];  per block l:  y = x + Attn_l(RMS(x));  x = y + SwiGLU(RMS(y))
//   logits = RMS(x) W_out
// Block l is global ('G': full causal attention, NoPE) or local ('L': swa | rattn | linear with
// window w, RoPE on the SWA branch) by pattern[l % pattern.size()].
struct ModelConfig {
  int vocab = 256;        // bytes
  int d_model = 64;       // C
  int n_heads = 2;        // H
  int n_kv_heads = 2;     // G (GQA: query head h uses kv head h / (H/G))
  int head_dim = 32;      // D
  int ffn_dim = 0;        // F of SwiGLU; 0 = automatic: 8/3 C rounded up to a multiple of 8
  int n_layers = 2;
  std::string pattern = "LLLG";   // repeated / cut to n_layers
  int window = 16;                // w: keys to the LEFT of the query (SWA sees w+1 keys)
  std::string local_kind = "rattn";  // swa | rattn | linear
  std::string feature_map = "sm2";   // sm2 | relu2 | identity
  int chunk = 32;                 // RLA chunk size C of the chunked training form
  double rope_theta = 5e5;
  double norm_eps = 1e-5;         // the block RMSNorms and the final norm
  double branch_eps = 1e-8;       // the per-head branch norms (AttnConfig::eps, spec §2.5)
  int qk_norm = 0;                // 1: qk-norm on every softmax attention, eps norm_eps (spec §2.9); 0: off

  bool is_global(int layer) const { return pattern[size_t(layer) % pattern.size()] == 'G'; }
  int ffn() const { return ffn_dim > 0 ? ffn_dim : ((8 * d_model / 3 + 7) / 8) * 8; }
  std::string layer_string() const;  // e.g. "LLLG" for 4 layers of the default pattern
};

// The training run (and the evaluation data, which infer regenerates from these fields).
struct TrainConfig {
  std::string task = "recall";  // recall | passkey | text
  std::string text_file = "";   // --text FILE (sets task = text)
  int seq_len = 128;            // T
  int batch = 32;               // B sequences per step
  int pairs = 8;                // recall: key-value pairs per sequence
  int passkey_len = 5;          // passkey: letters in the hidden key
  double in_window_frac = 0.4;  // recall: target fraction of queries whose key is within w
  int data_window = -1;         // recall: the w the gap mix refers to; -1 = the model's window
                                // (set it to train models of different windows on the same data)
  int far_beyond = 0;           // recall: 0, or D > w: no key at a distance in (w, D] (data/tasks.h)
  std::string filler = "constant";  // recall: constant ('.') | random (bytes disjoint from keys and values)
  int distractors = 0;          // recall: keys of the sequence that recur in the gap, not followed by a value
  std::string pairs_at = "start";  // recall: start (position 0) | anywhere (after a filler lead of random length)
  double lr = 3e-3;
  long warmup = 50;
  int cosine = 1;               // 1: cosine decay to lr * lr_min_ratio after warmup; 0: constant
  double lr_min_ratio = 0.1;
  double weight_decay = 0.1;
  double beta1 = 0.9, beta2 = 0.95;
  double clip = 1.0;            // global gradient-norm clip; 0 = off
  long steps = 1500;
  long seed = 1;
  double init_scale = 1.0;      // multiplies every initial weight's standard deviation
  double rla_gain_init = 1.0;   // rattn layers: the initial RLA branch-norm scale gamma_rla (1: as every norm scale)
  long rla_hold = 0;            // rattn layers: gamma_rla is not updated in steps 1..rla_hold (its gradient is zeroed)
};

// The run's plumbing: never part of the model or of the data, so --resume may change them.
struct RunConfig {
  long eval_interval = 250;     // validation every this many steps (and at the end); 0 = end only
  int eval_seqs = 256;          // sequences in the fixed validation set
  std::string ckpt = "runs/tiny.ckpt";
  long ckpt_interval = 250;     // checkpoint every this many steps (and at the end); 0 = end only
  std::string resume = "";      // --resume FILE: continue that run bit-exactly
  std::string device = "cpu";   // cpu | cuda (device-resident step) | cuda-ops (kernel checker)
  int threads = 0;              // OpenMP threads; 0 = the OpenMP default
  int log_every = 0;            // a progress line every this many steps; 0 = about 20 lines a run
  std::string compare = "none";  // none | swa | rattn | linear: also train that local kind, same data
  bool final_table = true;      // print the accuracy-by-distance table at the end (not a flag)
};

// The progress interval of a run: --log-every, or steps / 20 (at least 1) when it is 0.
inline long log_interval(const RunConfig& r, long steps) {
  return r.log_every > 0 ? r.log_every : std::max(1L, steps / 20);
}

struct Config {
  ModelConfig model;
  TrainConfig train;
};

// The window the recall data's gap mix refers to: --data-window when given (>= 0), else the model's
// --window. A full-attention model (window >= T) trained with --data-window 16 sees the very data a
// w = 16 model sees.
inline int data_window(const Config& c) { return c.train.data_window >= 0 ? c.train.data_window : c.model.window; }

// Flags. Model and train flags are saved in the checkpoint; run flags are not.
void bind_model_flags(FlagSet& fs, ModelConfig& m);
void bind_train_flags(FlagSet& fs, TrainConfig& t);
void bind_run_flags(FlagSet& fs, RunConfig& r);
// bin/train_tiny's whole command line: the three above (one table for the program and its fuzz target).
void bind_train_tiny_flags(FlagSet& fs, Config& c, RunConfig& r);

// Checks across fields (heads divisible by kv heads, sequence long enough for the task, ...).
// Throws UsageError naming the flag.
void validate(const Config& c);

// A warmup longer than the run is cut to --steps; returns the note to print ("" when unchanged).
std::string clamp_warmup(Config& c);

// The config block of a checkpoint: "name=value\n" for every model and train flag, in table order,
// except qk-norm when it is off (so a model without it writes the config block it wrote before the
// option existed, and a checkpoint without the key reads as off), each value escaped (a backslash as two, a newline as backslash + 'n') so that any value, a --text
// path with newlines included, round-trips byte for byte.
std::string config_to_text(const Config& c);
// Parse it back (unknown keys, a key given twice, bad values: UsageError; every value passes the same
// range checks as on the command line). Missing keys keep their defaults. escaped = false reads the
// unescaped values of checkpoint format 1.
Config config_from_text(const std::string& text, bool escaped = true);

// The number of trained parameters: exactly the entries of named_tensors() (model/params.h), from
// the config alone, without allocating (load_checkpoint refuses a file whose tensors do not add up to
// it; describe() prints it). At most about 8e9 within the flag ranges: it fits a long.
long parameter_count(const ModelConfig& m);

// Multi-line human-readable summary printed by the programs before they start.
std::string describe(const Config& c);

}  // namespace model
