// tests/batch_setup.h: a random batch of byte tokens for the tests that run model::batch_loss_and_grad
// and its share of a batch (tests/test_model.cpp, tests/test_tree_reduce.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <random>

#include "data/tasks.h"

namespace rattn_test {

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
