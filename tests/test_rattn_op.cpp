// bin/rattn-op end to end: .npy inputs written here, the program run as a user runs it, its .npy
// outputs compared with the ref/ functions called directly; and every bad input refused with exit
// status 2, a message on stderr, and nothing written.
//
// The program is found next to this test's binary (bin/tests/test_rattn_op -> bin/rattn-op), so
// `make test` (which builds the programs before it runs the tests) is all that is needed.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <set>

#include "io/npy.h"
#include "ref/attention.h"
#include "ref/rattention.h"
#include "ref/rla.h"
#include "tests/check.h"

namespace fs = std::filesystem;
using io::DType;
using io::NpyArray;
using ref::Mat;

namespace {

fs::path program() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) return exe.parent_path().parent_path() / "rattn-op";
  return "bin/rattn-op";
}

struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() / ("rattn_test_op_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path / "in");
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string in() const { return (path / "in").string(); }
  std::string out() const { return (path / "out").string(); }
};

struct RunResult {
  int status = -1;
  std::string out, err;
};

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// Runs `rattn-op ARGS` with stdout and stderr captured in files of dir.
RunResult run_op(const TempDir& dir, const std::string& args) {
  const fs::path exe = program();
  REQUIRE_MESSAGE(fs::exists(exe), exe.string() << " is not built: run `make test` (or make " << exe.string() << ")");
  const fs::path so = dir.path / "stdout.txt", se = dir.path / "stderr.txt";
  std::string cmd = "'" + exe.string() + "' " + args + " >'" + so.string() + "' 2>'" + se.string() + "'";
  int rc = std::system(cmd.c_str());
  RunResult r;
  r.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.out = slurp(so);
  r.err = slurp(se);
  return r;
}

// A random (B, T, n, D) tensor etc.: N(0, scale^2), rounded to float32 first when dt is float32 so
// that the reference below sees exactly what the program reads.
NpyArray randn(std::vector<long> shape, DType dt, std::mt19937_64& rng, double scale = 1.0, double mean = 0.0) {
  NpyArray a;
  a.dtype = dt;
  a.shape = std::move(shape);
  std::normal_distribution<double> n(mean, scale);
  a.data.resize(size_t(a.numel()));
  for (double& x : a.data) x = dt == DType::f32 ? double(float(n(rng))) : n(rng);
  return a;
}

// Sequence b of a (B, T, n, D) array as the (T, n*D) matrix ref/ takes: element [b, t, h, d] goes to (t, h*D + d).
Mat<double> seq(const NpyArray& a, long b) {
  const long T = a.shape[1], n = a.shape[2], D = a.shape[3];
  Mat<double> m(T, n * D);
  for (long t = 0; t < T; ++t)
    for (long h = 0; h < n; ++h)
      for (long d = 0; d < D; ++d) m(t, h * D + d) = a.data[((b * T + t) * n + h) * D + d];
  return m;
}
// The (B, T, n, D) array whose sequence b is the matrix m: the inverse of seq().
void put_seq(NpyArray& a, long b, const Mat<double>& m) {
  const long T = a.shape[1], n = a.shape[2], D = a.shape[3];
  for (long t = 0; t < T; ++t)
    for (long h = 0; h < n; ++h)
      for (long d = 0; d < D; ++d) a.data[((b * T + t) * n + h) * D + d] = m(t, h * D + d);
}
// An array's elements as one (1, N) row, for check_close.
Mat<double> flat(const NpyArray& a) {
  Mat<double> m(1, long(a.data.size()));
  for (long i = 0; i < m.cols(); ++i) m(0, i) = a.data[size_t(i)];
  return m;
}
NpyArray zeros_like(const NpyArray& a) {
  NpyArray z = a;
  std::fill(z.data.begin(), z.data.end(), 0.0);
  return z;
}

std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> s;
  if (fs::is_directory(dir))
    for (auto& e : fs::directory_iterator(dir)) s.insert(e.path().filename().string());
  return s;
}

struct Case {
  std::string op;
  long B = 2, T = 13, H = 4, G = 2, D = 4;
  int w = 3, chunk = 5;
  ref::FeatureMap fm = ref::FeatureMap::sm2;
  DType dt = DType::f64;
  bool with_do = false, with_h0 = false;
  uint64_t seed = 1;
  std::string device = "cpu";
};

// Writes the inputs of case c, runs the program, and compares every output with ref/ called directly.
void check_case(const Case& c) {
  const std::string what = "op " + c.op + " " + io::to_string(c.dt) + (c.with_do ? " with do.npy" : "") +
                           (c.with_h0 ? " with h0" : "") + " w=" + std::to_string(c.w) + " fm=" + ref::to_string(c.fm) +
                           " device=" + c.device;
  INFO(what);
  TempDir dir;
  std::mt19937_64 rng(c.seed);
  const long Dp = ref::feature_dim(c.fm, int(c.D));
  NpyArray q = randn({c.B, c.T, c.H, c.D}, c.dt, rng), k = randn({c.B, c.T, c.G, c.D}, c.dt, rng),
           v = randn({c.B, c.T, c.G, c.D}, c.dt, rng), dout = randn({c.B, c.T, c.H, c.D}, c.dt, rng);
  NpyArray gamma_swa = randn({c.H, c.D}, c.dt, rng, 0.2, 1.0), gamma_rla = randn({c.H, c.D}, c.dt, rng, 0.2, 1.0);
  NpyArray h0 = randn({c.B, c.G, Dp, c.D}, c.dt, rng, 0.5);
  std::vector<std::pair<std::string, NpyArray>> inputs = {{"q", q}, {"k", k}, {"v", v}};
  if (c.op == "rattn") inputs.insert(inputs.end(), {{"gamma_swa", gamma_swa}, {"gamma_rla", gamma_rla}});
  if (c.with_h0) inputs.emplace_back("h0", h0);
  if (c.with_do) inputs.emplace_back("do", dout);
  io::write_npy_files(dir.in(), inputs);

  std::string args = c.op + " --in " + dir.in() + " --out " + dir.out() + " --window " + std::to_string(c.w);
  if (c.op != "swa") args += std::string(" --chunk ") + std::to_string(c.chunk) + " --feature " + ref::to_string(c.fm);
  args += " --device " + c.device;
  RunResult r = run_op(dir, args);
  INFO("stderr: " << r.err);
  REQUIRE(r.status == 0);
  CHECK(r.out.find("rattn-op " + c.op) != std::string::npos);

  // The reference, one sequence at a time, in double.
  NpyArray o = zeros_like(q), dq = zeros_like(q), dk = zeros_like(k), dv = zeros_like(k), dh0 = zeros_like(h0);
  Mat<double> dgs = Mat<double>::Zero(c.H, c.D), dgr = Mat<double>::Zero(c.H, c.D);
  const int H = int(c.H), G = int(c.G);
  for (long b = 0; b < c.B; ++b) {
    Mat<double> qb = seq(q, b), kb = seq(k, b), vb = seq(v, b), db = seq(dout, b);
    if (c.op == "swa") {
      const double scale = 1.0 / std::sqrt(double(c.D));
      put_seq(o, b, ref::swa_forward(qb, kb, vb, H, G, c.w, scale));
      Mat<double> gq, gk, gv;
      ref::swa_backward(qb, kb, vb, db, H, G, c.w, scale, gq, gk, gv);
      put_seq(dq, b, gq), put_seq(dk, b, gk), put_seq(dv, b, gv);
    } else if (c.op == "rla") {
      ref::RlaState<double> S0;
      for (long g = 0; g < c.G; ++g) {
        Mat<double> s(Dp, c.D);
        for (long i = 0; i < Dp * c.D; ++i) s.data()[i] = h0.data[size_t((b * c.G + g) * Dp * c.D + i)];
        S0.push_back(s);
      }
      const ref::RlaState<double>* S0p = c.with_h0 ? &S0 : nullptr;
      put_seq(o, b, ref::rla_forward_chunked(qb, kb, vb, H, G, c.w, c.fm, c.chunk, S0p));
      ref::RlaGrads<double> g = ref::rla_backward_chunked(qb, kb, vb, db, H, G, c.w, c.fm, c.chunk, S0p);
      put_seq(dq, b, g.dq), put_seq(dk, b, g.dk), put_seq(dv, b, g.dv);
      for (long gg = 0; gg < c.G; ++gg)
        for (long i = 0; i < Dp * c.D; ++i) dh0.data[size_t((b * c.G + gg) * Dp * c.D + i)] = g.dh0[size_t(gg)].data()[i];
    } else {
      ref::AttnConfig cfg;
      cfg.H = H, cfg.G = G, cfg.D = int(c.D), cfg.w = c.w, cfg.global = false, cfg.kind = ref::LocalKind::rattn;
      cfg.fm = c.fm, cfg.chunk = c.chunk;  // rope_theta 5e5 and eps 1e-8: the program's defaults too
      Mat<double> gs(c.H, c.D), gr(c.H, c.D);
      for (long i = 0; i < c.H * c.D; ++i) gs.data()[i] = gamma_swa.data[size_t(i)], gr.data()[i] = gamma_rla.data[size_t(i)];
      put_seq(o, b, ref::attn_core_forward(cfg, qb, kb, vb, gs, gr));
      ref::CoreGrads<double> g = ref::attn_core_backward(cfg, qb, kb, vb, gs, gr, db);
      put_seq(dq, b, g.dq), put_seq(dk, b, g.dk), put_seq(dv, b, g.dv);
      dgs += g.dgamma_swa, dgr += g.dgamma_rla;
    }
  }

  // Exactly the expected files, each in the input dtype and shape, matching the reference.
  std::map<std::string, NpyArray> want = {{"o.npy", o}};
  if (c.with_do) {
    want.insert({{"dq.npy", dq}, {"dk.npy", dk}, {"dv.npy", dv}});
    if (c.op == "rattn") {
      want["dgamma_swa.npy"] = io::make_npy({c.H, c.D}, dgs.data());
      want["dgamma_rla.npy"] = io::make_npy({c.H, c.D}, dgr.data());
    }
    if (c.op == "rla" && c.with_h0) want["dh0.npy"] = dh0;
  }
  std::set<std::string> want_names;
  for (auto& [name, a] : want) want_names.insert(name);
  CHECK(files_in(dir.out()) == want_names);
  // float64 inputs: the same double computation, so only summation-order differences are allowed;
  // float32: the program computes in double too and rounds once on output (relative 2^-24 per element).
  // --device cuda: fp32 kernels against the double reference (relative RMS, as tests/cuda/ use).
  const double tol = c.device == "cuda" ? 2e-5 : c.dt == DType::f64 ? 1e-13 : 1e-7;
  for (auto& [name, w] : want) {
    NpyArray got = io::read_npy(dir.out() + "/" + name);
    CHECK_MESSAGE(got.dtype == c.dt, name << " is " << io::to_string(got.dtype));
    CHECK_MESSAGE(got.shape == w.shape, name << " has shape " << io::shape_string(got.shape));
    if (got.shape == w.shape) rattn_test::check_close(name, flat(got), flat(w), tol);
  }
}

// Writes a valid swa/rattn input set (B=1, T=6, H=4, G=2, D=4) into dir.in(), then applies `edit`.
void write_valid(const TempDir& dir, std::mt19937_64& rng) {
  io::write_npy_files(dir.in(), {{"q", randn({1, 6, 4, 4}, DType::f32, rng)},
                                 {"k", randn({1, 6, 2, 4}, DType::f32, rng)},
                                 {"v", randn({1, 6, 2, 4}, DType::f32, rng)},
                                 {"gamma_swa", randn({4, 4}, DType::f32, rng)},
                                 {"gamma_rla", randn({4, 4}, DType::f32, rng)}});
}

// Runs the program and requires exit status 2, one stderr line containing `needle`, and no output.
void expect_refused(const TempDir& dir, const std::string& args, const std::string& needle) {
  const std::string what = "rattn-op " + args;
  INFO(what);
  fs::remove_all(dir.out());
  RunResult r = run_op(dir, args);
  INFO("stderr: " << r.err);
  CHECK(r.status == 2);
  CHECK(r.err.find(needle) != std::string::npos);
  CHECK(r.err.rfind("rattn-op: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK_FALSE(fs::exists(dir.out()));
}

}  // namespace

TEST_CASE("rattn-op swa matches ref::swa_forward/backward, with and without do.npy, float64 and float32") {
  for (bool with_do : {false, true})
    for (DType dt : {DType::f64, DType::f32}) check_case({.op = "swa", .dt = dt, .with_do = with_do});
  check_case({.op = "swa", .T = 9, .H = 3, .G = 1, .D = 5, .w = -1, .with_do = true, .seed = 2});  // global, MQA
  check_case({.op = "swa", .B = 1, .H = 2, .G = 2, .w = 0, .with_do = true, .seed = 3});           // w = 0
}

TEST_CASE("rattn-op rla matches ref::rla_forward/backward_chunked, with h0, every feature map") {
  for (bool with_do : {false, true})
    for (DType dt : {DType::f64, DType::f32}) check_case({.op = "rla", .dt = dt, .with_do = with_do});
  check_case({.op = "rla", .with_do = true, .with_h0 = true, .seed = 4});
  check_case({.op = "rla", .w = -1, .chunk = 4, .fm = ref::FeatureMap::identity, .with_do = true, .with_h0 = true,
              .seed = 5});
  check_case({.op = "rla", .T = 11, .w = 2, .chunk = 3, .fm = ref::FeatureMap::relu2, .dt = DType::f32,
              .with_do = true, .with_h0 = true, .seed = 6});
}

TEST_CASE("rattn-op rattn matches ref::attn_core_forward/backward (dgamma summed over the batch)") {
  for (bool with_do : {false, true})
    for (DType dt : {DType::f64, DType::f32}) check_case({.op = "rattn", .dt = dt, .with_do = with_do});
  check_case({.op = "rattn", .B = 3, .T = 10, .H = 2, .G = 1, .D = 6, .w = 1, .chunk = 4,
              .fm = ref::FeatureMap::relu2, .with_do = true, .seed = 7});
}

TEST_CASE("rattn-op --device cuda: the fp32 kernels of cuda/ agree with the double reference") {
  // In the default build the kernels run on the CPU execution layer: small shapes only.
  check_case({.op = "swa", .with_do = true, .seed = 21, .device = "cuda"});
  check_case({.op = "swa", .T = 9, .H = 3, .G = 1, .D = 6, .w = -1, .dt = DType::f32, .with_do = true, .seed = 22,
              .device = "cuda"});
  check_case({.op = "rla", .with_do = true, .with_h0 = true, .seed = 23, .device = "cuda"});
  check_case({.op = "rla", .T = 11, .w = -1, .chunk = 4, .fm = ref::FeatureMap::identity, .dt = DType::f32,
              .with_do = true, .seed = 24, .device = "cuda"});
  check_case({.op = "rattn", .with_do = true, .seed = 25, .device = "cuda"});
  check_case({.op = "rattn", .B = 1, .T = 10, .H = 2, .G = 1, .D = 6, .w = 1, .chunk = 3, .fm = ref::FeatureMap::relu2,
              .seed = 26, .device = "cuda"});
}

TEST_CASE("rattn-op reads the layout (B, T, heads, D): swa with w = 0 returns v of each head's kv head") {
  // With one key in the window the softmax is 1: o[b, t, h, :] = v[b, t, h / (H/G), :]. This checks
  // the program's slicing of the files without going through the same code as the comparison above.
  TempDir dir;
  std::mt19937_64 rng(8);
  NpyArray q = randn({2, 5, 4, 3}, DType::f64, rng), k = randn({2, 5, 2, 3}, DType::f64, rng),
           v = randn({2, 5, 2, 3}, DType::f64, rng);
  io::write_npy_files(dir.in(), {{"q", q}, {"k", k}, {"v", v}});
  RunResult r = run_op(dir, "swa --in " + dir.in() + " --out " + dir.out() + " --window 0");
  REQUIRE(r.status == 0);
  NpyArray o = io::read_npy(dir.out() + "/o.npy");
  REQUIRE(o.shape == q.shape);
  double worst = 0;
  for (long b = 0; b < 2; ++b)
    for (long t = 0; t < 5; ++t)
      for (long h = 0; h < 4; ++h)
        for (long d = 0; d < 3; ++d)
          worst = std::max(worst, std::abs(o.data[size_t(((b * 5 + t) * 4 + h) * 3 + d)] -
                                           v.data[size_t(((b * 5 + t) * 2 + h / 2) * 3 + d)]));
  CHECK(worst < 1e-15);
}

TEST_CASE("rattn-op refuses bad flags with exit status 2 and one line naming the problem") {
  TempDir dir;
  std::mt19937_64 rng(9);
  write_valid(dir, rng);
  const std::string io_ = " --in " + dir.in() + " --out " + dir.out();
  expect_refused(dir, "", "no OP given");
  expect_refused(dir, "mha" + io_, "unknown OP 'mha'");
  expect_refused(dir, "swa" + io_ + " --windw 3", "unknown flag '--windw'");
  expect_refused(dir, "swa" + io_ + " --window", "--window needs a value");
  expect_refused(dir, "swa" + io_ + " --window three", "--window expects an integer, got 'three'");
  expect_refused(dir, "swa" + io_ + " --window 2.5", "--window expects an integer");
  expect_refused(dir, "swa" + io_ + " --window -2", "--window must be >= -1");
  expect_refused(dir, "swa" + io_ + " --window 1 --window 2", "--window: given twice");
  expect_refused(dir, "rla" + io_ + " --chunk 0", "--chunk must be >= 1");
  expect_refused(dir, "rla" + io_ + " --chunk -4", "--chunk must be >= 1");
  expect_refused(dir, "rla" + io_ + " --feature softmax", "--feature must be sm2, relu2 or identity");
  expect_refused(dir, "rattn" + io_ + " --window 2 --eps abc", "--eps expects a finite number, got 'abc'");
  expect_refused(dir, "rattn" + io_ + " --window 2 --rope-theta nan", "--rope-theta expects a finite number");
  expect_refused(dir, "rattn" + io_ + " --window 2 --rope-theta 0", "--rope-theta must be > 0");
  expect_refused(dir, "rattn" + io_, "rattn needs --window W >= 0");
  expect_refused(dir, "swa" + io_ + " --chunk 4", "--chunk does not apply to swa");
  expect_refused(dir, "swa" + io_ + " --device tpu", "--device must be cpu or cuda");
  expect_refused(dir, "swa --out " + dir.out(), "--in DIR is required");
  expect_refused(dir, "swa --in " + dir.in(), "--out DIR is required");
  expect_refused(dir, "swa --in " + dir.in() + "/nowhere --out " + dir.out(), "no such folder");
  // The happy path with the same folder works (the refusals above are about the flags alone), and
  // --flag=value is accepted too.
  RunResult ok = run_op(dir, "rattn --in=" + dir.in() + " --out=" + dir.out() + " --window=2 --eps=1e-6");
  CHECK(ok.status == 0);
}

TEST_CASE("rattn-op refuses bad inputs with exit status 2 and one line naming the problem") {
  std::mt19937_64 rng(10);
  auto with = [&](const std::string& name, const NpyArray& a) {
    auto dir = std::make_unique<TempDir>();
    write_valid(*dir, rng);
    io::write_npy_files(dir->in(), {{name, a}});
    return dir;
  };
  auto args = [](const TempDir& d, const std::string& op) {
    return op + " --in " + d.in() + " --out " + d.out() + (op == "rattn" ? " --window 2" : "");
  };
  {
    auto d = with("k", randn({1, 6, 2, 5}, DType::f32, rng));
    expect_refused(*d, args(*d, "swa"), "k.npy has shape (1, 6, 2, 5), expected (1, 6, 2, 4)");
  }
  {
    auto d = with("k", randn({1, 7, 2, 4}, DType::f32, rng));
    expect_refused(*d, args(*d, "rla"), "k.npy has shape (1, 7, 2, 4)");
  }
  {
    auto d = with("v", randn({1, 6, 1, 4}, DType::f32, rng));
    expect_refused(*d, args(*d, "swa"), "v.npy has shape (1, 6, 1, 4), expected (1, 6, 2, 4)");
  }
  {
    auto d = with("q", randn({6, 4, 4}, DType::f32, rng));
    expect_refused(*d, args(*d, "swa"), "expected rank 4 (B, T, H, D)");
  }
  {
    auto d = with("q", randn({1, 6, 3, 4}, DType::f32, rng));  // H = 3, G = 2
    expect_refused(*d, args(*d, "swa"), "H = 3 query heads (q.npy) is not a multiple of G = 2");
  }
  {
    auto d = with("gamma_rla", randn({4, 3}, DType::f32, rng));
    expect_refused(*d, args(*d, "rattn"), "gamma_rla.npy has shape (4, 3), expected (4, 4)");
  }
  {
    auto d = with("do", randn({1, 6, 4, 2}, DType::f32, rng));
    expect_refused(*d, args(*d, "swa"), "do.npy has shape (1, 6, 4, 2)");
  }
  {
    auto d = with("h0", randn({1, 2, 4, 4}, DType::f32, rng));  // sm2 needs Dp = 8
    expect_refused(*d, args(*d, "rla"), "h0.npy has shape (1, 2, 4, 4), expected (1, 2, 8, 4)");
    expect_refused(*d, args(*d, "rattn"), "h0.npy: rattn takes no initial RLA state");
  }
  {
    auto d = with("v", randn({1, 6, 2, 4}, DType::f64, rng));
    expect_refused(*d, args(*d, "swa"), "v.npy is float64 but q.npy is float32");
  }
  {
    NpyArray bad = randn({1, 6, 2, 4}, DType::f32, rng);
    bad.data[13] = std::nan("");
    auto d = with("k", bad);
    expect_refused(*d, args(*d, "swa"), "k.npy: element [0, 1, 1, 1] is nan");
  }
  {
    NpyArray bad = randn({1, 6, 4, 4}, DType::f64, rng);
    bad.data[0] = INFINITY;
    auto d = with("do", bad);
    expect_refused(*d, args(*d, "swa"), "do.npy: element [0, 0, 0, 0] is inf");
  }
  {
    NpyArray q3 = randn({1, 6, 4, 3}, DType::f32, rng);  // odd D: fine for swa, not for rattn's RoPE
    auto d = with("q", q3);
    io::write_npy_files(d->in(), {{"k", randn({1, 6, 2, 3}, DType::f32, rng)}, {"v", randn({1, 6, 2, 3}, DType::f32, rng)},
                                  {"gamma_swa", randn({4, 3}, DType::f32, rng)}, {"gamma_rla", randn({4, 3}, DType::f32, rng)}});
    expect_refused(*d, args(*d, "rattn"), "RoPE, which needs an even head dim D, got 3");
  }
  {  // a missing file, and a file that is not a usable .npy
    TempDir d;
    write_valid(d, rng);
    fs::remove(d.in() + "/v.npy");
    expect_refused(d, args(d, "swa"), "missing input " + d.in() + "/v.npy");
    write_valid(d, rng);
    fs::remove(d.in() + "/gamma_swa.npy");
    expect_refused(d, args(d, "rattn"), "missing input " + d.in() + "/gamma_swa.npy");
  }
  {
    TempDir d;
    write_valid(d, rng);
    std::ofstream(d.in() + "/k.npy", std::ios::binary | std::ios::trunc) << "not numpy";
    expect_refused(d, args(d, "swa"), "k.npy: not a .npy file");
  }
}

TEST_CASE("rattn-op writes nothing when it refuses, and leaves no temporary files when it succeeds") {
  TempDir dir;
  std::mt19937_64 rng(11);
  write_valid(dir, rng);
  // A first good run.
  RunResult r1 = run_op(dir, "swa --in " + dir.in() + " --out " + dir.out() + " --window 2");
  REQUIRE(r1.status == 0);
  CHECK(files_in(dir.out()) == std::set<std::string>{"o.npy"});
  const std::string before = slurp(dir.out() + "/o.npy");
  // A refused run into the same folder leaves the earlier o.npy untouched.
  io::write_npy_files(dir.in(), {{"k", randn({1, 6, 2, 2}, DType::f32, rng)}});
  RunResult r2 = run_op(dir, "swa --in " + dir.in() + " --out " + dir.out() + " --window 1");
  CHECK(r2.status == 2);
  CHECK(slurp(dir.out() + "/o.npy") == before);
  CHECK(files_in(dir.out()) == std::set<std::string>{"o.npy"});
}

TEST_CASE("rattn-op refuses a non-finite result from finite inputs: exit 3, the tensor and the input named, "
          "nothing written") {
  // q . k of order 1e320 overflows float64 (and the fp32 kernels' cast of q, k): the softmax gives nan,
  // linear attention with the identity feature map inf (sm2 bounds its scores). Both devices.
  for (const char* device : {"cpu", "cuda"})
    for (const char* op : {"swa", "rla --feature identity"}) {
      CAPTURE(device);
      CAPTURE(op);
      TempDir dir;
      std::mt19937_64 rng(12);
      NpyArray q = randn({1, 6, 2, 4}, DType::f64, rng, 1e160), k = randn({1, 6, 2, 4}, DType::f64, rng, 1e160),
               v = randn({1, 6, 2, 4}, DType::f64, rng);
      io::write_npy_files(dir.in(), {{"q", q}, {"k", k}, {"v", v}});
      RunResult r = run_op(dir, std::string(op) + " --in " + dir.in() + " --out " + dir.out() + " --window 1 --device " +
                                    device);
      INFO("exit " << r.status << ", stderr: " << r.err);
      CHECK(r.status == 3);
      CHECK(r.err.find("o.npy would hold") != std::string::npos);
      CHECK((r.err.find("q.npy") != std::string::npos || r.err.find("k.npy") != std::string::npos));
      // one line of ours (the sanitizer build of the CPU layer may add its own warning about fibers)
      size_t ours = 0;
      for (size_t at = 0; (at = r.err.find("rattn-op: ", at)) != std::string::npos; ++at) ++ours;
      CHECK(ours == 1);
      CHECK_FALSE(fs::exists(dir.out() + "/o.npy"));
    }
}
