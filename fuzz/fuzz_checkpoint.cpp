// fuzz/fuzz_checkpoint.cpp: libFuzzer target for the checkpoint loader (model/checkpoint.h).
//
// Input: one mode byte, then the bytes of a checkpoint file.
//   mode bit 0 = 0: the file is used as it is (almost every mutation then fails the FNV-1a
//                   checksum, which exercises the framing checks before it);
//   mode bit 0 = 1: the correct checksum is appended, so mutations reach everything behind it:
//                   the config block parser, config validation, tensor names and shapes.
// The contract under test: load_checkpoint<float|double> and read_checkpoint_config either return
// or throw model::CheckpointError (a bad config block is reported as CheckpointError too); never a
// crash, an out-of-bounds read, another exception type, or an allocation the file does not justify.
//   build and run: scripts/fuzz.sh (make fuzz), FUZZ_SECONDS per target
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "model/checkpoint.h"
#include "fuzz/fuzz_check.h"

namespace fuzz_checkpoint {
// One scratch file per fuzzing process (the loader reads a path).
const std::string& scratch_path() {
  static const std::string p = [] {
    const char* dir = std::getenv("TMPDIR");
    return std::string(dir && *dir ? dir : "/tmp") + "/rattn_fuzz_ckpt_" + std::to_string(::getpid()) + ".ckpt";
  }();
  return p;
}

int one_input(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool fix_checksum = data[0] & 1;
  std::string file(reinterpret_cast<const char*>(data + 1), size - 1);
  if (fix_checksum) {
    const uint64_t h = model::fnv1a64(reinterpret_cast<const unsigned char*>(file.data()), file.size());
    file.append(reinterpret_cast<const char*>(&h), 8);  // little-endian host (checked in checkpoint.cpp)
  }
  const std::string& path = scratch_path();
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    std::fwrite(file.data(), 1, file.size(), f);
    std::fclose(f);
  } else {
    RATTN_FUZZ_FAIL();
  }
  try {
    model::TrainState<float> st = model::load_checkpoint<float>(path);
    // Accepted: every tensor has the config's shape (the loader promises it).
    auto P = model::named_tensors(st.config.model, st.params);
    auto M = model::named_tensors(st.config.model, st.m);
    if (P.size() != M.size()) RATTN_FUZZ_FAIL();
    for (size_t i = 0; i < P.size(); ++i)
      if (P[i].t->rows() != M[i].t->rows() || P[i].t->cols() != M[i].t->cols()) RATTN_FUZZ_FAIL();
  } catch (const model::CheckpointError&) {
  }
  try {
    (void)model::load_checkpoint<double>(path);
  } catch (const model::CheckpointError&) {
  }
  try {
    (void)model::read_checkpoint_config(path);
  } catch (const model::CheckpointError&) {
  }
  return 0;
}
}  // namespace fuzz_checkpoint

#ifndef RATTN_FUZZ_NO_ENTRY
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz_checkpoint::one_input(data, size);
}
#endif
