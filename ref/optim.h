// ref/optim.h: the optimiser for training: AdamW, global gradient-norm clipping, and the
// learning-rate schedule (linear warmup, then cosine decay to a floor).
//
// AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"), per element, step t >= 1:
//   m = beta1 m + (1 - beta1) g
//   v = beta2 v + (1 - beta2) g^2
//   m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)              (bias correction)
//   p = p - lr * ( m_hat / (sqrt(v_hat) + eps)  +  weight_decay * p )   (decay only if asked)
// The decay term uses p before this step and is not scaled by the Adam denominator ("decoupled");
// this equals PyTorch's p *= 1 - lr*wd followed by the Adam update. Callers decay the matrices
// and not the norm scales or embeddings (decay = false for those).
#pragma once
#include <algorithm>
#include <cmath>
#include <numbers>
#include <stdexcept>
#include <vector>

#include "ref/tensor.h"

namespace ref {

struct AdamW {
  double lr;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

// param, grad, m, v: (R, K), all the same shape; m and v start at zero and are updated in place.
// step: 1-based count of updates made so far including this one (it sets the bias correction).
template <class Real>
void adamw_step(Mat<Real>& param, const Mat<Real>& grad, Mat<Real>& m, Mat<Real>& v, long step,
                const AdamW& cfg, bool decay) {
  expect_shape("adamw grad", grad, param.rows(), param.cols());
  expect_shape("adamw m", m, param.rows(), param.cols());
  expect_shape("adamw v", v, param.rows(), param.cols());
  if (step < 1) throw std::invalid_argument("adamw_step: step is 1-based");
  const double bc1 = 1.0 - std::pow(cfg.beta1, double(step));
  const double bc2 = 1.0 - std::pow(cfg.beta2, double(step));
  const Real b1 = Real(cfg.beta1), b2 = Real(cfg.beta2), lr = Real(cfg.lr), eps = Real(cfg.eps);
  const Real wd = decay ? Real(cfg.weight_decay) : Real(0);
  const Real inv_bc1 = Real(1.0 / bc1), inv_bc2 = Real(1.0 / bc2);
  for (long i = 0; i < param.size(); ++i) {
    const Real g = grad.data()[i];
    Real& mi = m.data()[i];
    Real& vi = v.data()[i];
    Real& p = param.data()[i];
    mi = b1 * mi + (Real(1) - b1) * g;
    vi = b2 * vi + (Real(1) - b2) * g * g;
    const Real m_hat = mi * inv_bc1, v_hat = vi * inv_bc2;
    p -= lr * (m_hat / (std::sqrt(v_hat) + eps) + wd * p);
  }
}

// grads: the gradient matrices of all parameters, any shapes.
// norm = sqrt(sum of squares of every element of every matrix) (accumulated in double);
// if norm > max_norm every matrix is scaled in place by max_norm / norm, so the new global norm is
// max_norm. Returns the norm before clipping. A non-finite norm is returned with the gradients left
// untouched: the caller should skip that step.
template <class Real>
Real clip_grad_norm(const std::vector<Mat<Real>*>& grads, Real max_norm) {
  double sumsq = 0;
  for (const Mat<Real>* g : grads)
    for (long i = 0; i < g->size(); ++i) sumsq += double(g->data()[i]) * double(g->data()[i]);
  const double norm = std::sqrt(sumsq);
  if (std::isfinite(norm) && norm > double(max_norm)) {
    const Real scale = Real(double(max_norm) / norm);
    for (Mat<Real>* g : grads) *g *= scale;
  }
  return Real(norm);
}

// Learning rate at a 1-based step (the same count adamw_step gets):
//   1 <= step <= warmup_steps:      peak_lr * step / warmup_steps        (linear; peak at warmup_steps)
//   warmup_steps < step < total:    min_lr + (peak_lr - min_lr) * (1 + cos(pi * p)) / 2,
//                                   p = (step - warmup_steps) / (total_steps - warmup_steps)
//   step >= total_steps:            min_lr
// So lr_at(warmup) = peak, lr_at((warmup + total) / 2) = (peak + min) / 2, lr_at(total) = min,
// and lr_at(0) = 0 when there is a warmup (warmup_steps = 0: the cosine starts at peak).
inline double lr_at(long step, double peak_lr, double min_lr, long warmup_steps, long total_steps) {
  if (warmup_steps < 0 || total_steps < warmup_steps)
    throw std::invalid_argument("lr_at: need 0 <= warmup_steps <= total_steps");
  if (warmup_steps > 0 && step <= warmup_steps)
    return peak_lr * double(std::max(step, 0L)) / double(warmup_steps);
  if (step >= total_steps) return min_lr;
  const double p = double(step - warmup_steps) / double(total_steps - warmup_steps);
  return min_lr + (peak_lr - min_lr) * 0.5 * (1.0 + std::cos(std::numbers::pi * p));
}

}  // namespace ref
