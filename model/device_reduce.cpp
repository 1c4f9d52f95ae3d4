// model/device_reduce.cpp: the transports behind model/device_reduce.h. Compiled twice: into librattn.a
// for the CPU execution layer (no RATTN_NCCL), and for bin/gpu/train_tiny with RATTN_CUDA_RUNTIME and,
// when the Makefile finds NCCL, RATTN_NCCL.
#include "model/device_reduce.h"

#include <algorithm>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/buffer.h"
#include "cuda/elementwise.h"

#ifdef RATTN_NCCL
#include <nccl.h>
#endif

namespace model {

namespace {

// Through host memory: the gradient comes down (cudaMemcpy), the MPI job all-reduces it in host memory
// (the same tree), and it goes back up. What a GPU build without NCCL does, and what the CPU execution
// layer runs (its device memory is closed to host code, as a GPU's is: cuda/emu/memory.h). Costs two
// copies of the gradient over PCIe per step on a GPU, and MPI's host transport in between.
class HostStagedReducer final : public DeviceReducer {
 public:
  explicit HostStagedReducer(DataParallel& dp) : dp_(dp) {}
  void all_reduce(float* grads, long n, double& loss_sum) override {
    host_.resize(size_t(n));
    if (n > 0)
      cu::check(cudaMemcpy(host_.data(), grads, size_t(n) * sizeof(float), cudaMemcpyDeviceToHost), "gradient down");
    dp_.all_reduce_flat(host_.data(), n, loss_sum);
    if (n > 0)
      cu::check(cudaMemcpy(grads, host_.data(), size_t(n) * sizeof(float), cudaMemcpyHostToDevice), "gradient up");
  }
  std::string name() const override { return "MPI through host memory (the gradient copied down and up)"; }

 private:
  DataParallel& dp_;
  std::vector<float> host_;
};

#ifdef RATTN_NCCL

void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) throw std::runtime_error(std::string("NCCL: ") + what + ": " + ncclGetErrorString(r));
}

// This process's index among the ranks on its machine (the launcher's variable), for the GPU it takes.
int local_rank(int rank) {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"})
    if (const char* v = std::getenv(name)) return std::atoi(v);
  return rank;
}

// One NCCL communicator over the job's ranks, one GPU each. Per step (docs/scaling.md, "GPUs"):
//   1. one group of ncclSend/ncclRecv: shard j of this rank's gradient to rank j, shard `rank` of every
//      rank's gradient into shards_ (node j at shards_ + j*S);
//   2. cu::tree_combine: the N shards added in the tree of model/tree_reduce.h, into node 0;
//   3. ncclAllGather of node 0 (S floats, the last shard padded): every rank gets every summed shard.
// Each rank sends and receives about 2 P (N-1)/N floats, as a ring all-reduce. ncclAllReduce would move
// the same, but in an order NCCL picks (its ring or tree, by size and topology): not a sum whose order
// this project states. Everything runs on the default stream, after the backward's kernels.
class NcclReducer final : public DeviceReducer {
 public:
  explicit NcclReducer(DataParallel& dp) : dp_(dp), rank_(dp.rank()), size_(dp.size()) {
    int gpus = 0;
    cu::check(cudaGetDeviceCount(&gpus), "NCCL reducer: cudaGetDeviceCount");
    if (gpus < 1) throw std::runtime_error("--device cuda: no CUDA device is available");
    gpu_ = local_rank(rank_) % gpus;
    cu::check(cudaSetDevice(gpu_), "NCCL reducer: cudaSetDevice");
    ncclUniqueId id{};
    if (rank_ == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    dp_.broadcast(&id, long(sizeof id));
    nccl_check(ncclCommInitRank(&comm_, size_, id, rank_), "ncclCommInitRank");
  }
  ~NcclReducer() override {
    if (comm_) ncclCommDestroy(comm_);
  }
  NcclReducer(const NcclReducer&) = delete;
  NcclReducer& operator=(const NcclReducer&) = delete;

  void all_reduce(float* grads, long n, double& loss_sum) override {
    const long N = size_, S = (n + N - 1) / N;  // shard j: elements [j*S, min(n, (j+1)*S))
    auto count = [&](long j) { return size_t(std::max(0L, std::min(n, (j + 1) * S) - j * S)); };
    if (shards_.size() < size_t(N * S)) {
      shards_ = cu::DeviceBuffer<float>(size_t(N * S));
      gathered_ = cu::DeviceBuffer<float>(size_t(N * S));
      // The last shard's padding (node 0 beyond `mine` on the last rank) is sent by the all-gather and
      // never written: zero it once, so that no step moves uninitialised memory.
      cu::check(cudaMemset(shards_.data(), 0, size_t(N * S) * sizeof(float)), "NCCL reducer: zero shards");
    }
    const size_t mine = count(rank_);
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (long j = 0; j < N; ++j) {
      if (count(j) > 0) nccl_check(ncclSend(grads + j * S, count(j), ncclFloat, int(j), comm_, 0), "ncclSend");
      if (mine > 0) nccl_check(ncclRecv(shards_.data() + j * S, mine, ncclFloat, int(j), comm_, 0), "ncclRecv");
    }
    nccl_check(ncclGroupEnd(), "ncclGroupEnd");
    cu::tree_combine(shards_.data(), int(N), S, long(mine));
    nccl_check(ncclAllGather(shards_.data(), gathered_.data(), size_t(S), ncclFloat, comm_, 0), "ncclAllGather");
    cu::check(cudaMemcpyAsync(grads, gathered_.data(), size_t(n) * sizeof(float), cudaMemcpyDeviceToDevice, 0),
              "NCCL reducer: gather copy");
    cu::check(cudaStreamSynchronize(0), "NCCL reducer: synchronize");
    float none = 0;  // no gradient elements: the loss sums alone, on the host, over MPI
    dp_.all_reduce_flat(&none, 0, loss_sum);
  }

  std::string name() const override {
    int v = 0;
    ncclGetVersion(&v);
    return "NCCL " + std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + ", GPU " + std::to_string(gpu_) +
           " of this rank";
  }

 private:
  DataParallel& dp_;
  int rank_, size_, gpu_ = 0;
  ncclComm_t comm_ = nullptr;
  cu::DeviceBuffer<float> shards_{0}, gathered_{0};
};

#endif  // RATTN_NCCL

}  // namespace

bool built_with_nccl() {
#ifdef RATTN_NCCL
  return true;
#else
  return false;
#endif
}

std::unique_ptr<DeviceReducer> make_device_reducer(DataParallel& dp) {
#ifdef RATTN_NCCL
  return std::make_unique<NcclReducer>(dp);
#else
  return std::make_unique<HostStagedReducer>(dp);
#endif
}

}  // namespace model
