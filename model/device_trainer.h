// model/device_trainer.h: the device-resident training step (--device cuda): the model of model/model.h,
// forward and backward over the whole batch, through the hand-written fp32 kernels of cuda/.
//
// What lives on the device for the whole run (cu::DeviceBuffer, allocated once in the constructor or on
// the first step):
//   params, grads, m, v      one flat buffer each, the tensors of named_tensors() (model/params.h) in
//                            checkpoint order, each starting 16-byte aligned (the float4 kernels)
//   activations (N = B*T rows, the batch's sequences stacked): per block x_l, a_l, y_l, b_l (N, C), the
//                            two norms' rstd (N), q, k, v, c and the attention core's cache
//                            (cu::CoreDeviceCache), the SwiGLU's x W1, x W3, g (N, F); then x_L, h, rstd_f,
//                            logits, per-row losses, dlogits. Everything the backward reads is kept, not
//                            recomputed (as model/model.h keeps it per sequence).
// What crosses per step: the batch's tokens and targets go up (2 N ints); the loss (one double) and the
// gradient norm (cu::clip_grad_norm's per-block partials, 64 floats) come down. Parameters come down only
// for a checkpoint or an evaluation (download()).
//
// The step mirrors Model::forward / Model::backward line for line (the block of spec §1.1, the layer of §2.8,
// the backwards of §4); each launch carries the CPU line it is.
// Batched where the CPU runs one sequence per thread: every op takes the N stacked rows at once, the
// attention core takes (B, T) (RoPE restarts per sequence, windows never cross sequences).
//
// Reproducible: no kernel here adds floats in an order the hardware picks. A parameter gradient is one
// reduction over all N rows inside one kernel (the SGEMM's k loop for dW = x^T dy, the rmsnorm and merge
// dgamma's per-block partials added in block order, the embedding's gather in token order, RLA's value
// tiles in tile order), so the batch sum is in a fixed order that does not depend on fibers, blocks or
// threads. It is not the CPU's order (model/tree_reduce.h sums per-sequence gradients in a pairwise tree):
// the two agree to fp32 rounding, not bit for bit (tests/test_device_train.cpp measures it).
//
// Timing (bench): with a profile attached, every launch is bracketed by cudaDeviceSynchronize and timed on
// the host by kernel name; without one nothing synchronizes but the loss download.
#pragma once
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/adamw.h"
#include "cuda/attn_core_host.h"
#include "cuda/buffer.h"
#include "cuda/cross_entropy.h"
#include "cuda/elementwise.h"
#include "cuda/embedding.h"
#include "cuda/matmul.h"
#include "cuda/rmsnorm.h"
#include "cuda/swiglu.h"
#include "data/tasks.h"
#include "model/cli.h"
#include "model/config.h"
#include "model/model.h"  // BatchShare, ShareSums
#include "model/params.h"
#include "ref/optim.h"

namespace model {

// "" when the device-resident step can run this model; otherwise why not (one line, for a UsageError).
// The attention kernels (cuda/swa.cu, cuda/rla.cu, cuda/rattn_merge.cu) hold a head in registers and shared
// memory sized for D <= 128; every other flag value within its range runs.
inline std::string device_trainer_refusal(const ModelConfig& m) {
  if (m.head_dim > 128)
    return "--head-dim " + std::to_string(m.head_dim) + ": the attention kernels support head dims up to 128";
  return "";
}

class DeviceTrainer {
 public:
  // Seconds per kernel name, summed over the steps run with the profile attached.
  using Profile = std::map<std::string, double>;

  // m: the model; B sequences of T tokens per step.
  DeviceTrainer(const ModelConfig& m, int B, int T)
      : cfg_(m), B_(B), T_(T), N_(long(B) * T), shape_(params_filled<float>(m, 0.0f)) {
    if (!cu::device_available()) throw std::runtime_error("--device cuda: no CUDA device is available");
    if (const std::string why = device_trainer_refusal(m); !why.empty()) throw UsageError("--device cuda: " + why);
    if (B < 1 || T < 1) throw std::invalid_argument("DeviceTrainer: need B, T >= 1");
    // The flat layout: tensor i of named_tensors at offset off_[i], each rounded up to 4 floats.
    size_t total = 0;
    for (NamedTensor<float>& nt : named_tensors(m, shape_)) {
      slots_.push_back({total, size_t(nt.t->size()), nt.decay});
      offset_of_[nt.t] = total;
      total += (size_t(nt.t->size()) + 3) / 4 * 4;
    }
    n_flat_ = total;
    params_ = Buf(total);
    grads_ = Buf(total);
    m_ = Buf(total);
    v_ = Buf(total);
    for (Buf* b : {&params_, &grads_, &m_, &v_}) zero(*b);  // the padding between tensors stays 0
    const int L = m.n_layers, C = m.d_model, F = m.ffn(), V = m.vocab;
    const long nq = long(m.n_heads) * m.head_dim, nk = long(m.n_kv_heads) * m.head_dim;
    for (int l = 0; l < L; ++l) {
      attn_.push_back(attn_config(m, l));
      ref::validate(attn_.back());
      Layer ly;
      ly.x = Buf(N_ * C), ly.a = Buf(N_ * C), ly.y = Buf(N_ * C), ly.b = Buf(N_ * C);
      ly.rstd1 = Buf(N_), ly.rstd2 = Buf(N_);
      ly.q = Buf(N_ * nq), ly.k = Buf(N_ * nk), ly.v = Buf(N_ * nk), ly.c = Buf(N_ * nq);
      ly.a1 = Buf(N_ * F), ly.a3 = Buf(N_ * F), ly.g = Buf(N_ * F);
      layers_.push_back(std::move(ly));
    }
    x_final_ = Buf(N_ * C), h_ = Buf(N_ * C), rstd_f_ = Buf(N_);
    logits_ = Buf(N_ * V), dlogits_ = Buf(N_ * V), losses_ = Buf(N_);
    loss_sum_ = cu::DeviceBuffer<double>(1);
    tokens_ = cu::DeviceBuffer<int>(size_t(N_)), targets_ = cu::DeviceBuffer<int>(size_t(N_));
    tmp_ = Buf(N_ * C), dx_ = Buf(N_ * C), dy_ = Buf(N_ * C), dtmp_ = Buf(N_ * C), da_ = Buf(N_ * C);
    dxk_ = Buf(N_ * C), dxv_ = Buf(N_ * C);
    dc_ = Buf(N_ * nq), dq_ = Buf(N_ * nq), dk_ = Buf(N_ * nk), dv_ = Buf(N_ * nk);
    mlp_scratch_ = Buf(size_t(cu::swiglu_scratch_size(int(N_), F)));
  }

  DeviceTrainer(const DeviceTrainer&) = delete;  // offset_of_ points into shape_
  DeviceTrainer& operator=(const DeviceTrainer&) = delete;

  const ModelConfig& config() const { return cfg_; }
  int batch() const { return B_; }
  int seq_len() const { return T_; }
  std::string name() const {
    return cu::on_cpu_layer() ? "cuda (device-resident step; fp32 kernels on the CPU execution layer)"
                              : "cuda (device-resident step, fp32 kernels)";
  }
  void attach_profile(Profile* p) { profile_ = p; }

  // Host <-> device: the parameters and the AdamW moments (a new run, a resume, a checkpoint, an eval).
  void upload(ModelParams<float>& p, ModelParams<float>& m, ModelParams<float>& v) {
    put(p, params_);
    put(m, m_);
    put(v, v_);
  }
  void download(ModelParams<float>& p, ModelParams<float>& m, ModelParams<float>& v) const {
    get(params_, p);
    get(m_, m);
    get(v_, v);
  }
  // The gradient of the last loss_and_grad (after clip, if clipped): for tests.
  void download_grads(ModelParams<float>& g) const { get(grads_, g); }

  // Bytes of device memory held (data only, not the guard bands): what the bench reports.
  size_t bytes_held() const {
    size_t n = 4 * n_flat_ * sizeof(float) + (logits_.size() * 2 + losses_.size() + x_final_.size() * 2 + rstd_f_.size() +
                                              tmp_.size() * 7 + dc_.size() * 2 + dk_.size() * 2 +
                                              mlp_scratch_.size()) * sizeof(float);
    n += (tokens_.size() + targets_.size()) * sizeof(int) + sizeof(double);
    for (const Layer& ly : layers_) {
      n += (ly.x.size() * 4 + ly.rstd1.size() * 2 + ly.q.size() * 2 + ly.k.size() * 2 + ly.a1.size() * 3) *
           sizeof(float);
      const cu::CoreDeviceCache& c = ly.cache;
      n += (c.q_rope.size() + c.k_rope.size() + c.o_swa.size() + c.lse.size() + c.rstd_swa.size() +
            c.o_rla.size() + c.states.size() + c.rstd_rla.size()) * sizeof(float);
    }
    const cu::CoreDeviceWork& w = work_;
    n += (w.delta.size() + w.do_swa.size() + w.do_rla.size() + w.merge_scratch.size() + w.rla_scratch.size() +
          w.dq_rope.size() + w.dk_rope.size() + w.dq_rla.size() + w.dk_rla.size() + w.dv_rla.size()) * sizeof(float);
    return n;
  }

  // The batch (B sequences of T) -> mean cross-entropy over its scored positions; the gradient of that
  // mean is ASSIGNED to the device gradient buffer (as batch_loss_and_grad assigns *grad).
  double loss_and_grad(const data::Batch& batch) {
    const ShareSums s = share_loss_and_grad(batch, {0, batch.B});
    return s.loss_sum / double(s.scored);
  }

  // One rank's share of a data-parallel step (model/device_reduce.h): the sequences [first, first + count)
  // of the whole batch, count = this trainer's B. Returns the share's loss sum and the whole batch's
  // scored positions N; the device gradient buffer holds the share's part of the gradient of the whole
  // batch's mean loss (each row's dlogits scaled by 1/N), so the ranks' buffers add up to that gradient.
  ShareSums share_loss_and_grad(const data::Batch& batch, BatchShare share) {
    if (share.count != B_ || batch.T != T_ || share.first < 0 || share.first + share.count > batch.B)
      throw std::invalid_argument("DeviceTrainer: sequences [" + std::to_string(share.first) + ", " +
                                  std::to_string(share.first + share.count) + ") of a batch of " +
                                  std::to_string(batch.B) + " x " + std::to_string(batch.T) + " for a trainer of " +
                                  std::to_string(B_) + " x " + std::to_string(T_));
    long scored = 0;  // N of share_loss_and_grad: the scored positions of the whole batch
    for (int t : batch.targets) scored += t >= 0;
    const size_t from = size_t(share.first) * size_t(T_), to = from + size_t(N_);
    for (size_t i = from; i < to; ++i)
      if (const int t = batch.tokens[i]; t < 0 || t >= cfg_.vocab)  // the kernel would write NaN rows
        throw std::out_of_range("embedding: token " + std::to_string(t) + " outside [0, " +
                                std::to_string(cfg_.vocab) + ")");
    if (scored == 0) throw std::invalid_argument("batch_loss_and_grad: the batch has no scored position");
    tokens_.upload(batch.tokens.data() + from, size_t(N_));
    targets_.upload(batch.targets.data() + from, size_t(N_));
    forward();
    const int V = cfg_.vocab;
    // loss = (1/N) sum_b n_b loss_b = (1/N) sum over every scored row of its cross-entropy (spec §4.8)
    run("cross_entropy_forward", [&] { cu::cross_entropy_forward(logits_.data(), targets_.data(), losses_.data(), int(N_), V); });
    run("sum_ordered", [&] { cu::sum_ordered(losses_.data(), N_, loss_sum_.data()); });
    // dlogits of sequence b: (softmax - onehot) / n_b scaled by n_b / N, i.e. (softmax - onehot) / N
    run("cross_entropy_backward", [&] {
      cu::cross_entropy_backward(logits_.data(), targets_.data(), float(1.0 / double(scored)), dlogits_.data(),
                                 int(N_), V);
    });
    run("zero_grads", [&] { zero(grads_); });  // the kernels below accumulate (+=) into the gradients
    backward();
    ShareSums out;
    cu::check(cudaMemcpy(&out.loss_sum, loss_sum_.data(), sizeof(double), cudaMemcpyDeviceToHost), "DeviceTrainer: loss");
    out.scored = scored;
    return out;
  }

  // The flat device gradient (named_tensors order, zero padding between tensors): what the ranks all-reduce.
  float* grads_device() { return grads_.data(); }
  long grads_size() const { return long(n_flat_); }

  // Zero the gradient of every tensor whose name ends with suffix (a tensor held out of an update).
  void zero_grads_ending(const std::string& suffix) {
    run("zero_grads", [&] {
      for (NamedTensor<float>& nt : named_tensors(cfg_, shape_))
        if (nt.name.ends_with(suffix))
          cu::check(cudaMemset(G(*nt.t), 0, size_t(nt.t->size()) * sizeof(float)), "DeviceTrainer: cudaMemset");
    });
  }

  // Global gradient norm (cu::clip_grad_norm over the flat gradient buffer); scaled to max_norm when above.
  float clip_grad_norm(float max_norm) {
    float* g = grads_.data();
    const long n = long(n_flat_);
    float norm = 0;
    run("clip_grad_norm", [&] { norm = cu::clip_grad_norm(&g, &n, 1, max_norm); });
    return norm;
  }

  // One AdamW update of every tensor (decay as named_tensors says), step 1-based (spec §4.9).
  void adamw_step(long step, const ref::AdamW& a) {
    const cu::AdamW c{a.lr, a.beta1, a.beta2, a.eps, a.weight_decay};
    run("adamw", [&] {
      for (const Slot& s : slots_)
        cu::adamw_step(params_.data() + s.off, grads_.data() + s.off, m_.data() + s.off, v_.data() + s.off,
                       long(s.n), step, c, s.decay);
    });
  }

 private:
  using Buf = cu::DeviceBuffer<float>;
  struct Slot {
    size_t off, n;
    bool decay;
  };
  struct Layer {
    Buf x{0}, a{0}, y{0}, b{0}, rstd1{0}, rstd2{0};  // (N, C) each; rstd (N)
    Buf q{0}, k{0}, v{0}, c{0};                      // (N, H*D), (N, G*D), (N, G*D), (N, H*D)
    Buf a1{0}, a3{0}, g{0};                          // SwiGLU: x W1, x W3, silu(x W1) * x W3 (N, F)
    cu::CoreDeviceCache cache;
  };

  // Device pointer of a tensor of shape_ (the parameter, or with base = grads_ its gradient); null for a
  // tensor the model does not list (a branch scale of a layer without that branch).
  float* at(Buf& base, const Mat<float>& t) {
    auto it = offset_of_.find(&t);
    return it == offset_of_.end() ? nullptr : base.data() + it->second;
  }
  float* P(const Mat<float>& t) { return at(params_, t); }
  float* G(const Mat<float>& t) { return at(grads_, t); }

  // Model::forward over the N stacked rows (the comments are its lines; spec §1.1, §2.1, §2.2, §2.3, §2.5).
  // tokens_: (N) -> logits_: (N, V); keeps x, a, y, b, rstd1, rstd2, q, k, v, c, the core cache, a1, a3, g
  // per block and x_L, h, rstd_f.
  void forward() {
    const int C = cfg_.d_model, F = cfg_.ffn(), V = cfg_.vocab, nq = cfg_.n_heads * cfg_.head_dim,
              nk = cfg_.n_kv_heads * cfg_.head_dim, n = int(N_);
    const float eps = float(cfg_.norm_eps);
    // x = be_.embedding_forward(tokens, p.E);  // x_0 = E[tokens]
    run("embedding_forward", [&] { cu::embedding_forward(tokens_.data(), P(shape_.E), layers_[0].x.data(), n, V, C); });
    for (size_t l = 0; l < layers_.size(); ++l) {
      const BlockParams<float>& bp = shape_.blocks[l];
      Layer& A = layers_[l];
      // A.a[l] = be_.rmsnorm_forward(A.x[l], bp.norm1, eps);   a = RMS(x)
      run("rmsnorm_forward", [&] { cu::rmsnorm_forward(A.x.data(), P(bp.norm1), A.a.data(), A.rstd1.data(), n, C, eps); });
      // A.y[l] = A.x[l] + be_.attention_forward(attn_[l], bp.attn, A.a[l], ...);   y = x + Attn(a):
      //   q = a W_Q, k = a W_K, v = a W_V; c = core(q, k, v); y = x + c W_O  (ref::attention_layer_forward)
      run("linear_forward", [&] { cu::linear_forward(A.a.data(), P(bp.attn.Wq), A.q.data(), n, C, nq); });
      run("linear_forward", [&] { cu::linear_forward(A.a.data(), P(bp.attn.Wk), A.k.data(), n, C, nk); });
      run("linear_forward", [&] { cu::linear_forward(A.a.data(), P(bp.attn.Wv), A.v.data(), n, C, nk); });
      run(core_name(attn_[l], "forward"), [&] {
        cu::attn_core_forward_dev(attn_[l], A.q.data(), A.k.data(), A.v.data(), P(bp.attn.gamma_swa),
                                  P(bp.attn.gamma_rla), A.c.data(), B_, T_, A.cache, P(bp.attn.q_norm),
                                  P(bp.attn.k_norm));
      });
      run("linear_forward", [&] { cu::linear_forward(A.c.data(), P(bp.attn.Wo), tmp_.data(), n, nq, C); });
      run("add", [&] { cu::add(A.x.data(), tmp_.data(), A.y.data(), N_ * C); });
      // A.b[l] = be_.rmsnorm_forward(A.y[l], bp.norm2, eps);   b = RMS(y)
      run("rmsnorm_forward", [&] { cu::rmsnorm_forward(A.y.data(), P(bp.norm2), A.b.data(), A.rstd2.data(), n, C, eps); });
      // x = A.y[l] + be_.swiglu_forward(A.b[l], bp.mlp, &A.mlp[l]);   x' = y + SwiGLU(b)
      float* x_next = l + 1 < layers_.size() ? layers_[l + 1].x.data() : x_final_.data();
      run("swiglu_forward", [&] {
        cu::swiglu_forward(A.b.data(), P(bp.mlp.W1), P(bp.mlp.W3), P(bp.mlp.W2), A.a1.data(), A.a3.data(), A.g.data(),
                           tmp_.data(), n, C, F);
      });
      run("add", [&] { cu::add(A.y.data(), tmp_.data(), x_next, N_ * C); });
    }
    // A.h = be_.rmsnorm_forward(A.x_final, p.norm_f, eps);  // h = RMS(x_L)
    run("rmsnorm_forward", [&] { cu::rmsnorm_forward(x_final_.data(), P(shape_.norm_f), h_.data(), rstd_f_.data(), n, C, eps); });
    // return be_.linear_forward(A.h, p.W_out);   logits = h W_out
    run("linear_forward", [&] { cu::linear_forward(h_.data(), P(shape_.W_out), logits_.data(), n, C, V); });
  }

  // Model::backward over the N stacked rows (the comments are its lines; spec §4.1, §4.3, §4.5, §4.6,
  // §4.7); gradients accumulate (+=). dlogits_: (N, V) and what forward() kept -> grads_ (every tensor of
  // named_tensors).
  void backward() {
    const int C = cfg_.d_model, F = cfg_.ffn(), V = cfg_.vocab, nq = cfg_.n_heads * cfg_.head_dim,
              nk = cfg_.n_kv_heads * cfg_.head_dim, n = int(N_);
    // In the forward pass this was: logits = h W_out
    //   Mat<S> dh = be_.linear_backward(A.h, p.W_out, dlogits, g.W_out);   (dh in dtmp_)
    run("linear_backward", [&] {
      cu::linear_backward(h_.data(), P(shape_.W_out), dlogits_.data(), dtmp_.data(), G(shape_.W_out), n, C, V);
    });
    // In the forward pass this was: h = RMS(x_L; norm_f)
    //   Mat<S> dx = be_.rmsnorm_backward(A.x_final, p.norm_f, eps, dh, g.norm_f);
    run("rmsnorm_backward", [&] {
      cu::rmsnorm_backward(x_final_.data(), P(shape_.norm_f), rstd_f_.data(), dtmp_.data(), dx_.data(),
                           G(shape_.norm_f), n, C);
    });
    for (size_t l = layers_.size(); l-- > 0;) {
      const BlockParams<float>& bp = shape_.blocks[l];
      Layer& A = layers_[l];
      // In the forward pass this was: x' = y + SwiGLU(b), b = RMS(y): dy = dx' + RMS^T(SwiGLU^T(dx'))
      //   Mat<S> db = be_.swiglu_backward(A.b[l], bp.mlp, dx, gb.mlp, &A.mlp[l]);   (db in tmp_)
      run("swiglu_backward", [&] {
        cu::swiglu_backward(A.b.data(), P(bp.mlp.W1), P(bp.mlp.W3), P(bp.mlp.W2), A.a1.data(), A.a3.data(),
                            A.g.data(), dx_.data(), tmp_.data(), G(bp.mlp.W1), G(bp.mlp.W3), G(bp.mlp.W2),
                            mlp_scratch_.data(), n, C, F);
      });
      //   Mat<S> dy = dx + be_.rmsnorm_backward(A.y[l], bp.norm2, eps, db, gb.norm2);
      run("rmsnorm_backward", [&] {
        cu::rmsnorm_backward(A.y.data(), P(bp.norm2), A.rstd2.data(), tmp_.data(), dtmp_.data(), G(bp.norm2), n, C);
      });
      run("add", [&] { cu::add(dx_.data(), dtmp_.data(), dy_.data(), N_ * C); });
      // In the forward pass this was: y = x + Attn(a), a = RMS(x): dx = dy + RMS^T(Attn^T(dy))
      //   Mat<S> da = be_.attention_backward(attn_[l], bp.attn, A.a[l], dy, gb.attn, &A.attn[l]);
      //   (ref::attention_layer_backward: y = c W_O, c = core(q, k, v), q = a W_Q, k = a W_K, v = a W_V)
      run("linear_backward", [&] { cu::linear_backward(A.c.data(), P(bp.attn.Wo), dy_.data(), dc_.data(), G(bp.attn.Wo), n, nq, C); });
      run(core_name(attn_[l], "backward"), [&] {
        cu::attn_core_backward_dev(attn_[l], A.q.data(), A.k.data(), A.v.data(), P(bp.attn.gamma_swa),
                                   P(bp.attn.gamma_rla), dc_.data(), dq_.data(), dk_.data(), dv_.data(),
                                   G(bp.attn.gamma_swa), G(bp.attn.gamma_rla), B_, T_, A.cache, P(bp.attn.q_norm),
                                   P(bp.attn.k_norm), G(bp.attn.q_norm), G(bp.attn.k_norm), &work_);
      });
      run("linear_backward", [&] { cu::linear_backward(A.a.data(), P(bp.attn.Wq), dq_.data(), da_.data(), G(bp.attn.Wq), n, C, nq); });
      run("linear_backward", [&] { cu::linear_backward(A.a.data(), P(bp.attn.Wk), dk_.data(), dxk_.data(), G(bp.attn.Wk), n, C, nk); });
      run("linear_backward", [&] { cu::linear_backward(A.a.data(), P(bp.attn.Wv), dv_.data(), dxv_.data(), G(bp.attn.Wv), n, C, nk); });
      // a feeds q, k and v: da = dx_q + dx_k + dx_v, in this order (as ref::attention_layer_backward)
      run("add", [&] { cu::add(da_.data(), dxk_.data(), da_.data(), N_ * C); });
      run("add", [&] { cu::add(da_.data(), dxv_.data(), da_.data(), N_ * C); });
      //   dx = dy + be_.rmsnorm_backward(A.x[l], bp.norm1, eps, da, gb.norm1);
      run("rmsnorm_backward", [&] {
        cu::rmsnorm_backward(A.x.data(), P(bp.norm1), A.rstd1.data(), da_.data(), dtmp_.data(), G(bp.norm1), n, C);
      });
      run("add", [&] { cu::add(dy_.data(), dtmp_.data(), dx_.data(), N_ * C); });
    }
    // In the forward pass this was: x_0 = E[tokens]
    //   be_.embedding_backward(A.tokens, dx, g.E);
    run("embedding_backward", [&] { cu::embedding_backward(tokens_.data(), dx_.data(), G(shape_.E), n, V, C); });
  }

  static std::string core_name(const ref::AttnConfig& a, const char* dir) {
    return std::string("attn_core_") + (a.global ? "global" : ref::to_string(a.kind)) + "_" + dir;
  }

  // Launch (or launches) f; with a profile attached, synchronized and timed under name.
  template <class Fn>
  void run(const std::string& name, Fn&& f) {
    if (!profile_) {
      f();
      return;
    }
    cu::check(cudaDeviceSynchronize(), "DeviceTrainer: synchronize");
    const auto t0 = std::chrono::steady_clock::now();
    f();
    cu::check(cudaDeviceSynchronize(), "DeviceTrainer: synchronize");
    (*profile_)[name] += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  static void zero(Buf& b) {
    if (b.size()) cu::check(cudaMemset(b.data(), 0, b.size() * sizeof(float)), "DeviceTrainer: cudaMemset");
  }
  // host tensors (named_tensors order) <-> a flat device buffer
  void put(ModelParams<float>& p, Buf& dst) {
    std::vector<float> host(n_flat_, 0.0f);
    size_t i = 0;
    for (NamedTensor<float>& nt : named_tensors(cfg_, p)) {
      if (size_t(nt.t->size()) != slots_[i].n) throw std::invalid_argument("DeviceTrainer: tensor " + nt.name + " has the wrong shape");
      std::memcpy(host.data() + slots_[i].off, nt.t->data(), slots_[i].n * sizeof(float));
      ++i;
    }
    dst.upload(host);
  }
  void get(const Buf& src, ModelParams<float>& p) const {
    const std::vector<float> host = src.download();
    size_t i = 0;
    for (NamedTensor<float>& nt : named_tensors(cfg_, p)) {
      if (size_t(nt.t->size()) != slots_[i].n) throw std::invalid_argument("DeviceTrainer: tensor " + nt.name + " has the wrong shape");
      std::memcpy(nt.t->data(), host.data() + slots_[i].off, slots_[i].n * sizeof(float));
      ++i;
    }
  }

  ModelConfig cfg_;
  int B_, T_;
  long N_;
  ModelParams<float> shape_;                 // host tensors of the right shapes: keys of offset_of_
  std::map<const Mat<float>*, size_t> offset_of_;
  std::vector<Slot> slots_;
  size_t n_flat_ = 0;
  std::vector<ref::AttnConfig> attn_;
  Buf params_{0}, grads_{0}, m_{0}, v_{0};
  std::vector<Layer> layers_;
  Buf x_final_{0}, h_{0}, rstd_f_{0}, logits_{0}, dlogits_{0}, losses_{0};
  cu::DeviceBuffer<double> loss_sum_{0};
  cu::DeviceBuffer<int> tokens_{0}, targets_{0};
  Buf tmp_{0}, dx_{0}, dy_{0}, dtmp_{0}, da_{0}, dxk_{0}, dxv_{0}, dc_{0}, dq_{0}, dk_{0}, dv_{0}, mlp_scratch_{0};
  cu::CoreDeviceWork work_;
  Profile* profile_ = nullptr;
};

}  // namespace model
