// io/npy.cpp: NumPy .npy read and write (see io/npy.h for the format and what is supported).
#include "io/npy.h"

#include <unistd.h>

#include <bit>
#include <cctype>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

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

std::string read_file_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) throw NpyError(path + ": no such file");
    throw NpyError(path + ": cannot open for reading");
  }
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw NpyError(path + ": read error");
  return ss.str();
}

void check_name(const std::string& name) {
  bool ok = !name.empty() && name != "." && name != "..";
  for (char c : name)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) ok = false;
  if (!ok)
    throw NpyError("'" + name + "': not usable as a file name (letters, digits, '.', '_' and '-' only)");
}

}  // namespace

NpyArray parse_npy(const std::string& b, const std::string& what) {
  if (b.size() < kMagicLen + 2 || std::memcmp(b.data(), kMagic, kMagicLen) != 0)
    throw NpyError(what + ": not a .npy file (it does not start with \\x93NUMPY)");
  int major = static_cast<unsigned char>(b[6]), minor = static_cast<unsigned char>(b[7]);
  if (!((major == 1 || major == 2 || major == 3) && minor == 0))
    throw NpyError(what + ": unsupported .npy format version " + std::to_string(major) + "." +
                   std::to_string(minor) + " (1.0, 2.0 and 3.0 are supported)");
  // In format 1.0 the header length is 2 bytes; in 2.0 and 3.0 it is 4 (3.0 only allows a utf8 header,
  // which changes nothing for the ASCII keys and values read here).
  const int len_bytes = major == 1 ? 2 : 4;
  const size_t header_start = kMagicLen + 2 + len_bytes;
  if (b.size() < header_start) throw NpyError(what + ": truncated .npy file (it ends inside the header length)");
  const size_t header_len = read_le(b, kMagicLen + 2, len_bytes);
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
  NpyArray a;
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
  long numel = 1;
  for (const Value& dim : shape->items) {
    if (dim.kind != Value::integer || dim.i < 0)
      throw NpyError(what + ": malformed .npy header ('shape' must hold non-negative integers): " + shown);
    a.shape.push_back(dim.i);
    if (__builtin_mul_overflow(numel, dim.i, &numel) || numel > (long(1) << 48))
      throw NpyError(what + ": the header's shape " + shape_string(a.shape) + "... is too large");
  }

  // The data: exactly numel * itemsize bytes after the header, no more, no less.
  const size_t want = size_t(numel) * itemsize(a.dtype);
  const size_t have = b.size() - data_start;
  if (have < want)
    throw NpyError(what + ": truncated data: shape " + shape_string(a.shape) + " " + to_string(a.dtype) + " needs " +
                   std::to_string(want) + " bytes, the file has " + std::to_string(have));
  if (have > want)
    throw NpyError(what + ": the header's shape " + shape_string(a.shape) + " " + to_string(a.dtype) + " needs " +
                   std::to_string(want) + " bytes, but the file has " + std::to_string(have) +
                   " bytes of data: the header does not describe the data");

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
  return a;
}

NpyArray read_npy(const std::string& path) { return parse_npy(read_file_bytes(path), path); }

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
  const std::string bytes = format_npy(a);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) throw NpyError(path + ": cannot open for writing");
  f.write(bytes.data(), std::streamsize(bytes.size()));
  f.close();
  if (!f) throw NpyError(path + ": write failed");
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

void write_files_atomically(const std::string& dir, const std::vector<std::pair<std::string, std::string>>& files) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!fs::is_directory(dir, ec)) throw NpyError(dir + ": cannot create the output folder");
  for (auto& [name, bytes] : files) check_name(name);

  // 1. every file to a hidden temporary name in the same folder (so that rename is atomic)
  const std::string tag = ".tmp-" + std::to_string(::getpid());
  std::vector<fs::path> tmps;
  auto remove_tmps = [&] {
    for (auto& t : tmps) fs::remove(t, ec);
  };
  for (auto& [name, bytes] : files) {
    fs::path tmp = fs::path(dir) / ("." + name + tag);
    tmps.push_back(tmp);
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (f) f.write(bytes.data(), std::streamsize(bytes.size()));
    if (f) f.close();
    if (!f) {
      remove_tmps();
      throw NpyError((fs::path(dir) / name).string() + ": write failed (nothing was written)");
    }
  }
  // 2. all written: rename each to its final name
  for (size_t i = 0; i < files.size(); ++i) {
    fs::rename(tmps[i], fs::path(dir) / files[i].first, ec);
    if (ec) {
      remove_tmps();
      throw NpyError((fs::path(dir) / files[i].first).string() + ": rename failed: " + ec.message());
    }
  }
}

void write_npy_files(const std::string& dir, const std::vector<std::pair<std::string, NpyArray>>& arrays) {
  std::vector<std::pair<std::string, std::string>> files;
  for (auto& [name, a] : arrays) {
    check_name(name);
    files.emplace_back(name + ".npy", format_npy(a));
  }
  write_files_atomically(dir, files);
}

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
  write_files_atomically(dir, files);
}

void write_npy_dir(const std::string& dir, const std::vector<std::pair<std::string, ref::Mat<float>>>& tensors,
                   const std::string& config_json) {
  std::vector<std::pair<std::string, NpyArray>> arrays;
  for (auto& [name, m] : tensors) arrays.emplace_back(name, make_npy({long(m.rows()), long(m.cols())}, m.data()));
  write_npy_dir(dir, arrays, config_json);
}

}  // namespace io
