// cuda/adamw.h: the AdamW update and global gradient-norm clipping (kernels: cuda/adamw.cu;
// reference: ref/optim.h). Device pointers; all four tensors of a step have the same n elements.
//
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2
//   p = p - lr * ( m / (1 - beta1^t) / (sqrt(v / (1 - beta2^t)) + eps)  +  weight_decay * p )   (decay only if asked)
//
// version: 1 one thread per element, 2 float4 with a grid-stride loop (the default).
#pragma once

namespace cu {

inline constexpr int kAdamwVersions = 2;

// The hyper-parameters of ref::AdamW, same defaults.
struct AdamW {
  double lr;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

// param, grad, m, v: (n); step: 1-based count of updates including this one (sets the bias correction).
void adamw_step(float* param, const float* grad, float* m, float* v, long n, long step, const AdamW& cfg, bool decay,
                int version = 2);

// Global norm over several gradient tensors: sqrt(sum of squares of every element), summed in double
// on the host from per-block partial sums (deterministic). If norm > max_norm every tensor is scaled in
// place by max_norm / norm. Returns the norm before clipping; a non-finite norm leaves the gradients as
// they are (as ref::clip_grad_norm). grads[i]: device pointer to sizes[i] floats.
float clip_grad_norm(float* const* grads, const long* sizes, int count, float max_norm);

}  // namespace cu
