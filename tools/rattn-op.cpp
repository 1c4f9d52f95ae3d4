// tools/rattn-op.cpp: run one reference attention op on .npy tensors, to check anyone's kernel.
//
//   bin/rattn-op OP --in DIR --out DIR [--window W] [--chunk C] [--feature sm2|relu2|identity]
//                [--rope-theta X] [--eps X] [--device cpu|cuda]
//
// OP (the math is in ref/; this file only moves tensors in and out and checks them):
//   swa    o = SWA(q, k, v; w, scale 1/sqrt(D)), no RoPE           ref/attention.h swa_forward
//   rla    o = RLA(q, k, v; w, phi) from h0 (default 0)            ref/rla.h rla_forward_chunked
//   rattn  o = GRMS_swa(SWA(RoPE(q)/sqrt(D), RoPE(k), v; w)) + GRMS_rla(RLA(q, k, v; w))
//          the attention core of a local RATTENTION layer        ref/rattention.h attn_core_forward
// Inputs in --in (C order, float32 or float64, all the same dtype):
//   q.npy (B, T, H, D), k.npy and v.npy (B, T, G, D), H % G == 0; query and key BEFORE RoPE and scaling
//   rattn: gamma_swa.npy, gamma_rla.npy (H, D)
//   rla:   optional h0.npy (B, G, Dp, D), Dp = 2D for sm2/relu2, D for identity (one state per kv head)
//   optional do.npy (B, T, H, D): the gradient of the loss with respect to o; then the backward runs.
//   Files an OP does not read are ignored, except h0.npy with rattn (refused: rattn's RLA starts at 0).
// Outputs in --out: o.npy (B, T, H, D); with do.npy also dq.npy, dk.npy, dv.npy, and
//   rattn: dgamma_swa.npy, dgamma_rla.npy (H, D), summed over the batch;  rla with h0.npy: dh0.npy.
// Each sequence of the batch is computed on its own, in double whatever the input dtype; outputs are
// written in the input dtype, all or nothing (temporary names, then renamed).
//
// Window (spec §0): w = number of keys to the left; SWA at t sees [max(0, t-w), t],
// RLA sees j <= t-w-1. --window -1 (the default for swa and rla) means global causal SWA, and RLA over
// all of [0, t] with no shift. rattn needs --window W >= 0.
//
// --device cuda: the same op through the fp32 CUDA kernels of cuda/ (swa: cu::swa_*, rla: cu::rla_*,
// rattn: cu::attn_core_forward_dev / attn_core_backward_dev of cuda/attn_core_host.h, the composition
// the model's --device cuda runs), on float32 copies of the inputs. In the
// default build (bin/rattn-op) the kernels run on the CPU execution layer (cuda/emu: slow, for small
// shapes); built against the CUDA runtime (-DRATTN_CUDA_RUNTIME, libcuda_gpu.a) they run on the GPU.
//
// --out: an existing file is replaced only when it is a regular .npy file; the output files of an earlier
// run that this run does not write (dq.npy ... when there is no do.npy now) are removed, so --out never
// mixes two runs. Inputs must be regular files, no longer than their .npy header says.
//
// Exit status: 0 done; 2 a bad flag or a bad input (one line on stderr names it, nothing is written),
// or an --out whose files may not be replaced; 3 finite inputs whose result is not finite (too large
// for the dtype; the line names the output tensor, the element and the largest input; nothing is
// written); 1 anything else (permission denied, a failed write, an error inside the reference).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cuda/attn_core_host.h"
#include "cuda/buffer.h"
#include "cuda/rla.h"
#include "cuda/swa.h"
#include "io/npy.h"
#include "ref/attention.h"
#include "ref/feature_map.h"
#include "ref/rattention.h"
#include "ref/rla.h"
#include "ref/rope.h"

namespace {

using io::NpyArray;
using ref::Mat;

const char* kUsage =
    "usage: rattn-op OP --in DIR --out DIR [--window W] [--chunk C] [--feature sm2|relu2|identity]\n"
    "                [--rope-theta X] [--eps X] [--device cpu|cuda]\n"
    "  OP: swa | rla | rattn   (see the README section \"Check your own kernel\")\n"
    "  inputs in DIR:  q.npy (B,T,H,D), k.npy v.npy (B,T,G,D); rattn: gamma_swa.npy gamma_rla.npy (H,D);\n"
    "                  rla: optional h0.npy (B,G,Dp,D); optional do.npy (B,T,H,D) to get gradients\n"
    "  outputs:        o.npy; with do.npy: dq.npy dk.npy dv.npy (+ dgamma_swa.npy dgamma_rla.npy | dh0.npy)\n"
    "  --window W      keys to the left of the query in the window, W >= -1 (-1: global; default -1 for\n"
    "                  swa and rla; rattn needs W >= 0)\n"
    "  --chunk C       RLA chunk size, C >= 1 (rla, rattn; default 64; the result does not depend on it)\n"
    "  --feature F     RLA feature map phi (rla, rattn; default sm2)\n"
    "  --rope-theta X  RoPE base of the SWA branch (rattn; default 500000)\n"
    "  --eps X         group RMSNorm epsilon (rattn; default 1e-8)\n"
    "  --device D      cpu (default: ref/ in double) or cuda (the fp32 kernels of cuda/)\n";

// A bad flag or input: one line on stderr, exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Args {
  std::string op, in, out;
  int window = -1;
  int chunk = 64;
  ref::FeatureMap fm = ref::FeatureMap::sm2;
  double rope_theta = ref::kDefaultRopeTheta;
  double eps = 1e-8;
  std::string device = "cpu";
  std::set<std::string> given;  // the flags on the command line, e.g. "--window"
};

long parse_long(const std::string& flag, const std::string& s) {
  long x = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size())
    throw UsageError(flag + " expects an integer, got '" + s + "'");
  if (x < -(1L << 30) || x > (1L << 30)) throw UsageError(flag + " " + s + " is out of range");
  return x;
}

double parse_double(const std::string& flag, const std::string& s) {
  double x = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || !std::isfinite(x))
    throw UsageError(flag + " expects a finite number, got '" + s + "'");
  return x;
}

Args parse_args(int argc, char** argv) {
  Args a;
  std::vector<std::string> rest(argv + 1, argv + argc);
  if (rest.empty()) throw UsageError("no OP given (swa, rla or rattn)");
  a.op = rest[0];
  if (a.op != "swa" && a.op != "rla" && a.op != "rattn")
    throw UsageError("unknown OP '" + a.op + "' (expected swa, rla or rattn)");
  // The flags each OP reads; any other flag is an error rather than silently ignored.
  std::set<std::string> applies = {"--in", "--out", "--window", "--device"};
  if (a.op != "swa") applies.insert({"--chunk", "--feature"});
  if (a.op == "rattn") applies.insert({"--rope-theta", "--eps"});
  const std::set<std::string> known = {"--in",      "--out",        "--window", "--chunk",
                                       "--feature", "--rope-theta", "--eps",    "--device"};
  for (size_t i = 1; i < rest.size(); ++i) {
    std::string flag = rest[i], value;
    bool inline_value = false;
    if (auto eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1), flag = flag.substr(0, eq), inline_value = true;
    }
    if (!known.count(flag)) throw UsageError("unknown flag '" + rest[i] + "'");
    if (!applies.count(flag)) throw UsageError(flag + " does not apply to " + a.op);
    if (a.given.count(flag)) throw UsageError(flag + ": given twice (give each flag once)");
    a.given.insert(flag);
    if (!inline_value) {
      if (i + 1 >= rest.size()) throw UsageError(flag + " needs a value");
      value = rest[++i];
    }
    if (flag == "--in") a.in = value;
    else if (flag == "--out") a.out = value;
    else if (flag == "--window") a.window = int(parse_long(flag, value));
    else if (flag == "--chunk") a.chunk = int(parse_long(flag, value));
    else if (flag == "--rope-theta") a.rope_theta = parse_double(flag, value);
    else if (flag == "--eps") a.eps = parse_double(flag, value);
    else if (flag == "--device") a.device = value;
    else if (flag == "--feature") {
      if (value != "sm2" && value != "relu2" && value != "identity")
        throw UsageError("--feature must be sm2, relu2 or identity, got '" + value + "'");
      a.fm = ref::parse_feature_map(value);
    }
  }
  if (a.in.empty()) throw UsageError("--in DIR is required");
  if (a.out.empty()) throw UsageError("--out DIR is required");
  if (a.window < -1) throw UsageError("--window must be >= -1 (-1 = global), got " + std::to_string(a.window));
  if (a.op == "rattn" && a.window < 0)
    throw UsageError("rattn needs --window W >= 0 (the SWA branch sees [t-W, t], the RLA branch j <= t-W-1)");
  if (a.chunk <= 0) throw UsageError("--chunk must be >= 1, got " + std::to_string(a.chunk));
  if (a.rope_theta <= 0) throw UsageError("--rope-theta must be > 0");
  if (a.eps < 0) throw UsageError("--eps must be >= 0");
  if (a.device != "cpu" && a.device != "cuda")
    throw UsageError("--device must be cpu or cuda, got '" + a.device + "'");
  return a;
}

// ---- inputs ---------------------------------------------------------------------------------------

// "[0, 3, 1]": a flat C-order index as a multi-index of shape.
std::string index_string(long flat, const std::vector<long>& shape) {
  std::vector<long> idx(shape.size());
  for (size_t i = shape.size(); i-- > 0;) {
    idx[i] = flat % shape[i];
    flat /= shape[i];
  }
  std::string s = "[";
  for (size_t i = 0; i < idx.size(); ++i) s += (i ? ", " : "") + std::to_string(idx[i]);
  return s + "]";
}

struct Inputs {
  NpyArray q, k, v;
  std::optional<NpyArray> gamma_swa, gamma_rla, h0, dout;
  long B = 0, T = 0, H = 0, G = 0, D = 0, Dp = 0;
};

std::optional<NpyArray> load(const std::string& dir, const std::string& name, bool required) {
  const std::string path = (std::filesystem::path(dir) / name).string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    if (required) throw UsageError("missing input " + path);
    return std::nullopt;
  }
  NpyArray a;
  try {
    a = io::read_npy(path);
  } catch (const io::NpyError& e) {
    throw UsageError(e.what());
  }
  for (long i = 0; i < long(a.data.size()); ++i)
    if (!std::isfinite(a.data[i]))
      throw UsageError(path + ": element " + index_string(i, a.shape) + " is " +
                       (std::isnan(a.data[i]) ? "nan" : a.data[i] > 0 ? "inf" : "-inf") + " (inputs must be finite)");
  return a;
}

void expect_dims(const std::string& name, const NpyArray& a, const std::vector<long>& want, const std::string& what) {
  if (a.shape != want)
    throw UsageError(name + " has shape " + io::shape_string(a.shape) + ", expected " + io::shape_string(want) + " " +
                     what);
}

Inputs load_inputs(const Args& a) {
  if (!std::filesystem::is_directory(a.in)) throw UsageError("--in " + a.in + ": no such folder");
  Inputs in;
  in.q = *load(a.in, "q.npy", true);
  in.k = *load(a.in, "k.npy", true);
  in.v = *load(a.in, "v.npy", true);
  if (a.op == "rattn") {
    in.gamma_swa = load(a.in, "gamma_swa.npy", true);
    in.gamma_rla = load(a.in, "gamma_rla.npy", true);
  }
  // Files an OP does not read are ignored (gamma_*.npy and h0.npy for swa, gamma_*.npy for rla), except that
  // rattn refuses h0.npy: it has an RLA branch, which always starts from a zero state here, and
  // silently ignoring the file would mislead.
  if (a.op == "rla") in.h0 = load(a.in, "h0.npy", false);
  if (a.op == "rattn" && std::filesystem::exists(std::filesystem::path(a.in) / "h0.npy"))
    throw UsageError(a.in + "/h0.npy: rattn takes no initial RLA state (its RLA branch starts from zero); "
                     "remove the file, or use OP rla to test a state");
  in.dout = load(a.in, "do.npy", false);

  // Shapes: q (B, T, H, D); k, v (B, T, G, D).
  if (in.q.shape.size() != 4)
    throw UsageError("q.npy has shape " + io::shape_string(in.q.shape) + ", expected rank 4 (B, T, H, D)");
  in.B = in.q.shape[0], in.T = in.q.shape[1], in.H = in.q.shape[2], in.D = in.q.shape[3];
  if (in.B < 1 || in.T < 1 || in.H < 1 || in.D < 1)
    throw UsageError("q.npy has shape " + io::shape_string(in.q.shape) + ": every dimension must be >= 1");
  if (in.B > (1L << 30) || in.T > (1L << 30) || in.H > (1L << 30) || in.D > (1L << 30))
    throw UsageError("q.npy has shape " + io::shape_string(in.q.shape) + ": a dimension is too large");
  if (in.k.shape.size() != 4)
    throw UsageError("k.npy has shape " + io::shape_string(in.k.shape) + ", expected rank 4 (B, T, G, D)");
  in.G = in.k.shape[2];
  if (in.G < 1) throw UsageError("k.npy has shape " + io::shape_string(in.k.shape) + ": G must be >= 1");
  expect_dims("k.npy", in.k, {in.B, in.T, in.G, in.D}, "(B, T, G, D) with B, T, D from q.npy");
  expect_dims("v.npy", in.v, in.k.shape, "(the shape of k.npy)");
  if (in.H % in.G != 0)
    throw UsageError("H = " + std::to_string(in.H) + " query heads (q.npy) is not a multiple of G = " +
                     std::to_string(in.G) + " kv heads (k.npy)");
  in.Dp = ref::feature_dim(a.fm, int(in.D));
  if (a.op == "rattn") {
    if (in.D % 2 != 0) throw UsageError("rattn applies RoPE, which needs an even head dim D, got " + std::to_string(in.D));
    expect_dims("gamma_swa.npy", *in.gamma_swa, {in.H, in.D}, "(H, D)");
    expect_dims("gamma_rla.npy", *in.gamma_rla, {in.H, in.D}, "(H, D)");
  }
  if (in.h0)
    expect_dims("h0.npy", *in.h0, {in.B, in.G, in.Dp, in.D},
                std::string("(B, G, Dp, D) with Dp = ") + std::to_string(in.Dp) + " for --feature " +
                    ref::to_string(a.fm));
  if (in.dout) expect_dims("do.npy", *in.dout, in.q.shape, "(the shape of q.npy)");

  // One dtype for all inputs: it is the dtype of the outputs.
  auto same_dtype = [&](const std::string& name, const std::optional<NpyArray>& x) {
    if (x && x->dtype != in.q.dtype)
      throw UsageError(name + " is " + io::to_string(x->dtype) + " but q.npy is " + io::to_string(in.q.dtype) +
                       ": give every input the same dtype");
  };
  same_dtype("k.npy", in.k), same_dtype("v.npy", in.v), same_dtype("gamma_swa.npy", in.gamma_swa);
  same_dtype("gamma_rla.npy", in.gamma_rla), same_dtype("h0.npy", in.h0), same_dtype("do.npy", in.dout);
  if (a.device == "cuda") {
    if (!cu::device_available()) throw UsageError("--device cuda: no CUDA device is available");
    if (in.D > 128) throw UsageError("--device cuda: the kernels support head dim D <= 128, got " + std::to_string(in.D));
  }
  return in;
}

// The attention core of a local rattn layer with the flags' window, feature map, chunk, RoPE base
// and eps: the config of OP rattn on both devices.
ref::AttnConfig rattn_config(const Args& a, const Inputs& in) {
  ref::AttnConfig cfg;
  cfg.H = int(in.H), cfg.G = int(in.G), cfg.D = int(in.D), cfg.w = a.window, cfg.global = false;
  cfg.kind = ref::LocalKind::rattn, cfg.fm = a.fm, cfg.chunk = a.chunk;
  cfg.rope_theta = a.rope_theta, cfg.eps = a.eps;
  return cfg;
}

// ---- outputs -------------------------------------------------------------------------------------

// Every file rattn-op may write in --out: a run writes some of them and removes the others it finds
// there (each must be a regular .npy file, or the run is refused), so that --out never holds outputs of
// two runs side by side (o.npy of this run beside dq.npy of an earlier one).
const std::vector<std::string> kAllOutputs = {"o", "dq", "dk", "dv", "dgamma_swa", "dgamma_rla", "dh0"};

std::vector<std::string> output_names(const Args& a, const Inputs& in) {
  std::vector<std::string> names = {"o"};
  if (in.dout) {
    names.insert(names.end(), {"dq", "dk", "dv"});
    if (a.op == "rattn") names.insert(names.end(), {"dgamma_swa", "dgamma_rla"});
    if (a.op == "rla" && in.h0) names.push_back("dh0");
  }
  return names;
}

// The files of kAllOutputs that this run does not write: (names with ".npy").
std::vector<std::string> stale_outputs(const std::vector<std::string>& written) {
  std::vector<std::string> stale;
  for (const std::string& n : kAllOutputs)
    if (std::find(written.begin(), written.end(), n) == written.end()) stale.push_back(n + ".npy");
  return stale;
}

// Before computing: may the outputs go to --out? (io::FileRefused, status 2, naming --out and the file.)
void check_outputs(const Args& a, const Inputs& in) {
  std::vector<std::string> files;
  for (const std::string& n : output_names(a, in)) files.push_back(n + ".npy");
  io::check_output_files(a.out, files, "--out", stale_outputs(output_names(a, in)));
}

// ---- the batch loop --------------------------------------------------------------------------------

// Sequence b of a (B, d1, d2, ...) array as a row-major (rows, cols) matrix: in C order it is the
// contiguous block [b * rows * cols, (b + 1) * rows * cols).
Mat<double> slice(const NpyArray& a, long b, long rows, long cols) {
  Mat<double> m(rows, cols);
  std::copy_n(a.data.begin() + b * rows * cols, rows * cols, m.data());
  return m;
}
void put(NpyArray& a, long b, const Mat<double>& m) {
  std::copy_n(m.data(), m.size(), a.data.begin() + b * m.size());
}
NpyArray empty_like(io::DType dt, const std::vector<long>& shape) {
  NpyArray a;
  a.dtype = dt;
  a.shape = shape;
  a.data.assign(size_t(a.numel()), 0.0);
  return a;
}

// Runs OP on every sequence; returns (name, array) for every output file.
std::vector<std::pair<std::string, NpyArray>> run(const Args& a, const Inputs& in) {
  const io::DType dt = in.q.dtype;
  const long B = in.B, T = in.T, H = in.H, G = in.G, D = in.D;
  const int iH = int(H), iG = int(G);
  const bool grads = bool(in.dout);
  NpyArray o = empty_like(dt, in.q.shape);
  NpyArray dq = empty_like(dt, in.q.shape), dk = empty_like(dt, in.k.shape), dv = empty_like(dt, in.k.shape);
  NpyArray dgamma_swa = empty_like(dt, {H, D}), dgamma_rla = empty_like(dt, {H, D});
  NpyArray dh0 = empty_like(dt, {B, G, in.Dp, D});

  for (long b = 0; b < B; ++b) {
    const Mat<double> q = slice(in.q, b, T, H * D), k = slice(in.k, b, T, G * D), v = slice(in.v, b, T, G * D);
    const Mat<double> dout = grads ? slice(*in.dout, b, T, H * D) : Mat<double>();
    if (a.op == "swa") {
      const double scale = 1.0 / std::sqrt(double(D));
      put(o, b, ref::swa_forward(q, k, v, iH, iG, a.window, scale));
      if (grads) {
        Mat<double> gq, gk, gv;
        ref::swa_backward(q, k, v, dout, iH, iG, a.window, scale, gq, gk, gv);
        put(dq, b, gq), put(dk, b, gk), put(dv, b, gv);
      }
    } else if (a.op == "rla") {
      ref::RlaState<double> h0;
      if (in.h0)
        for (long g = 0; g < G; ++g) h0.push_back(slice(*in.h0, b * G + g, in.Dp, D));
      const ref::RlaState<double>* h0p = in.h0 ? &h0 : nullptr;
      put(o, b, ref::rla_forward_chunked(q, k, v, iH, iG, a.window, a.fm, a.chunk, h0p));
      if (grads) {
        ref::RlaGrads<double> r = ref::rla_backward_chunked(q, k, v, dout, iH, iG, a.window, a.fm, a.chunk, h0p);
        put(dq, b, r.dq), put(dk, b, r.dk), put(dv, b, r.dv);
        for (long g = 0; g < G; ++g) put(dh0, b * G + g, r.dh0[size_t(g)]);
      }
    } else {  // rattn
      const ref::AttnConfig cfg = rattn_config(a, in);
      const Mat<double> gs = slice(*in.gamma_swa, 0, H, D), gr = slice(*in.gamma_rla, 0, H, D);
      ref::CoreCache<double> cache;
      put(o, b, ref::attn_core_forward(cfg, q, k, v, gs, gr, &cache));
      if (grads) {
        ref::CoreGrads<double> g = ref::attn_core_backward(cfg, q, k, v, gs, gr, dout, &cache);
        put(dq, b, g.dq), put(dk, b, g.dk), put(dv, b, g.dv);
        // The gammas are shared by every sequence of the batch: their gradients add up.
        for (long i = 0; i < H * D; ++i) {
          dgamma_swa.data[i] += g.dgamma_swa.data()[i];
          dgamma_rla.data[i] += g.dgamma_rla.data()[i];
        }
      }
    }
  }
  std::vector<std::pair<std::string, NpyArray>> out = {{"o", std::move(o)}};
  if (grads) {
    out.emplace_back("dq", std::move(dq));
    out.emplace_back("dk", std::move(dk));
    out.emplace_back("dv", std::move(dv));
    if (a.op == "rattn") {
      out.emplace_back("dgamma_swa", std::move(dgamma_swa));
      out.emplace_back("dgamma_rla", std::move(dgamma_rla));
    }
    if (a.op == "rla" && in.h0) out.emplace_back("dh0", std::move(dh0));
  }
  return out;
}

// ---- --device cuda ---------------------------------------------------------------------------------
// The same ops through the CUDA kernels. The whole batch goes to each kernel at once (the kernels
// take (B, T, heads, D)); only RoPE, whose positions restart at every sequence, runs per sequence
// (inside cu::attn_core_forward_dev).

using Buf = cu::DeviceBuffer<float>;

Buf to_device(const NpyArray& a) {
  std::vector<float> f(a.data.begin(), a.data.end());  // float32 copy: the kernels' precision
  Buf b(f.size());
  b.upload(f);
  return b;
}
NpyArray from_device(const Buf& b, io::DType dt, const std::vector<long>& shape) {
  std::vector<float> f = b.download();
  NpyArray a;
  a.dtype = dt;
  a.shape = shape;
  a.data.assign(f.begin(), f.end());
  return a;
}
using cu::to_cu;

std::vector<std::pair<std::string, NpyArray>> run_cuda(const Args& a, const Inputs& in) {
  const io::DType dt = in.q.dtype;
  const int B = int(in.B), T = int(in.T), H = int(in.H), G = int(in.G), D = int(in.D), Dp = int(in.Dp);
  const bool grads = bool(in.dout);
  const float scale = float(1.0 / std::sqrt(double(D)));
  const std::vector<long> qs = in.q.shape, ks = in.k.shape;
  const Buf q = to_device(in.q), k = to_device(in.k), v = to_device(in.v);
  const Buf dout = grads ? to_device(*in.dout) : Buf(0);
  const size_t nq = in.q.data.size(), nk = in.k.data.size();
  std::vector<std::pair<std::string, NpyArray>> out;

  if (a.op == "swa") {
    Buf o(nq), lse(size_t(B) * H * T);
    cu::swa_forward(q.data(), k.data(), v.data(), o.data(), lse.data(), B, T, H, G, D, a.window, scale);
    out.emplace_back("o", from_device(o, dt, qs));
    if (grads) {
      Buf dq(nq), dk(nk), dv(nk), delta(size_t(B) * H * T);
      cu::swa_backward(q.data(), k.data(), v.data(), o.data(), lse.data(), dout.data(), dq.data(), dk.data(),
                       dv.data(), delta.data(), B, T, H, G, D, a.window, scale);
      out.emplace_back("dq", from_device(dq, dt, qs));
      out.emplace_back("dk", from_device(dk, dt, ks));
      out.emplace_back("dv", from_device(dv, dt, ks));
    }
  } else if (a.op == "rla") {
    const int m = 1;  // save the state at every chunk
    const Buf h0 = in.h0 ? to_device(*in.h0) : Buf(0);
    const float* h0p = in.h0 ? h0.data() : nullptr;
    Buf o(nq), states(cu::rla_states_size(B, T, G, D, to_cu(a.fm), a.chunk, m));
    cu::rla_forward(q.data(), k.data(), v.data(), h0p, o.data(), states.data(), B, T, H, G, D, a.window, to_cu(a.fm),
                    a.chunk, m);
    out.emplace_back("o", from_device(o, dt, qs));
    if (grads) {
      Buf dq(nq), dk(nk), dv(nk), dh0(size_t(B) * G * Dp * D),
          scratch(cu::rla_backward_scratch_size(B, T, H, G, D, to_cu(a.fm), a.chunk));
      cu::rla_backward(q.data(), k.data(), v.data(), h0p, states.data(), dout.data(), dq.data(), dk.data(), dv.data(),
                       in.h0 ? dh0.data() : nullptr, scratch.data(), B, T, H, G, D, a.window, to_cu(a.fm), a.chunk,
                       m);
      out.emplace_back("dq", from_device(dq, dt, qs));
      out.emplace_back("dk", from_device(dk, dt, ks));
      out.emplace_back("dv", from_device(dv, dt, ks));
      if (in.h0) out.emplace_back("dh0", from_device(dh0, dt, in.h0->shape));
    }
  } else {  // rattn: ref/rattention.h attn_core_forward / attn_core_backward on the kernels
    const ref::AttnConfig cfg = rattn_config(a, in);
    const Buf gs = to_device(*in.gamma_swa), gr = to_device(*in.gamma_rla);
    cu::CoreDeviceCache cache;
    Buf o(nq);
    cu::attn_core_forward_dev(cfg, q.data(), k.data(), v.data(), gs.data(), gr.data(), o.data(), B, T, cache);
    out.emplace_back("o", from_device(o, dt, qs));
    if (grads) {
      Buf dq(nq), dk(nk), dv(nk), dgs(size_t(H) * D), dgr(size_t(H) * D);
      const std::vector<float> zero(size_t(H) * D, 0.0f);  // the backward accumulates dgamma (+=)
      dgs.upload(zero), dgr.upload(zero);
      cu::attn_core_backward_dev(cfg, q.data(), k.data(), v.data(), gs.data(), gr.data(), dout.data(), dq.data(),
                                 dk.data(), dv.data(), dgs.data(), dgr.data(), B, T, cache);
      out.emplace_back("dq", from_device(dq, dt, qs));
      out.emplace_back("dk", from_device(dk, dt, ks));
      out.emplace_back("dv", from_device(dv, dt, ks));
      out.emplace_back("dgamma_swa", from_device(dgs, dt, {in.H, in.D}));
      out.emplace_back("dgamma_rla", from_device(dgr, dt, {in.H, in.D}));
    }
  }
  return out;
}

// The first non-finite element of the outputs, as a message naming the tensor, the element and the
// input of largest magnitude (what overflowed: finite inputs give non-finite outputs only when they are
// too large for the dtype's exp and products, e.g. |q . k| beyond float32's range). "" when all finite.
std::string non_finite_report(const std::vector<std::pair<std::string, NpyArray>>& outputs, const Inputs& in) {
  for (const auto& [name, arr] : outputs)
    for (long i = 0; i < long(arr.data.size()); ++i) {
      const double x = arr.data[size_t(i)];
      if (std::isfinite(x)) continue;
      std::string largest;
      double largest_abs = -1;
      const std::pair<const char*, const NpyArray*> inputs[] = {
          {"q.npy", &in.q}, {"k.npy", &in.k}, {"v.npy", &in.v},
          {"do.npy", in.dout ? &*in.dout : nullptr}, {"h0.npy", in.h0 ? &*in.h0 : nullptr}};
      for (const auto& [input, a] : inputs) {
        if (!a) continue;
        for (double y : a->data)
          if (std::abs(y) > largest_abs) largest_abs = std::abs(y), largest = input;
      }
      char mag[32];
      std::snprintf(mag, sizeof mag, "%.3g", largest_abs);
      return name + ".npy would hold " + (std::isnan(x) ? "nan" : x > 0 ? "inf" : "-inf") + " at element " +
             index_string(i, arr.shape) + "; the largest input is " + largest + " (|x| up to " + mag +
             "): scale the inputs down (nothing was written)";
    }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  Args args;
  Inputs in;
  try {
    args = parse_args(argc, argv);
    in = load_inputs(args);
    check_outputs(args, in);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "rattn-op: %s\n", e.what());
    return 2;
  } catch (const io::FileRefused& e) {  // --out cannot be written without replacing a file that is not ours
    std::fprintf(stderr, "rattn-op: %s\n", e.what());
    return 2;
  } catch (const std::exception& e) {  // io::FileFailed: permission denied, an I/O error
    std::fprintf(stderr, "rattn-op: error: %s\n", e.what());
    return 1;
  }
  try {
    std::vector<std::pair<std::string, NpyArray>> outputs;
    try {
      outputs = args.device == "cuda" ? run_cuda(args, in) : run(args, in);
    } catch (const std::invalid_argument& e) {  // a kernel's limit (e.g. shared memory for this chunk size)
      std::fprintf(stderr, "rattn-op: %s\n", e.what());
      return 2;
    }
    if (const std::string bad = non_finite_report(outputs, in); !bad.empty()) {
      std::fprintf(stderr, "rattn-op: %s\n", bad.c_str());
      return 3;  // a numerical stop, as train_tiny's
    }
    std::vector<std::string> written;
    for (auto& [name, arr] : outputs) written.push_back(name);
    try {
      io::write_npy_files(args.out, outputs, "--out", stale_outputs(written));
    } catch (const io::FileRefused& e) {  // --out changed while computing
      std::fprintf(stderr, "rattn-op: %s\n", e.what());
      return 2;
    }
    std::string names;
    for (auto& [name, arr] : outputs) names += " " + name + ".npy";
    std::printf("rattn-op %s: B=%ld T=%ld H=%ld G=%ld D=%ld %s w=%d", args.op.c_str(), in.B, in.T, in.H, in.G, in.D,
                io::to_string(in.q.dtype), args.window);
    if (args.op != "swa") std::printf(" chunk=%d feature=%s", args.chunk, ref::to_string(args.fm));
    if (args.op == "rla") std::printf(" h0=%s", in.h0 ? "h0.npy" : "zero");
    if (args.op == "rattn") std::printf(" rope_theta=%g eps=%g", args.rope_theta, args.eps);
    if (args.device == "cuda")
      std::printf(" device=cuda (fp32 kernels%s)", cu::on_cpu_layer() ? " on the CPU execution layer" : "");
    std::printf(" -> %s:%s\n", args.out.c_str(), names.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rattn-op: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
