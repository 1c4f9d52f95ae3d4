// fuzz/make_seeds.cpp: writes the seed corpus fuzz/corpus/<target>/ (run by scripts/fuzz.sh --seeds).
//
// Small valid files (and a few near-valid ones) that give the fuzzers a start inside each format:
//   npy:        float32/float64 arrays of ranks 0..4, format 2.0, an empty array
//   checkpoint: mode byte 1 (checksum recomputed, see fuzz_checkpoint.cpp) in front of a real
//               checkpoint of the smallest model (in format 2 and as format 1 wrote it), of its
//               header + config alone, and of a text run whose path holds a newline and a backslash
//   text:       a T byte then a few hundred bytes of text
//   flags:      command lines of train_tiny, arguments separated by NUL bytes
// The seeds are committed; rerun this only when a format changes.
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "io/npy.h"
#include "model/checkpoint.h"
#include "tests/tiny_state.h"

namespace fs = std::filesystem;

namespace {
void put(const fs::path& dir, const std::string& name, const std::string& bytes) {
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}
std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}
}  // namespace

int main(int argc, char** argv) {
  const fs::path root = argc > 1 ? argv[1] : "fuzz/corpus";
  // ---- npy
  {
    const fs::path d = root / "npy";
    std::vector<double> x(24);
    for (size_t i = 0; i < x.size(); ++i) x[i] = 0.5 * double(i) - 3.0;
    std::vector<float> xf(x.begin(), x.end());
    put(d, "f32_2x3.npy", io::format_npy(io::make_npy({2, 3}, xf.data())));
    put(d, "f64_2x3x4.npy", io::format_npy(io::make_npy({2, 3, 4}, x.data())));
    put(d, "f32_1x2x3x4.npy", io::format_npy(io::make_npy({1, 2, 3, 4}, xf.data())));
    put(d, "f64_scalar.npy", io::format_npy(io::make_npy({}, x.data())));
    put(d, "f32_empty.npy", io::format_npy(io::make_npy({0, 5}, xf.data())));
    std::string v2 = io::format_npy(io::make_npy({3}, x.data()));  // rewrite as format 2.0 (4-byte length)
    const uint32_t hl = uint32_t(v2[8] & 0xFF) | (uint32_t(v2[9] & 0xFF) << 8);
    std::string len4(4, '\0');
    for (int i = 0; i < 4; ++i) len4[size_t(i)] = char((hl >> (8 * i)) & 0xFF);
    v2 = v2.substr(0, 6) + std::string("\x02\x00", 2) + len4 + v2.substr(10);
    put(d, "f64_v2.npy", v2);
  }
  // ---- checkpoint: the smallest model the flags allow (tests/tiny_state.h)
  {
    const fs::path d = root / "checkpoint";
    model::TrainState<float> st = rattn_test::tiny_train_state();
    const std::string tmp = (fs::temp_directory_path() / "rattn_make_seeds.ckpt").string();
    model::save_checkpoint(tmp, st);
    const std::string full = slurp(tmp);
    fs::remove(tmp);
    const std::string body = full.substr(0, full.size() - 8);  // without the checksum
    put(d, "full_fixsum", std::string(1, '\1') + body);
    // The same file as format version 1 wrote it (no training-text record): version 1 is still read.
    {
      std::string v1 = body;
      v1[8] = 1;
      size_t at = 24;
      for (int block = 0; block < 2; ++block) {  // the config and the generator state: u32 length + bytes
        uint32_t len;
        std::memcpy(&len, v1.data() + at, 4);
        at += 4 + len;
      }
      v1.erase(at, 16);
      put(d, "v1_full_fixsum", std::string(1, '\1') + v1);
    }
    // Header + config + rng state + tensor count 0: small, and reaches the config parser.
    const std::string cfg = model::config_to_text(st.config);
    std::string head = body.substr(0, 24);
    auto u32 = [](uint32_t x) { return std::string(reinterpret_cast<const char*>(&x), 4); };
    const std::string no_text(16, '\0');  // format 2: the training text's size and hash (none here)
    head += u32(uint32_t(cfg.size())) + cfg + u32(5) + "1 2 3" + no_text + u32(0);
    put(d, "config_only_fixsum", std::string(1, '\1') + head);
    // A text run whose path needs the config block's escapes (a newline, a backslash), with its text's
    // size and hash: reaches the unescaping and the text record's checks.
    model::TrainState<float> tt = st;
    tt.config.train.task = "text";
    tt.config.train.text_file = "corpus\\part 1\n.txt";
    tt.text = model::TextFingerprint{true, 4096, 0x0123456789abcdefULL};
    model::save_checkpoint(tmp, tt);
    const std::string text_full = slurp(tmp);
    fs::remove(tmp);
    put(d, "text_run_fixsum", std::string(1, '\1') + text_full.substr(0, text_full.size() - 8));
  }
  // ---- text
  {
    const fs::path d = root / "text";
    std::string t;
    for (int i = 0; i < 12; ++i) t += "the grass is green. the sky is blue. ";
    put(d, "T8_text", std::string(1, char(7)) + t);
    put(d, "T1_short", std::string(1, char(0)) + "abcdefghijklmnopqrst");
    put(d, "T64_binary", std::string(1, char(63)) + std::string("\x00\xff\x80\x7f", 4) + t + t);
  }
  // ---- flags: command lines, arguments separated by NUL bytes
  {
    const fs::path d = root / "flags";
    auto argv = [](const std::vector<std::string>& a) {
      std::string s;
      for (size_t i = 0; i < a.size(); ++i) s += (i ? std::string(1, '\0') : std::string()) + a[i];
      return s;
    };
    put(d, "demo_like", argv({"--local", "rattn", "--pattern", "L", "--layers", "2", "--window", "16", "--pairs",
                              "4", "--far-beyond", "32", "--steps", "1500", "--compare", "swa"}));
    put(d, "text_path_escapes", argv({"--text", "corpus\\part\n1.txt", "--seq-len", "64", "--lr=0.001"}));
    put(d, "twice", argv({"--window", "4", "--window=8"}));
    put(d, "ranges", argv({"--d-model", "1024", "--heads", "64", "--kv-heads", "8", "--head-dim", "256",
                           "--seed", "4611686018427387904", "--lr", "1e-08", "--init-scale", "100"}));
  }
  std::cout << "make_seeds: wrote seeds under " << root.string() << "\n";
  return 0;
}
