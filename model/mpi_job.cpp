// model/mpi_job.cpp: the MPI job behind data-parallel training (see mpi_job.h, data_parallel.h).
#include "model/mpi_job.h"

#include <chrono>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "model/trainer.h"

#ifdef RATTN_MPI
#define OMPI_SKIP_MPICXX 1   // the C interface only: MPI's deprecated C++ bindings need a library of their own
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace model {

int launched_ranks() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
    if (const char* v = std::getenv(name)) return std::max(1, std::atoi(v));
  return 1;
}

#ifdef RATTN_MPI

bool built_with_mpi() { return true; }

namespace {

// When one rank dies, mpirun ends the others with SIGTERM (then SIGKILL). Each says so in one line,
// written by the handler from a buffer prepared beforehand (formatting is not safe in a signal handler).
// mpirun forwards the ranks' output as it tears the job down and may drop some of these lines; its own
// message names the rank that died.
char g_stop_line[1024];
size_t g_stop_len = 0;

void set_stop_line(int rank, int size, const std::string& checkpoint) {
  const std::string line = "train_tiny: rank " + std::to_string(rank) + " of " + std::to_string(size) +
                           ": stopped by mpirun, another rank of the job ended first (see mpirun's message)" +
                           checkpoint + "\n";
  g_stop_len = std::min(line.size(), sizeof g_stop_line);
  std::memcpy(g_stop_line, line.data(), g_stop_len);
}

void on_stop(int sig) {
  if (::write(2, g_stop_line, g_stop_len) < 0) {
  }
  ::_exit(128 + sig);
}

// One rank of MPI_COMM_WORLD. The all-reduce is done in two collectives, each rank moving about twice
// the gradient's size whatever N is (the cost of a ring all-reduce), and every element summed in the
// fixed tree:
//   1. MPI_Alltoallv: the flat gradient (P floats) is cut into N shards, shard j going to rank j; rank j
//      then holds shard j of every rank's node and combines the N of them in tree order (combine_roots);
//   2. MPI_Allgatherv: every rank receives every combined shard: the whole root, the same bits everywhere.
// The loss: MPI_Allgather of the N nodes' loss sums, combined by tree_sum on every rank.
class MpiJob final : public DataParallel {
 public:
  MpiJob() {
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    set_stop_line(rank_, size_, rank_ == 0 ? "; no checkpoint written by this run yet" : "");
    struct sigaction sa = {};
    sa.sa_handler = on_stop;
    sigaction(SIGTERM, &sa, nullptr);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool communicated() const { return communicated_; }
  void checkpoint_written(const std::string& path, long step) override {
    if (rank_ != 0) return;  // rank 0 writes the checkpoints: only it knows when one is complete
    set_stop_line(rank_, size_, "; the last checkpoint it completed, " + path + " (step " + std::to_string(step) +
                                    "), is intact (a checkpoint is replaced atomically)");
  }

  void all_reduce_tree(const std::vector<Mat<float>*>& grads, double& loss_sum) override {
    flat_.resize(size_t(total_size(grads)));
    pack(grads, flat_.data());
    all_reduce_flat(flat_.data(), long(flat_.size()), loss_sum);
    unpack(flat_.data(), grads);
  }

  void all_reduce_flat(float* flat, long P, double& loss_sum) override {
    // Time spent waiting for the slowest rank to finish its share, apart from the all-reduce itself: a
    // barrier first (one message of latency) tells them apart in the timings (docs/scaling.md).
    const auto t_wait = std::chrono::steady_clock::now();
    MPI_Barrier(MPI_COMM_WORLD);
    const auto t0 = std::chrono::steady_clock::now();
    wait_seconds_ += std::chrono::duration<double>(t0 - t_wait).count();
    communicated_ = true;
    const long N = size_;
    if (P > long(INT_MAX)) throw std::runtime_error("all-reduce: more than 2^31 - 1 gradient elements (MPI counts)");
    auto start = [&](long j) { return int(P * j / N); };  // shard j: elements [start(j), start(j + 1))
    const int mine = start(rank_ + 1) - start(rank_);
    std::vector<int> send_counts(static_cast<size_t>(N)), send_at(send_counts), recv_at(send_counts),
        recv_counts(static_cast<size_t>(N), mine);
    for (long j = 0; j < N; ++j) {
      send_at[size_t(j)] = start(j);
      send_counts[size_t(j)] = start(j + 1) - start(j);
      recv_at[size_t(j)] = int(j) * mine;
    }
    shards_.resize(size_t(N * mine) + 1);  // + 1: never an empty vector's null data() for MPI
    // 1. shard r of every rank's node, then their tree sum
    MPI_Alltoallv(flat, send_counts.data(), send_at.data(), MPI_FLOAT, shards_.data(), recv_counts.data(),
                  recv_at.data(), MPI_FLOAT, MPI_COMM_WORLD);
    std::vector<float*> roots;
    for (long j = 0; j < N; ++j) roots.push_back(shards_.data() + j * mine);
    combine_roots(roots, mine);
    // 2. every combined shard to every rank
    MPI_Allgatherv(shards_.data(), mine, MPI_FLOAT, flat, send_counts.data(), send_at.data(), MPI_FLOAT,
                   MPI_COMM_WORLD);
    std::vector<double> losses(static_cast<size_t>(N));
    MPI_Allgather(&loss_sum, 1, MPI_DOUBLE, losses.data(), 1, MPI_DOUBLE, MPI_COMM_WORLD);
    loss_sum = tree_sum(losses);
    reduce_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  void broadcast(void* bytes, long n) override {
    if (n > long(INT_MAX)) throw std::runtime_error("broadcast: more than 2^31 - 1 bytes");
    MPI_Bcast(bytes, int(n), MPI_BYTE, 0, MPI_COMM_WORLD);
  }

 private:
  int rank_ = 0, size_ = 1;
  bool communicated_ = false;
  std::vector<float> flat_, shards_;
};

}  // namespace

std::unique_ptr<DataParallel> join_mpi_job(int* argc, char*** argv) {
  if (launched_ranks() == 1 && !std::getenv("OMPI_COMM_WORLD_RANK")) return nullptr;
  MPI_Init(argc, argv);
  return std::make_unique<MpiJob>();
}

int leave_mpi_job(std::unique_ptr<DataParallel> job, int status) {
  if (!job) return status;
  const auto* mj = static_cast<const MpiJob*>(job.get());
  // 0 and a numerical stop are reached by every rank at the same step (they hold the same values); so is
  // any refusal before the first collective (every rank checks the same command line and files).
  if (status == 0 || status == kStatusNonFinite || !mj->communicated() || mj->size() == 1) {
    job.reset();
    MPI_Finalize();
    return status;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, status);  // ends every rank of the job
  return status;
}

#else  // built without MPI

bool built_with_mpi() { return false; }

std::unique_ptr<DataParallel> join_mpi_job(int*, char***) {
  if (const int n = launched_ranks(); n > 1)
    throw std::runtime_error("started as one of " + std::to_string(n) +
                             " processes (mpirun), but this train_tiny was built without MPI: install OpenMPI "
                             "(scripts/deps.sh) and rebuild (make), or run it without mpirun");
  return nullptr;
}

int leave_mpi_job(std::unique_ptr<DataParallel>, int status) { return status; }

#endif

}  // namespace model
