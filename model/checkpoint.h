// model/checkpoint.h: the training checkpoint, a small documented binary format.
//
// Layout (all integers little-endian; scalars are IEEE float32 or float64 as the header says):
//
//   offset  size  field
//   0       8     magic "RATTNCKP"
//   8       4     u32 format version (kCheckpointVersion = 2; version 1 files are still read)
//   12      4     u32 scalar size in bytes: 4 (float32) or 8 (float64)
//   16      8     u64 step: optimizer steps done (the next step is step + 1)
//   24      4+n   u32 n, then n bytes: the config, "name=value\n" per model/train flag
//                 (model/config.h: the full model shape and the training run, seed included). In a
//                 value a backslash is written as two and a newline as backslash + 'n', so any --text
//                 path round-trips byte for byte (version 1 wrote values as they were)
//           4+n   u32 n, then n bytes: the data generator's state (std::mt19937_64 text form)
//           16    (version 2 only) the training text the run read: u64 its size in bytes, u64 the
//                 FNV-1a 64-bit hash of its bytes; both 0 for the synthetic tasks, whose data is
//                 fixed by the config's generator settings and the seed alone
//           4     u32 number of tensors K
//           K x   per tensor: u32 name length, the name (e.g. "block0.attn.Wq"),
//                 u32 rows, u32 cols, then rows*cols scalars of the parameter, the same of the
//                 AdamW first moment m, the same of the second moment v (row-major)
//   end-8   8     u64 FNV-1a 64-bit hash of every byte before it
//
// The tensors are those of model::named_tensors(config), in that order; load checks every name and
// shape against the config. Written atomically: the bytes go to "<path>.tmp", which is fsync'ed
// and renamed over <path> (then the folder is fsync'ed), so a kill at any moment leaves either the
// old or the new checkpoint, never a mix. Loading rejects, with a message naming the file: a
// missing file, a wrong magic, another version or scalar size, a truncated file, a checksum
// mismatch (corruption), and tensors that do not match the config.
//
// Files (io/files.h): a checkpoint is read only from a regular file no larger than
// max_checkpoint_bytes(), the largest the model flags allow, checked before reading. It replaces an
// existing file only when that file is a rattn checkpoint (its magic), never a link, a folder, a device
// or a file of another kind; "<path>.tmp" is created exclusively, and a stale one is removed only when it
// is a regular file holding the start of a checkpoint (or nothing).
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/files.h"
#include "model/config.h"
#include "model/params.h"

namespace model {

constexpr uint32_t kCheckpointVersion = 2;

struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// What a run read besides its config: the training text, by size and hash (the synthetic tasks read
// nothing). --resume and infer's evaluation refuse a text that no longer matches.
struct TextFingerprint {
  bool recorded = false;  // false: a version 1 checkpoint, or a synthetic task
  uint64_t size = 0, hash = 0;
  bool operator==(const TextFingerprint&) const = default;
};
TextFingerprint fingerprint_of(const std::vector<unsigned char>& text);

// "" when `now` matches what the checkpoint recorded (or it recorded nothing), otherwise the sentence
// that says what changed, naming the file.
std::string text_change(const TextFingerprint& recorded, const TextFingerprint& now, const std::string& path);

// Everything a run needs to continue bit-exactly.
template <class S>
struct TrainState {
  Config config;
  ModelParams<S> params, m, v;  // parameters and the AdamW moments
  long step = 0;                // optimizer steps done
  std::string data_rng;         // std::mt19937_64 state, text form
  TextFingerprint text;         // the training text of a --text run
};

template <class S>
void save_checkpoint(const std::string& path, const TrainState<S>& st);
template <class S>
TrainState<S> load_checkpoint(const std::string& path);

// Only the config block (to resolve --resume against the command line before loading).
Config read_checkpoint_config(const std::string& path);

// The largest checkpoint the flags allow: the biggest model (model/config.cpp's ranges) in float64,
// parameters and both moments, plus room for the config, the generator state and the names.
uint64_t max_checkpoint_bytes();

// What a checkpoint path may replace: a file that starts with the magic "RATTNCKP".
const io::OutputKind& checkpoint_kind();

// Before a run: may it write its checkpoint to `path`? Absent, or a regular rattn checkpoint that is none
// of `inputs`, with no foreign "<path>.tmp" in the way. With same_run (a resumed run), an existing file
// must moreover be a checkpoint of that run: the same config except --steps. Throws io::FileRefused, one
// line naming `flag` and the path.
void check_checkpoint_output(const std::string& path, const std::string& flag,
                             const std::vector<io::NamedInput>& inputs, const Config* same_run = nullptr);

// FNV-1a 64-bit (the checksum above).
uint64_t fnv1a64(const unsigned char* p, size_t n);

}  // namespace model
