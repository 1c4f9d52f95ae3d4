// tests/test_fuzz_corpus.cpp: replay the fuzzers' inputs in `make test` (no clang needed).
//
// Every file under fuzz/corpus/<target>/ (the committed seeds) and fuzz/regressions/<target>/
// (inputs that once crashed a fuzzer, kept as regression tests) goes through the same function the
// libFuzzer target calls (fuzz/fuzz_<target>.cpp, built here without its libFuzzer entry point). A
// broken promise throws (fuzz/fuzz_check.h) and names the file; a crash fails the binary. Under
// `make test SANITIZE=1` this is the fuzzers' replay under ASan + UBSan with g++.
#define RATTN_FUZZ_NO_ENTRY
#include "fuzz/fuzz_checkpoint.cpp"
#include "fuzz/fuzz_flags.cpp"
#include "fuzz/fuzz_npy.cpp"
#include "fuzz/fuzz_text.cpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "tests/check.h"

namespace {
namespace fs = std::filesystem;

// The files of fuzz/corpus/<target> and fuzz/regressions/<target>, sorted (tests run from the repo root).
std::vector<fs::path> inputs_of(const std::string& target, bool regressions) {
  std::vector<fs::path> out;
  const fs::path dir = fs::path(regressions ? "fuzz/regressions" : "fuzz/corpus") / target;
  std::error_code ec;
  if (fs::is_directory(dir, ec))
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_regular_file()) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void replay(const std::string& target, int (*one_input)(const uint8_t*, size_t)) {
  const auto seeds = inputs_of(target, false);
  REQUIRE_MESSAGE(!seeds.empty(), "no seeds in fuzz/corpus/" << target << " (run the tests from the repo root)");
  std::vector<fs::path> all = seeds;
  for (const auto& r : inputs_of(target, true)) all.push_back(r);
  for (const auto& p : all) {
    const std::string bytes = slurp(p);
    INFO("input " << p.string() << " (" << bytes.size() << " bytes)");
    CHECK_NOTHROW(one_input(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
  }
  MESSAGE(target << ": replayed " << all.size() << " inputs");
}
}  // namespace

TEST_CASE("fuzz corpus: npy reader") { replay("npy", fuzz_npy::one_input); }
TEST_CASE("fuzz corpus: checkpoint loader") {
  replay("checkpoint", fuzz_checkpoint::one_input);
  fs::remove(fuzz_checkpoint::scratch_path());
}
TEST_CASE("fuzz corpus: command line and config block") { replay("flags", fuzz_flags::one_input); }
TEST_CASE("fuzz corpus: text loader") {
  replay("text", fuzz_text::one_input);
  fs::remove(fuzz_text::scratch_path());
}

// The seeds are valid files: the targets must accept them, or the fuzzers start from nothing.
TEST_CASE("fuzz corpus: the seeds are accepted by the loaders") {
  for (const auto& p : inputs_of("npy", false)) {
    INFO(p.string());
    CHECK_NOTHROW(io::read_npy(p.string()));
  }
  const std::string full = slurp("fuzz/corpus/checkpoint/full_fixsum");
  REQUIRE(full.size() > 100);
  const std::string body = full.substr(1);
  const uint64_t h = model::fnv1a64(reinterpret_cast<const unsigned char*>(body.data()), body.size());
  const std::string path = (fs::temp_directory_path() / "rattn_test_fuzz_seed.ckpt").string();
  std::ofstream(path, std::ios::binary) << body << std::string(reinterpret_cast<const char*>(&h), 8);
  CHECK_NOTHROW(model::load_checkpoint<float>(path));
  fs::remove(path);
}
