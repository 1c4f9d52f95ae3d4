// fuzz/fuzz_npy.cpp: libFuzzer target for the .npy reader (io/npy.h parse_npy).
//
// The input is the bytes of a .npy file. The contract under test: parse_npy either returns an
// array whose shape matches its data, or throws io::NpyError; it never crashes, reads out of
// bounds, overflows, or allocates more than the file justifies (the data must be in the file).
// A parsed array must also survive format_npy -> parse_npy unchanged (round trip).
//   build and run: scripts/fuzz.sh (make fuzz), FUZZ_SECONDS per target
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "io/npy.h"
#include "fuzz/fuzz_check.h"

namespace fuzz_npy {
int one_input(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  io::NpyArray a;
  try {
    a = io::parse_npy(bytes, "fuzz.npy");
  } catch (const io::NpyError&) {
    return 0;  // rejected with a message: the expected outcome for most inputs
  }
  // Accepted: the shape must describe the data exactly.
  if (long(a.data.size()) != a.numel()) RATTN_FUZZ_FAIL();
  // And writing it back must give an array equal to it (bit for bit: float32 widened to double
  // and narrowed again is exact; NaN payloads compared as bytes).
  const io::NpyArray b = io::parse_npy(io::format_npy(a), "roundtrip.npy");
  if (b.dtype != a.dtype || b.shape != a.shape || b.data.size() != a.data.size()) RATTN_FUZZ_FAIL();
  if (!a.data.empty() && std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(double)) != 0) RATTN_FUZZ_FAIL();
  return 0;
}
}  // namespace fuzz_npy

#ifndef RATTN_FUZZ_NO_ENTRY
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return fuzz_npy::one_input(data, size);
}
#endif
