// Data-parallel training: the processes of one job and how they talk. One process per device (or per CPU backend
// instance), launched the way clusters launch: mpirun (OMPI_COMM_WORLD_*), torchrun-style variables
// (RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR/MASTER_PORT) or Slurm (SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID).
//
// A Communicator is this process's view of the job: its rank, the world, the rank on its node (which device it
// drives), and the collectives training needs: an in-place sum of floats (gradients), a broadcast of bytes (the
// settings every rank must share), a barrier. No collective waits forever: each is bounded by timeout_seconds(),
// after which the ranks that no longer answer are named in a LostPeer error.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "base/error.h"

namespace stoke::dist {

// Where the process count came from.
struct LaunchInfo {
  int rank = 0, world = 1, local_rank = 0;
  std::string launcher = "none";  // none | mpirun | torchrun | slurm
  std::string master_addr;        // torchrun style only
  int master_port = 0;
};

// Reads the launcher's variables (mpirun first, then torchrun style, then Slurm). Throws UserError when they are
// malformed or inconsistent (rank outside the world, a negative local rank, a number that is not one).
LaunchInfo launch_from_environment();

// A peer stopped answering within the timeout (it died, hung, or was killed). ranks() names which.
class LostPeer : public Error {
 public:
  LostPeer(const std::string& what, std::vector<int> ranks) : Error(what), ranks_(std::move(ranks)) {}
  const std::vector<int>& ranks() const { return ranks_; }

 private:
  std::vector<int> ranks_;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int world() const = 0;
  virtual int local_rank() const = 0;
  virtual std::string transport() const = 0;  // "single process", "MPI (Open MPI v4.1.4)", ...
  // Sum over every rank, in place. Every rank calls it with the same n, in the same order of calls.
  virtual void allreduce_sum(float* data, size_t n) = 0;
  // The same in doubles: batch-norm statistics summed across processes (--sync-bn), where float sums of many rows
  // would lose the digits the variance needs.
  virtual void allreduce_sum(double* data, size_t n) = 0;
  // root's bytes to every rank (the same size on every rank).
  virtual void broadcast(void* data, size_t bytes, int root) = 0;
  virtual void barrier() = 0;
  // The longest a collective may wait for the slowest rank before the missing ones are called lost.
  double timeout_seconds() const { return timeout_s_; }
  void set_timeout_seconds(double s) { timeout_s_ = s; }
  // A string from root to every rank (its length first, then its bytes).
  std::string broadcast_string(const std::string& s, int root);
  // Every rank's `mine`, indexed by rank, on every rank (an all-reduce of a vector in which each rank fills its
  // own slot). Exact for counts and flags.
  std::vector<double> each_rank(double mine);

 protected:
  double timeout_s_ = 300;
};

// World 1: every collective is the identity.
class SingleProcess final : public Communicator {
 public:
  int rank() const override { return 0; }
  int world() const override { return 1; }
  int local_rank() const override { return 0; }
  std::string transport() const override { return "single process"; }
  void allreduce_sum(float*, size_t) override {}
  void allreduce_sum(double*, size_t) override {}
  void broadcast(void*, size_t, int) override {}
  void barrier() override {}
};

// The communicator for this launch: SingleProcess for world 1; MPI when the build has it and mpirun or Slurm
// started the job. Throws UserError when the launch asks for several processes and no transport can join them
// (no MPI in this build; torchrun-style variables on the CPU backend, which has no TCP transport yet).
// The timeout comes from STOKE_DIST_TIMEOUT (seconds) when set, else 300.
std::unique_ptr<Communicator> make_communicator(const LaunchInfo& launch);

// What carries a training run's gradients: the host communicator (make_communicator: MPI, or nothing for one
// process), or NCCL — a CUDA run started by a launcher, in any world (1 included, so one GPU runs the same path
// as each rank of a job). Throws UserError for a CUDA world of several processes in a build without NCCL.
enum class Transport { host, nccl };
Transport choose_transport(const LaunchInfo& launch, bool cuda, bool nccl_built);

// Whether this build has the MPI transport (STOKE_WITH_MPI).
bool mpi_available();

// "rank R/W: " once a communicator of world > 1 exists (error messages start with it), else "".
const std::string& error_prefix();
void set_error_prefix(const std::string& prefix);

// Ends this process after a fatal error in a job of several processes, without waiting for peers that may be gone
// (no MPI_Finalize, which would block on them). Returns normally in a single-process run.
void exit_without_peers(int code);

}  // namespace stoke::dist
