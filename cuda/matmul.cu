// cuda/matmul.cu: a hand-written fp32 SGEMM, the kernel behind every linear layer.
//
//   C (M, N) = op(A) (M, K) * op(B) (K, N)  (+ C when beta = 1),   row-major, fp32 accumulation
//
// The reference loop (ref/linear.h computes the same with Eigen):
//   for m, n:  c = 0;  for k: c += a(m, k) * b(k, n);  C[m][n] = c (+ C[m][n])
// where a(m, k) reads A[m*K + k], or A[k*M + m] when trans_a; b(k, n) reads B[k*N + n], or B[n*K + k]
// when trans_b. The linear layer needs three of the four combinations:
//   forward   y  = x W        (N,in)(in,out)        no transposes
//   backward  dx = dy W^T     (N,out)(out,in)       trans_b
//             dW += x^T dy    (in,N)(N,out)         trans_a, beta = 1
//
// Versions, and what each one teaches:
//   v1  one thread per output element, the K loop straight from global memory: the reference loop
//       mapped onto a 2D grid (threadIdx.x walks n, so the reads of B and the write of C coalesce).
//       Each element of A is read N times and each of B M times: memory-bound, a few % of peak.
//   v2  shared-memory tiling, 16 x 16 tiles: a block stages one tile of op(A) and one of op(B) in
//       shared memory, __syncthreads, 16 multiply-adds per thread from shared memory, __syncthreads,
//       next tile. Global traffic falls by the tile width. Shows the two barriers every tiled kernel
//       needs (after the load: "tile is complete"; after the use: "tile may be overwritten"), the
//       zero-fill of partial tiles at the edges (any M, N, K), and how a transposed operand is loaded
//       along its contiguous dimension so the global reads still coalesce; +1 padding keeps the
//       column-wise shared-memory stores free of bank conflicts.
//   v3  register blocking: a 64 x 64 block tile, K step 16, 256 threads, each computing a 4 x 4
//       patch of C in registers. Per k step a thread reads 4 + 4 values from shared memory and does
//       16 FMAs (2 per read) where v2 did 1 FMA per 2 reads: 4x the arithmetic per shared-memory
//       access, so the kernel stops being limited by shared-memory bandwidth. Thread (ty, tx) owns rows
//       ty + 16 i and columns tx + 16 j (strided, not a contiguous 4 x 4), so a warp's shared reads
//       are broadcasts or consecutive words and its stores to C coalesce.
//   Not done here (the next lessons): float4 loads, double-buffered tiles with cp.async, warp tiles,
//   tensor cores. cuBLAS (matmul_cublas) is only a baseline for benchmarks and an oracle for GPU tests.
#include "cuda/compat.h"

#include <stdexcept>
#include <string>

#include "cuda/matmul.h"

#ifdef __CUDACC__
#include <cublas_v2.h>
#endif

namespace cu {
namespace {

// Element (m, k) of op(A) and element (k, n) of op(B); the transposes are template parameters, so
// each of the four combinations is its own kernel with no runtime branch in the inner loop.
template <bool TA>
__device__ __forceinline__ float load_a(const float* A, int M, int K, int m, int k) {
  return TA ? A[(long)k * M + m] : A[(long)m * K + k];
}
template <bool TB>
__device__ __forceinline__ float load_b(const float* B, int K, int N, int k, int n) {
  return TB ? B[(long)n * K + k] : B[(long)k * N + n];
}

// C[m][n] = acc (+ C[m][n]). With beta = 0 the old C is never read: outputs may arrive NaN-filled.
__device__ __forceinline__ void store_c(float* C, long idx, float acc, float beta) {
  C[idx] = (beta == 0.0f) ? acc : acc + beta * C[idx];
}

// ---- v1: one thread per output --------------------------------------------------------------
// grid (ceil(N/16), ceil(M/16)), block (16, 16)
template <bool TA, bool TB>
__global__ void matmul_v1_kernel(const float* A, const float* B, float* C, int M, int N, int K, float beta) {
  const int n = blockIdx.x * blockDim.x + threadIdx.x;
  const int m = blockIdx.y * blockDim.y + threadIdx.y;
  if (m < M && n < N) {
    float acc = 0.0f;
    for (int k = 0; k < K; ++k) acc += load_a<TA>(A, M, K, m, k) * load_b<TB>(B, K, N, k, n);
    store_c(C, (long)m * N + n, acc, beta);
  }
}

// ---- v2: shared-memory tiles ------------------------------------------------------------------
constexpr int kTile = 16;
// grid (ceil(N/16), ceil(M/16)), block (16, 16); thread (ty, tx) computes C[m0 + ty][n0 + tx].
template <bool TA, bool TB>
__global__ void matmul_v2_kernel(const float* A, const float* B, float* C, int M, int N, int K, float beta) {
  __shared__ float As[kTile][kTile + 1];  // As[i][kk] = op(A)(m0 + i, k0 + kk)
  __shared__ float Bs[kTile][kTile + 1];  // Bs[kk][j] = op(B)(k0 + kk, n0 + j)
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int m0 = blockIdx.y * kTile, n0 = blockIdx.x * kTile;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += kTile) {
    // Load both tiles, the lane index tx always running along the operand's contiguous dimension.
    // Out-of-range elements are zero, so partial tiles add nothing.
    if (!TA) {  // A (M, K): contiguous along k
      const int m = m0 + ty, k = k0 + tx;
      As[ty][tx] = (m < M && k < K) ? load_a<TA>(A, M, K, m, k) : 0.0f;
    } else {    // A stored (K, M): contiguous along m
      const int m = m0 + tx, k = k0 + ty;
      As[tx][ty] = (m < M && k < K) ? load_a<TA>(A, M, K, m, k) : 0.0f;
    }
    if (!TB) {  // B (K, N): contiguous along n
      const int k = k0 + ty, n = n0 + tx;
      Bs[ty][tx] = (k < K && n < N) ? load_b<TB>(B, K, N, k, n) : 0.0f;
    } else {    // B stored (N, K): contiguous along k
      const int k = k0 + tx, n = n0 + ty;
      Bs[tx][ty] = (k < K && n < N) ? load_b<TB>(B, K, N, k, n) : 0.0f;
    }
    __syncthreads();  // the tiles are complete
    for (int kk = 0; kk < kTile; ++kk) acc += As[ty][kk] * Bs[kk][tx];
    __syncthreads();  // everyone is done reading before the next iteration overwrites the tiles
  }
  const int m = m0 + ty, n = n0 + tx;
  if (m < M && n < N) store_c(C, (long)m * N + n, acc, beta);  // a guard, not an early return
}

// ---- v3: register-blocked 64 x 64 tiles -------------------------------------------------------
constexpr int kBM = 64, kBN = 64, kBK = 16;  // block tile of C, and the K step
constexpr int kTM = 4, kTN = 4;              // each thread's patch of C
constexpr int kThreadsX = kBN / kTN, kThreadsY = kBM / kTM;  // 16 x 16 = 256 threads
constexpr int kThreads3 = kThreadsX * kThreadsY;
// grid (ceil(N/64), ceil(M/64)), block (16, 16)
template <bool TA, bool TB>
__global__ void matmul_v3_kernel(const float* A, const float* B, float* C, int M, int N, int K, float beta) {
  __shared__ float As[kBK][kBM + 1];  // As[kk][i] = op(A)(m0 + i, k0 + kk): k-major, so the inner loop
  __shared__ float Bs[kBK][kBN + 1];  // Bs[kk][j] = op(B)(k0 + kk, n0 + j)  reads a row of each
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * kThreadsX + tx;
  const int m0 = blockIdx.y * kBM, n0 = blockIdx.x * kBN;
  float acc[kTM][kTN];
  for (int i = 0; i < kTM; ++i)
    for (int j = 0; j < kTN; ++j) acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < K; k0 += kBK) {
    // 64 x 16 = 1024 elements per tile, 4 per thread; consecutive tids walk the contiguous dimension.
    for (int e = tid; e < kBM * kBK; e += kThreads3) {
      const int i = TA ? e % kBM : e / kBK;   // row of op(A) within the tile
      const int kk = TA ? e / kBM : e % kBK;  // k within the tile
      const int m = m0 + i, k = k0 + kk;
      As[kk][i] = (m < M && k < K) ? load_a<TA>(A, M, K, m, k) : 0.0f;
    }
    for (int e = tid; e < kBK * kBN; e += kThreads3) {
      const int j = TB ? e / kBK : e % kBN;
      const int kk = TB ? e % kBK : e / kBN;
      const int k = k0 + kk, n = n0 + j;
      Bs[kk][j] = (k < K && n < N) ? load_b<TB>(B, K, N, k, n) : 0.0f;
    }
    __syncthreads();
    for (int kk = 0; kk < kBK; ++kk) {
      float a[kTM], b[kTN];  // one column of the A tile and one row of the B tile, in registers
      for (int i = 0; i < kTM; ++i) a[i] = As[kk][ty + kThreadsY * i];
      for (int j = 0; j < kTN; ++j) b[j] = Bs[kk][tx + kThreadsX * j];
      for (int i = 0; i < kTM; ++i)
        for (int j = 0; j < kTN; ++j) acc[i][j] += a[i] * b[j];  // 16 FMAs for 8 shared-memory reads
    }
    __syncthreads();
  }
  for (int i = 0; i < kTM; ++i) {
    const int m = m0 + ty + kThreadsY * i;
    for (int j = 0; j < kTN; ++j) {
      const int n = n0 + tx + kThreadsX * j;
      if (m < M && n < N) store_c(C, (long)m * N + n, acc[i][j], beta);
    }
  }
}

// Launch kernel K<TA, TB> for the runtime transposes.
template <template <bool, bool> class Pick>
void launch_transposed(bool ta, bool tb, dim3 grid, dim3 block, const float* A, const float* B, float* C, int M,
                       int N, int K, float beta) {
  if (!ta && !tb) launch(Pick<false, false>::fn, grid, block, 0, A, B, C, M, N, K, beta);
  if (!ta && tb) launch(Pick<false, true>::fn, grid, block, 0, A, B, C, M, N, K, beta);
  if (ta && !tb) launch(Pick<true, false>::fn, grid, block, 0, A, B, C, M, N, K, beta);
  if (ta && tb) launch(Pick<true, true>::fn, grid, block, 0, A, B, C, M, N, K, beta);
}
template <bool TA, bool TB>
struct PickV1 { static constexpr auto fn = matmul_v1_kernel<TA, TB>; };
template <bool TA, bool TB>
struct PickV2 { static constexpr auto fn = matmul_v2_kernel<TA, TB>; };
template <bool TA, bool TB>
struct PickV3 { static constexpr auto fn = matmul_v3_kernel<TA, TB>; };

int ceil_div(int a, int b) { return (a + b - 1) / b; }

}  // namespace

void matmul(const float* A, const float* B, float* C, int M, int N, int K, bool trans_a, bool trans_b, float beta,
            int version) {
  if (M < 0 || N < 0 || K < 0) throw std::invalid_argument("cu::matmul: negative size");
  if (M == 0 || N == 0) return;  // nothing to write (K = 0 still writes beta * C, below)
  switch (version) {
    case 1:
      launch_transposed<PickV1>(trans_a, trans_b, dim3(ceil_div(N, 16), ceil_div(M, 16)), dim3(16, 16), A, B, C, M,
                                N, K, beta);
      break;
    case 2:
      launch_transposed<PickV2>(trans_a, trans_b, dim3(ceil_div(N, kTile), ceil_div(M, kTile)), dim3(kTile, kTile),
                                A, B, C, M, N, K, beta);
      break;
    case 3:
      launch_transposed<PickV3>(trans_a, trans_b, dim3(ceil_div(N, kBN), ceil_div(M, kBM)),
                                dim3(kThreadsX, kThreadsY), A, B, C, M, N, K, beta);
      break;
    default:
      throw std::invalid_argument("cu::matmul: no version " + std::to_string(version) + " (have 1..3)");
  }
}

// y = x W:  (N, in) (in, out)
void linear_forward(const float* x, const float* W, float* y, int N, int in, int out, int version) {
  matmul(x, W, y, N, out, in, false, false, 0.0f, version);
}

// In the forward pass this was: y = x W, so now
//   dx  = dy W^T   (N, out) (out, in)   assigned
//   dW += x^T dy   (in, N) (N, out)     accumulated
void linear_backward(const float* x, const float* W, const float* dy, float* dx, float* dW, int N, int in, int out,
                     int version) {
  matmul(dy, W, dx, N, in, out, false, true, 0.0f, version);
  matmul(x, dy, dW, in, out, N, true, false, 1.0f, version);
}

#ifdef __CUDACC__
// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, so cuBLAS gets B first.
bool matmul_cublas(const float* A, const float* B, float* C, int M, int N, int K, bool trans_a, bool trans_b,
                   float beta) {
  static cublasHandle_t handle = nullptr;
  if (!handle && cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error("cu::matmul_cublas: cublasCreate failed");
  cublasSetMathMode(handle, CUBLAS_PEDANTIC_MATH);  // true fp32: no TF32, like the kernels above
  const float alpha = 1.0f;
  // Row-major B (K, N) is column-major (N, K) with leading dimension N; stored (N, K) it is (K, N), ld K.
  const cublasOperation_t opb = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t opa = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int ldb = trans_b ? K : N, lda = trans_a ? M : K;
  const cublasStatus_t s = cublasSgemm(handle, opb, opa, N, M, K, &alpha, B, ldb, A, lda, &beta, C, N);
  if (s != CUBLAS_STATUS_SUCCESS) throw std::runtime_error("cu::matmul_cublas: cublasSgemm failed");
  return true;
}
#else
bool matmul_cublas(const float*, const float*, float*, int, int, int, bool, bool, float) { return false; }
#endif

}  // namespace cu
