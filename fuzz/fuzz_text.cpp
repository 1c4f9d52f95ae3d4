// fuzz/fuzz_text.cpp: libFuzzer target for the text loader (data/tasks.h TextTask, --text FILE).
//
// Input: one byte choosing the sequence length T = 1 + (byte % 64), then the file's bytes (any
// bytes: the loader is byte-level). The contract under test: TextTask either throws
// std::runtime_error (missing, empty or too short a file) or gives windows that stay inside the
// file: every token and target a byte 0..255, training windows from the first 90%, validation
// windows from the last 10%; sample() and eval_set() never read out of bounds.
//   build and run: scripts/fuzz.sh (make fuzz), FUZZ_SECONDS per target
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>

#include "data/tasks.h"
#include "fuzz/fuzz_check.h"

namespace fuzz_text {
const std::string& scratch_path() {
  static const std::string p = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/rattn_fuzz_text_" + std::to_string(::getpid()) + ".txt";
  }();
  return p;
}

void check_batch(const data::Batch& b, int B, int T) {
  if (b.B != B || b.T != T || b.tokens.size() != size_t(B) * size_t(T) || b.targets.size() != b.tokens.size())
    RATTN_FUZZ_FAIL();
  for (size_t i = 0; i < b.tokens.size(); ++i)
    if (b.tokens[i] < 0 || b.tokens[i] > 255 || b.targets[i] < 0 || b.targets[i] > 255) RATTN_FUZZ_FAIL();
}

int one_input(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int T = 1 + data[0] % 64;
  const std::string& path = scratch_path();
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(data + 1, 1, size - 1, f);
    std::fclose(f);
  } else {
    RATTN_FUZZ_FAIL();
  }
  try {
    data::TextTask task(path, T);
    if (task.train_bytes() + task.val_bytes() != size - 1) RATTN_FUZZ_FAIL();
    std::mt19937_64 rng(size);
    data::Batch b;
    task.sample(rng, 3, b);
    check_batch(b, 3, T);
    task.eval_set(1, 0, b);
    check_batch(b, 1, T);
    task.eval_set(4, 0, b);
    check_batch(b, 4, T);
  } catch (const std::runtime_error&) {
  }
  return 0;
}
}  // namespace fuzz_text

#ifndef RATTN_FUZZ_NO_ENTRY
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz_text::one_input(data, size);
}
#endif
