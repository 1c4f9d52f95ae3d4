// cuda/elementwise.h: the small kernels the device-resident training step (model/device_trainer.h)
// needs between the op kernels (kernels: cuda/elementwise.cu).
//
//   add          out = a + b                      the residual stream (y = x + Attn(a), x' = y + SwiGLU(b))
//                                                 and gradients that meet (dx = dx_q + dx_k + dx_v)
//   sum_ordered  *sum = sum_i x[i], in double     the batch loss from the per-row cross-entropies
//   tree_combine node 0 = the tree sum of k nodes  the ranks' gradients of a data-parallel step, added in the
//                                                 pairwise tree of model/tree_reduce.h (model/nccl_reduce.cpp)
// Device pointers. All three are deterministic: add is per element, and sum_ordered adds in an order fixed
// by n alone (never by which block or thread runs first), so the same inputs give the same bits on
// every run, on a GPU and in every fiber order of the CPU execution layer.
// version: add 1 one thread per element, 2 float4 with a grid-stride loop (the default).
#pragma once

namespace cu {

inline constexpr int kAddVersions = 2;

// a, b: (n) -> out: (n); out may be a or b (each element is read before it is written)
void add(const float* a, const float* b, float* out, long n, int version = 2);

// x: (n) -> *sum: one double on the device, the sum of x in double in a fixed order.
void sum_ordered(const float* x, long n, double* sum);

// nodes: k arrays of n floats, node j at nodes + j * stride (stride >= n). On return node 0 holds their sum in
// the tree of model/tree_reduce.h (level by level: node i += node i + 2^l), element by element: the bits of
// model::combine_roots on the host. The other nodes are overwritten.
void tree_combine(float* nodes, int k, long stride, long n);

}  // namespace cu
