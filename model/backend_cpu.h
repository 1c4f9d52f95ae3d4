// model/backend_cpu.h: the CPU backend: every op is the reference op of ref/, called as is.
// (No op's math lives here; the only code beyond forwarding converts the (1, C) norm-scale
// matrices to the row vectors ref/norm.h takes.)
#pragma once
#include <stdexcept>
#include <type_traits>

#include "model/backend.h"
#include "model/backend_cuda.h"
#include "model/cli.h"
#include "ref/embedding.h"
#include "ref/linear.h"
#include "ref/loss.h"
#include "ref/norm.h"

namespace model {

template <class S>
class CpuBackend final : public Backend<S> {
 public:
  std::string name() const override { return "cpu (ref/)"; }

  Mat<S> embedding_forward(const std::vector<int>& tokens, const Mat<S>& E) const override {
    return ref::embedding_forward(tokens, E);
  }
  void embedding_backward(const std::vector<int>& tokens, const Mat<S>& dy, Mat<S>& dE) const override {
    ref::embedding_backward(tokens, dy, dE);
  }

  Mat<S> rmsnorm_forward(const Mat<S>& x, const Mat<S>& gamma, S eps) const override {
    const ref::RowVec<S> g = gamma;  // (1, C) matrix -> row vector (a copy of C values)
    return ref::rmsnorm_forward(x, g, eps);
  }
  Mat<S> rmsnorm_backward(const Mat<S>& x, const Mat<S>& gamma, S eps, const Mat<S>& dy,
                          Mat<S>& dgamma) const override {
    const ref::RowVec<S> g = gamma;
    ref::RowVec<S> dg = ref::RowVec<S>::Zero(gamma.cols());
    Mat<S> dx = ref::rmsnorm_backward(x, g, eps, dy, dg);
    dgamma += dg;
    return dx;
  }

  Mat<S> attention_forward(const ref::AttnConfig& cfg, const ref::AttnParams<S>& p, const Mat<S>& x,
                           ref::LayerCache<S>* keep) const override {
    return ref::attention_layer_forward(cfg, p, x, keep);
  }
  Mat<S> attention_backward(const ref::AttnConfig& cfg, const ref::AttnParams<S>& p, const Mat<S>& x,
                            const Mat<S>& dy, ref::AttnParams<S>& dp, const ref::LayerCache<S>* kept) const override {
    return ref::attention_layer_backward(cfg, p, x, dy, dp, kept);
  }
  ref::AttnDecodeCache<S> attention_decode_init(const ref::AttnConfig& cfg) const override {
    return ref::attn_decode_init<S>(cfg);
  }
  Mat<S> attention_decode_step(const ref::AttnConfig& cfg, const ref::AttnParams<S>& p,
                               ref::AttnDecodeCache<S>& cache, const Mat<S>& x_t) const override {
    return ref::attention_layer_decode_step(cfg, p, cache, x_t);
  }

  Mat<S> swiglu_forward(const Mat<S>& x, const ref::SwiGLUParams<S>& p, ref::SwiGLUCache<S>* keep) const override {
    return ref::swiglu_forward(x, p, keep);
  }
  Mat<S> swiglu_backward(const Mat<S>& x, const ref::SwiGLUParams<S>& p, const Mat<S>& dy,
                         ref::SwiGLUParams<S>& dp, const ref::SwiGLUCache<S>* kept) const override {
    return ref::swiglu_backward(x, p, dy, dp, kept);
  }

  Mat<S> linear_forward(const Mat<S>& x, const Mat<S>& W) const override { return ref::linear_forward(x, W); }
  Mat<S> linear_backward(const Mat<S>& x, const Mat<S>& W, const Mat<S>& dy, Mat<S>& dW) const override {
    return ref::linear_backward(x, W, dy, dW);
  }

  S cross_entropy(const Mat<S>& logits, const std::vector<int>& targets, Mat<S>* dlogits) const override {
    return ref::cross_entropy(logits, targets, dlogits);
  }

  void adamw_step(Mat<S>& param, const Mat<S>& grad, Mat<S>& m, Mat<S>& v, long step,
                  const ref::AdamW& cfg, bool decay) const override {
    ref::adamw_step(param, grad, m, v, step, cfg, decay);
  }
  S clip_grad_norm(const std::vector<Mat<S>*>& grads, S max_norm) const override {
    return ref::clip_grad_norm(grads, max_norm);
  }
};

template <class S>
std::unique_ptr<Backend<S>> make_backend(const std::string& device) {
  if (device == "cpu") return std::make_unique<CpuBackend<S>>();
  // model/backend_cuda.h: the fp32 kernels of cuda/ one op at a time, float only. "cuda" is the name bin/infer
  // uses for it; bin/train_tiny's --device cuda trains with model/device_trainer.h instead (model/trainer.cpp).
  if (device == "cuda-ops" || device == "cuda") {
    if constexpr (std::is_same_v<S, float>) return std::make_unique<CudaOpsBackend>();
    else throw UsageError("--device " + device + ": the CUDA kernels are fp32; there is no double model on them");
  }
  throw UsageError("--device: expected one of cpu|cuda|cuda-ops, got '" + device + "'");
}

}  // namespace model
