// model/params.h: the model's parameters, their names and shapes, and their initial values.
//
// Shapes (C = d_model, V = 256, H, G, D heads, F = ffn width, per block l):
//   embed                  E       (V, C)
//   block<l>.norm1         gamma   (1, C)     pre-attention RMSNorm
//   block<l>.attn.Wq       (C, H*D)   .Wk, .Wv (C, G*D)   .Wo (H*D, C)
//   block<l>.attn.gamma_swa (H, D)   local swa / rattn layers only
//   block<l>.attn.gamma_rla (H, D)   local rattn / linear layers only
//   block<l>.attn.q_norm, .k_norm (1, D)   with --qk-norm 1 only, on swa / rattn / global layers (spec §2.9)
//   block<l>.norm2         gamma   (1, C)     pre-MLP RMSNorm
//   block<l>.mlp.W1, .W3   (C, F)     .W2 (F, C)
//   norm_f                 gamma   (1, C)     final RMSNorm
//   W_out                  (C, V)             output head (not tied to E)
// named_tensors() lists exactly the tensors the model uses, in this order: it is the order of the
// checkpoint, of the optimizer and of the gradient reduction. (AttnParams always carries both
// branch scales; a layer without a branch leaves that scale at 1, unlisted and untrained.)
#pragma once
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "model/config.h"
#include "ref/mlp.h"
#include "ref/rattention.h"

namespace model {

using ref::Mat;

template <class S>
struct BlockParams {
  Mat<S> norm1;             // (1, C)
  ref::AttnParams<S> attn;  // see ref/rattention.h
  Mat<S> norm2;             // (1, C)
  ref::SwiGLUParams<S> mlp; // W1, W3 (C, F), W2 (F, C)
};

template <class S>
struct ModelParams {
  Mat<S> E;                              // (V, C)
  std::vector<BlockParams<S>> blocks;    // n_layers
  Mat<S> norm_f;                         // (1, C)
  Mat<S> W_out;                          // (C, V)
};

// One entry of the parameter list: a stable name, the tensor, and whether AdamW decays it
// (the projection matrices and the output head: yes; the embedding and the norm scales: no).
template <class S>
struct NamedTensor {
  std::string name;
  Mat<S>* t;
  bool decay;
};

// The attention configuration of block `layer` (ref::AttnConfig): global layers are full causal
// attention (NoPE); local layers take the kind, window, feature map, chunk and RoPE base.
inline ref::AttnConfig attn_config(const ModelConfig& m, int layer) {
  ref::AttnConfig a;
  a.H = m.n_heads;
  a.G = m.n_kv_heads;
  a.D = m.head_dim;
  a.global = m.is_global(layer);
  a.kind = ref::parse_local_kind(m.local_kind);
  a.w = a.kind == ref::LocalKind::linear ? -1 : m.window;  // linear: RLA over all of [0, t]
  a.fm = ref::parse_feature_map(m.feature_map);
  a.chunk = m.chunk;
  a.rope_theta = m.rope_theta;
  a.eps = m.branch_eps;
  a.qk_norm = m.qk_norm != 0;
  a.qk_eps = m.norm_eps;  // qk-norm takes the block norms' eps (spec §2.9)
  return a;
}

// Every parameter tensor with its name, in checkpoint order.
template <class S>
std::vector<NamedTensor<S>> named_tensors(const ModelConfig& m, ModelParams<S>& p) {
  std::vector<NamedTensor<S>> out;
  out.push_back({"embed", &p.E, false});
  for (int l = 0; l < m.n_layers; ++l) {
    BlockParams<S>& b = p.blocks[size_t(l)];
    const std::string pre = "block" + std::to_string(l) + ".";
    const ref::AttnConfig a = attn_config(m, l);
    out.push_back({pre + "norm1", &b.norm1, false});
    out.push_back({pre + "attn.Wq", &b.attn.Wq, true});
    out.push_back({pre + "attn.Wk", &b.attn.Wk, true});
    out.push_back({pre + "attn.Wv", &b.attn.Wv, true});
    out.push_back({pre + "attn.Wo", &b.attn.Wo, true});
    if (ref::has_swa_branch(a)) out.push_back({pre + "attn.gamma_swa", &b.attn.gamma_swa, false});
    if (ref::has_rla_branch(a)) out.push_back({pre + "attn.gamma_rla", &b.attn.gamma_rla, false});
    if (ref::has_qk_norm(a)) {  // norm scales: no weight decay, initialised to 1
      out.push_back({pre + "attn.q_norm", &b.attn.q_norm, false});
      out.push_back({pre + "attn.k_norm", &b.attn.k_norm, false});
    }
    out.push_back({pre + "norm2", &b.norm2, false});
    out.push_back({pre + "mlp.W1", &b.mlp.W1, true});
    out.push_back({pre + "mlp.W3", &b.mlp.W3, true});
    out.push_back({pre + "mlp.W2", &b.mlp.W2, true});
  }
  out.push_back({"norm_f", &p.norm_f, false});
  out.push_back({"W_out", &p.W_out, true});
  return out;
}

// All tensors at their shapes, filled with `value` (0: a gradient or optimizer-moment buffer).
template <class S>
ModelParams<S> params_filled(const ModelConfig& m, S value) {
  const long C = m.d_model, H = m.n_heads, G = m.n_kv_heads, D = m.head_dim, F = m.ffn(), V = m.vocab;
  ModelParams<S> p;
  p.E = Mat<S>::Constant(V, C, value);
  p.blocks.resize(size_t(m.n_layers));
  for (BlockParams<S>& b : p.blocks) {
    b.norm1 = Mat<S>::Constant(1, C, value);
    b.attn.Wq = Mat<S>::Constant(C, H * D, value);
    b.attn.Wk = Mat<S>::Constant(C, G * D, value);
    b.attn.Wv = Mat<S>::Constant(C, G * D, value);
    b.attn.Wo = Mat<S>::Constant(H * D, C, value);
    b.attn.gamma_swa = Mat<S>::Constant(H, D, value);
    b.attn.gamma_rla = Mat<S>::Constant(H, D, value);
    b.attn.q_norm = Mat<S>::Constant(1, D, value);
    b.attn.k_norm = Mat<S>::Constant(1, D, value);
    b.norm2 = Mat<S>::Constant(1, C, value);
    b.mlp.W1 = Mat<S>::Constant(C, F, value);
    b.mlp.W3 = Mat<S>::Constant(C, F, value);
    b.mlp.W2 = Mat<S>::Constant(F, C, value);
  }
  p.norm_f = Mat<S>::Constant(1, C, value);
  p.W_out = Mat<S>::Constant(C, V, value);
  return p;
}

// Standard normal samples from a 64-bit generator by Box-Muller, computed in double so that the
// float and the double model start from the same weights (rounded), on every standard library.
class Gaussian {
 public:
  explicit Gaussian(uint64_t seed) : rng_(seed) {}
  double next() {
    if (have_spare_) {
      have_spare_ = false;
      return spare_;
    }
    const double u1 = (double(rng_() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = double(rng_() >> 11) * 0x1.0p-53;          // [0, 1)
    const double r = std::sqrt(-2.0 * std::log(u1)), a = 2.0 * 3.14159265358979323846 * u2;
    spare_ = r * std::sin(a);
    have_spare_ = true;
    return r * std::cos(a);
  }

 private:
  std::mt19937_64 rng_;
  double spare_ = 0;
  bool have_spare_ = false;
};

// Sets the RLA branch-norm scale gamma_rla of every rattn layer to `gain` (docs/spec.md §2.5): 0 switches
// the branch off, so the layer's output is its SWA term alone. Linear layers, whose only branch that is,
// and global layers are left as they are.
template <class S>
void set_rla_gain(const ModelConfig& m, ModelParams<S>& p, double gain) {
  if (m.local_kind != "rattn") return;
  for (int l = 0; l < m.n_layers; ++l)
    if (!m.is_global(l)) p.blocks[size_t(l)].attn.gamma_rla.setConstant(S(gain));
}

// Initial weights (seeded): norm scales 1; E ~ N(0, 1); a projection with fan-in K ~ N(0, 1/K),
// and the two that write into the residual stream (Wo, W2) further divided by sqrt(2 * n_layers)
// (GPT-2's residual scaling); W_out ~ N(0, 1/C). init_scale multiplies every standard deviation.
// rla_gain: the RLA branch-norm scales gamma_rla of rattn layers start there (linear layers, whose
// only branch that is, keep 1).
template <class S>
ModelParams<S> init_params(const ModelConfig& m, uint64_t seed, double init_scale = 1.0, double rla_gain = 1.0) {
  ModelParams<S> p = params_filled<S>(m, S(1));
  set_rla_gain(m, p, rla_gain);
  Gaussian gauss(seed);
  const double resid = 1.0 / std::sqrt(2.0 * m.n_layers);
  for (NamedTensor<S>& nt : named_tensors(m, p)) {
    if (!nt.decay && nt.name != "embed") continue;  // norm scales stay 1
    double std = 1.0 / std::sqrt(double(nt.t->rows()));  // fan-in = rows of W (in, out)
    if (nt.name == "embed") std = 1.0;
    if (nt.name.size() >= 2 && (nt.name.ends_with("attn.Wo") || nt.name.ends_with("mlp.W2"))) std *= resid;
    std *= init_scale;
    for (long i = 0; i < nt.t->size(); ++i) nt.t->data()[i] = S(std * gauss.next());
  }
  return p;
}

}  // namespace model
