// cuda/cross_entropy.h: softmax cross-entropy over the vocabulary (kernels: cuda/cross_entropy.cu;
// reference: ref/loss.h). V = 256 (bytes) in this project; any V >= 1 works.
//
//   losses[n]  = logsumexp(logits[n]) - logits[n, targets[n]]           0 where targets[n] == -1 (ignored)
//   dlogits[n] = (softmax(logits[n]) - onehot(targets[n])) * dloss       zero rows where targets[n] == -1
// The mean loss of ref::cross_entropy is sum(losses) / counted, and its gradient is dloss = 1 / counted
// (counted = number of targets >= 0, known to the host that made the batch). Targets outside [-1, V)
// give a NaN loss and a NaN row (the kernel cannot throw; ref::cross_entropy throws on them).
// Device pointers, row-major. version: 1 one thread per row, 2 one warp per row (default).
#pragma once

namespace cu {

inline constexpr int kCrossEntropyVersions = 2;

// logits: (N, V), targets: (N) -> losses: (N)
void cross_entropy_forward(const float* logits, const int* targets, float* losses, int N, int V, int version = 2);
// logits: (N, V), targets: (N) -> dlogits: (N, V), assigned
void cross_entropy_backward(const float* logits, const int* targets, float dloss, float* dlogits, int N, int V,
                            int version = 2);

}  // namespace cu
