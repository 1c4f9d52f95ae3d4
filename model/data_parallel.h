// model/data_parallel.h: data-parallel training over ranks (processes of one MPI job; docs/scaling.md).
//
// N ranks train one model. Every step each rank draws the same batch of B sequences (every rank holds
// the same data generator state), computes the loss and gradient of its contiguous share, the
// sequences [r*B/N, (r+1)*B/N) (model/model.h: share_loss_and_grad), and the N shares' nodes of the
// reduction tree are combined in tree order (model/tree_reduce.h) into the whole batch's sums: the same
// bits on every rank, and the bits a single process computes. Then every rank takes the same optimizer
// step from the same values, so the parameters stay identical without ever being sent. Rank 0 alone
// prints, evaluates and writes checkpoints; a checkpoint holds nothing that depends on N, so a run
// resumes with any number of ranks.
//
// A share must be one node of the tree: B/N a power of two (B = N * 2^k; N itself need not be one).
// share_of() refuses any other batch.
//
// DataParallel is the interface the trainer sees; this base class is the single process (rank 0 of 1,
// nothing to combine). The MPI job (model/mpi_job.h) implements it with MPI collectives.
#pragma once
#include <string>
#include <vector>

#include "model/model.h"

namespace model {

class DataParallel {
 public:
  virtual ~DataParallel() = default;
  virtual int rank() const { return 0; }
  virtual int size() const { return 1; }
  bool leader() const { return rank() == 0; }
  // grads: this rank's node of the gradient tree (the tensors in named_tensors order), replaced by the
  // root (the whole batch's gradient); loss_sum likewise. One process: nothing to do.
  virtual void all_reduce_tree(const std::vector<Mat<float>*>& grads, double& loss_sum) {
    (void)grads;
    (void)loss_sum;
  }
  // The same for a flat array of n floats in host memory, in place (MpiJob moves it with the same two
  // collectives): the device-resident step's gradient after it is copied down, when there is no NCCL
  // (model/device_reduce.h); n = 0 combines the loss sums alone.
  virtual void all_reduce_flat(float* data, long n, double& loss_sum) {
    (void)data;
    (void)n;
    (void)loss_sum;
  }
  // bytes from rank 0 to every rank (NCCL's bootstrap: the communicator's unique id).
  virtual void broadcast(void* bytes, long n) {
    (void)bytes;
    (void)n;
  }
  // The trainer's word that the checkpoint `path` of step `step` is complete (every rank calls it), for the
  // message a rank prints when the job is ended under it (model/mpi_job.cpp).
  virtual void checkpoint_written(const std::string& path, long step) {
    (void)path;
    (void)step;
  }
  // Seconds spent in all_reduce_tree so far (docs/scaling.md): waiting for the other ranks to finish their
  // shares, and the all-reduce itself.
  double wait_seconds() const { return wait_seconds_; }
  double reduce_seconds() const { return reduce_seconds_; }

 protected:
  double wait_seconds_ = 0, reduce_seconds_ = 0;
};

// The ranks of this process: one rank unless set_data_parallel() was given a job (bin/train_tiny under
// mpirun). The object must outlive every training run.
DataParallel& data_parallel();
void set_data_parallel(DataParallel* dp);

// The share of a batch of B sequences that rank `rank` of `ranks` computes; throws UsageError (--batch)
// unless B = ranks * 2^k.
BatchShare share_of(int B, int rank, int ranks);

// The ranks' nodes combined in tree order, element by element: roots[j] points at n floats, rank j's
// node; on return roots[0] holds their tree sum (the other arrays are overwritten). Any split of the
// elements among callers gives the same bits (each element's sum is its own tree).
void combine_roots(const std::vector<float*>& roots, long n);

// All gradient tensors, one after the other (named_tensors order), and back.
long total_size(const std::vector<Mat<float>*>& tensors);
void pack(const std::vector<Mat<float>*>& tensors, float* out);
void unpack(const float* in, const std::vector<Mat<float>*>& tensors);

}  // namespace model
