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

#include <cstddef>

namespace cu {

inline constexpr int kMergeVersions = 2;

// o_swa, o_rla: (B,T,H,D), gamma_swa, gamma_rla: (H,D) -> out: (B,T,H,D)
void rattn_merge_forward(const float* o_swa, const float* o_rla, const float* gamma_swa, const float* gamma_rla,
                         float* out, int B, int T, int H, int D, float eps, int version = 2);

// Floats of scratch rattn_merge_backward (version 2) needs: one dgamma partial (2, H, D) per block.
size_t rattn_merge_scratch_size(int B, int T, int H, int D);

// dout: (B,T,H,D) -> do_swa, do_rla: (B,T,H,D) (assigned); dgamma_swa, dgamma_rla: (H,D), accumulated (+=).
// scratch: rattn_merge_scratch_size floats (version 2; may be null for version 1). Deterministic: the sum of
// dgamma over rows is done in a fixed order (per-block partials, then a second kernel), without atomics.
void rattn_merge_backward(const float* o_swa, const float* o_rla, const float* gamma_swa, const float* gamma_rla,
                          const float* dout, float* do_swa, float* do_rla, float* dgamma_swa, float* dgamma_rla,
                          float* scratch, int B, int T, int H, int D, float eps, int version = 2);

}  // namespace cu
