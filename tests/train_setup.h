// tests/train_setup.h: the tiny training run shared by the trainer and checkpoint tests
// (tests/test_train.cpp, tests/test_checkpoint.cpp).
#pragma once
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "model/config.h"

namespace rattn_test {

// An L G stack with GQA (2 query heads, 1 kv head), w = 4, T = 32 (4 RLA chunks of 8): a step takes
// milliseconds, and 40 steps at lr 1e-2 visibly lower the recall loss.
inline model::Config tiny_run(long steps) {
  model::Config c;
  c.model.d_model = 16;
  c.model.n_heads = 2;
  c.model.n_kv_heads = 1;
  c.model.head_dim = 8;
  c.model.n_layers = 2;
  c.model.pattern = "LG";
  c.model.window = 4;
  c.model.chunk = 8;
  c.train.seq_len = 32;
  c.train.pairs = 4;
  c.train.batch = 4;
  c.train.steps = steps;
  c.train.warmup = 1;
  c.train.lr = 1e-2;
  return c;
}

// Validation and checkpoint only at the end, a small validation set, no progress lines.
inline model::RunConfig quiet_run(const std::string& ckpt) {
  model::RunConfig r;
  r.eval_interval = 0;
  r.eval_seqs = 8;
  r.ckpt = ckpt;
  r.ckpt_interval = 0;
  r.log_every = 1000;
  return r;
}

// The whole file as bytes (empty when it cannot be read).
inline std::vector<unsigned char> file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<unsigned char>(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

}  // namespace rattn_test
