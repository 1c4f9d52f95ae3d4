// io/npy: round trips, files as NumPy writes them, and every malformed case rejected with a message
// that names the problem. The bad files are written here, byte by byte.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "io/npy.h"
#include "tests/check.h"

namespace fs = std::filesystem;
using io::DType;
using io::NpyArray;
using io::NpyError;

namespace {

// A fresh empty folder under the system temp dir, removed when the test case ends.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) {
    static int n = 0;
    path = fs::temp_directory_path() / ("rattn_test_npy_" + tag + "_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), std::streamsize(bytes.size()));
}
std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A .npy file as NumPy lays it out: magic, version, header length (2 bytes for 1.0, 4 for 2.0/3.0),
// the dict padded with spaces and ending in '\n' so that the data starts at a multiple of `align`.
std::string npy_file(const std::string& dict, const std::string& data, int major = 1, size_t align = 64) {
  size_t prefix = 8 + (major == 1 ? 2 : 4);
  size_t total = (prefix + dict.size() + 1 + align - 1) / align * align;
  size_t hlen = total - prefix;
  std::string out = std::string("\x93NUMPY", 6) + char(major) + char(0);
  for (int i = 0; i < (major == 1 ? 2 : 4); ++i) out += char((hlen >> (8 * i)) & 0xff);
  out += dict + std::string(hlen - dict.size() - 1, ' ') + "\n";
  return out + data;
}
template <class T>
std::string raw(std::initializer_list<T> xs) {
  std::string s;
  for (T x : xs) s.append(reinterpret_cast<const char*>(&x), sizeof(T));
  return s;
}
std::string zeros(size_t n) { return std::string(n, '\0'); }

// parse_npy must throw an NpyError whose message contains every one of `needles`.
void expect_rejected(const TempDir& dir, const std::string& name, const std::string& bytes,
                     std::initializer_list<const char*> needles) {
  write_bytes(dir.file(name), bytes);
  std::string msg;
  try {
    io::read_npy(dir.file(name));
  } catch (const NpyError& e) {
    msg = e.what();
  }
  INFO("file " << name << ": message '" << msg << "'");
  REQUIRE_FALSE(msg.empty());
  CHECK(msg.find(name) != std::string::npos);  // names the file
  for (const char* n : needles) CHECK_MESSAGE(msg.find(n) != std::string::npos, "missing '" << n << "'");
}

NpyArray random_array(std::vector<long> shape, DType dt, std::mt19937_64& rng) {
  NpyArray a;
  a.dtype = dt;
  a.shape = std::move(shape);
  std::normal_distribution<double> n(0.0, 1.0);
  a.data.resize(size_t(a.numel()));
  for (double& x : a.data) x = dt == DType::f32 ? double(float(n(rng))) : n(rng);
  return a;
}

}  // namespace

TEST_CASE("npy round trip: float32 and float64, ranks 0 to 4, bit for bit") {
  TempDir dir("roundtrip");
  std::mt19937_64 rng(5);
  const std::vector<std::vector<long>> shapes = {{}, {7}, {3, 5}, {2, 3, 4}, {2, 3, 1, 5}, {0}, {2, 0, 3}};
  for (DType dt : {DType::f32, DType::f64}) {
    for (const auto& shape : shapes) {
      NpyArray a = random_array(shape, dt, rng);
      std::string path = dir.file("a.npy");
      io::write_npy(path, a);
      NpyArray b = io::read_npy(path);
      INFO(io::to_string(dt) << " shape " << io::shape_string(shape));
      CHECK(b.dtype == dt);
      CHECK(b.shape == shape);
      REQUIRE(b.data.size() == a.data.size());
      CHECK((a.data.empty() || std::memcmp(b.data.data(), a.data.data(), a.data.size() * sizeof(double)) == 0));
      // The header is padded so that the data starts at a multiple of 64 bytes, as NumPy requires.
      size_t data_offset = read_bytes(path).size() - a.data.size() * io::itemsize(dt);
      CHECK(data_offset % 64 == 0);
    }
  }
}

TEST_CASE("npy writes float32 by rounding to nearest, and the byte layout NumPy expects") {
  NpyArray a;
  a.dtype = DType::f32;
  a.shape = {2};
  a.data = {0.1, -1.0 / 3.0};
  std::string bytes = io::format_npy(a);
  const std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  REQUIRE(bytes.size() == 128 + 8);
  CHECK(bytes.substr(0, 8) == std::string("\x93NUMPY\x01\x00", 8));
  CHECK(static_cast<unsigned char>(bytes[8]) == 118);  // header length 128 - 10, little-endian
  CHECK(bytes[9] == 0);
  CHECK(bytes.substr(10, dict.size()) == dict);
  CHECK(bytes[127] == '\n');
  float x[2];
  std::memcpy(x, bytes.data() + 128, 8);
  CHECK(x[0] == 0.1f);
  CHECK(x[1] == float(-1.0 / 3.0));
}

TEST_CASE("npy reads files exactly as NumPy writes them (format 1.0, 2.0, 3.0, scalar)") {
  // np.save(f, (np.arange(6, dtype=np.float32) / 4).reshape(2, 3)) with NumPy 2.x: a 118-byte header
  // (NumPy pads to 128 bytes, leaving room to grow the shape in place).
  std::string f1 = npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
                            raw<float>({0, 0.25, 0.5, 0.75, 1.0, 1.25}), 1, 128);
  REQUIRE(static_cast<unsigned char>(f1[8]) == 0x76);  // as NumPy wrote it
  NpyArray a = io::parse_npy(f1, "f1");
  CHECK(a.dtype == DType::f32);
  CHECK(a.shape == std::vector<long>{2, 3});
  CHECK(a.data == std::vector<double>{0, 0.25, 0.5, 0.75, 1.0, 1.25});

  // np.lib.format.write_array(f, np.array([1.5, -2.0]), version=(2, 0)) and (3, 0)
  for (int major : {2, 3}) {
    std::string f2 = npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }", raw<double>({1.5, -2.0}),
                              major, 128);
    NpyArray b = io::parse_npy(f2, "f2");
    CHECK(b.dtype == DType::f64);
    CHECK(b.shape == std::vector<long>{2});
    CHECK(b.data == std::vector<double>{1.5, -2.0});
  }
  // A 0-d array: shape ().
  NpyArray s = io::parse_npy(npy_file("{'descr': '<f8', 'fortran_order': False, 'shape': (), }", raw<double>({3.25})),
                             "scalar");
  CHECK(s.shape.empty());
  CHECK(s.data == std::vector<double>{3.25});
  // Key order, double quotes, no trailing comma and Python 2 long literals are all valid headers.
  NpyArray t = io::parse_npy(
      npy_file("{\"shape\": (1L, 2L), \"fortran_order\": False, \"descr\": \"<f8\"}", raw<double>({1, 2})), "t");
  CHECK(t.shape == std::vector<long>{1, 2});
}

TEST_CASE("npy writes format 2.0 when the header does not fit in 65535 bytes") {
  NpyArray a;
  a.dtype = DType::f64;
  a.shape.assign(25000, 1);  // "1, " x 25000: a 75 kB header
  a.data = {42.0};
  std::string bytes = io::format_npy(a);
  CHECK(bytes[6] == 2);
  CHECK(bytes.size() % 64 == 8);
  NpyArray b = io::parse_npy(bytes, "big header");
  CHECK(b.shape == a.shape);
  CHECK(b.data == a.data);
}

TEST_CASE("npy rejects every malformed or unsupported file with a message naming the problem") {
  TempDir dir("bad");
  const std::string data6f = zeros(24);
  auto hdr = [](const std::string& descr, const std::string& fortran, const std::string& shape) {
    return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }";
  };
  // Order and dtype.
  expect_rejected(dir, "fortran.npy", npy_file(hdr("<f4", "True", "(2, 3)"), data6f), {"Fortran order"});
  expect_rejected(dir, "int64.npy", npy_file(hdr("<i8", "False", "(2, 3)"), zeros(48)), {"int64", "not supported"});
  expect_rejected(dir, "int32.npy", npy_file(hdr("<i4", "False", "(2, 3)"), data6f), {"int32"});
  expect_rejected(dir, "float16.npy", npy_file(hdr("<f2", "False", "(2, 3)"), zeros(12)), {"float16"});
  expect_rejected(dir, "bool.npy", npy_file(hdr("|b1", "False", "(2, 3)"), zeros(6)), {"bool"});
  expect_rejected(dir, "complex.npy", npy_file(hdr("<c8", "False", "(2, 3)"), zeros(48)), {"complex64"});
  expect_rejected(dir, "uint8.npy", npy_file(hdr("|u1", "False", "(2, 3)"), zeros(6)), {"uint8"});
  expect_rejected(dir, "object.npy", npy_file(hdr("|O", "False", "(2, 3)"), zeros(48)), {"object"});
  expect_rejected(dir, "record.npy",
                  npy_file("{'descr': [('a', '<f4'), ('b', '<f4')], 'fortran_order': False, 'shape': (3,), }", data6f),
                  {"structured dtype"});
  // An item size whose bit count (8 * n) overflows a long: the message quotes the descriptor as written
  // (before the fix, naming it was signed overflow: UBSan fails this line in make test-sanitize).
  expect_rejected(dir, "huge_itemsize.npy", npy_file(hdr("<f4611686018427387904", "False", "(2, 3)"), data6f),
                  {"'<f4611686018427387904'"});
  expect_rejected(dir, "bigendian4.npy", npy_file(hdr(">f4", "False", "(2, 3)"), data6f), {"big-endian", "float32"});
  expect_rejected(dir, "bigendian8.npy", npy_file(hdr(">f8", "False", "(2, 3)"), zeros(48)), {"big-endian", "float64"});
  // Data that does not match the shape.
  expect_rejected(dir, "truncated.npy", npy_file(hdr("<f4", "False", "(2, 3)"), zeros(20)),
                  {"truncated data", "(2, 3)", "24 bytes", "has 20"});
  expect_rejected(dir, "lying_shape.npy", npy_file(hdr("<f4", "False", "(2, 3)"), zeros(32)),
                  {"(2, 3)", "24 bytes", "32 bytes", "does not describe the data"});
  expect_rejected(dir, "lying_rank.npy", npy_file(hdr("<f8", "False", "(6,)"), zeros(24)),
                  {"(6,)", "48 bytes", "has 24"});
  // The file itself cut short, or not a .npy file.
  std::string good = npy_file(hdr("<f4", "False", "(2, 3)"), data6f);
  expect_rejected(dir, "cut_in_header.npy", good.substr(0, 40), {"truncated", "header"});
  expect_rejected(dir, "cut_in_length.npy", good.substr(0, 9), {"truncated"});
  expect_rejected(dir, "empty.npy", "", {"not a .npy file"});
  expect_rejected(dir, "text.npy", "hello, this is not numpy data at all", {"not a .npy file"});
  std::string v9 = good;
  v9[6] = 9;
  expect_rejected(dir, "version.npy", v9, {"unsupported .npy format version 9.0"});
  // Malformed header dicts.
  expect_rejected(dir, "no_shape.npy", npy_file("{'descr': '<f4', 'fortran_order': False, }", data6f),
                  {"malformed .npy header", "no 'shape'"});
  expect_rejected(dir, "no_descr.npy", npy_file("{'fortran_order': False, 'shape': (2, 3), }", data6f),
                  {"malformed .npy header", "no 'descr'"});
  expect_rejected(dir, "no_order.npy", npy_file("{'descr': '<f4', 'shape': (2, 3), }", data6f),
                  {"malformed .npy header", "no 'fortran_order'"});
  expect_rejected(dir, "extra_key.npy",
                  npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), 'x': 1, }", data6f),
                  {"malformed .npy header", "unexpected key 'x'"});
  expect_rejected(dir, "dup_key.npy",
                  npy_file("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", data6f),
                  {"malformed .npy header", "'descr' twice"});
  expect_rejected(dir, "not_dict.npy", npy_file("['descr', '<f4']", data6f), {"malformed .npy header", "expected '{'"});
  expect_rejected(dir, "unclosed.npy", npy_file("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)", data6f),
                  {"malformed .npy header"});
  expect_rejected(dir, "unterminated.npy", npy_file("{'descr': '<f4, 'fortran_order': False, 'shape': (2, 3), }", data6f),
                  {"malformed .npy header"});
  expect_rejected(dir, "shape_list.npy", npy_file(hdr("<f4", "False", "[2, 3]"), data6f),
                  {"malformed .npy header", "'shape' is not a tuple"});
  expect_rejected(dir, "shape_int.npy", npy_file(hdr("<f4", "False", "6"), data6f),
                  {"malformed .npy header", "'shape' is not a tuple"});
  expect_rejected(dir, "shape_paren.npy", npy_file(hdr("<f4", "False", "(6)"), data6f),
                  {"malformed .npy header", "not a tuple"});
  expect_rejected(dir, "shape_negative.npy", npy_file(hdr("<f4", "False", "(-2, 3)"), data6f),
                  {"malformed .npy header", "non-negative"});
  expect_rejected(dir, "shape_text.npy", npy_file(hdr("<f4", "False", "('2', 3)"), data6f),
                  {"malformed .npy header", "non-negative integers"});
  expect_rejected(dir, "order_text.npy", npy_file(hdr("<f4", "'no'", "(2, 3)"), data6f),
                  {"malformed .npy header", "'fortran_order' is not True or False"});
  expect_rejected(dir, "descr_int.npy", npy_file("{'descr': 4, 'fortran_order': False, 'shape': (2, 3), }", data6f),
                  {"malformed .npy header", "'descr' is not a string"});
  expect_rejected(dir, "trailing.npy", npy_file(hdr("<f4", "False", "(2, 3)") + " junk", data6f),
                  {"malformed .npy header", "after the closing"});
  expect_rejected(dir, "huge.npy", npy_file(hdr("<f8", "False", "(100000000000, 100000000000)"), zeros(8)),
                  {"too large"});

  // A missing file is named as such.
  std::string msg;
  try {
    io::read_npy(dir.file("absent.npy"));
  } catch (const NpyError& e) {
    msg = e.what();
  }
  CHECK(msg.find("absent.npy: no such file") != std::string::npos);
}

TEST_CASE("write_npy_files and write_npy_dir: all files or none") {
  TempDir dir("dir");
  std::mt19937_64 rng(7);
  ref::Mat<float> W = rattn_test::randn<ref::Mat<float>>(3, 4, rng);
  ref::Mat<float> g = rattn_test::randn<ref::Mat<float>>(2, 5, rng);
  std::string out = dir.file("export");
  io::write_npy_dir(out, {{"layers.0.Wq", W}, {"layers.0.gamma_swa", g}}, "{\"d_model\": 4}\n");
  NpyArray a = io::read_npy(out + "/layers.0.Wq.npy");
  CHECK(a.dtype == DType::f32);
  CHECK(a.shape == std::vector<long>{3, 4});
  CHECK(a.data[1 * 4 + 2] == double(W(1, 2)));  // row-major: C order
  CHECK(io::read_npy(out + "/layers.0.gamma_swa.npy").shape == std::vector<long>{2, 5});
  CHECK(read_bytes(out + "/config.json") == "{\"d_model\": 4}\n");
  // No temporaries left behind.
  int n = 0;
  for (auto& e : fs::directory_iterator(out)) n += e.path().filename().string()[0] == '.';
  CHECK(n == 0);

  // A bad name is refused before anything is written: the folder is not even created.
  std::string out2 = dir.file("export2");
  CHECK_THROWS_AS(io::write_npy_dir(out2, {{"ok", W}, {"../escape", W}}, "{}"), NpyError);
  CHECK_FALSE(fs::exists(out2));
  CHECK_THROWS_AS(io::write_npy_dir(out2, {{"a", W}, {"a", g}}, "{}"), NpyError);  // a duplicate name
  CHECK_FALSE(fs::exists(out2 + "/a.npy"));

  // write_npy_files keeps each array's dtype.
  NpyArray d = random_array({2, 2}, DType::f64, rng);
  io::write_npy_files(dir.file("files"), {{"d", d}});
  NpyArray d2 = io::read_npy(dir.file("files") + "/d.npy");
  CHECK(d2.dtype == DType::f64);
  CHECK(d2.data == d.data);
}
