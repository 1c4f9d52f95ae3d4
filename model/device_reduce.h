// model/device_reduce.h: the all-reduce of the device-resident step (--device cuda) across the ranks of
// an MPI job: `mpirun -np N bin/train_tiny --device cuda`, one GPU per rank (docs/scaling.md, "GPUs").
//
// Each rank's model::DeviceTrainer leaves its share's gradient in one flat device buffer. The reducer
// replaces it, on every rank, by the whole batch's: the N shares added element by element in the tree of
// model/tree_reduce.h, the same tree (and the same two-phase exchange) as the CPU ranks' model/mpi_job.cpp:
//   1. shard exchange: rank j receives shard j of every rank's gradient;
//   2. tree sum of the N shards it holds (cu::tree_combine, cuda/elementwise.h);
//   3. all-gather: every rank receives every summed shard.
// The loss sums (one double per rank, on the host) go through the MPI job (DataParallel::all_reduce_flat).
//
// Which transport moves the device bytes depends on the build:
//   - the GPU build with NCCL (bin/gpu/train_tiny, RATTN_NCCL): ncclSend/ncclRecv in one group for the
//     exchange, ncclAllGather for phase 3, on device buffers; the communicator is bootstrapped over MPI
//     (rank 0's ncclUniqueId broadcast with DataParallel::broadcast). Rank r uses GPU r mod (GPUs visible).
//   - otherwise, through host memory: cudaMemcpy down, the MPI job's all_reduce_flat (the same exchange
//     and tree, on the host), cudaMemcpy up. A GPU build without NCCL runs this, and so does the CPU
//     execution layer (bin/train_tiny; what CI runs), whose device memory host code cannot touch either.
// Both give the same bits: each element is summed in the tree over ranks, whichever shard holds it
// (cu::tree_combine on the device equals combine_roots on the host bit for bit:
// tests/cuda/test_elementwise.cpp).
//
// Bits: any one N gives the same bits on every run (every sum has a fixed order). Different N give
// results that agree to fp32 rounding, not bit for bit: a DeviceTrainer sums its share's rows inside
// each kernel (the SGEMM's k loop), not as one node per sequence of a tree, so a share's gradient is not
// a node of the single-GPU sum (the CPU ranks' gradients are: model/data_parallel.h).
#pragma once
#include <memory>
#include <string>

#include "model/data_parallel.h"

namespace model {

class DeviceReducer {
 public:
  virtual ~DeviceReducer() = default;
  // grads: n floats of device memory, this rank's share's gradient sum -> the whole batch's, on every rank;
  // loss_sum likewise (host).
  virtual void all_reduce(float* grads, long n, double& loss_sum) = 0;
  // For the first line train_tiny prints: "NCCL 2.28, GPU 0 of this rank" or "MPI through host memory ...".
  virtual std::string name() const = 0;
};

// The reducer this build has for the ranks of dp (dp.size() > 1): NCCL when built with it, else through
// host memory. Throws std::runtime_error when NCCL cannot start.
std::unique_ptr<DeviceReducer> make_device_reducer(DataParallel& dp);

// Whether this build moves device gradients with NCCL (bin/train_tiny --help says so).
bool built_with_nccl();

}  // namespace model
