// engine/dist: the launch environment as clusters set it, the single-process communicator, and the TCP rendezvous
// (on loopback) that hands NCCL's unique id to every rank. The MPI transport is tested end to end in tests/dist.
#include <gtest/gtest.h>

#include <cstdlib>
#include <thread>

#include "base/error.h"
#include "engine/dist/communicator.h"
#include "engine/dist/tcp_rendezvous.h"

namespace {

using namespace stoke;
using namespace stoke::dist;

// Sets the given variables for one test and clears every launcher variable before and after.
struct Env {
  static constexpr const char* kAll[] = {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                                         "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                                         "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"};
  explicit Env(std::initializer_list<std::pair<const char*, const char*>> vars) {
    clear();
    for (auto [k, v] : vars) setenv(k, v, 1);
  }
  ~Env() { clear(); }
  static void clear() {
    for (const char* k : kAll) unsetenv(k);
  }
};

TEST(Launch, NoLauncherIsOneProcess) {
  Env e({});
  const LaunchInfo l = launch_from_environment();
  EXPECT_EQ(l.world, 1);
  EXPECT_EQ(l.rank, 0);
  EXPECT_EQ(l.launcher, "none");
  auto c = make_communicator(l);
  EXPECT_EQ(c->world(), 1);
  EXPECT_EQ(c->transport(), "single process");
  float x[2] = {1, 2};
  c->allreduce_sum(x, 2);
  EXPECT_EQ(x[1], 2.f);
  EXPECT_EQ(c->broadcast_string("abc", 0), "abc");
}

TEST(Launch, ReadsMpirunTorchrunAndSlurm) {
  {
    Env e({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "8"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
           {"RANK", "0"}, {"WORLD_SIZE", "2"}});  // mpirun's variables win
    const LaunchInfo l = launch_from_environment();
    EXPECT_EQ(l.launcher, "mpirun");
    EXPECT_EQ(l.rank, 3);
    EXPECT_EQ(l.world, 8);
    EXPECT_EQ(l.local_rank, 1);
  }
  {
    Env e({{"RANK", "1"},
           {"WORLD_SIZE", "4"},
           {"LOCAL_RANK", "1"},
           {"MASTER_ADDR", "10.0.0.1"},
           {"MASTER_PORT", "29500"}});
    const LaunchInfo l = launch_from_environment();
    EXPECT_EQ(l.launcher, "torchrun");
    EXPECT_EQ(l.rank, 1);
    EXPECT_EQ(l.world, 4);
    EXPECT_EQ(l.master_addr, "10.0.0.1");
    EXPECT_EQ(l.master_port, 29500);
    // The CPU backend has no TCP transport: a clear refusal, not a silent world of 1.
    EXPECT_THROW(make_communicator(l), UserError);
  }
  {
    Env e({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "6"}, {"SLURM_LOCALID", "2"}});
    const LaunchInfo l = launch_from_environment();
    EXPECT_EQ(l.launcher, "slurm");
    EXPECT_EQ(l.rank, 5);
    EXPECT_EQ(l.local_rank, 2);
  }
}

TEST(Launch, RefusesInconsistentVariables) {
  {
    Env e({{"RANK", "4"}, {"WORLD_SIZE", "4"}});
    EXPECT_THROW(launch_from_environment(), UserError);
  }
  {
    Env e({{"OMPI_COMM_WORLD_RANK", "x"}, {"OMPI_COMM_WORLD_SIZE", "2"}});
    EXPECT_THROW(launch_from_environment(), UserError);
  }
  {
    Env e({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "0"}});
    EXPECT_THROW(launch_from_environment(), UserError);
  }
}

// A free loopback port: bind to 0 and read back what the kernel chose (a small race with other tests, accepted).
int free_port();

// The trainer's transport: NCCL for a CUDA run started by any launcher (world 1 too), the host communicator
// otherwise; a CUDA job of several processes without NCCL in the build is a user error naming the way out.
TEST(WorldTransport, NcclForLaunchedCudaRunsOnly) {
  LaunchInfo none;
  LaunchInfo one;
  one.launcher = "torchrun";
  LaunchInfo two;
  two.launcher = "mpirun";
  two.world = 2;
  two.rank = 1;
  EXPECT_EQ(choose_transport(none, true, true), Transport::host);
  EXPECT_EQ(choose_transport(one, true, true), Transport::nccl);
  EXPECT_EQ(choose_transport(two, true, true), Transport::nccl);
  EXPECT_EQ(choose_transport(two, false, true), Transport::host);
  EXPECT_EQ(choose_transport(one, true, false), Transport::host);
  try {
    choose_transport(two, true, false);
    FAIL() << "a CUDA job without NCCL was accepted";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("needs NCCL"), std::string::npos) << e.what();
  }
}

TEST(Rendezvous, EveryRankGetsRankZerosBytesOnLoopback) {
  const int port = free_port();
  constexpr int kWorld = 4;
  const std::vector<uint8_t> id = {1, 2, 3, 250, 0, 7};
  std::vector<std::vector<uint8_t>> got(kWorld);
  std::vector<std::thread> ts;
  for (int r = kWorld - 1; r >= 0; --r)  // the others first: they must wait for rank 0 to listen
    ts.emplace_back([&, r] {
      got[static_cast<size_t>(r)] =
          tcp_rendezvous("127.0.0.1", port, r, kWorld, r == 0 ? id : std::vector<uint8_t>{}, 20);
    });
  for (auto& t : ts) t.join();
  for (const auto& g : got) EXPECT_EQ(g, id);
}

TEST(Rendezvous, AMissingRankIsNamedWithinTheTimeout) {
  const int port = free_port();
  std::string err;
  std::thread one([&] { tcp_rendezvous("127.0.0.1", port, 1, 3, {}, 5); });
  try {
    tcp_rendezvous("127.0.0.1", port, 0, 3, {9}, 1.5);  // rank 2 never comes
  } catch (const Error& e) {
    err = e.what();
  }
  one.join();
  EXPECT_NE(err.find("rank 2 did not connect within 1.5 s"), std::string::npos) << err;
}

}  // namespace

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace {
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}
}  // namespace
