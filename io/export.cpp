// io/export.cpp: `infer --export` and `infer --logits` (see io/export.h).
#include "io/export.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "model/backend_cpu.h"
#include "model/cli.h"
#include "model/model.h"
#include "model/params.h"

namespace io {

namespace {

// A JSON string literal.
std::string js(const std::string& s) {
  std::string o = "\"";
  for (char ch : s) {
    const unsigned char c = static_cast<unsigned char>(ch);
    if (c == '"') o += "\\\"";
    else if (c == '\\') o += "\\\\";
    else if (c == '\n') o += "\\n";
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      o += buf;
    } else o += ch;
  }
  return o + "\"";
}
// A JSON number that reads back as the same double.
std::string jn(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}
std::string jshape(const std::vector<long>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// One line each (errors are one line on stderr).
const char* kExportUsage = "usage: infer --export DIR CHECKPOINT";
const char* kLogitsUsage = "usage: infer --logits CHECKPOINT (--prompt TEXT | --prompt-file FILE) [--out FILE.npy]";

}  // namespace

std::vector<std::pair<std::string, NpyArray>> model_tensors(const model::TrainState<float>& st) {
  // named_tensors wants mutable parameters (the optimizer writes through it); read-only use here.
  auto& params = const_cast<model::ModelParams<float>&>(st.params);
  std::vector<std::pair<std::string, NpyArray>> out;
  for (const model::NamedTensor<float>& nt : model::named_tensors(st.config.model, params)) {
    const bool is_norm = nt.t->rows() == 1 && (nt.name == "norm_f" || nt.name.ends_with(".norm1") ||
                                                nt.name.ends_with(".norm2") || nt.name.ends_with(".q_norm") ||
                                                nt.name.ends_with(".k_norm"));
    std::vector<long> shape = is_norm ? std::vector<long>{long(nt.t->cols())}
                                      : std::vector<long>{long(nt.t->rows()), long(nt.t->cols())};
    out.emplace_back(nt.name, make_npy(shape, nt.t->data()));  // Mat is row-major: C order
  }
  return out;
}

std::string model_config_json(const model::TrainState<float>& st, const std::string& checkpoint) {
  const model::ModelConfig& m = st.config.model;
  std::ostringstream o;
  o << "{\n";
  o << "  \"format\": \"rattn model export, version 1\",\n";
  o << "  \"checkpoint\": " << js(checkpoint) << ",\n";
  o << "  \"step\": " << st.step << ",\n";
  o << "  \"model\": {\n";
  o << "    \"vocab\": " << m.vocab << ",\n";
  o << "    \"d_model\": " << m.d_model << ",\n";
  o << "    \"n_heads\": " << m.n_heads << ",\n";
  o << "    \"n_kv_heads\": " << m.n_kv_heads << ",\n";
  o << "    \"head_dim\": " << m.head_dim << ",\n";
  o << "    \"ffn_dim\": " << m.ffn() << ",\n";
  o << "    \"n_layers\": " << m.n_layers << ",\n";
  o << "    \"pattern\": " << js(m.pattern) << ",\n";
  o << "    \"layer_string\": " << js(m.layer_string()) << ",\n";
  o << "    \"local_kind\": " << js(m.local_kind) << ",\n";
  o << "    \"window\": " << m.window << ",\n";
  o << "    \"feature_map\": " << js(m.feature_map) << ",\n";
  o << "    \"rla_chunk\": " << m.chunk << ",\n";
  o << "    \"rope_theta\": " << jn(m.rope_theta) << ",\n";
  o << "    \"norm_eps\": " << jn(m.norm_eps) << ",\n";
  o << "    \"branch_eps\": " << jn(m.branch_eps) << (m.qk_norm ? ",\n" : "\n");
  // Written only when on, so that a model without qk-norm exports what it exported before the option.
  if (m.qk_norm) o << "    \"qk_norm\": true\n";
  o << "  },\n";
  o << "  \"layers\": [\n";
  for (int l = 0; l < m.n_layers; ++l) {
    const ref::AttnConfig a = model::attn_config(m, l);
    o << "    {\"index\": " << l << ", \"type\": " << js(a.global ? "global" : "local");
    if (!a.global) {
      o << ", \"kind\": " << js(m.local_kind) << ", \"swa_branch\": " << (ref::has_swa_branch(a) ? "true" : "false")
        << ", \"rla_branch\": " << (ref::has_rla_branch(a) ? "true" : "false");
      if (ref::has_swa_branch(a)) o << ", \"swa_window\": " << a.w << ", \"rope\": true";
      if (ref::has_rla_branch(a)) o << ", \"rla_window\": " << ref::rla_window(a) << ", \"feature_map\": " << js(m.feature_map);
    } else {
      o << ", \"rope\": false";
    }
    if (ref::has_qk_norm(a)) o << ", \"qk_norm\": true";  // its softmax attention reads QKN(q), QKN(k) (spec §2.9)
    o << "}" << (l + 1 < m.n_layers ? "," : "") << "\n";
  }
  o << "  ],\n";
  o << "  \"parameters\": [\n";
  auto tensors = model_tensors(st);
  for (size_t i = 0; i < tensors.size(); ++i)
    o << "    {\"name\": " << js(tensors[i].first) << ", \"file\": " << js(tensors[i].first + ".npy")
      << ", \"shape\": " << jshape(tensors[i].second.shape) << ", \"dtype\": \"float32\"}"
      << (i + 1 < tensors.size() ? "," : "") << "\n";
  o << "  ],\n";
  // The formulas, exactly as model/model.h and ref/ compute them (spec §0).
  const char* conventions[][2] = {
      {"tokens", "bytes 0..255 (vocab 256); input ids are the bytes of the text"},
      {"shapes", "C = d_model, H = n_heads, G = n_kv_heads, D = head_dim, F = ffn_dim, V = vocab; one sequence of T tokens"},
      {"linear", "y = x @ W with W stored (in, out); there are no biases anywhere"},
      {"rmsnorm", "RMS(x; gamma) = x / sqrt(mean(x**2, last axis) + norm_eps) * gamma, over the C features of a token"},
      {"model", "x = embed[tokens]; for each block l: a = RMS(x; block<l>.norm1); y = x + Attn_l(a); "
                "b = RMS(y; block<l>.norm2); x = y + SwiGLU_l(b); logits = RMS(x; norm_f) @ W_out  (T, V)"},
      {"swiglu", "SwiGLU(b) = (silu(b @ W1) * (b @ W3)) @ W2, silu(z) = z * sigmoid(z)"},
      {"attention_projections", "q = a @ Wq (T, H*D), k = a @ Wk, v = a @ Wv (T, G*D); head h is columns [h*D, (h+1)*D); "
                                "query head h uses kv head h // (H // G); out = c @ Wo with c (T, H*D)"},
      {"global_layer", "c[t,h] = sum_{j<=t} softmax_j(q[t,h].k[j,g] / sqrt(D)) v[j,g]: full causal attention, no RoPE, no branch norm"},
      {"rope", "local layers, SWA branch only: interleaved pairs (2i, 2i+1) of each head rotated by angle = t * rope_theta**(-2i/D), "
               "t = 0..T-1: y[2i] = x[2i] cos - x[2i+1] sin, y[2i+1] = x[2i] sin + x[2i+1] cos"},
      {"swa_branch", "o_swa[t,h] = sum_{j=max(0,t-w)}^{t} softmax_j(RoPE(q)[t,h].RoPE(k)[j,g] / sqrt(D)) v[j,g] (w+1 keys, w = swa_window)"},
      {"rla_branch", "o_rla[t,h] = sum_{j<=t-w-1} (phi(q[t,h]).phi(k[j,g])) v[j,g] on the raw (un-RoPE'd, unscaled) q, k; "
                     "rla_window = -1 means j <= t (no shift); no denominator, no decay, zero initial state"},
      {"feature_map", "sm2: phi(x) = concat(softmax(x), softmax(-x)) over the head dim (2D features); relu2: concat(relu(x), relu(-x)); identity: x"},
      {"branch_norm", "GRMS(o; gamma (H, D))[t,h] = o[t,h] / sqrt(mean_d(o[t,h]**2) + branch_eps) * gamma[h], per token and head"},
      {"local_layer", "swa: c = GRMS(o_swa; attn.gamma_swa); rattn: c = GRMS(o_swa; attn.gamma_swa) + GRMS(o_rla; attn.gamma_rla); "
                      "linear: c = GRMS(o_rla with rla_window -1; attn.gamma_rla)"},
      {"rla_chunk", "the chunk size of the chunked training form; it does not change the result"},
      {"norm_shapes", "block<l>.norm1, block<l>.norm2 and norm_f are vectors (C,); attn.gamma_swa / attn.gamma_rla are (H, D)"},
  };
  // With qk-norm (spec §2.9) the softmax attentions read normalised q, k: those formulas are restated
  // and the norm itself added; without it the conventions are exactly the ones above.
  const char* qk_conventions[][2] = {
      {"global_layer", "c[t,h] = sum_{j<=t} softmax_j(QKN(q[t,h]; q_norm).QKN(k[j,g]; k_norm) / sqrt(D)) v[j,g]: "
                       "full causal attention, no RoPE, no branch norm"},
      {"swa_branch", "o_swa[t,h] = sum_{j=max(0,t-w)}^{t} softmax_j(QKN(RoPE(q)[t,h]; q_norm).QKN(RoPE(k)[j,g]; k_norm) "
                     "/ sqrt(D)) v[j,g] (w+1 keys, w = swa_window)"},
      {"rla_branch", "o_rla[t,h] = sum_{j<=t-w-1} (phi(q[t,h]).phi(k[j,g])) v[j,g] on the raw (un-RoPE'd, unscaled, "
                     "not qk-normed) q, k; rla_window = -1 means j <= t (no shift); no denominator, no decay, zero "
                     "initial state"},
      {"qk_norm", "on the layers with \"qk_norm\": true (the global layers and the SWA branch of swa and rattn local "
                  "layers; never the RLA branch, never a linear layer): QKN(x; s) = x / sqrt(mean(x**2, over the D "
                  "dims of one head) + norm_eps) * s, per token and head, with s = block<l>.attn.q_norm for q and "
                  "block<l>.attn.k_norm for k, one (D,) vector per layer shared by all heads; order: RoPE (local "
                  "layers only), then QKN, then the 1/sqrt(D) scale of the scores"},
      {"norm_shapes", "block<l>.norm1, block<l>.norm2 and norm_f are vectors (C,); attn.gamma_swa / attn.gamma_rla are "
                      "(H, D); attn.q_norm / attn.k_norm are vectors (D,)"},
  };
  std::vector<std::pair<std::string, std::string>> conv;
  for (const auto& c : conventions) conv.emplace_back(c[0], c[1]);
  if (m.qk_norm)
    for (const auto& c : qk_conventions) {
      auto it = std::find_if(conv.begin(), conv.end(), [&](const auto& e) { return e.first == c[0]; });
      if (it != conv.end()) it->second = c[1];
      else conv.insert(conv.end() - 2, {c[0], c[1]});  // before rla_chunk and norm_shapes
    }
  o << "  \"conventions\": {\n";
  for (size_t i = 0; i < conv.size(); ++i)
    o << "    " << js(conv[i].first) << ": " << js(conv[i].second) << (i + 1 < conv.size() ? "," : "") << "\n";
  o << "  },\n";
  // Everything the checkpoint's config block holds (model and training flags), for provenance.
  o << "  \"checkpoint_config\": {\n";
  std::istringstream lines(model::config_to_text(st.config));
  std::vector<std::pair<std::string, std::string>> kv;
  for (std::string line; std::getline(lines, line);)
    if (auto eq = line.find('='); eq != std::string::npos) kv.emplace_back(line.substr(0, eq), line.substr(eq + 1));
  for (size_t i = 0; i < kv.size(); ++i)
    o << "    " << js(kv[i].first) << ": " << js(kv[i].second) << (i + 1 < kv.size() ? "," : "") << "\n";
  o << "  }\n";
  o << "}\n";
  return o.str();
}

namespace {
// A missing or bad checkpoint named on the command line is a bad input: exit status 2, one line.
model::TrainState<float> load_for(const char* mode, const std::string& checkpoint) {
  try {
    return model::load_checkpoint<float>(checkpoint);
  } catch (const model::CheckpointError& e) {
    throw model::UsageError(std::string(mode) + ": " + e.what());
  }
}
}  // namespace

void export_model(const std::string& dir, const std::string& checkpoint) {
  const model::TrainState<float> st = load_for("--export", checkpoint);
  write_npy_dir(dir, model_tensors(st), model_config_json(st, checkpoint));
}

bool is_export_command(int argc, char** argv) {
  if (argc < 2) return false;
  const std::string a = argv[1];
  return a == "--export" || a == "--logits";
}

int infer_export_main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || (args[0] != "--export" && args[0] != "--logits"))
    throw model::UsageError(std::string(kExportUsage) + " | " + kLogitsUsage);
  if (args[0] == "--export") {
    if (args.size() != 3) throw model::UsageError(std::string("--export needs DIR and CHECKPOINT (") + kExportUsage + ")");
    export_model(args[1], args[2]);
    std::printf("infer: exported %s to %s (every parameter as NAME.npy, plus config.json)\n", args[2].c_str(),
                args[1].c_str());
    return 0;
  }
  // --logits CHECKPOINT (--prompt TEXT | --prompt-file FILE) [--out FILE.npy]
  if (args.size() < 2 || args[1].rfind("--", 0) == 0)
    throw model::UsageError(std::string("--logits needs a CHECKPOINT (") + kLogitsUsage + ")");
  const std::string checkpoint = args[1];
  // The longest sequence the model flags allow (--seq-len <= 65536); the forward is quadratic in T.
  const size_t kMaxPrompt = size_t(1) << 16;
  std::string prompt, out, prompt_file;
  bool have_prompt = false;
  for (size_t i = 2; i < args.size(); i += 2) {
    const std::string& flag = args[i];
    if (flag != "--prompt" && flag != "--prompt-file" && flag != "--out")
      throw model::UsageError("--logits: unknown flag '" + flag + "' (" + kLogitsUsage + ")");
    if (i + 1 >= args.size()) throw model::UsageError(flag + " needs a value");
    const std::string& value = args[i + 1];
    if (flag == "--out") {
      out = value;
      continue;
    }
    if (have_prompt) throw model::UsageError("--logits: give one of --prompt and --prompt-file");
    have_prompt = true;
    if (flag == "--prompt") {
      prompt = value;
    } else {  // a regular file of at most kMaxPrompt bytes, checked before reading (io::FileRefused: status 2)
      prompt_file = value;
      prompt = io::read_bounded(value, kMaxPrompt, "--prompt-file " + value,
                                "a prompt (the longest sequence --logits accepts; --prompt has the same limit)");
    }
  }
  if (!have_prompt || prompt.empty()) throw model::UsageError("--logits needs a non-empty --prompt or --prompt-file");
  if (prompt.size() > kMaxPrompt)
    throw model::UsageError("--prompt: " + std::to_string(prompt.size()) + " bytes is longer than the " +
                            std::to_string(kMaxPrompt) + " tokens --logits accepts");

  // --out may replace only an earlier .npy output, never the checkpoint or the prompt file (status 2, before
  // anything is computed).
  const std::filesystem::path out_path(out);
  if (!out.empty() && out_path.filename().empty())
    throw model::UsageError("--out: expected a file name (FILE.npy), got the folder '" + out + "'");
  const std::string out_dir = out_path.has_parent_path() ? out_path.parent_path().string() : std::string(".");
  const std::vector<io::NamedInput> inputs = {{"checkpoint", checkpoint}, {"--prompt-file", prompt_file}};
  if (!out.empty()) check_output_files(out_dir, {out_path.filename().string()}, "--out", {}, inputs);
  const model::TrainState<float> st = load_for("--logits", checkpoint);
  auto backend = model::make_backend<float>("cpu");
  const model::Model<float> net(st.config.model, *backend);
  std::vector<int> tokens(prompt.begin(), prompt.end());
  for (int& b : tokens) b &= 0xFF;
  const ref::Mat<float> logits = net.forward(st.params, tokens);  // (T, V)
  // Every result is finite or refused: finite weights can still overflow float32 (weights edited to
  // 1e30, say). Status 3, as a numerical stop in train_tiny and rattn-op; nothing is written.
  for (long t = 0; t < logits.rows(); ++t)
    for (long j = 0; j < logits.cols(); ++j)
      if (!std::isfinite(logits(t, j))) {
        std::fprintf(stderr,
                     "infer: --logits: the forward of checkpoint '%s' gives a non-finite logit (%s) at position %ld "
                     "(input byte %d), vocabulary entry %ld: its weights overflow float32; nothing written\n",
                     checkpoint.c_str(), std::isnan(logits(t, j)) ? "nan" : "inf", t, tokens[size_t(t)], j);
        return 3;
      }
  if (!out.empty()) {
    write_files_atomically(out_dir,
                           {{out_path.filename().string(),
                             format_npy(make_npy({long(logits.rows()), long(logits.cols())}, logits.data()))}},
                           "--out", {}, inputs);
    std::printf("infer: logits (%ld, %ld) float32 of %s over %zu bytes -> %s\n", long(logits.rows()),
                long(logits.cols()), checkpoint.c_str(), tokens.size(), out.c_str());
    return 0;
  }
  std::printf("# logits (%ld, %ld) of %s: one line per position: t, input byte, then V logits\n",
              long(logits.rows()), long(logits.cols()), checkpoint.c_str());
  for (long t = 0; t < logits.rows(); ++t) {
    std::printf("%ld %d", t, tokens[size_t(t)]);
    for (long j = 0; j < logits.cols(); ++j) std::printf(" %.9g", double(logits(t, j)));
    std::printf("\n");
  }
  return 0;
}

}  // namespace io
