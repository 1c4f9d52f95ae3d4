// tests/batch_setup.h: a tiny model and a random batch of byte tokens for the tests that run the model
// on a batch (tests/test_model.cpp, tests/test_tree_reduce.cpp, tests/test_branch_share.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>
#include <string>

#include "data/tasks.h"
#include "model/config.h"

namespace rattn_test {

// A tiny stack with every kind of tensor: d_model 12, GQA (2 query heads of 6, 1 kv head), SwiGLU 16,
// w = 3, an RLA chunk of 5 that divides none of the tests' lengths; the pattern repeated to n layers.
inline model::ModelConfig tiny_model(const std::string& kind, int layers, const std::string& pattern) {
  model::ModelConfig m;
  m.d_model = 12;
  m.n_heads = 2;
  m.n_kv_heads = 1;
  m.head_dim = 6;
  m.ffn_dim = 16;
  m.n_layers = layers;
  m.pattern = pattern;
  m.window = 3;
  m.local_kind = kind;
  m.chunk = 5;
  return m;
}

// B sequences of T random bytes; every third position (t = 0, 3, 6, ... of the flattened batch) is
// not scored (target -1), so the per-sequence scored counts differ and the batch mean weighs them.
inline data::Batch random_batch(int B, int T, uint64_t seed) {
  data::Batch b;
  b.resize(B, T);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < b.tokens.size(); ++i) {
    b.tokens[i] = data::rand_below(rng, 256);
    b.targets[i] = (i % 3 == 0) ? -1 : data::rand_below(rng, 256);
  }
  return b;
}

}  // namespace rattn_test
