// Exercise 6 of 8: the SWA forward kernel, v1: one CUDA thread per query row.
// Paper §2.1 and §3.2 ("Kernel Design"); docs/spec.md §2.2, §3.3. Replaces swa_forward_v1_kernel (cuda/swa.cu).
// Run it: make exercise E=swa_kernel_v1       (checks: bin/tests/emu/test_swa on the CPU execution layer,
//                                              every version against ref/attention.h, forward and reverse
//                                              thread order; no GPU and no nvcc needed)
//
// The same math as exercise 2, for one (b, t, h) row per thread; the launcher (cu::swa_forward, version 1)
// starts ceil(B*T*H / 128) blocks of 128 threads, so some threads of the last block have no row.
//     s_j = scale * q[b,t,h] . k[b,j,g],   j in [max(0, t-w), t] (w < 0: [0, t]),   g = h / (H/G)
//     o[b,t,h] = sum_j exp(s_j - m) v[b,j,g] / l,   m = max_j s_j,   l = sum_j exp(s_j - m)
//     lse[b,h,t] = m + log(l)            (the logsumexp of the row, saved for the backward)
// Layout, contiguous: q, o: (B, T, H, D), element (b, t, h, d) at ((b*T + t)*H + h)*D + d;
// k, v: (B, T, G, D), likewise with G; lse: (B, H, T), element (b, h, t) at (b*H + h)*T + t.
//
// Hint: idx = blockIdx.x * blockDim.x + threadIdx.x; return when idx >= B*T*H (this kernel has no barrier,
// so an early return is fine); h = idx % H, t = (idx / H) % T, b = idx / (H*T). Two passes over the window:
// the maximum, then l and o. Compute offsets in long: B*T*H*D can pass 2^31 on real shapes. The tests
// NaN-fill o and lse before the launch: a row you do not write stays NaN.
// On failure: got nan: a row never written (the idx guard, the offsets); wrong only for w >= 0: the window
//   start; wrong only where G < H: the kv head g = h / (H/G); only "lse" wrong: m + logf(l).
__global__ void swa_forward_v1_kernel(const float* q, const float* k, const float* v, float* o, float* lse,
                                      int B, int T, int H, int G, int D, int w, float scale) {
  // TODO(exercise 6): one thread, one (b, t, h) row: o[b,t,h,:] and lse[b,h,t].
  (void)q, (void)k, (void)v, (void)o, (void)lse, (void)B, (void)T, (void)H, (void)G, (void)D, (void)w,
      (void)scale;
}
