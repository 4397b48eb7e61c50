// The launch environment, the single-process communicator and the choice of transport (engine/dist/communicator.h).
#include "engine/dist/communicator.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <limits>

namespace stoke::dist {

#if defined(STOKE_WITH_MPI)
std::unique_ptr<Communicator> make_mpi_communicator(const LaunchInfo& launch);  // mpi_communicator.cpp
#endif

namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int env_int(const char* name, int lo, int hi) {
  const char* v = env(name);
  char* end = nullptr;
  errno = 0;
  const long x = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || errno != 0 || x < lo || x > hi)
    throw UserError(str("the launcher's ", name, "='", v, "' is not a whole number in [", lo, ", ", hi, "]"));
  return static_cast<int>(x);
}

std::string& prefix_slot() {
  static std::string p;
  return p;
}

}  // namespace

LaunchInfo launch_from_environment() {
  LaunchInfo l;
  constexpr int kMax = 1 << 20;
  auto take = [&](const char* launcher, const char* rank, const char* world, const char* local) {
    l.launcher = launcher;
    l.world = env_int(world, 1, kMax);
    l.rank = env(rank) ? env_int(rank, 0, kMax) : 0;
    l.local_rank = env(local) ? env_int(local, 0, kMax) : 0;
    if (l.rank >= l.world)
      throw UserError(
          str("the launcher says rank ", l.rank, " (", rank, ") of a world of ", l.world, " (", world, ")"));
  };
  if (env("OMPI_COMM_WORLD_SIZE")) {
    take("mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK");
  } else if (env("WORLD_SIZE")) {
    take("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK");
    if (env("MASTER_ADDR")) l.master_addr = env("MASTER_ADDR");
    if (env("MASTER_PORT")) l.master_port = env_int("MASTER_PORT", 1, 65535);
  } else if (env("SLURM_NTASKS")) {
    take("slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID");
  }
  return l;
}

std::string Communicator::broadcast_string(const std::string& s, int root) {
  uint64_t n = s.size();
  broadcast(&n, sizeof n, root);
  std::string out = rank() == root ? s : std::string(n, '\0');
  if (n > 0) broadcast(out.data(), n, root);
  return out;
}

std::vector<double> Communicator::each_rank(double mine) {
  std::vector<double> all(static_cast<size_t>(world()), 0.0);
  all[static_cast<size_t>(rank())] = mine;
  allreduce_sum(all.data(), all.size());
  return all;
}

Transport choose_transport(const LaunchInfo& launch, bool cuda, bool nccl_built) {
  if (!cuda || launch.launcher == "none") return Transport::host;
  if (nccl_built) return Transport::nccl;
  if (launch.world > 1)
    throw UserError(
        str("a data-parallel run of ", launch.world,
            " processes on the CUDA backend needs NCCL, and this "
            "stoke was built without it (install NCCL beside the CUDA toolkit and rebuild), or pass --device cpu"));
  return Transport::host;  // one process: the plain step
}

bool mpi_available() {
#if defined(STOKE_WITH_MPI)
  return true;
#else
  return false;
#endif
}

std::unique_ptr<Communicator> make_communicator(const LaunchInfo& launch) {
  std::unique_ptr<Communicator> c;
  if (launch.world == 1) {
    c = std::make_unique<SingleProcess>();
  } else if (launch.launcher == "torchrun") {
    throw UserError(
        str("a world of ", launch.world,
            " from RANK/WORLD_SIZE: the CPU backend joins processes over MPI only "
            "(launch with mpirun or srun); the TCP rendezvous on MASTER_ADDR:MASTER_PORT serves NCCL, which "
            "the CUDA backend uses (--device cuda)"));
  } else {
#if defined(STOKE_WITH_MPI)
    c = make_mpi_communicator(launch);
#else
    throw UserError(str(launch.launcher, " started a world of ", launch.world,
                        " processes, but this stoke was built without MPI (install libopenmpi-dev and rebuild)"));
#endif
  }
  if (const char* t = env("STOKE_DIST_TIMEOUT")) {
    char* end = nullptr;
    const double s = std::strtod(t, &end);
    if (end == t || *end != '\0' || !(s > 0))
      throw UserError(str("STOKE_DIST_TIMEOUT='", t, "' must be a number of seconds > 0"));
    c->set_timeout_seconds(s);
  }
  if (c->world() > 1) set_error_prefix(str("rank ", c->rank(), "/", c->world(), ": "));
  return c;
}

const std::string& error_prefix() { return prefix_slot(); }
void set_error_prefix(const std::string& prefix) { prefix_slot() = prefix; }

void exit_without_peers(int code) {
  if (prefix_slot().empty()) return;
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(code);
}

}  // namespace stoke::dist
