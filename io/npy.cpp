// io/npy.cpp: NumPy .npy read and write (see io/npy.h for the format and what is supported).
#include "io/npy.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>

#include "io/files.h"

static_assert(std::endian::native == std::endian::little,
              "io/npy.cpp copies little-endian file bytes straight into memory: a little-endian host is assumed");

namespace io {

const char* to_string(DType dt) { return dt == DType::f32 ? "float32" : "float64"; }
int itemsize(DType dt) { return dt == DType::f32 ? 4 : 8; }

long NpyArray::numel() const {
  long n = 1;
  for (long d : shape) n *= d;
  return n;
}

std::string shape_string(const std::vector<long>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

namespace {

const char kMagic[] = "\x93NUMPY";  // 6 bytes
constexpr size_t kMagicLen = 6;
// How every config.json of `infer --export` begins (io/export.cpp writes it): what marks it as ours.
const char kExportJsonStart[] = "{\n  \"format\": \"rattn model export";
constexpr size_t kMaxHeader = size_t(1) << 20;  // numpy writes a few hundred bytes; 1 MiB is far beyond

// ---- the header: a Python literal dict ---------------------------------------------------------
// Grammar accepted (what numpy writes, and what ast.literal_eval would read for these keys):
//   dict  := '{' [ key ':' value { ',' key ':' value } [','] ] '}'
//   value := string | True | False | int ['L'] | tuple | list
//   tuple := '(' [ value { ',' value } [','] ] ')'        list likewise with '[' ']'
struct Value {
  enum Kind { str, boolean, integer, tuple, list } kind = str;
  std::string s;
  bool b = false;
  long i = 0;
  std::vector<Value> items;
};

class HeaderParser {
 public:
  HeaderParser(const std::string& text, const std::string& what) : t_(text), what_(what) {}

  std::vector<std::pair<std::string, Value>> parse_dict() {
    std::vector<std::pair<std::string, Value>> out;
    skip_ws();
    expect('{');
    skip_ws();
    while (peek() != '}') {
      Value key = parse_value();
      if (key.kind != Value::str) fail("a key that is not a string");
      skip_ws();
      expect(':');
      Value v = parse_value();
      for (auto& kv : out)
        if (kv.first == key.s) fail("the key '" + key.s + "' twice");
      out.emplace_back(key.s, std::move(v));
      skip_ws();
      if (peek() == ',') {
        ++p_;
        skip_ws();
      } else if (peek() != '}') {
        fail("no ',' or '}' after the value of '" + key.s + "'");
      }
    }
    ++p_;
    skip_ws();
    if (p_ != t_.size()) fail("text after the closing '}'");
    return out;
  }

 private:
  const std::string& t_;
  const std::string& what_;
  size_t p_ = 0;

  [[noreturn]] void fail(const std::string& why) const {
    std::string shown = t_;
    while (!shown.empty() && std::isspace(static_cast<unsigned char>(shown.back()))) shown.pop_back();
    throw NpyError(what_ + ": malformed .npy header (" + why + " at character " + std::to_string(p_) +
                   "): " + shown);
  }
  char peek() const { return p_ < t_.size() ? t_[p_] : '\0'; }
  void skip_ws() {
    while (p_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[p_]))) ++p_;
  }
  void expect(char c) {
    if (peek() != c) fail(std::string("expected '") + c + "'");
    ++p_;
  }

  Value parse_value() {
    skip_ws();
    char c = peek();
    Value v;
    if (c == '\'' || c == '"') {
      v.kind = Value::str;
      ++p_;
      while (p_ < t_.size() && t_[p_] != c) {
        if (t_[p_] == '\\') fail("an escape sequence in a string");
        v.s += t_[p_++];
      }
      if (p_ >= t_.size()) fail("an unterminated string");
      ++p_;
    } else if (t_.compare(p_, 4, "True") == 0) {
      v.kind = Value::boolean, v.b = true, p_ += 4;
    } else if (t_.compare(p_, 5, "False") == 0) {
      v.kind = Value::boolean, v.b = false, p_ += 5;
    } else if (std::isdigit(static_cast<unsigned char>(c)) || c == '-') {
      v.kind = Value::integer;
      size_t start = p_;
      if (c == '-') ++p_;
      if (!std::isdigit(static_cast<unsigned char>(peek()))) fail("a '-' without digits");
      while (std::isdigit(static_cast<unsigned char>(peek()))) ++p_;
      std::string digits = t_.substr(start, p_ - start);
      if (digits.size() > 18) fail("an integer too large");
      v.i = std::stol(digits);
      if (peek() == 'L') ++p_;  // Python 2 long literals in old files: (3L, 4L)
    } else if (c == '(' || c == '[') {
      v.kind = c == '(' ? Value::tuple : Value::list;
      char close = c == '(' ? ')' : ']';
      ++p_;
      skip_ws();
      bool comma_seen = false;
      while (peek() != close) {
        v.items.push_back(parse_value());
        skip_ws();
        if (peek() == ',') {
          ++p_, comma_seen = true;
          skip_ws();
        } else if (peek() != close) {
          fail(std::string("no ',' or '") + close + "' in a " + (c == '(' ? "tuple" : "list"));
        }
      }
      ++p_;
      // (5) is the integer 5 in Python, not a tuple: a one-element tuple needs its comma.
      if (v.kind == Value::tuple && v.items.size() == 1 && !comma_seen) fail("a parenthesized value, not a tuple");
    } else {
      fail(c ? std::string("an unexpected character '") + c + "'" : std::string("the end of the text"));
    }
    return v;
  }
};

// A human name for a numpy dtype descr string: "<i8" -> "int64", ">f4" -> "float32 (big-endian)".
std::string dtype_name(const std::string& descr) {
  if (descr.size() < 2) return "'" + descr + "'";
  char order = descr[0];
  std::string body = descr;
  if (order == '<' || order == '>' || order == '|' || order == '=') body = descr.substr(1);
  if (body.empty()) return "'" + descr + "'";
  char kind = body[0];
  long n = 0;
  try {
    n = body.size() > 1 ? std::stol(body.substr(1)) : 0;
  } catch (...) {
    return "'" + descr + "'";
  }
  // Not a numpy item size (and 8 * n below must not overflow): name it as it is.
  if (n < 0 || n > (1L << 30)) return "'" + descr + "'";
  std::string name;
  switch (kind) {
    case 'f': name = "float" + std::to_string(8 * n); break;
    case 'i': name = "int" + std::to_string(8 * n); break;
    case 'u': name = "uint" + std::to_string(8 * n); break;
    case 'c': name = "complex" + std::to_string(8 * n); break;
    case 'b': name = "bool"; break;
    case 'U': name = "unicode string (U" + std::to_string(n) + ")"; break;
    case 'S': name = "byte string (S" + std::to_string(n) + ")"; break;
    case 'O': name = "object"; break;
    case 'M': name = "datetime64"; break;
    case 'm': name = "timedelta64"; break;
    case 'V': name = "void/raw bytes (V" + std::to_string(n) + ")"; break;
    default: return "'" + descr + "'";
  }
  return name + " ('" + descr + "')";
}

uint32_t read_le(const std::string& b, size_t at, int nbytes) {
  uint32_t v = 0;
  for (int i = nbytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

void check_name(const std::string& name) {
  bool ok = !name.empty() && name != "." && name != "..";
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) ok = false;
  if (!ok)
    throw NpyError("'" + name + "': not usable as a file name (letters, digits, '.', '_' and '-' only)");
}

}  // namespace

namespace {

// Magic, version and the header length field; returns the header's length, *header_start where it begins.
size_t header_length(const std::string& b, const std::string& what, size_t* header_start) {
  if (b.size() < kMagicLen + 2 || std::memcmp(b.data(), kMagic, kMagicLen) != 0)
    throw NpyError(what + ": not a .npy file (it does not start with \\x93NUMPY)");
  int major = static_cast<unsigned char>(b[6]), minor = static_cast<unsigned char>(b[7]);
  if (!((major == 1 || major == 2 || major == 3) && minor == 0))
    throw NpyError(what + ": unsupported .npy format version " + std::to_string(major) + "." +
                   std::to_string(minor) + " (1.0, 2.0 and 3.0 are supported)");
  // In format 1.0 the header length is 2 bytes; in 2.0 and 3.0 it is 4 (3.0 only allows a utf8 header,
  // which changes nothing for the ASCII keys and values read here).
  const int len_bytes = major == 1 ? 2 : 4;
  if (b.size() < kMagicLen + 2 + len_bytes)
    throw NpyError(what + ": truncated .npy file (it ends inside the header length)");
  *header_start = kMagicLen + 2 + len_bytes;
  return read_le(b, kMagicLen + 2, len_bytes);
}

// The array's dtype and shape (no data yet), its element count and where its data starts.
struct Header {
  NpyArray a;
  long numel = 1;
  size_t data_start = 0;
};

Header parse_header(const std::string& b, const std::string& what) {
  size_t header_start = 0;
  const size_t header_len = header_length(b, what, &header_start);
  if (b.size() < header_start + header_len)
    throw NpyError(what + ": truncated .npy file (the header says " + std::to_string(header_len) +
                   " header bytes, the file has " + std::to_string(b.size() - header_start) + " after the length)");
  const std::string header = b.substr(header_start, header_len);
  std::string shown = header;  // the header as error messages quote it, without its padding
  while (!shown.empty() && std::isspace(static_cast<unsigned char>(shown.back()))) shown.pop_back();
  const size_t data_start = header_start + header_len;

  auto dict = HeaderParser(header, what).parse_dict();
  const Value* descr = nullptr;
  const Value* fortran = nullptr;
  const Value* shape = nullptr;
  for (auto& kv : dict) {
    if (kv.first == "descr") descr = &kv.second;
    else if (kv.first == "fortran_order") fortran = &kv.second;
    else if (kv.first == "shape") shape = &kv.second;
    else throw NpyError(what + ": malformed .npy header (unexpected key '" + kv.first + "'): " + shown);
  }
  for (auto [v, key] : {std::pair{descr, "descr"}, std::pair{fortran, "fortran_order"}, std::pair{shape, "shape"}})
    if (!v) throw NpyError(what + ": malformed .npy header (no '" + key + "' key): " + shown);

  // descr: the dtype.
  if (descr->kind == Value::list)
    throw NpyError(what + ": structured dtype (a record with fields) is not supported; only float32 and float64");
  if (descr->kind != Value::str)
    throw NpyError(what + ": malformed .npy header ('descr' is not a string): " + shown);
  Header h;
  NpyArray& a = h.a;
  const std::string& d = descr->s;
  if (d == "<f4") {
    a.dtype = DType::f32;
  } else if (d == "<f8") {
    a.dtype = DType::f64;
  } else if (d == ">f4" || d == ">f8") {
    throw NpyError(what + ": big-endian " + dtype_name(d) + " is not supported; save it little-endian, e.g. a.astype('<" +
                   d.substr(1) + "')");
  } else {
    throw NpyError(what + ": dtype " + dtype_name(d) +
                   " is not supported; only float32 ('<f4') and float64 ('<f8'), e.g. a.astype(np.float32)");
  }

  // fortran_order: must be False.
  if (fortran->kind != Value::boolean)
    throw NpyError(what + ": malformed .npy header ('fortran_order' is not True or False): " + shown);
  if (fortran->b)
    throw NpyError(what + ": Fortran order (column-major) is not supported; save np.ascontiguousarray(a) instead");

  // shape: a tuple of non-negative integers.
  if (shape->kind != Value::tuple)
    throw NpyError(what + ": malformed .npy header ('shape' is not a tuple): " + shown);
  long& numel = h.numel;
  for (const Value& dim : shape->items) {
    if (dim.kind != Value::integer || dim.i < 0)
      throw NpyError(what + ": malformed .npy header ('shape' must hold non-negative integers): " + shown);
    a.shape.push_back(dim.i);
    if (__builtin_mul_overflow(numel, dim.i, &numel) || numel > (long(1) << 48))
      throw NpyError(what + ": the header's shape " + shape_string(a.shape) + "... is too large");
  }

  h.data_start = data_start;
  return h;
}

[[noreturn]] void data_does_not_match(const std::string& what, const NpyArray& a, size_t want, size_t have) {
  if (have < want)
    throw NpyError(what + ": truncated data: shape " + shape_string(a.shape) + " " + to_string(a.dtype) + " needs " +
                   std::to_string(want) + " bytes, the file has " + std::to_string(have));
  throw NpyError(what + ": the header's shape " + shape_string(a.shape) + " " + to_string(a.dtype) + " needs " +
                 std::to_string(want) + " bytes, but the file has " + std::to_string(have) +
                 " bytes of data: the header does not describe the data");
}

}  // namespace

NpyArray parse_npy(const std::string& b, const std::string& what) {
  Header h = parse_header(b, what);
  NpyArray& a = h.a;
  const long numel = h.numel;
  const size_t data_start = h.data_start;
  // The data: exactly numel * itemsize bytes after the header, no more, no less.
  const size_t want = size_t(numel) * itemsize(a.dtype);
  const size_t have = b.size() - data_start;
  if (have != want) data_does_not_match(what, a, want, have);

  a.data.resize(size_t(numel));
  const char* p = b.data() + data_start;
  if (a.dtype == DType::f64) {
    if (want > 0) std::memcpy(a.data.data(), p, want);  // an empty array's data() may be null
  } else {
    for (long i = 0; i < numel; ++i) {
      float x;
      std::memcpy(&x, p + 4 * i, 4);
      a.data[i] = x;
    }
  }
  return std::move(h.a);
}

// Bounded by the file's own header: the fixed preamble, then the header (at most kMaxHeader bytes),
// then the data only when the file is no longer than the header says; every size is known before reading.
NpyArray read_npy(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT) throw NpyError(path + ": no such file");
  try {
    io::InputFile f(path, std::numeric_limits<uint64_t>::max(), path, "a .npy file");
    const uint64_t size = f.size();
    std::string b = f.read(std::min<uint64_t>(size, kMagicLen + 2 + 4));
    size_t header_start = 0;
    const size_t header_len = header_length(b, path, &header_start);
    if (header_len > kMaxHeader)
      throw NpyError(path + ": a .npy header of " + std::to_string(header_len) + " bytes, larger than the " +
                     io::bytes_text(kMaxHeader) + " allowed");
    const uint64_t through_header = std::min<uint64_t>(size, header_start + header_len);
    if (through_header > b.size()) b += f.read(through_header - b.size());
    const Header h = parse_header(b, path);  // throws on a truncated or malformed header
    const size_t want = size_t(h.numel) * size_t(itemsize(h.a.dtype));
    if (size - h.data_start > want) data_does_not_match(path, h.a, want, size_t(size - h.data_start));
    b += f.read(size - b.size());
    return parse_npy(b, path);
  } catch (const io::FileRefused& e) {  // missing, or not a regular file
    throw NpyError(e.what());
  }
}

std::string format_npy(const NpyArray& a) {
  if (long(a.data.size()) != a.numel())
    throw NpyError("format_npy: shape " + shape_string(a.shape) + " has " + std::to_string(a.numel()) +
                   " elements but the data holds " + std::to_string(a.data.size()));
  for (long dim : a.shape)
    if (dim < 0) throw NpyError("format_npy: negative dimension in shape " + shape_string(a.shape));
  std::string dict = std::string("{'descr': '") + (a.dtype == DType::f32 ? "<f4" : "<f8") +
                     "', 'fortran_order': False, 'shape': " + shape_string(a.shape) + ", }";
  // Pad with spaces so that magic + version + length + header (ending in '\n') is a multiple of 64.
  int major = 1;
  size_t prefix = kMagicLen + 2 + 2;
  size_t total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  if (total - prefix > 65535) {
    major = 2, prefix = kMagicLen + 2 + 4;
    total = (prefix + dict.size() + 1 + 63) / 64 * 64;
  }
  const size_t header_len = total - prefix;
  std::string header = dict + std::string(header_len - dict.size() - 1, ' ') + "\n";

  std::string out(kMagic, kMagicLen);
  out += char(major);
  out += char(0);
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i) out += char((header_len >> (8 * i)) & 0xff);
  out += header;
  const size_t n = a.data.size();
  const size_t at = out.size();
  out.resize(at + n * itemsize(a.dtype));
  if (a.dtype == DType::f64) {
    if (n > 0) std::memcpy(&out[at], a.data.data(), n * 8);  // an empty array's data() may be null
  } else {
    for (size_t i = 0; i < n; ++i) {
      float x = static_cast<float>(a.data[i]);
      std::memcpy(&out[at + 4 * i], &x, 4);
    }
  }
  return out;
}

void write_npy(const std::string& path, const NpyArray& a) {
  const std::filesystem::path p(path);
  write_files_atomically(p.has_parent_path() ? p.parent_path().string() : std::string("."),
                         {{p.filename().string(), format_npy(a)}}, "output");
}

NpyArray make_npy(const std::vector<long>& shape, const float* data) {
  NpyArray a;
  a.dtype = DType::f32;
  a.shape = shape;
  a.data.assign(data, data + a.numel());
  return a;
}

NpyArray make_npy(const std::vector<long>& shape, const double* data) {
  NpyArray a;
  a.dtype = DType::f64;
  a.shape = shape;
  a.data.assign(data, data + a.numel());
  return a;
}

namespace {
// What an output name may replace: an .npy file, or the config.json of an earlier export; nothing else.
const io::OutputKind& output_kind(const std::string& name) {
  static const io::OutputKind npy{"a .npy file", [](const std::string& head) {
                                    return head.size() >= kMagicLen && std::memcmp(head.data(), kMagic, kMagicLen) == 0;
                                  }};
  static const io::OutputKind json{"a rattn model export's config.json", [](const std::string& head) {
                                     return head.rfind(kExportJsonStart, 0) == 0;
                                   }};
  static const io::OutputKind none{"a file this program wrote", [](const std::string&) { return false; }};
  if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0) return npy;
  if (name == "config.json") return json;
  return none;
}
}  // namespace

void check_output_files(const std::string& dir, const std::vector<std::string>& names, const std::string& flag,
                        const std::vector<std::string>& stale, const std::vector<io::NamedInput>& inputs) {
  struct stat st{};
  if (::stat(dir.c_str(), &st) == 0 && !S_ISDIR(st.st_mode))
    throw io::FileRefused(flag + ": " + dir + " exists and is " + io::file_type_name(st.st_mode) +
                          ", not a folder; choose another path or remove it");
  for (const std::string& name : names) check_name(name);
  for (const std::vector<std::string>* list : {&names, &stale})
    for (const std::string& name : *list) {
      const std::string path = (std::filesystem::path(dir) / name).string();
      io::check_output(path, output_kind(name), flag, inputs);
    }
}

void write_files_atomically(const std::string& dir, const std::vector<std::pair<std::string, std::string>>& files,
                            const std::string& flag, const std::vector<std::string>& stale,
                            const std::vector<io::NamedInput>& inputs) {
  namespace fs = std::filesystem;
  std::vector<std::string> names;
  for (auto& [name, bytes] : files) names.push_back(name);
  check_output_files(dir, names, flag, stale, inputs);  // io::FileRefused: nothing is touched
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir, ec)) throw NpyError(dir + ": cannot create the output folder");

  // 1. every file to a hidden temporary name in the same folder (so that rename is atomic), created
  //    exclusively: never through a link, never over a file that is not a stale temporary of ours
  const std::string tag = ".tmp-" + std::to_string(::getpid());
  std::vector<fs::path> tmps;  // only those this call created
  auto remove_tmps = [&] {
    for (auto& t : tmps) fs::remove(t, ec);
  };
  for (auto& [name, bytes] : files) {
    const fs::path tmp = fs::path(dir) / ("." + name + tag);
    int fd = -1;
    try {
      fd = io::create_exclusive(tmp.string(), output_kind(name), flag);
    } catch (...) {
      remove_tmps();
      throw;
    }
    tmps.push_back(tmp);
    const bool ok = io::write_all(fd, bytes.data(), bytes.size());
    if (::close(fd) != 0 || !ok) {
      remove_tmps();
      throw NpyError((fs::path(dir) / name).string() + ": write failed (" + std::strerror(errno) +
                     "; nothing was written)");
    }
  }
  // 2. a set of several files replaces the earlier set as a whole: every file of it (and every stale
  //    name the caller lists) is removed first, so that a kill while renaming leaves part of the new
  //    set, never files of two runs side by side. A single file is renamed over its old self.
  std::vector<std::string> removed = stale;
  if (files.size() > 1) removed.insert(removed.end(), names.begin(), names.end());
  for (const std::string& name : removed) {
    const fs::path p = fs::path(dir) / name;
    if (::unlink(p.c_str()) != 0 && errno != ENOENT) {
      const std::string why = std::strerror(errno);
      remove_tmps();
      throw NpyError(p.string() + ": cannot remove the earlier output (" + why + ")");
    }
  }
  // 3. all written: rename each to its final name
  for (size_t i = 0; i < files.size(); ++i) {
    const fs::path final_path = fs::path(dir) / files[i].first;
    if (::rename(tmps[i].c_str(), final_path.c_str()) != 0) {
      const std::string why = std::strerror(errno);
      remove_tmps();
      throw NpyError(final_path.string() + ": rename failed (" + why + ")");
    }
  }
  if (!names.empty()) io::sync_parent_dir((fs::path(dir) / names.front()).string());
}

void write_npy_files(const std::string& dir, const std::vector<std::pair<std::string, NpyArray>>& arrays,
                     const std::string& flag, const std::vector<std::string>& stale) {
  std::vector<std::pair<std::string, std::string>> files;
  for (auto& [name, a] : arrays) {
    check_name(name);
    files.emplace_back(name + ".npy", format_npy(a));
  }
  write_files_atomically(dir, files, flag, stale);
}

namespace {
// The .npy files an earlier export in dir lists in its config.json (none when config.json is not ours).
std::vector<std::string> exported_files(const std::string& dir) {
  const std::string json = io::file_head((std::filesystem::path(dir) / "config.json").string(), 16 * io::kMiB);
  std::vector<std::string> out;
  if (json.rfind(kExportJsonStart, 0) != 0) return out;  // not an export of ours: nothing is ours to remove
  const std::string key = "\"file\": \"";
  for (size_t at = json.find(key); at != std::string::npos; at = json.find(key, at)) {
    at += key.size();
    const size_t end = json.find('"', at);
    if (end == std::string::npos) break;
    const std::string name = json.substr(at, end - at);
    try {
      check_name(name);
      if (name.size() > 4 && name.compare(name.size() - 4, 4, ".npy") == 0) out.push_back(name);
    } catch (const NpyError&) {  // not a plain file name: never ours
    }
  }
  return out;
}
}  // namespace

void write_npy_dir(const std::string& dir, const std::vector<std::pair<std::string, NpyArray>>& tensors,
                   const std::string& config_json) {
  std::vector<std::pair<std::string, std::string>> files;
  for (auto& [name, a] : tensors) {
    check_name(name);
    if (name == "config") throw NpyError("write_npy_dir: a tensor may not be called 'config' (config.json)");
    for (auto& f : files)
      if (f.first == name + ".npy") throw NpyError("write_npy_dir: two tensors named '" + name + "'");
    NpyArray f32 = a;
    f32.dtype = DType::f32;
    files.emplace_back(name + ".npy", format_npy(f32));
  }
  files.emplace_back("config.json", config_json);
  // An earlier export in dir: the files its config.json lists that this one does not write are removed
  // (a model with fewer layers must not leave the other's block files beside its own).
  std::vector<std::string> stale;
  for (const std::string& old : exported_files(dir)) {
    bool kept = false;
    for (auto& f : files) kept = kept || f.first == old;
    if (!kept) stale.push_back(old);
  }
  write_files_atomically(dir, files, "--export", stale);
}

void write_npy_dir(const std::string& dir, const std::vector<std::pair<std::string, ref::Mat<float>>>& tensors,
                   const std::string& config_json) {
  std::vector<std::pair<std::string, NpyArray>> arrays;
  for (auto& [name, m] : tensors) arrays.emplace_back(name, make_npy({long(m.rows()), long(m.cols())}, m.data()));
  write_npy_dir(dir, arrays, config_json);
}

}  // namespace io
