// cuda/embedding.cu: token embedding, forward (gather) and backward (scatter-add), fp32.
//
// The reference loop (ref/embedding.h):
//   forward   for n: x[n] = E[tokens[n]]
//   backward  for n: dE[tokens[n]] += dy[n]        (a token seen twice collects both rows)
//
// Versions, and what each one teaches:
//   forward v1  one thread per element (n, c): coalesced along c, one 4-byte load per thread.
//   forward v2  one thread per 4 elements with float4 loads/stores when C % 4 == 0 (16-byte aligned
//               rows), the scalar path otherwise.
//   backward v1 the reference loop in parallel: one thread per (n, c) does atomicAdd(&dE[tokens[n], c],
//               dy[n, c]). Correct, but when a token repeats, the order of its float additions depends on
//               the schedule, so results can differ in the last bits between runs (and between the GPU and
//               the CPU layer). Atomics on the same address also serialise: a batch of one repeated byte is
//               the worst case.
//   backward v2 deterministic: turn the scatter into a gather. Thread (v, c) owns dE[v, c] and walks all
//               N tokens in order, adding dy[n, c] where tokens[n] == v. No atomics, no races, the same bits
//               on every run. The token reads are the same for all threads of a block (one vocab row per
//               blockIdx.y), so they are broadcasts from cache. It reads N tokens per (v, column block): with
//               this project's V = 256 that is cheap; for a large vocabulary one would sort the token ids
//               first (llm.c's encoder_backward buckets them) and give each row only its own positions.
#include "cuda/compat.h"

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/embedding.h"

namespace cu {
namespace {

// ---- forward ----------------------------------------------------------------------------------
// v1: thread g -> (n, c) = (g / C, g % C)
__global__ void embedding_forward_v1(const int* tokens, const float* E, float* x, int N, int V, int C) {
  const long g = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (g < (long)N * C) {
    const int n = int(g / C), c = int(g % C), tok = tokens[n];
    x[g] = (tok >= 0 && tok < V) ? E[(long)tok * C + c] : NAN;
  }
}

// v2: thread g -> 4 consecutive columns of row n; C % 4 == 0, so every row starts 16-byte aligned.
__global__ void embedding_forward_v2(const int* tokens, const float* E, float* x, int N, int V, int C) {
  const int C4 = C / 4;
  const long g = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (g < (long)N * C4) {
    const int n = int(g / C4), c4 = int(g % C4), tok = tokens[n];
    float4* x4 = reinterpret_cast<float4*>(x);
    const float4* E4 = reinterpret_cast<const float4*>(E);
    x4[g] = (tok >= 0 && tok < V) ? E4[(long)tok * C4 + c4] : make_float4(NAN, NAN, NAN, NAN);
  }
}

// ---- backward -----------------------------------------------------------------------------------
// In the forward pass this was: x[n] = E[tokens[n]], so now: dE[tokens[n]] += dy[n]
// v1: thread g -> (n, c), atomicAdd into dE.
__global__ void embedding_backward_v1(const int* tokens, const float* dy, float* dE, int N, int V, int C) {
  const long g = (long)blockIdx.x * blockDim.x + threadIdx.x;
  if (g < (long)N * C) {
    const int n = int(g / C), c = int(g % C), tok = tokens[n];
    if (tok >= 0 && tok < V) atomicAdd(&dE[(long)tok * C + c], dy[g]);
  }
}

// v2: grid (ceil(C / 128), V), block 128: thread (v = blockIdx.y, c) sums dy[n, c] over {n : tokens[n] == v}.
__global__ void embedding_backward_v2(const int* tokens, const float* dy, float* dE, int N, int C) {
  const int v = blockIdx.y, c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c < C) {
    float acc = 0.0f;
    for (int n = 0; n < N; ++n)
      if (tokens[n] == v) acc += dy[(long)n * C + c];  // in token order: deterministic
    dE[(long)v * C + c] += acc;
  }
}

bool aligned16(const void* p) { return reinterpret_cast<std::uintptr_t>(p) % 16 == 0; }

void check_args(int N, int V, int C, int version, const char* op) {
  if (version < 1 || version > kEmbeddingVersions)
    throw std::invalid_argument(std::string("cu::") + op + ": no version " + std::to_string(version) + " (have 1..2)");
  if (N < 0 || V < 1 || C < 1) throw std::invalid_argument(std::string("cu::") + op + ": need N >= 0, V, C >= 1");
  if (V > 65535) throw std::invalid_argument(std::string("cu::") + op + ": V > 65535 (one grid row per vocab entry)");
}

constexpr int kThreads = 128;

}  // namespace

void embedding_forward(const int* tokens, const float* E, float* x, int N, int V, int C, int version) {
  check_args(N, V, C, version, "embedding_forward");
  if (N == 0) return;
  if (version == 2 && C % 4 == 0 && aligned16(E) && aligned16(x)) {
    const long work = (long)N * (C / 4);
    launch(embedding_forward_v2, dim3(unsigned((work + kThreads - 1) / kThreads)), dim3(kThreads), 0, tokens, E, x, N,
           V, C);
  } else {  // v1, or v2's scalar path when rows are not float4-aligned
    const long work = (long)N * C;
    launch(embedding_forward_v1, dim3(unsigned((work + kThreads - 1) / kThreads)), dim3(kThreads), 0, tokens, E, x, N,
           V, C);
  }
}

void embedding_backward(const int* tokens, const float* dy, float* dE, int N, int V, int C, int version) {
  check_args(N, V, C, version, "embedding_backward");
  if (N == 0) return;
  if (version == 1) {
    const long work = (long)N * C;
    launch(embedding_backward_v1, dim3(unsigned((work + kThreads - 1) / kThreads)), dim3(kThreads), 0, tokens, dy, dE,
           N, V, C);
  } else {
    launch(embedding_backward_v2, dim3((C + kThreads - 1) / kThreads, V), dim3(kThreads), 0, tokens, dy, dE, N, C);
  }
}

}  // namespace cu
