// model/backend_cuda.h: the kernel checker (train_tiny --device cuda-ops, infer --device cuda): every op of
// model/backend.h through the hand-written fp32 kernels of cuda/ (float only). Training on a GPU is
// model/device_trainer.h (train_tiny --device cuda), which keeps everything on the device.
//
// The simple design, not the fast one: each call uploads its inputs to device buffers, runs the
// kernels, downloads the results and frees the buffers. Nothing stays on the device between calls
// (parameters, activations, optimizer moments all live in the host Mat<float>s the model owns), so the
// model logic of model/model.h is unchanged and the CPU and CUDA paths are one model. A fast backend
// would keep parameters and activations resident; this one is for checking the kernels in a model.
// In the default build the kernels run on the CPU execution layer (cuda/emu: slow, tiny shapes only).
//
// What is recomputed rather than kept between a forward and its backward (the Backend interface passes
// only the saved input): rmsnorm_backward reruns the forward for rstd, swiglu_backward for a, b, g, and
// attention_backward the projections and the core (as ref::attention_layer_backward does).
// Decode (attention_decode_*) falls back to the reference decode of ref/decode.h: it is one token
// at a time with ring buffers and RLA states, for which there is no kernel.
// Calls are serialized by a mutex: model::batch_loss_and_grad runs sequences on OpenMP threads, and
// the kernels of one call must not interleave with another's.
// Reproducible: no kernel used here adds floats in an order the hardware picks (no float atomics; the
// backwards that sum over blocks, RLA over value tiles and the merge's dgamma, add per-block partials in
// a fixed order, and the embedding backward is the deterministic gather, v2). The same seed gives the same
// losses and checkpoints bit for bit on every run; tests/test_cuda_backend.cpp checks it across the fiber
// and block orders of the CPU execution layer.
#pragma once
#include <algorithm>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/adamw.h"
#include "cuda/attn_core_host.h"
#include "cuda/buffer.h"
#include "cuda/cross_entropy.h"
#include "cuda/embedding.h"
#include "cuda/matmul.h"
#include "cuda/rmsnorm.h"
#include "cuda/swiglu.h"
#include "model/backend.h"
#include "ref/decode.h"

namespace model {

namespace cuda_detail {

using Buf = cu::DeviceBuffer<float>;

// m: (r, c) row-major -> device buffer of r*c floats
inline Buf upload(const Mat<float>& m) {
  Buf b(size_t(m.size()));
  if (m.size() > 0) b.upload(m.data(), size_t(m.size()));
  return b;
}
// device buffer of r*c floats -> (r, c)
inline Mat<float> download(const Buf& b, long r, long c) {
  Mat<float> m(r, c);
  if (r * c > 0) {
    const std::vector<float> h = b.download();
    std::copy(h.begin(), h.begin() + r * c, m.data());
  }
  return m;
}
// m (r, c) <- device buffer (m keeps its shape)
inline void download_into(const Buf& b, Mat<float>& m) {
  if (m.size() == 0) return;
  const std::vector<float> h = b.download();
  std::copy(h.begin(), h.begin() + m.size(), m.data());
}
inline cu::DeviceBuffer<int> upload_ints(const std::vector<int>& v) {
  cu::DeviceBuffer<int> b(v.size());
  if (!v.empty()) b.upload(v);
  return b;
}

}  // namespace cuda_detail

class CudaOpsBackend final : public Backend<float> {
 public:
  CudaOpsBackend() {
    if (!cu::device_available()) throw std::runtime_error("--device cuda-ops: no CUDA device is available");
  }
  std::string name() const override {
    return cu::on_cpu_layer() ? "cuda (fp32 kernels on the CPU execution layer)" : "cuda (fp32 kernels)";
  }

  // tokens: (T) -> (T, C) rows of E (V, C)
  Mat<float> embedding_forward(const std::vector<int>& tokens, const Mat<float>& E) const override {
    using namespace cuda_detail;
    std::lock_guard<std::mutex> lock(mu_);
    check_tokens(tokens, E.rows());  // the kernel cannot throw (it writes NaN); ref::embedding_forward does
    const int N = int(tokens.size()), V = int(E.rows()), C = int(E.cols());
    const cu::DeviceBuffer<int> tok = upload_ints(tokens);
    const Buf e = upload(E);
    Buf x(size_t(N) * C);
    cu::embedding_forward(tok.data(), e.data(), x.data(), N, V, C);
    return download(x, N, C);
  }
  // dy: (T, C); dE: (V, C) +=
  void embedding_backward(const std::vector<int>& tokens, const Mat<float>& dy, Mat<float>& dE) const override {
    using namespace cuda_detail;
    std::lock_guard<std::mutex> lock(mu_);
    check_tokens(tokens, dE.rows());
    const int N = int(tokens.size()), V = int(dE.rows()), C = int(dE.cols());
    const cu::DeviceBuffer<int> tok = upload_ints(tokens);
    const Buf d = upload(dy);
    Buf de = upload(dE);  // the kernel accumulates into dE
    cu::embedding_backward(tok.data(), d.data(), de.data(), N, V, C);
    download_into(de, dE);
  }

  // x: (T, C), gamma: (1, C) -> (T, C)
  Mat<float> rmsnorm_forward(const Mat<float>& x, const Mat<float>& gamma, float eps) const override {
    using namespace cuda_detail;
    std::lock_guard<std::mutex> lock(mu_);
    const int N = int(x.rows()), C = int(x.cols());
    const Buf xb = upload(x), g = upload(gamma);
    Buf y(size_t(N) * C), rstd{size_t(N)};
    cu::rmsnorm_forward(xb.data(), g.data(), y.data(), rstd.data(), N, C, eps);
    return download(y, N, C);
  }
  // returns dx (T, C); dgamma (1, C) +=
  Mat<float> rmsnorm_backward(const Mat<float>& x, const Mat<float>& gamma, float eps, const Mat<float>& dy,
                              Mat<float>& dgamma) const override {
    using namespace cuda_detail;
    std::lock_guard<std::mutex> lock(mu_);
    const int N = int(x.rows()), C = int(x.cols());
    const Buf xb = upload(x), g = upload(gamma), d = upload(dy);
    // The forward again, for rstd (the interface keeps only x).
    Buf y(size_t(N) * C), rstd{size_t(N)};
    cu::rmsnorm_forward(xb.data(), g.data(), y.data(), rstd.data(), N, C, eps);
    // In the forward pass this was: y = x * rstd * gamma
    Buf dx(size_t(N) * C), dg = upload(dgamma);
    cu::rmsnorm_backward(xb.data(), g.data(), rstd.data(), d.data(), dx.data(), dg.data(), N, C);
    download_into(dg, dgamma);
    return download(dx, N, C);
  }

  // x: (T, C) -> (T, C): y = core(x W_Q, x W_K, x W_V) W_O
  // keep / kept: unused; this backend keeps nothing between calls (see the header comment).
  Mat<float> attention_forward(const ref::AttnConfig& cfg, const ref::AttnParams<float>& p, const Mat<float>& x,
                               ref::LayerCache<float>* /*keep*/) const override {
    std::lock_guard<std::mutex> lock(mu_);
    LayerDevice L(cfg, p, x);
    return cuda_detail::download(L.y, L.T, L.C);
  }
  // returns dx (T, C); dp +=
  Mat<float> attention_backward(const ref::AttnConfig& cfg, const ref::AttnParams<float>& p, const Mat<float>& x,
                                const Mat<float>& dy, ref::AttnParams<float>& dp,
                                const ref::LayerCache<float>* /*kept*/) const override {
    using namespace cuda_detail;
    std::lock_guard<std::mutex> lock(mu_);
    LayerDevice L(cfg, p, x);  // the forward again, keeping q, k, v, c and the core's cache
    const int T = L.T, C = L.C, nq = cfg.H * cfg.D, nk = cfg.G * cfg.D;
    const Buf d = upload(dy);
    Buf dWo = upload(dp.Wo), dWq = upload(dp.Wq), dWk = upload(dp.Wk), dWv = upload(dp.Wv);
    Buf dgs = upload(dp.gamma_swa), dgr = upload(dp.gamma_rla);
    const bool qkn = ref::has_qk_norm(cfg);  // qk-norm scales' gradients (spec §2.9), accumulated by the kernel
    Buf dqn = qkn ? upload(dp.q_norm) : Buf{0}, dkn = qkn ? upload(dp.k_norm) : Buf{0};
    // In the forward pass this was: y = c W_O
    Buf dc(size_t(T) * nq);
    cu::linear_backward(L.c.data(), L.Wo.data(), d.data(), dc.data(), dWo.data(), T, nq, C);
    // In the forward pass this was: c = attn_core_forward(cfg, q, k, v, gamma_swa, gamma_rla)
    Buf dq(size_t(T) * nq), dk(size_t(T) * nk), dv(size_t(T) * nk);
    cu::attn_core_backward_dev(cfg, L.q.data(), L.k.data(), L.v.data(), L.gs.data(), L.gr.data(), dc.data(), dq.data(),
                               dk.data(), dv.data(), dgs.data(), dgr.data(), 1, T, L.cache, L.qn_ptr(), L.kn_ptr(),
                               qkn ? dqn.data() : nullptr, qkn ? dkn.data() : nullptr);
    // In the forward pass this was: q = x W_Q, k = x W_K, v = x W_V (x feeds all three: dx adds)
    Buf dxq(size_t(T) * C), dxk(size_t(T) * C), dxv(size_t(T) * C);
    cu::linear_backward(L.x.data(), L.Wq.data(), dq.data(), dxq.data(), dWq.data(), T, C, nq);
    cu::linear_backward(L.x.data(), L.Wk.data(), dk.data(), dxk.data(), dWk.data(), T, C, nk);
    cu::linear_backward(L.x.data(), L.Wv.data(), dv.data(), dxv.data(), dWv.data(), T, C, nk);
    download_into(dWo, dp.Wo);
    download_into(dWq, dp.Wq);
    download_into(dWk, dp.Wk);
    download_into(dWv, dp.Wv);
    download_into(dgs, dp.gamma_swa);
    download_into(dgr, dp.gamma_rla);
    if (qkn) {
      download_into(dqn, dp.q_norm);
      download_into(dkn, dp.k_norm);
    }
    // dx = dx_q + dx_k + dx_v, in this order (as ref::attention_layer_backward)
    Mat<float> dx = download(dxq, T, C);
    dx += download(dxk, T, C);
    dx += download(dxv, T, C);
    return dx;
  }
  // Decode: the reference decode of ref/decode.h (no kernel for one-token steps; see the header comment).
  ref::AttnDecodeCache<float> attention_decode_init(const ref::AttnConfig& cfg) const override {
    return ref::attn_decode_init<float>(cfg);
  }
  Mat<float> attention_decode_step(const ref::AttnConfig& cfg, const ref::AttnParams<float>& p,
                                   ref::AttnDecodeCache<float>& cache, const Mat<float>& x_t) const override {
    return ref::attention_layer_decode_step(cfg, p, cache, x_t);
  }

  // x: (T, C) -> (T, C): y = (silu(x W1) * (x W3)) W2
  // keep / kept: unused (this backend keeps nothing between calls)
  Mat<float> swiglu_forward(const Mat<float>& x, const ref::SwiGLUParams<float>& p,
                            ref::SwiGLUCache<float>* /*keep*/) const override {
    using namespace cuda_detail;
    std::lock_guard<std::mutex> lock(mu_);
    const int N = int(x.rows()), C = int(x.cols()), F = int(p.W1.cols());
    const Buf xb = upload(x), W1 = upload(p.W1), W3 = upload(p.W3), W2 = upload(p.W2);
    Buf a(size_t(N) * F), b(size_t(N) * F), g(size_t(N) * F), y(size_t(N) * C);
    cu::swiglu_forward(xb.data(), W1.data(), W3.data(), W2.data(), a.data(), b.data(), g.data(), y.data(), N, C, F);
    return download(y, N, C);
  }
  // returns dx (T, C); dp +=
  Mat<float> swiglu_backward(const Mat<float>& x, const ref::SwiGLUParams<float>& p, const Mat<float>& dy,
                             ref::SwiGLUParams<float>& dp, const ref::SwiGLUCache<float>* /*kept*/) const override {
    using namespace cuda_detail;
    std::lock_guard<std::mutex> lock(mu_);
    const int N = int(x.rows()), C = int(x.cols()), F = int(p.W1.cols());
    const Buf xb = upload(x), W1 = upload(p.W1), W3 = upload(p.W3), W2 = upload(p.W2), d = upload(dy);
    // The forward again, for a, b, g (the interface keeps only x).
    Buf a(size_t(N) * F), b(size_t(N) * F), g(size_t(N) * F), y(size_t(N) * C);
    cu::swiglu_forward(xb.data(), W1.data(), W3.data(), W2.data(), a.data(), b.data(), g.data(), y.data(), N, C, F);
    // In the forward pass this was: y = (silu(x W1) * (x W3)) W2
    Buf dx(size_t(N) * C), dW1 = upload(dp.W1), dW3 = upload(dp.W3), dW2 = upload(dp.W2);
    Buf scratch(size_t(cu::swiglu_scratch_size(N, F)));
    cu::swiglu_backward(xb.data(), W1.data(), W3.data(), W2.data(), a.data(), b.data(), g.data(), d.data(), dx.data(),
                        dW1.data(), dW3.data(), dW2.data(), scratch.data(), N, C, F);
    download_into(dW1, dp.W1);
    download_into(dW3, dp.W3);
    download_into(dW2, dp.W2);
    return download(dx, N, C);
  }

  // x: (T, K), W: (K, N) -> (T, N)
  Mat<float> linear_forward(const Mat<float>& x, const Mat<float>& W) const override {
    using namespace cuda_detail;
    std::lock_guard<std::mutex> lock(mu_);
    const int T = int(x.rows()), K = int(W.rows()), N = int(W.cols());
    const Buf xb = upload(x), Wb = upload(W);
    Buf y(size_t(T) * N);
    cu::linear_forward(xb.data(), Wb.data(), y.data(), T, K, N);
    return download(y, T, N);
  }
  // returns dx (T, K); dW (K, N) +=
  Mat<float> linear_backward(const Mat<float>& x, const Mat<float>& W, const Mat<float>& dy,
                             Mat<float>& dW) const override {
    using namespace cuda_detail;
    std::lock_guard<std::mutex> lock(mu_);
    const int T = int(x.rows()), K = int(W.rows()), N = int(W.cols());
    const Buf xb = upload(x), Wb = upload(W), d = upload(dy);
    // In the forward pass this was: y = x W
    Buf dx(size_t(T) * K), dWb = upload(dW);
    cu::linear_backward(xb.data(), Wb.data(), d.data(), dx.data(), dWb.data(), T, K, N);
    download_into(dWb, dW);
    return download(dx, T, K);
  }

  // logits: (T, V), targets: (T) (-1 ignored) -> mean loss; dlogits (T, V) assigned when given
  float cross_entropy(const Mat<float>& logits, const std::vector<int>& targets, Mat<float>* dlogits) const override {
    using namespace cuda_detail;
    std::lock_guard<std::mutex> lock(mu_);
    const int N = int(logits.rows()), V = int(logits.cols());
    if (long(targets.size()) != N)
      throw std::invalid_argument("cross_entropy: " + std::to_string(targets.size()) + " targets for " +
                                  std::to_string(N) + " rows of logits");
    long counted = 0;
    for (int n = 0; n < N; ++n) {
      if (targets[size_t(n)] < -1 || targets[size_t(n)] >= V)
        throw std::out_of_range("cross_entropy: target " + std::to_string(targets[size_t(n)]) + " at row " +
                                std::to_string(n) + " outside [-1, " + std::to_string(V) + ")");
      counted += targets[size_t(n)] >= 0;
    }
    if (dlogits) dlogits->setZero(N, V);
    if (counted == 0) return 0.0f;
    const Buf lg = upload(logits);
    const cu::DeviceBuffer<int> tg = upload_ints(targets);
    Buf losses{size_t(N)};
    cu::cross_entropy_forward(lg.data(), tg.data(), losses.data(), N, V);
    // mean = sum(losses) / counted, the sum in double as ref::cross_entropy
    double total = 0;
    for (float l : losses.download()) total += double(l);
    if (dlogits) {
      // In the forward pass this was: loss = (1 / counted) sum_n losses[n]
      Buf dl(size_t(N) * V);
      cu::cross_entropy_backward(lg.data(), tg.data(), float(1.0 / double(counted)), dl.data(), N, V);
      download_into(dl, *dlogits);
    }
    return float(total / double(counted));
  }

  // the optimizer: one AdamW update of param, m, v in place
  void adamw_step(Mat<float>& param, const Mat<float>& grad, Mat<float>& m, Mat<float>& v, long step,
                  const ref::AdamW& cfg, bool decay) const override {
    using namespace cuda_detail;
    std::lock_guard<std::mutex> lock(mu_);
    Buf p = upload(param), mb = upload(m), vb = upload(v);
    const Buf g = upload(grad);
    const cu::AdamW c{cfg.lr, cfg.beta1, cfg.beta2, cfg.eps, cfg.weight_decay};
    cu::adamw_step(p.data(), g.data(), mb.data(), vb.data(), long(param.size()), step, c, decay);
    download_into(p, param);
    download_into(mb, m);
    download_into(vb, v);
  }
  // global norm over every gradient; scaled in place by max_norm / norm when above max_norm
  float clip_grad_norm(const std::vector<Mat<float>*>& grads, float max_norm) const override {
    using namespace cuda_detail;
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<Buf> bufs;
    std::vector<float*> ptrs;
    std::vector<long> sizes;
    bufs.reserve(grads.size());
    for (const Mat<float>* g : grads) {
      bufs.push_back(upload(*g));
      ptrs.push_back(bufs.back().data());
      sizes.push_back(long(g->size()));
    }
    const float norm = cu::clip_grad_norm(ptrs.data(), sizes.data(), int(ptrs.size()), max_norm);
    for (size_t i = 0; i < grads.size(); ++i) download_into(bufs[i], *grads[i]);
    return norm;
  }

 private:
  // One attention layer's forward on the device, kept for the backward: x, the weights, q, k, v,
  // the core output c, its cache, and y = c W_O. x: (T, C) -> y: (T, C).
  // qn, kn: the qk-norm scales (spec §2.9), uploaded only when the layer applies qk-norm.
  struct LayerDevice {
    int T, C;
    bool qkn;
    cuda_detail::Buf x, Wq, Wk, Wv, Wo, gs, gr, qn, kn, q, k, v, c, y;
    cu::CoreDeviceCache cache;
    const float* qn_ptr() const { return qkn ? qn.data() : nullptr; }
    const float* kn_ptr() const { return qkn ? kn.data() : nullptr; }
    LayerDevice(const ref::AttnConfig& cfg, const ref::AttnParams<float>& p, const Mat<float>& xin)
        : T(int(xin.rows())), C(int(xin.cols())), qkn(ref::has_qk_norm(cfg)), x(cuda_detail::upload(xin)),
          Wq(cuda_detail::upload(p.Wq)), Wk(cuda_detail::upload(p.Wk)), Wv(cuda_detail::upload(p.Wv)),
          Wo(cuda_detail::upload(p.Wo)), gs(cuda_detail::upload(p.gamma_swa)), gr(cuda_detail::upload(p.gamma_rla)),
          qn(qkn ? cuda_detail::upload(p.q_norm) : cuda_detail::Buf{0}),
          kn(qkn ? cuda_detail::upload(p.k_norm) : cuda_detail::Buf{0}),
          q(size_t(T) * cfg.H * cfg.D), k(size_t(T) * cfg.G * cfg.D), v(size_t(T) * cfg.G * cfg.D),
          c(size_t(T) * cfg.H * cfg.D), y(size_t(T) * C) {
      const int nq = cfg.H * cfg.D, nk = cfg.G * cfg.D;
      // q = x W_Q, k = x W_K, v = x W_V   (spec §2.1)
      cu::linear_forward(x.data(), Wq.data(), q.data(), T, C, nq);
      cu::linear_forward(x.data(), Wk.data(), k.data(), T, C, nk);
      cu::linear_forward(x.data(), Wv.data(), v.data(), T, C, nk);
      // c = attn_core(q, k, v): one sequence, B = 1
      cu::attn_core_forward_dev(cfg, q.data(), k.data(), v.data(), gs.data(), gr.data(), c.data(), 1, T, cache,
                                qn_ptr(), kn_ptr());
      // y = c W_O
      cu::linear_forward(c.data(), Wo.data(), y.data(), T, nq, C);
    }
  };

  static void check_tokens(const std::vector<int>& tokens, long V) {
    for (size_t n = 0; n < tokens.size(); ++n)
      if (tokens[n] < 0 || tokens[n] >= V)
        throw std::out_of_range("embedding: token " + std::to_string(tokens[n]) + " at position " +
                                std::to_string(n) + " outside [0, " + std::to_string(V) + ")");
  }

  mutable std::mutex mu_;
};

}  // namespace model
