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
// RoPE'd q and k (and, with --qk-norm, their normalised copies, spec §2.9), the branch outputs, phi(q),
// phi(k), the RLA chunk states and score blocks: about 12 (T, C) matrices per layer at the default shapes) and the SwiGLU's x W1, x W3 (ref::SwiGLUCache), so
// that no backward runs its forward's matrix products again. The norms recompute their rstd (cheap).
//
// A batch is B independent sequences. batch_loss_and_grad runs them in parallel (OpenMP over
// sequences), each into its own gradient buffer, then sums the buffers in a fixed pairwise tree over
// the sequences (model/tree_reduce.h): the result is the same bit for bit for any number of threads,
// and for any number of ranks that each sum a power-of-two share of the batch (model/data_parallel.h).
//
// Decode: DecodeState holds one ref::AttnDecodeCache per layer; decode_step feeds one token and
// returns its logits, equal to the forward's row at that position (tests/test_infer_decode.cpp).
#pragma once
#include <omp.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <vector>

#include "data/tasks.h"
#include "model/backend.h"
#include "model/params.h"
#include "model/tree_reduce.h"

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
      Mat<S> db = be_.swiglu_backward(A.b[l], bp.mlp, dx, gb.mlp, &A.mlp[l]);
      Mat<S> dy = dx + be_.rmsnorm_backward(A.y[l], bp.norm2, eps, db, gb.norm2);
      // In the forward pass this was: y = x + Attn(a), a = RMS(x): dx = dy + RMS^T(Attn^T(dy))
      Mat<S> da = be_.attention_backward(attn_[l], bp.attn, A.a[l], dy, gb.attn, &A.attn[l]);
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

// Buffers of one training step, allocated once: per-sequence activations and gradients (one of each
// per sequence of the share the step computes).
template <class S>
struct BatchWorkspace {
  std::vector<SeqActivations<S>> acts;
  std::vector<ModelParams<S>> grads;
  std::vector<double> seq_loss;   // mean loss of each sequence
  std::vector<long> seq_count;    // (B) scored positions of each sequence of the whole batch
  void ensure(const ModelConfig& m, int B, int share) {
    seq_count.assign(size_t(B), 0);
    if (int(grads.size()) == share) return;
    acts.resize(size_t(share));
    grads.assign(size_t(share), params_filled<S>(m, S(0)));
    seq_loss.assign(size_t(share), 0.0);
  }
};

// The sequences [first, first + count) of a batch: the whole batch, or one rank's share of it, which
// must be one node of the reduction tree (count a power of two, first a multiple of count).
struct BatchShare {
  int first = 0, count = 0;
};

// What a share contributes: its node of the tree (model/tree_reduce.h).
struct ShareSums {
  double loss_sum = 0;  // tree sum over the share of n_b * loss_b (loss_b: sequence b's mean over its n_b)
  long scored = 0;      // N: the scored positions of the whole batch (the same on every rank)
};

// grad = the tree sum of the per-sequence gradients ws.grads[0 .. n-1], in parallel over (addition,
// tensor) within each level of the tree; ws.grads is overwritten (the root ends in ws.grads[0]).
template <class S>
void tree_reduce_grads(const ModelConfig& m, BatchWorkspace<S>& ws, int n, ModelParams<S>& grad) {
  std::vector<std::vector<NamedTensor<S>>> per(static_cast<size_t>(n));
  for (int b = 0; b < n; ++b) per[size_t(b)] = named_tensors(m, ws.grads[size_t(b)]);
  const long n_tensors = long(per[0].size());
  for (const std::vector<TreeAdd>& level : tree_levels(n)) {
#pragma omp parallel for schedule(dynamic, 1)
    for (long k = 0; k < long(level.size()) * n_tensors; ++k) {
      const TreeAdd& a = level[size_t(k / n_tensors)];
      const size_t i = size_t(k % n_tensors);
      *per[size_t(a.dst)][i].t += *per[size_t(a.src)][i].t;  // node dst = node dst + node src
    }
  }
  std::vector<NamedTensor<S>> out = named_tensors(m, grad);
#pragma omp parallel for schedule(dynamic, 1)
  for (long i = 0; i < n_tensors; ++i) *out[size_t(i)].t = *per[0][size_t(i)].t;
}

// Loss and gradient of one share of the batch (the whole batch: {0, B}). Sequences run in parallel,
// each into its own gradient buffer; the buffers (and the losses) are then summed in the fixed tree of
// model/tree_reduce.h, so the result does not depend on threads, and the nodes of the shares of ranks
// combine to exactly the whole batch's sums (model/data_parallel.h). With grad != nullptr the share's
// node of the gradient is ASSIGNED to *grad. Sequence b's cross_entropy gives the mean over its n_b
// positions; scaling its dlogits by n_b / N (N = scored positions of the whole batch) makes the root of
// the tree the gradient of the batch mean (spec §4.8), and the batch loss is root(loss_sum) / N.
template <class S>
ShareSums share_loss_and_grad(const Model<S>& model, const ModelParams<S>& p, const data::Batch& batch,
                              BatchShare share, BatchWorkspace<S>& ws, std::type_identity_t<ModelParams<S>>* grad) {
  const int B = batch.B, T = batch.T, n = share.count;
  const bool whole = share.first == 0 && n == B;
  if (n < 1 || share.first < 0 || share.first + n > B || (!whole && (!is_power_of_two(n) || share.first % n != 0)))
    throw std::invalid_argument("share_loss_and_grad: sequences [" + std::to_string(share.first) + ", " +
                                std::to_string(share.first + n) + ") of a batch of " + std::to_string(B) +
                                " are not one node of the reduction tree");
  ws.ensure(model.config(), B, n);
  long N = 0;
  for (int b = 0; b < B; ++b) {
    long count = 0;
    for (int t = 0; t < T; ++t) count += batch.targets[size_t(b) * T + size_t(t)] >= 0;
    ws.seq_count[size_t(b)] = count;
    N += count;
  }
  if (N == 0) throw std::invalid_argument("batch_loss_and_grad: the batch has no scored position");
  const Backend<S>& be = model.backend();
  std::exception_ptr error = nullptr;
#pragma omp parallel for schedule(dynamic, 1)
  for (int i = 0; i < n; ++i) {
    try {
      const long b = share.first + i;  // sequence b of the batch, slot i of the workspace
      SeqActivations<S>& A = ws.acts[size_t(i)];
      A.tokens.assign(batch.tokens.begin() + b * T, batch.tokens.begin() + (b + 1) * T);
      A.targets.assign(batch.targets.begin() + b * T, batch.targets.begin() + (b + 1) * T);
      A.logits = model.forward(p, A.tokens, &A);
      ws.seq_loss[size_t(i)] = double(be.cross_entropy(A.logits, A.targets, grad ? &A.dlogits : nullptr));
      if (grad) {
        A.dlogits *= S(double(ws.seq_count[size_t(b)]) / double(N));
        ModelParams<S>& g = ws.grads[size_t(i)];
        for (NamedTensor<S>& nt : named_tensors(model.config(), g)) nt.t->setZero();
        model.backward(p, A, A.dlogits, g);
      }
    } catch (...) {
#pragma omp critical
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
  std::vector<double> weighted(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i)
    weighted[size_t(i)] = ws.seq_loss[size_t(i)] * double(ws.seq_count[size_t(share.first + i)]);
  if (grad) tree_reduce_grads(model.config(), ws, n, *grad);
  return {tree_sum(weighted), N};
}

// Mean cross-entropy over every scored position of the batch, and (grad != nullptr) its gradient,
// ASSIGNED to *grad: the whole batch as one share (above).
template <class S>
double batch_loss_and_grad(const Model<S>& model, const ModelParams<S>& p, const data::Batch& batch,
                           BatchWorkspace<S>& ws, std::type_identity_t<ModelParams<S>>* grad) {
  const ShareSums s = share_loss_and_grad(model, p, batch, BatchShare{0, batch.B}, ws, grad);
  return s.loss_sum / double(s.scored);
}

}  // namespace model
