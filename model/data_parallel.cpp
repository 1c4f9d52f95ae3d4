// model/data_parallel.cpp: the share rule and the combination of the ranks' tree nodes (see
// data_parallel.h). No MPI here: model/mpi_job.cpp moves the bytes.
#include "model/data_parallel.h"

#include <algorithm>

#include "model/cli.h"

namespace model {

namespace {
DataParallel g_single_process;
DataParallel* g_current = &g_single_process;
}  // namespace

DataParallel& data_parallel() { return *g_current; }
void set_data_parallel(DataParallel* dp) { g_current = dp ? dp : &g_single_process; }

BatchShare share_of(int B, int rank, int ranks) {
  if (ranks == 1) return {0, B};
  if (B % ranks != 0 || !is_power_of_two(B / ranks)) {
    // the nearest batches that split into power-of-two shares: ranks * 2^k around B
    int below = ranks, above = ranks;
    while (above < B) above *= 2;
    while (below * 2 <= B) below *= 2;
    std::string hint = "--batch " + std::to_string(above);
    if (below != above && below <= B) hint = "--batch " + std::to_string(below) + " or " + hint;
    throw UsageError("--batch: " + std::to_string(ranks) + " ranks need a batch of " + std::to_string(ranks) +
                     " x a power of two sequences (each rank's share is one node of the reduction tree), got " +
                     std::to_string(B) + "; try " + hint);
  }
  const int count = B / ranks;
  return {rank * count, count};
}

void combine_roots(const std::vector<float*>& roots, long n) {
  for (const std::vector<TreeAdd>& level : tree_levels(long(roots.size())))
    for (const TreeAdd& a : level) {
      float* dst = roots[size_t(a.dst)];
      const float* src = roots[size_t(a.src)];
#pragma omp parallel for schedule(static)
      for (long e = 0; e < n; ++e) dst[e] = dst[e] + src[e];  // node dst = node dst + node src
    }
}

long total_size(const std::vector<Mat<float>*>& tensors) {
  long n = 0;
  for (const Mat<float>* t : tensors) n += long(t->size());
  return n;
}

void pack(const std::vector<Mat<float>*>& tensors, float* out) {
  for (const Mat<float>* t : tensors) out = std::copy(t->data(), t->data() + t->size(), out);
}

void unpack(const float* in, const std::vector<Mat<float>*>& tensors) {
  for (Mat<float>* t : tensors) {
    std::copy(in, in + t->size(), t->data());
    in += t->size();
  }
}

}  // namespace model
