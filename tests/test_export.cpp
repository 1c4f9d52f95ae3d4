// io/export: `infer --export` writes every parameter and a config.json from which the model can be
// rebuilt; the rebuild here uses only the exported files and the ref/ ops, wired from the formulas
// config.json states, and must reproduce the model's logits. `infer --logits` is checked likewise.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "io/export.h"
#include "io/npy.h"
#include "model/backend_cpu.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model/params.h"
#include "ref/embedding.h"
#include "ref/linear.h"
#include "ref/mlp.h"
#include "ref/norm.h"
#include "ref/rattention.h"
#include "tests/check.h"

namespace fs = std::filesystem;
using io::NpyArray;
using ref::Mat;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int n = 0;
    path = fs::temp_directory_path() / ("rattn_test_export_" + std::to_string(::getpid()) + "_" + std::to_string(n++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string slurp(const std::string& p) {
  std::ifstream f(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f), {});
}

// A small trained-looking state: 3 layers "LLG" (two local rattn layers, one global), GQA 2:1.
model::TrainState<float> small_state(const std::string& local_kind, int qk_norm = 0) {
  model::TrainState<float> st;
  model::ModelConfig& m = st.config.model;
  m.d_model = 16, m.n_heads = 2, m.n_kv_heads = 1, m.head_dim = 8, m.n_layers = 3, m.pattern = "LLG";
  m.window = 2, m.local_kind = local_kind, m.chunk = 4, m.qk_norm = qk_norm;
  st.params = model::init_params<float>(m, 11);
  // Perturb the norm scales (1 at init) so that a swapped or missing scale shows in the logits.
  std::mt19937_64 rng(12);
  std::normal_distribution<double> n(1.0, 0.2);
  for (auto& nt : model::named_tensors(m, st.params))
    if (!nt.decay && nt.name != "embed")
      for (long i = 0; i < nt.t->size(); ++i) nt.t->data()[i] = float(n(rng));
  st.m = model::params_filled<float>(m, 0.0f);
  st.v = model::params_filled<float>(m, 0.0f);
  st.step = 7;
  std::ostringstream rs;
  rs << std::mt19937_64(3);
  st.data_rng = rs.str();
  return st;
}

// An exported tensor as a (rows, cols) double matrix ((C,) vectors become (1, C)).
Mat<double> load_mat(const std::string& dir, const std::string& name) {
  NpyArray a = io::read_npy(dir + "/" + name + ".npy");
  const long rows = a.shape.size() == 2 ? a.shape[0] : 1, cols = a.shape.back();
  Mat<double> m(rows, cols);
  std::copy(a.data.begin(), a.data.end(), m.data());
  return m;
}

// config.json's entry of layer l in "layers" (one line each), or "" when there is none.
std::string layer_entry(const std::string& json, int l) {
  const size_t at = json.find("{\"index\": " + std::to_string(l) + ",");
  return at == std::string::npos ? std::string() : json.substr(at, json.find('\n', at) - at);
}

// The forward rebuilt from the export alone (config.json's "model", "layers" and "conventions"), in double.
// Whether a layer's softmax attention is qk-normed is read from its "layers" entry, the scales from
// block<l>.attn.q_norm / k_norm.npy, eps from norm_eps (the "qk_norm" convention, spec §2.9).
Mat<double> rebuilt_logits(const std::string& dir, const model::ModelConfig& m, const std::vector<int>& tokens) {
  const std::string json = slurp(dir + "/config.json");
  const double eps = m.norm_eps;
  auto rms = [&](const Mat<double>& x, const std::string& name) {
    const ref::RowVec<double> g = load_mat(dir, name);
    return ref::rmsnorm_forward(x, g, eps);
  };
  Mat<double> x = ref::embedding_forward(tokens, load_mat(dir, "embed"));
  for (int l = 0; l < m.n_layers; ++l) {
    const std::string p = "block" + std::to_string(l) + ".";
    ref::AttnConfig a;
    a.H = m.n_heads, a.G = m.n_kv_heads, a.D = m.head_dim;
    a.global = m.pattern[size_t(l) % m.pattern.size()] == 'G';
    a.kind = ref::parse_local_kind(m.local_kind);
    a.w = a.kind == ref::LocalKind::linear ? -1 : m.window;
    a.fm = ref::parse_feature_map(m.feature_map);
    a.chunk = m.chunk, a.rope_theta = m.rope_theta, a.eps = m.branch_eps;
    ref::AttnParams<double> ap;
    ap.Wq = load_mat(dir, p + "attn.Wq"), ap.Wk = load_mat(dir, p + "attn.Wk");
    ap.Wv = load_mat(dir, p + "attn.Wv"), ap.Wo = load_mat(dir, p + "attn.Wo");
    ap.gamma_swa = ap.gamma_rla = Mat<double>::Ones(a.H, a.D);
    if (fs::exists(dir + "/" + p + "attn.gamma_swa.npy")) ap.gamma_swa = load_mat(dir, p + "attn.gamma_swa");
    if (fs::exists(dir + "/" + p + "attn.gamma_rla.npy")) ap.gamma_rla = load_mat(dir, p + "attn.gamma_rla");
    a.qk_norm = layer_entry(json, l).find("\"qk_norm\": true") != std::string::npos;
    if (a.qk_norm) {
      a.qk_eps = m.norm_eps;
      ap.q_norm = load_mat(dir, p + "attn.q_norm"), ap.k_norm = load_mat(dir, p + "attn.k_norm");
    }
    const Mat<double> y = x + ref::attention_layer_forward(a, ap, rms(x, p + "norm1"));
    ref::SwiGLUParams<double> mp{load_mat(dir, p + "mlp.W1"), load_mat(dir, p + "mlp.W3"), load_mat(dir, p + "mlp.W2")};
    x = y + ref::swiglu_forward(rms(y, p + "norm2"), mp);
  }
  return ref::linear_forward(rms(x, "norm_f"), load_mat(dir, "W_out"));
}

fs::path program(const std::string& name) {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path("bin") / name : exe.parent_path().parent_path() / name;
}

int run(const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// `infer --logits CKPT --prompt 'hello world' --out l.npy` against the training forward of st (the
// model of that checkpoint): the same float forward compiled into another binary (Eigen may block its
// products differently, e.g. by thread count), so equal up to float rounding. Returns the forward.
Mat<float> check_infer_logits(const std::string& exe, const std::string& ckpt, const model::TrainState<float>& st,
                              const TempDir& dir, const char* what) {
  const std::string quiet = " >" + dir.file("out.txt") + " 2>" + dir.file("err.txt");
  CHECK(run(exe + " --logits " + ckpt + " --prompt 'hello world' --out " + dir.file("l.npy") + quiet) == 0);
  NpyArray l = io::read_npy(dir.file("l.npy"));
  REQUIRE(l.shape == std::vector<long>{11, 256});
  auto backend = model::make_backend<float>("cpu");
  const model::Model<float> net(st.config.model, *backend);
  const std::string hello = "hello world";
  const Mat<float> want = net.forward(st.params, std::vector<int>(hello.begin(), hello.end()));
  Mat<double> got(11, 256);
  std::copy(l.data.begin(), l.data.end(), got.data());
  rattn_test::check_close(what, got, want, 1e-6);
  return want;
}

}  // namespace

TEST_CASE("export writes every parameter exactly, and a config.json that describes every layer") {
  for (const char* kind : {"rattn", "swa", "linear"}) {
    const std::string what = kind;
    INFO(what);
    TempDir dir;
    model::TrainState<float> st = small_state(kind);
    model::save_checkpoint(dir.file("m.ckpt"), st);
    io::export_model(dir.file("export"), dir.file("m.ckpt"));

    std::set<std::string> want = {"config.json"}, got;
    for (auto& nt : model::named_tensors(st.config.model, st.params)) {
      want.insert(nt.name + ".npy");
      NpyArray a = io::read_npy(dir.file("export/" + nt.name + ".npy"));
      CHECK(a.dtype == io::DType::f32);
      CHECK(a.numel() == nt.t->size());
      bool same = a.numel() == nt.t->size();
      for (long i = 0; same && i < nt.t->size(); ++i) same = a.data[size_t(i)] == double(nt.t->data()[i]);
      CHECK_MESSAGE(same, nt.name << " differs from the checkpoint");
      if (nt.name == "norm_f" || nt.name.ends_with("norm1")) CHECK(a.shape == std::vector<long>{16});
      if (nt.name.ends_with("attn.Wk")) CHECK(a.shape == std::vector<long>{16, 8});  // (C, G*D): (in, out)
    }
    for (auto& e : fs::directory_iterator(dir.file("export"))) got.insert(e.path().filename().string());
    CHECK(got == want);

    const std::string json = slurp(dir.file("export/config.json"));
    for (const char* needle : {"\"d_model\": 16", "\"n_heads\": 2", "\"n_kv_heads\": 1", "\"head_dim\": 8",
                               "\"layer_string\": \"LLG\"", "\"window\": 2", "\"step\": 7",
                               "{\"index\": 2, \"type\": \"global\", \"rope\": false}",
                               "\"name\": \"block0.attn.Wq\", \"file\": \"block0.attn.Wq.npy\", \"shape\": [16, 16]"})
      CHECK_MESSAGE(json.find(needle) != std::string::npos, "config.json lacks " << needle);
    // Balanced brackets outside strings: a cheap well-formedness check (no JSON parser here).
    int depth = 0;
    bool in_str = false, ok = true;
    for (size_t i = 0; i < json.size(); ++i) {
      char c = json[i];
      if (in_str) {
        if (c == '\\') ++i;
        else if (c == '"') in_str = false;
      } else if (c == '"') in_str = true;
      else if (c == '{' || c == '[') ++depth;
      else if (c == '}' || c == ']') ok = ok && --depth >= 0;
    }
    CHECK((ok && depth == 0 && !in_str));
  }
}

TEST_CASE("the model rebuilt from the export alone reproduces the model's logits") {
  for (const char* kind : {"rattn", "swa", "linear"}) {
    const std::string what = kind;
    INFO(what);
    TempDir dir;
    model::TrainState<float> st = small_state(kind);
    model::save_checkpoint(dir.file("m.ckpt"), st);
    io::export_model(dir.file("export"), dir.file("m.ckpt"));
    const std::string text = "the quick brown fox jumps";  // T = 25 > w + 1 and > chunk: RLA is active
    const std::vector<int> tokens(text.begin(), text.end());
    auto backend = model::make_backend<float>("cpu");
    const model::Model<float> net(st.config.model, *backend);
    const Mat<float> want = net.forward(st.params, tokens);
    const Mat<double> got = rebuilt_logits(dir.file("export"), st.config.model, tokens);
    rattn_test::check_close("logits", got, want, 1e-5);  // float model vs double rebuild
  }
}

TEST_CASE("bin/infer --export and --logits end to end") {
  const fs::path infer = program("infer");
  REQUIRE_MESSAGE(fs::exists(infer), infer.string() << " is not built: run `make test`");
  TempDir dir;
  model::TrainState<float> st = small_state("rattn");
  model::save_checkpoint(dir.file("m.ckpt"), st);
  const std::string exe = "'" + infer.string() + "'", quiet = " >" + dir.file("out.txt") + " 2>" + dir.file("err.txt");

  CHECK(run(exe + " --export " + dir.file("x") + " " + dir.file("m.ckpt") + quiet) == 0);
  CHECK(fs::exists(dir.file("x/config.json")));
  CHECK(fs::exists(dir.file("x/block1.attn.gamma_rla.npy")));

  check_infer_logits(exe, dir.file("m.ckpt"), st, dir, "infer --logits");

  // Printed form: a comment line, then one line per position.
  CHECK(run(exe + " --logits " + dir.file("m.ckpt") + " --prompt hi" + quiet) == 0);
  const std::string printed = slurp(dir.file("out.txt"));
  CHECK(std::count(printed.begin(), printed.end(), '\n') == 3);
  CHECK(printed.find("\n0 104 ") != std::string::npos);  // position 0, byte 'h'

  // Bad command lines: exit status 2 and a message.
  CHECK(run(exe + " --export " + dir.file("y") + quiet) == 2);
  const std::string usage_err = slurp(dir.file("err.txt"));
  CHECK(usage_err.find("--export needs DIR and CHECKPOINT") != std::string::npos);
  CHECK(std::count(usage_err.begin(), usage_err.end(), '\n') == 1);
  CHECK(run(exe + " --logits " + dir.file("m.ckpt") + quiet) == 2);
  CHECK(run(exe + " --logits " + dir.file("m.ckpt") + " --prompt a --bogus 1" + quiet) == 2);
  std::ofstream(dir.file("long.txt")) << std::string(70000, 'a');  // longer than any model sequence
  CHECK(run(exe + " --logits " + dir.file("m.ckpt") + " --prompt-file " + dir.file("long.txt") + quiet) == 2);
  // refused from its size, before reading: the message names the flag, the file and the limit
  const std::string long_err = slurp(dir.file("err.txt"));
  CHECK(long_err.find("--prompt-file " + dir.file("long.txt") + ": 70000 bytes, larger than the 65536") !=
        std::string::npos);
  CHECK(run(exe + " --export " + dir.file("z") + " " + dir.file("missing.ckpt") + quiet) == 2);
  const std::string err = slurp(dir.file("err.txt"));
  CHECK(err.find("missing.ckpt") != std::string::npos);
  CHECK(std::count(err.begin(), err.end(), '\n') == 1);  // one line
  CHECK_FALSE(fs::exists(dir.file("z")));
}

TEST_CASE("bin/infer --logits on a qk-norm checkpoint equals the training forward; infer decodes it") {
  // spec §2.9: the scales (perturbed away from 1 by small_state) are read back from the checkpoint.
  const fs::path infer = program("infer");
  REQUIRE_MESSAGE(fs::exists(infer), infer.string() << " is not built: run `make test`");
  TempDir dir;
  model::TrainState<float> st = small_state("rattn", 1);
  model::save_checkpoint(dir.file("qk.ckpt"), st);
  const std::string exe = "'" + infer.string() + "'", quiet = " >" + dir.file("out.txt") + " 2>" + dir.file("err.txt");
  const Mat<float> want = check_infer_logits(exe, dir.file("qk.ckpt"), st, dir, "infer --logits, qk-norm");
  auto backend = model::make_backend<float>("cpu");
  const std::string hello = "hello world";
  // the same checkpoint without its qk-norm scales is another model: the logits differ
  model::TrainState<float> off = small_state("rattn", 0);
  const model::Model<float> net_off(off.config.model, *backend);
  CHECK(rattn_test::compare(net_off.forward(st.params, std::vector<int>(hello.begin(), hello.end())), want).rel_rms > 1e-3);
  // infer decodes it (generation runs the constant-memory decode of every layer)
  CHECK(run(exe + " --ckpt " + dir.file("qk.ckpt") + " --prompt hello --gen 8 --eval 0" + quiet) == 0);
}

TEST_CASE("the export of a qk-norm model states where and how q and k are normed, and rebuilds from it") {
  // spec §2.9: qk-norm on every softmax attention (global layers, the SWA branch), never on RLA.
  const std::string text = "the quick brown fox jumps";  // T = 25 > w + 1 and > chunk: RLA is active
  const std::vector<int> tokens(text.begin(), text.end());
  auto backend = model::make_backend<float>("cpu");
  for (const char* kind : {"rattn", "swa", "linear"}) {
    const std::string what = kind;
    INFO(what);
    TempDir dir;
    model::TrainState<float> st = small_state(kind, 1);
    model::save_checkpoint(dir.file("m.ckpt"), st);
    io::export_model(dir.file("export"), dir.file("m.ckpt"));
    const std::string json = slurp(dir.file("export/config.json"));

    // The scales: (D,) vectors, on the local layers only when they have an SWA branch, always on the global one.
    for (int l = 0; l < 3; ++l) {
      const bool want = l == 2 || what != "linear";
      const std::string p = "export/block" + std::to_string(l) + ".attn.";
      for (const char* s : {"q_norm", "k_norm"}) {
        const std::string file = p + s + ".npy";
        INFO(file);
        REQUIRE(fs::exists(dir.file(file)) == want);
        if (want) CHECK(io::read_npy(dir.file(file)).shape == std::vector<long>{8});
      }
      CHECK((layer_entry(json, l).find("\"qk_norm\": true") != std::string::npos) == want);
    }
    CHECK(json.find("\"branch_eps\": 1e-08,\n    \"qk_norm\": true\n  },") != std::string::npos);
    CHECK(json.find("\"name\": \"block2.attn.k_norm\", \"file\": \"block2.attn.k_norm.npy\", \"shape\": [8]") !=
          std::string::npos);
    CHECK(json.find("\"qk-norm\": \"1\"") != std::string::npos);  // checkpoint_config
    // The formulas: the norm, its eps, its scales, its order, and that RLA reads q, k without it.
    for (const char* needle :
         {"\"global_layer\": \"c[t,h] = sum_{j<=t} softmax_j(QKN(q[t,h]; q_norm).QKN(k[j,g]; k_norm) / sqrt(D))",
          "\"swa_branch\": \"o_swa[t,h] = sum_{j=max(0,t-w)}^{t} softmax_j(QKN(RoPE(q)[t,h]; q_norm).QKN(RoPE(k)[j,g]; "
          "k_norm) / sqrt(D))",
          "on the raw (un-RoPE'd, unscaled, not qk-normed) q, k",
          "QKN(x; s) = x / sqrt(mean(x**2, over the D dims of one head) + norm_eps) * s",
          "s = block<l>.attn.q_norm for q and block<l>.attn.k_norm for k, one (D,) vector per layer shared by all heads",
          "never the RLA branch, never a linear layer",
          "order: RoPE (local layers only), then QKN, then the 1/sqrt(D) scale of the scores",
          "attn.q_norm / attn.k_norm are vectors (D,)"})
      CHECK_MESSAGE(json.find(needle) != std::string::npos, "config.json lacks " << needle);

    // Rebuilt from the files, reading each layer's "qk_norm" from config.json: the model's logits.
    const model::Model<float> net(st.config.model, *backend);
    const Mat<float> want = net.forward(st.params, tokens);
    rattn_test::check_close("logits, qk-norm", rebuilt_logits(dir.file("export"), st.config.model, tokens), want, 1e-5);
    // A config.json that did not say which layers are qk-normed would rebuild another model.
    std::string stripped = json;
    for (size_t at; (at = stripped.find(", \"qk_norm\": true")) != std::string::npos;) stripped.erase(at, 17);
    std::ofstream(dir.file("export/config.json"), std::ios::binary | std::ios::trunc) << stripped;
    CHECK(rattn_test::compare(rebuilt_logits(dir.file("export"), st.config.model, tokens), want).rel_rms > 1e-3);
  }
  // Without qk-norm nothing of it is written (the export is the one from before the option).
  TempDir dir;
  model::save_checkpoint(dir.file("m.ckpt"), small_state("rattn", 0));
  io::export_model(dir.file("export"), dir.file("m.ckpt"));
  CHECK(slurp(dir.file("export/config.json")).find("qk") == std::string::npos);
  CHECK_FALSE(fs::exists(dir.file("export/block0.attn.q_norm.npy")));
}
