// cuda/rattn_merge.h: the RATTENTION branch merge, fused, forward and backward, fp32
// (kernels: cuda/rattn_merge.cu).
//
//   out[t,h] = GRMS_swa(o_swa[t,h]) + GRMS_rla(o_rla[t,h])                    (spec §2.5)
//   GRMS(x)[t,h] = x[t,h] * rsqrt(mean_d(x[t,h]^2) + eps) * gamma[h]          per (token, head) over D
// The CUDA counterpart of two ref/norm.h group_rmsnorm_forward calls and a sum (ref/rattention.h).
//
// All pointers are device pointers. o_swa, o_rla, out, dout, do_swa, do_rla: (B, T, H, D) contiguous;
// gamma_swa, gamma_rla, dgamma_swa, dgamma_rla: (H, D). eps: 1e-8 in the model.
// version: 1 = naive (one thread per (b,t,h) row; dgamma by one thread per (h,d)), 2 = one warp per
// row with shuffle reductions (the default).
#pragma once

namespace cu {

inline constexpr int kMergeVersions = 2;

// o_swa, o_rla: (B,T,H,D), gamma_swa, gamma_rla: (H,D) -> out: (B,T,H,D)
void rattn_merge_forward(const float* o_swa, const float* o_rla, const float* gamma_swa, const float* gamma_rla,
                         float* out, int B, int T, int H, int D, float eps, int version = 2);

// dout: (B,T,H,D) -> do_swa, do_rla: (B,T,H,D) (assigned); dgamma_swa, dgamma_rla: (H,D), accumulated (+=).
void rattn_merge_backward(const float* o_swa, const float* o_rla, const float* gamma_swa, const float* gamma_rla,
                          const float* dout, float* do_swa, float* do_rla, float* dgamma_swa, float* dgamma_rla,
                          int B, int T, int H, int D, float eps, int version = 2);

}  // namespace cu
