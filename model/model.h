// model/model.h: the model logic, written once; every op runs through a Backend (model/backend.h).
//
// Forward of one sequence (spec §0, §1.1: block = pre-norm):
//   x_0 = E[tokens]                                 (T, C)
//   for l = 0 .. L-1:
//     a_l = RMS(x_l; norm1)                         (T, C)
//     y_l = x_l + Attn_l(a_l)                       local (swa | rattn | linear, window w) or global
//     b_l = RMS(y_l; norm2)
//     x_{l+1} = y_l + SwiGLU(b_l)
//   h = RMS(x_L; norm_f);   logits = h W_out        (T, V)
//   loss = mean cross-entropy over the scored positions (target >= 0)
// The backward walks the same list in reverse. Kept per sequence: x_l, a_l, y_l, b_l, x_L, h (4L + 2
// matrices of (T, C)) and each attention layer's cache (ref::LayerCache: q, k, v, the core's output,
// RoPE'd q and k, the branch outputs, phi(q), phi(k), the RLA chunk states and score blocks: about 12
// (T, C) matrices per layer at the default shapes) and the SwiGLU's x W1, x W3 (ref::SwiGLUCache), so
// that no backward runs its forward's matrix products again. The norms recompute their rstd (cheap).
//
// A batch is B independent sequences. batch_loss_and_grad runs them in parallel (OpenMP over
// sequences), each into its own gradient buffer, then sums the buffers in the fixed order
// b = 0, 1, ..., B-1: the result is the same bit for bit for any number of threads.
//
// Decode: DecodeState holds one ref::AttnDecodeCache per layer; decode_step feeds one token and
// returns its logits, equal to the forward's row at that position (tests/test_infer_decode.cpp).
#pragma once
#include <omp.h>

#include <cmath>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "data/tasks.h"
#include "model/backend.h"
#include "model/params.h"

namespace model {

// What the forward of one sequence keeps for its backward (reused across steps: the buffers are
// reassigned in place once their sizes are settled).
template <class S>
struct SeqActivations {
  std::vector<int> tokens, targets;        // (T)
  std::vector<Mat<S>> x, a, y, b;          // per block, (T, C) each
  std::vector<ref::LayerCache<S>> attn;    // per block: what the attention backward reads
  std::vector<ref::SwiGLUCache<S>> mlp;    // per block: x W1, x W3 of the SwiGLU
  Mat<S> x_final, h, logits, dlogits;      // (T, C), (T, C), (T, V), (T, V)
};

template <class S>
struct DecodeState {
  std::vector<ref::AttnDecodeCache<S>> caches;  // one per layer
  long t = 0;                                   // tokens fed so far
  size_t bytes() const {
    size_t n = 0;
    for (const auto& c : caches) n += c.bytes();
    return n;
  }
};

template <class S>
class Model {
 public:
  Model(const ModelConfig& cfg, const Backend<S>& backend) : cfg_(cfg), be_(backend) {
    for (int l = 0; l < cfg.n_layers; ++l) {
      attn_.push_back(attn_config(cfg, l));
      ref::validate(attn_.back());
    }
  }
  const ModelConfig& config() const { return cfg_; }
  const Backend<S>& backend() const { return be_; }
  const ref::AttnConfig& layer_attn(int l) const { return attn_[size_t(l)]; }

  // tokens: (T) -> logits (T, V). With acts, the activations the backward needs are kept there.
  Mat<S> forward(const ModelParams<S>& p, const std::vector<int>& tokens, SeqActivations<S>* acts = nullptr) const {
    SeqActivations<S> local;
    SeqActivations<S>& A = acts ? *acts : local;
    if (&tokens != &A.tokens) A.tokens = tokens;
    const S eps = S(cfg_.norm_eps);
    const size_t L = size_t(cfg_.n_layers);
    A.x.resize(L);
    A.a.resize(L);
    A.y.resize(L);
    A.b.resize(L);
    if (acts) {
      A.attn.resize(L);
      A.mlp.resize(L);
    }
    Mat<S> x = be_.embedding_forward(tokens, p.E);  // x_0 = E[tokens]
    for (size_t l = 0; l < L; ++l) {
      const BlockParams<S>& bp = p.blocks[l];
      A.x[l] = x;
      A.a[l] = be_.rmsnorm_forward(A.x[l], bp.norm1, eps);                      // a = RMS(x)
      A.y[l] = A.x[l] + be_.attention_forward(attn_[l], bp.attn, A.a[l],        // y = x + Attn(a)
                                              acts ? &A.attn[l] : nullptr);
      A.b[l] = be_.rmsnorm_forward(A.y[l], bp.norm2, eps);                      // b = RMS(y)
      x = A.y[l] + be_.swiglu_forward(A.b[l], bp.mlp, acts ? &A.mlp[l] : nullptr);  // x' = y + SwiGLU(b)
    }
    A.x_final = x;
    A.h = be_.rmsnorm_forward(A.x_final, p.norm_f, eps);  // h = RMS(x_L)
    return be_.linear_forward(A.h, p.W_out);               // logits = h W_out
  }

  // dlogits: (T, V) -> grads += d loss / d params, for the sequence whose forward filled acts.
  void backward(const ModelParams<S>& p, const SeqActivations<S>& A, const Mat<S>& dlogits,
                ModelParams<S>& g) const {
    const S eps = S(cfg_.norm_eps);
    // In the forward pass this was: logits = h W_out
    Mat<S> dh = be_.linear_backward(A.h, p.W_out, dlogits, g.W_out);
    // In the forward pass this was: h = RMS(x_L; norm_f)
    Mat<S> dx = be_.rmsnorm_backward(A.x_final, p.norm_f, eps, dh, g.norm_f);
    for (size_t l = size_t(cfg_.n_layers); l-- > 0;) {
      const BlockParams<S>& bp = p.blocks[l];
      BlockParams<S>& gb = g.blocks[l];
      // In the forward pass this was: x' = y + SwiGLU(b), b = RMS(y): dy = dx' + RMS^T(SwiGLU^T(dx'))
      Mat<S> db = be_.swiglu_backward(A.b[l], bp.mlp, dx, gb.mlp, l < A.mlp.size() ? &A.mlp[l] : nullptr);
      Mat<S> dy = dx + be_.rmsnorm_backward(A.y[l], bp.norm2, eps, db, gb.norm2);
      // In the forward pass this was: y = x + Attn(a), a = RMS(x): dx = dy + RMS^T(Attn^T(dy))
      Mat<S> da = be_.attention_backward(attn_[l], bp.attn, A.a[l], dy, gb.attn,
                                         l < A.attn.size() ? &A.attn[l] : nullptr);
      dx = dy + be_.rmsnorm_backward(A.x[l], bp.norm1, eps, da, gb.norm1);
    }
    // In the forward pass this was: x_0 = E[tokens]
    be_.embedding_backward(A.tokens, dx, g.E);
  }

  // ---- decode: one token at a time with the constant-memory caches (ref/decode.h) ----
  DecodeState<S> decode_init() const {
    DecodeState<S> st;
    for (const ref::AttnConfig& a : attn_) st.caches.push_back(be_.attention_decode_init(a));
    return st;
  }
  // token -> logits (1, V) at position st.t; advances st.
  Mat<S> decode_step(const ModelParams<S>& p, DecodeState<S>& st, int token) const {
    const S eps = S(cfg_.norm_eps);
    Mat<S> x = be_.embedding_forward(std::vector<int>{token}, p.E);  // (1, C)
    for (size_t l = 0; l < attn_.size(); ++l) {
      const BlockParams<S>& bp = p.blocks[l];
      Mat<S> y = x + be_.attention_decode_step(attn_[l], bp.attn, st.caches[l],
                                               be_.rmsnorm_forward(x, bp.norm1, eps));
      x = y + be_.swiglu_forward(be_.rmsnorm_forward(y, bp.norm2, eps), bp.mlp, nullptr);
    }
    ++st.t;
    return be_.linear_forward(be_.rmsnorm_forward(x, p.norm_f, eps), p.W_out);
  }
  // Prefill: the prompt's tokens fed in order; returns the logits of every prompt position (T0, V).
  Mat<S> prefill(const ModelParams<S>& p, DecodeState<S>& st, const std::vector<int>& prompt) const {
    Mat<S> logits(long(prompt.size()), cfg_.vocab);
    for (size_t i = 0; i < prompt.size(); ++i) logits.row(long(i)) = decode_step(p, st, prompt[i]);
    return logits;
  }

 private:
  ModelConfig cfg_;
  const Backend<S>& be_;
  std::vector<ref::AttnConfig> attn_;
};

// Buffers of one training step, allocated once: per-sequence activations and gradients.
template <class S>
struct BatchWorkspace {
  std::vector<SeqActivations<S>> acts;
  std::vector<ModelParams<S>> grads;
  std::vector<double> seq_loss;   // (B) mean loss of each sequence
  std::vector<long> seq_count;    // (B) scored positions of each sequence
  void ensure(const ModelConfig& m, int B) {
    if (int(grads.size()) == B) return;
    acts.resize(size_t(B));
    grads.assign(size_t(B), params_filled<S>(m, S(0)));
    seq_loss.assign(size_t(B), 0.0);
    seq_count.assign(size_t(B), 0);
  }
};

// Mean cross-entropy over every scored position of the batch, and (grad != nullptr) its gradient,
// ASSIGNED to *grad. Sequences run in parallel; each sequence's gradient is computed into its own
// buffer and the buffers are summed in sequence order, so the result does not depend on threads.
// Sequence b's cross_entropy gives the mean over its n_b positions; scaling its dlogits by n_b / N
// (N = all scored positions) makes the sum over b the gradient of the batch mean.
template <class S>
double batch_loss_and_grad(const Model<S>& model, const ModelParams<S>& p, const data::Batch& batch,
                           BatchWorkspace<S>& ws, std::type_identity_t<ModelParams<S>>* grad) {
  const int B = batch.B, T = batch.T;
  ws.ensure(model.config(), B);
  long N = 0;
  for (int b = 0; b < B; ++b) {
    long n = 0;
    for (int t = 0; t < T; ++t) n += batch.targets[size_t(b) * T + size_t(t)] >= 0;
    ws.seq_count[size_t(b)] = n;
    N += n;
  }
  if (N == 0) throw std::invalid_argument("batch_loss_and_grad: the batch has no scored position");
  const Backend<S>& be = model.backend();
  std::exception_ptr error = nullptr;
#pragma omp parallel for schedule(dynamic, 1)
  for (int b = 0; b < B; ++b) {
    try {
      SeqActivations<S>& A = ws.acts[size_t(b)];
      A.tokens.assign(batch.tokens.begin() + long(b) * T, batch.tokens.begin() + long(b + 1) * T);
      A.targets.assign(batch.targets.begin() + long(b) * T, batch.targets.begin() + long(b + 1) * T);
      A.logits = model.forward(p, A.tokens, &A);
      const double loss_b = double(be.cross_entropy(A.logits, A.targets, grad ? &A.dlogits : nullptr));
      ws.seq_loss[size_t(b)] = loss_b;
      if (grad) {
        A.dlogits *= S(double(ws.seq_count[size_t(b)]) / double(N));
        ModelParams<S>& g = ws.grads[size_t(b)];
        for (NamedTensor<S>& nt : named_tensors(model.config(), g)) nt.t->setZero();
        model.backward(p, A, A.dlogits, g);
      }
    } catch (...) {
#pragma omp critical
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  double loss = 0;
  for (int b = 0; b < B; ++b) loss += ws.seq_loss[size_t(b)] * double(ws.seq_count[size_t(b)]);
  loss /= double(N);
  if (grad) {
    // grad = sum_b grads[b], in the order b = 0 .. B-1, element by element (tensors in parallel).
    std::vector<NamedTensor<S>> out = named_tensors(model.config(), *grad);
    std::vector<std::vector<NamedTensor<S>>> per(static_cast<size_t>(B));
    for (int b = 0; b < B; ++b) per[size_t(b)] = named_tensors(model.config(), ws.grads[size_t(b)]);
#pragma omp parallel for schedule(dynamic, 1)
    for (long i = 0; i < long(out.size()); ++i) {
      Mat<S>& dst = *out[size_t(i)].t;
      dst = *per[0][size_t(i)].t;
      for (int b = 1; b < B; ++b) dst += *per[size_t(b)][size_t(i)].t;
    }
  }
  return loss;
}

}  // namespace model
