// cuda/feature_map.h: the RLA feature maps phi, forward and backward, as standalone kernels
// (kernels: cuda/feature_map.cu; reference: ref/feature_map.h). The chunked RLA kernels (cuda/rla.cu)
// apply phi inside themselves; these are for testing, benchmarking and unfused use.
//
//   sm2      phi(x) = [softmax(x), softmax(-x)]   Dp = 2D   (each softmax over one head's D values)
//   relu2    phi(x) = [relu(x), relu(-x)]         Dp = 2D
//   identity phi(x) = x                           Dp = D
// Layout as ref::phi_forward_heads: x (N, n_heads*D) -> phi (N, n_heads*Dp), head h of row t maps
// columns [h*D, (h+1)*D) to [h*Dp, (h+1)*Dp). Device pointers. dx is assigned.
// version: 1 one thread per (row, head), 2 one warp per (row, head) with shuffles (default).
#pragma once

namespace cu {

// The feature maps of ref/feature_map.h, in the same order (tests/cuda/test_feature_map.cpp checks it).
enum class FeatureMap { sm2 = 0, relu2 = 1, identity = 2 };
// Dp, the width of phi(x) for a head of D values.
inline int feature_dim(FeatureMap fm, int D) { return fm == FeatureMap::identity ? D : 2 * D; }

inline constexpr int kFeatureMapVersions = 2;

// x: (N, n_heads*D) -> phi: (N, n_heads*Dp)
void phi_forward(FeatureMap fm, const float* x, float* phi, int N, int n_heads, int D, int version = 2);
// x: (N, n_heads*D), dphi: (N, n_heads*Dp) -> dx: (N, n_heads*D)
void phi_backward(FeatureMap fm, const float* x, const float* dphi, float* dx, int N, int n_heads, int D,
                  int version = 2);

}  // namespace cu
