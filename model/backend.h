// model/backend.h: the one small interface through which the model calls its ops.
//
// model/model.h holds the model logic once (which op runs on which tensor, in which order, forward
// and backward); it never does arithmetic on tensors itself. Every op goes through a Backend:
//   CpuBackend (model/backend_cpu.h)  calls the reference ops in ref/ directly (float and double).
//   CudaOpsBackend (model/backend_cuda.h) the same calls with the hand-written cuda/ kernels (fp32, float
//                                     only; --device cuda-ops): the kernel checker, one op at a time through
//                                     host copies. make_backend in model/backend_cpu.h picks one. (Training
//                                     on the device is model/device_trainer.h, not a Backend.)
// Signatures follow ref/ (one sequence at a time, rows = tokens, parameter gradients accumulated
// with +=, input gradients returned) so the CPU backend is a list of one-line forwards.
//
// Norm scales are stored as (1, C) matrices like every other parameter, so the optimizer, the
// checkpoint and the gradient reduction see one uniform list of Mat<S>.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "ref/mlp.h"
#include "ref/optim.h"
#include "ref/rattention.h"
#include "ref/decode.h"
#include "ref/tensor.h"

namespace model {

using ref::Mat;

template <class S>
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // tokens: (T) -> (T, C) rows of E (V, C)
  virtual Mat<S> embedding_forward(const std::vector<int>& tokens, const Mat<S>& E) const = 0;
  // dy: (T, C); dE: (V, C) +=
  virtual void embedding_backward(const std::vector<int>& tokens, const Mat<S>& dy, Mat<S>& dE) const = 0;

  // x: (T, C), gamma: (1, C) -> (T, C)
  virtual Mat<S> rmsnorm_forward(const Mat<S>& x, const Mat<S>& gamma, S eps) const = 0;
  // returns dx (T, C); dgamma (1, C) +=
  virtual Mat<S> rmsnorm_backward(const Mat<S>& x, const Mat<S>& gamma, S eps, const Mat<S>& dy,
                                  Mat<S>& dgamma) const = 0;

  // x: (T, C) -> (T, C): the whole attention layer (projections, core, output projection).
  // keep (may be null): where the backward's inputs are kept (ref::LayerCache: q, k, v, the core's
  // output and cache); a backend that keeps nothing on the host leaves it empty.
  virtual Mat<S> attention_forward(const ref::AttnConfig& cfg, const ref::AttnParams<S>& p, const Mat<S>& x,
                                   ref::LayerCache<S>* keep) const = 0;
  // returns dx (T, C); dp +=. kept: what attention_forward kept for this x (null: recomputed)
  virtual Mat<S> attention_backward(const ref::AttnConfig& cfg, const ref::AttnParams<S>& p,
                                    const Mat<S>& x, const Mat<S>& dy, ref::AttnParams<S>& dp,
                                    const ref::LayerCache<S>* kept) const = 0;
  // constant-memory decode of one layer (spec §3.1): x_t (1, C) -> (1, C), advancing cache
  virtual ref::AttnDecodeCache<S> attention_decode_init(const ref::AttnConfig& cfg) const = 0;
  virtual Mat<S> attention_decode_step(const ref::AttnConfig& cfg, const ref::AttnParams<S>& p,
                                       ref::AttnDecodeCache<S>& cache, const Mat<S>& x_t) const = 0;

  // x: (T, C) -> (T, C); keep (may be null): where x W1, x W3 are kept for the backward
  virtual Mat<S> swiglu_forward(const Mat<S>& x, const ref::SwiGLUParams<S>& p, ref::SwiGLUCache<S>* keep) const = 0;
  // returns dx (T, C); dp +=. kept: what swiglu_forward kept for this x (null: recomputed)
  virtual Mat<S> swiglu_backward(const Mat<S>& x, const ref::SwiGLUParams<S>& p, const Mat<S>& dy,
                                 ref::SwiGLUParams<S>& dp, const ref::SwiGLUCache<S>* kept) const = 0;

  // x: (T, K), W: (K, N) -> (T, N)
  virtual Mat<S> linear_forward(const Mat<S>& x, const Mat<S>& W) const = 0;
  // returns dx (T, K); dW (K, N) +=
  virtual Mat<S> linear_backward(const Mat<S>& x, const Mat<S>& W, const Mat<S>& dy, Mat<S>& dW) const = 0;

  // logits: (T, V), targets: (T) (-1 ignored) -> mean loss; dlogits (T, V) assigned when given
  virtual S cross_entropy(const Mat<S>& logits, const std::vector<int>& targets, Mat<S>* dlogits) const = 0;

  // the optimizer (ref/optim.h)
  virtual void adamw_step(Mat<S>& param, const Mat<S>& grad, Mat<S>& m, Mat<S>& v, long step,
                          const ref::AdamW& cfg, bool decay) const = 0;
  virtual S clip_grad_norm(const std::vector<Mat<S>*>& grads, S max_norm) const = 0;
};

// make_backend<S>(device) is in model/backend_cpu.h (the file that knows the backends).

}  // namespace model
