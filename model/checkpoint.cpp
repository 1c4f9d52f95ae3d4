// model/checkpoint.cpp: writing and reading the checkpoint format documented in checkpoint.h.
#include "model/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <vector>

namespace model {

static_assert(std::endian::native == std::endian::little,
              "the checkpoint format is little-endian; this code writes native bytes");

namespace {
constexpr char kMagic[8] = {'R', 'A', 'T', 'T', 'N', 'C', 'K', 'P'};

struct Writer {
  std::vector<unsigned char> bytes;
  void raw(const void* p, size_t n) {
    const auto* c = static_cast<const unsigned char*>(p);
    bytes.insert(bytes.end(), c, c + n);
  }
  void u32(uint32_t x) { raw(&x, 4); }
  void u64(uint64_t x) { raw(&x, 8); }
  void str(const std::string& s) {
    u32(uint32_t(s.size()));
    raw(s.data(), s.size());
  }
};

struct Reader {
  const std::vector<unsigned char>& bytes;
  size_t pos, end;  // end: where the checksum starts
  const std::string& path;
  uint32_t version = 0;  // set by open_checked
  void need(size_t n, const char* what) {
    if (n > end - pos)
      throw CheckpointError("checkpoint '" + path + "': truncated or corrupted: the file ends inside " + what +
                            " (needs " + std::to_string(n) + " more bytes at offset " + std::to_string(pos) +
                            ", file has " + std::to_string(bytes.size()) + " bytes)");
  }
  void raw(void* p, size_t n, const char* what) {
    need(n, what);
    std::memcpy(p, bytes.data() + pos, n);
    pos += n;
  }
  uint32_t u32(const char* what) {
    uint32_t x;
    raw(&x, 4, what);
    return x;
  }
  uint64_t u64(const char* what) {
    uint64_t x;
    raw(&x, 8, what);
    return x;
  }
  std::string str(const char* what) {
    const uint32_t n = u32(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(bytes.data() + pos), n);
    pos += n;
    return s;
  }
};

// The whole file, bounded: a folder, a device, a fifo or a file larger than any checkpoint the flags
// allow is refused before a byte is read (io::FileFailed, the environment, passes through).
std::vector<unsigned char> read_all(const std::string& path) {
  std::string bytes;
  try {
    bytes = io::read_bounded(path, max_checkpoint_bytes(), "checkpoint '" + path + "'",
                             "a checkpoint (the largest model the flags allow, in float64)");
  } catch (const io::FileRefused& e) {
    throw CheckpointError(e.what());
  }
  return std::vector<unsigned char>(bytes.begin(), bytes.end());
}

// Check magic, version and scalar size; return a reader positioned after the fixed header.
Reader open_checked(const std::vector<unsigned char>& bytes, const std::string& path, uint32_t want_scalar) {
  const size_t header = 8 + 4 + 4 + 8;
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kMagic, 8) != 0)
    throw CheckpointError("checkpoint '" + path + "': not a rattn checkpoint (bad magic; expected \"RATTNCKP\")");
  if (bytes.size() < header + 8)
    throw CheckpointError("checkpoint '" + path + "': truncated (" + std::to_string(bytes.size()) +
                          " bytes, the header alone needs " + std::to_string(header + 8) + ")");
  Reader r{bytes, 8, bytes.size() - 8, path};
  const uint32_t version = r.u32("the version");
  if (version != 1 && version != kCheckpointVersion)
    throw CheckpointError("checkpoint '" + path + "': format version " + std::to_string(version) +
                          " is not supported (this program reads versions 1 to " +
                          std::to_string(kCheckpointVersion) + ")");
  r.version = version;
  const uint32_t scalar = r.u32("the scalar size");
  if (want_scalar != 0 && scalar != want_scalar)
    throw CheckpointError("checkpoint '" + path + "': holds float" + std::to_string(8 * scalar) +
                          " tensors, this program needs float" + std::to_string(8 * want_scalar));
  return r;
}

void verify_checksum(const std::vector<unsigned char>& bytes, const std::string& path) {
  uint64_t stored;
  std::memcpy(&stored, bytes.data() + bytes.size() - 8, 8);
  if (fnv1a64(bytes.data(), bytes.size() - 8) != stored)
    throw CheckpointError("checkpoint '" + path + "': checksum mismatch (the file is corrupted)");
}

// At save time (mid-run) a refused path is a failed write: CheckpointError, exit status 1. The run's
// command line was checked before training (check_checkpoint_output); this catches what changed since.
void write_atomically(const std::string& path, const std::vector<unsigned char>& bytes) {
  const std::string tmp = path + ".tmp";
  int fd = -1;
  try {
    io::check_output(path, checkpoint_kind(), "checkpoint");
    fd = io::create_exclusive(tmp, checkpoint_kind(), "checkpoint");
  } catch (const std::runtime_error& e) {  // io::FileRefused or io::FileFailed: nothing of ours to remove
    throw CheckpointError(std::string(e.what()) + " (checkpoint '" + path + "' not written)");
  }
  auto fail = [&](const char* what) {
    const std::string msg = "checkpoint '" + path + "': " + what + " failed (" + std::strerror(errno) + ")";
    ::unlink(tmp.c_str());  // ours: created exclusively above
    throw CheckpointError(msg);
  };
  if (!io::write_all(fd, bytes.data(), bytes.size())) {
    const int e = errno;
    ::close(fd);
    errno = e;
    fail("write");
  }
  if (::fsync(fd) != 0) {
    const int e = errno;
    ::close(fd);
    errno = e;
    fail("fsync");
  }
  if (::close(fd) != 0) fail("close");
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail("rename");
  io::sync_parent_dir(path);  // make the rename itself durable
}
}  // namespace

uint64_t max_checkpoint_bytes() {
  ModelConfig m;  // every size at the top of its range in model/config.cpp
  m.d_model = 1024, m.n_heads = 64, m.n_kv_heads = 64, m.head_dim = 256, m.ffn_dim = 16384, m.n_layers = 64;
  m.pattern = "L", m.local_kind = "rattn";  // local rattn layers hold the most (two branch scales each)
  const uint64_t tensors = 3 * 8 * uint64_t(parameter_count(m));
  return tensors + 64 * io::kMiB;  // header, config, generator state, names and shapes: far less than this
}

const io::OutputKind& checkpoint_kind() {
  static const io::OutputKind kind{"a rattn checkpoint", [](const std::string& head) {
                                     return head.size() >= 8 && std::memcmp(head.data(), kMagic, 8) == 0;
                                   }};
  return kind;
}

void check_checkpoint_output(const std::string& path, const std::string& flag,
                             const std::vector<io::NamedInput>& inputs, const Config* same_run) {
  io::check_output(path, checkpoint_kind(), flag, inputs);
  io::check_stale_temporary(path + ".tmp", checkpoint_kind(), flag);
  if (!same_run || ::access(path.c_str(), F_OK) != 0) return;
  Config theirs;
  try {
    theirs = read_checkpoint_config(path);
  } catch (const CheckpointError& e) {
    throw io::FileRefused(flag + ": " + path + " is a rattn checkpoint that cannot be read (" + e.what() +
                          "); choose another path or remove it");
  }
  Config a = theirs, b = *same_run;
  a.train.steps = b.train.steps = 1;  // a run may be extended: --steps is not part of its identity
  if (config_to_text(a) != config_to_text(b))
    throw io::FileRefused(flag + ": " + path + " holds the checkpoint of another run (another config); "
                          "choose another path or remove it");
}

TextFingerprint fingerprint_of(const std::vector<unsigned char>& text) {
  return TextFingerprint{true, uint64_t(text.size()), fnv1a64(text.data(), text.size())};
}

std::string text_change(const TextFingerprint& recorded, const TextFingerprint& now, const std::string& path) {
  if (!recorded.recorded || recorded == now) return "";
  auto hex = [](uint64_t h) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
    return std::string(buf);
  };
  return "the training text '" + path + "' changed since the checkpoint was written: it was " +
         std::to_string(recorded.size) + " bytes with FNV-1a hash " + hex(recorded.hash) + ", it is now " +
         std::to_string(now.size) + " bytes with hash " + hex(now.hash);
}

uint64_t fnv1a64(const unsigned char* p, size_t n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

template <class S>
void save_checkpoint(const std::string& path, const TrainState<S>& st_in) {
  TrainState<S>& st = const_cast<TrainState<S>&>(st_in);  // named_tensors hands out pointers; read only
  Writer w;
  w.raw(kMagic, 8);
  w.u32(kCheckpointVersion);
  w.u32(uint32_t(sizeof(S)));
  w.u64(uint64_t(st.step));
  w.str(config_to_text(st.config));
  w.str(st.data_rng);
  w.u64(st.text.recorded ? st.text.size : 0);
  w.u64(st.text.recorded ? st.text.hash : 0);
  auto P = named_tensors(st.config.model, st.params);
  auto M = named_tensors(st.config.model, st.m);
  auto V = named_tensors(st.config.model, st.v);
  w.u32(uint32_t(P.size()));
  for (size_t i = 0; i < P.size(); ++i) {
    const Mat<S>& t = *P[i].t;
    w.str(P[i].name);
    w.u32(uint32_t(t.rows()));
    w.u32(uint32_t(t.cols()));
    for (const Mat<S>* x : {P[i].t, M[i].t, V[i].t}) {
      if (x->rows() != t.rows() || x->cols() != t.cols())
        throw CheckpointError("save_checkpoint: optimizer moment of " + P[i].name + " has the wrong shape");
      w.raw(x->data(), sizeof(S) * size_t(x->size()));
    }
  }
  w.u64(fnv1a64(w.bytes.data(), w.bytes.size()));
  write_atomically(path, w.bytes);
}

template <class S>
TrainState<S> load_checkpoint(const std::string& path) {
  const std::vector<unsigned char> bytes = read_all(path);
  Reader r = open_checked(bytes, path, uint32_t(sizeof(S)));
  TrainState<S> st;
  st.step = long(r.u64("the step"));
  const std::string config_text = r.str("the config");
  st.data_rng = r.str("the data generator state");
  if (r.version >= 2) {
    st.text.size = r.u64("the training text's size");
    st.text.hash = r.u64("the training text's hash");
  }
  const uint32_t K = r.u32("the tensor count");
  struct Entry {
    std::string name;
    uint32_t rows, cols;
    size_t offset;
  };
  std::vector<Entry> entries;
  for (uint32_t i = 0; i < K; ++i) {
    Entry e;
    e.name = r.str("a tensor name");
    e.rows = r.u32("a tensor shape");
    e.cols = r.u32("a tensor shape");
    e.offset = r.pos;
    const size_t n = size_t(e.rows) * size_t(e.cols) * sizeof(S);
    r.need(n, ("tensor " + e.name).c_str());
    r.pos += n;
    r.need(2 * n, ("the optimizer state of " + e.name).c_str());
    r.pos += 2 * n;
    entries.push_back(e);
  }
  if (r.pos != r.end)
    throw CheckpointError("checkpoint '" + path + "': corrupted (" + std::to_string(r.end - r.pos) +
                          " unexpected bytes after the last tensor)");
  verify_checksum(bytes, path);

  try {
    st.config = config_from_text(config_text, r.version >= 2);
    validate(st.config);
  } catch (const UsageError& e) {
    throw CheckpointError("checkpoint '" + path + "': bad config block: " + e.what());
  }
  // A version 2 file records the text of a text run (a synthetic run records zeros).
  st.text.recorded = r.version >= 2 && st.config.train.task == "text";
  if (r.version >= 2 && !st.text.recorded && (st.text.size != 0 || st.text.hash != 0))
    throw CheckpointError("checkpoint '" + path + "': corrupted: a " + st.config.train.task +
                          " run records a training text (size " + std::to_string(st.text.size) + ")");
  // The step a run can have reached: 0 (before the first update) to its own --steps.
  if (st.step < 0 || st.step > st.config.train.steps)
    throw CheckpointError("checkpoint '" + path + "': step " + std::to_string((unsigned long long)st.step) +
                          " is outside [0, " + std::to_string(st.config.train.steps) + "], the run's --steps");
  // Refuse before allocating: a tiny (even correctly checksummed) file whose config asks for a huge
  // model must not make us allocate that model. The file's tensors have to add up to the config's size.
  {
    const long needed = parameter_count(st.config.model);  // bounded by the validated flag ranges
    long double held = 0;  // each entry's bytes are in the file, so this sum is at most its size
    for (const Entry& e : entries) held += (long double)e.rows * e.cols;
    if ((long double)needed != held)
      throw CheckpointError("checkpoint '" + path + "': its tensors hold " + std::to_string((unsigned long long)held) +
                            " numbers, its config needs " + std::to_string(needed));
  }
  st.params = params_filled<S>(st.config.model, S(1));
  st.m = params_filled<S>(st.config.model, S(0));
  st.v = params_filled<S>(st.config.model, S(0));
  auto P = named_tensors(st.config.model, st.params);
  auto M = named_tensors(st.config.model, st.m);
  auto V = named_tensors(st.config.model, st.v);
  if (P.size() != entries.size())
    throw CheckpointError("checkpoint '" + path + "': holds " + std::to_string(entries.size()) +
                          " tensors, its config needs " + std::to_string(P.size()));
  for (size_t i = 0; i < P.size(); ++i) {
    const Entry& e = entries[i];
    Mat<S>& t = *P[i].t;
    if (e.name != P[i].name || long(e.rows) != t.rows() || long(e.cols) != t.cols())
      throw CheckpointError("checkpoint '" + path + "': tensor " + std::to_string(i) + " is " + e.name + " (" +
                            std::to_string(e.rows) + ", " + std::to_string(e.cols) + "), the config needs " +
                            P[i].name + " (" + std::to_string(t.rows()) + ", " + std::to_string(t.cols()) + ")");
    const size_t n = size_t(t.size()) * sizeof(S);
    std::memcpy(P[i].t->data(), bytes.data() + e.offset, n);
    std::memcpy(M[i].t->data(), bytes.data() + e.offset + n, n);
    std::memcpy(V[i].t->data(), bytes.data() + e.offset + 2 * n, n);
    // Beyond the checksum: a file can be intact and still hold what no run writes (a NaN weight, a
    // negative second moment). Refuse it here rather than train or decode from it.
    const Mat<S>* parts[3] = {P[i].t, M[i].t, V[i].t};
    const char* part_name[3] = {"parameter", "AdamW first moment", "AdamW second moment"};
    for (int k = 0; k < 3; ++k) {
      const S* x = parts[k]->data();
      for (long j = 0; j < parts[k]->size(); ++j)
        if (!std::isfinite(x[j]) || (k == 2 && x[j] < S(0)))
          throw CheckpointError("checkpoint '" + path + "': " + part_name[k] + " " + P[i].name + " holds " +
                                (std::isfinite(x[j]) ? "a negative value" : "a non-finite value") + " at element " +
                                std::to_string(j) + " (no training run writes that; the file was edited or "
                                "produced elsewhere)");
    }
  }
  return st;
}

Config read_checkpoint_config(const std::string& path) {
  const std::vector<unsigned char> bytes = read_all(path);
  Reader r = open_checked(bytes, path, 0);
  r.u64("the step");
  const std::string text = r.str("the config");
  verify_checksum(bytes, path);
  try {
    return config_from_text(text, r.version >= 2);
  } catch (const UsageError& e) {
    throw CheckpointError("checkpoint '" + path + "': bad config block: " + e.what());
  }
}

template void save_checkpoint<float>(const std::string&, const TrainState<float>&);
template void save_checkpoint<double>(const std::string&, const TrainState<double>&);
template TrainState<float> load_checkpoint<float>(const std::string&);
template TrainState<double> load_checkpoint<double>(const std::string&);

}  // namespace model
