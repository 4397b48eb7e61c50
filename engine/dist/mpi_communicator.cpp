// The MPI transport (Open MPI): collectives are non-blocking and polled, so none waits longer than the timeout;
// while it waits, a rank answers its peers' "are you there?" messages on a second communicator, and when the
// timeout passes it asks every peer itself: the ones that do not answer within a few seconds are the lost ranks.
#include <mpi.h>

#include <algorithm>
#include <exception>
#include <limits>
#include <chrono>
#include <mutex>
#include <thread>

#include "engine/dist/communicator.h"

namespace stoke::dist {

namespace {

using Clock = std::chrono::steady_clock;
constexpr int kPing = 7001, kPong = 7002;

std::string mpi_error(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return str("MPI error ", code);
  return std::string(text, static_cast<size_t>(len));
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(const LaunchInfo& launch) : local_rank_(launch.local_rank) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      // Collectives come from the trainer's thread at start and end and from the backend's compute thread in
      // between, never at once (the mutex below makes sure): SERIALIZED is enough.
      if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS)
        throw Error("MPI_Init_thread failed");
      if (provided < MPI_THREAD_SERIALIZED) throw Error("this MPI does not allow calls from more than one thread");
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_dup(MPI_COMM_WORLD, &ping_);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(ping_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &world_);
    if (rank_ != launch.rank || world_ != launch.world)
      throw UserError(str("MPI says rank ", rank_, " of ", world_, " but ", launch.launcher, "'s variables say rank ",
                          launch.rank, " of ", launch.world));
    char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    std::string v(version, static_cast<size_t>(len));
    v = v.substr(0, v.find_first_of(",\n"));
    transport_ = str("MPI (", v, ")");
  }

  ~MpiCommunicator() override {
    // After a failure a peer may be gone: MPI_Finalize would wait for it. exit_without_peers() ends the process.
    if (!failed_ && std::uncaught_exceptions() == 0) {
      MPI_Comm_free(&ping_);
      MPI_Comm_free(&comm_);
      MPI_Finalize();
    }
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  int local_rank() const override { return local_rank_; }
  std::string transport() const override { return transport_; }

  void allreduce_sum(float* data, size_t n) override { sum(data, n, MPI_FLOAT); }
  void allreduce_sum(double* data, size_t n) override { sum(data, n, MPI_DOUBLE); }

  void broadcast(void* data, size_t bytes, int root) override {
    std::lock_guard<std::mutex> lock(mu_);
    STOKE_CHECK(bytes <= static_cast<size_t>(std::numeric_limits<int>::max()));
    MPI_Request req;
    check(MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_, &req), "broadcast");
    wait(req, "broadcast");
  }

  void barrier() override {
    std::lock_guard<std::mutex> lock(mu_);
    MPI_Request req;
    check(MPI_Ibarrier(comm_, &req), "barrier");
    wait(req, "barrier");
  }

 private:
  void sum(void* data, size_t n, MPI_Datatype type) {
    std::lock_guard<std::mutex> lock(mu_);
    STOKE_CHECK(n <= static_cast<size_t>(std::numeric_limits<int>::max()));
    MPI_Request req;
    check(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(n), type, MPI_SUM, comm_, &req), "all-reduce");
    wait(req, "all-reduce");
  }

  void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    failed_ = true;
    const std::vector<int> lost = probe();
    throw LostPeer(str("MPI ", what, " failed (", mpi_error(rc), ")", lost.empty() ? "" : "; lost " + ranks_text(lost)),
                   lost);
  }

  // Polls the request until it completes or the timeout passes, answering peers' pings meanwhile.
  void wait(MPI_Request& req, const char* what) {
    const auto t0 = Clock::now();
    int spins = 0;
    for (;;) {
      int done = 0;
      check(MPI_Test(&req, &done, MPI_STATUS_IGNORE), what);
      if (done) return;
      answer_pings();
      if (++spins > 2000) {
        std::this_thread::sleep_for(std::chrono::microseconds(spins > 20000 ? 1000 : 50));
        if (std::chrono::duration<double>(Clock::now() - t0).count() > timeout_s_) {
          failed_ = true;
          const std::vector<int> lost = probe();
          if (lost.empty())
            throw LostPeer(str("an MPI ", what, " did not complete within ", timeout_s_,
                               " s (STOKE_DIST_TIMEOUT), though every rank still answers: the ranks are out of step"),
                           lost);
          throw LostPeer(str("lost ", ranks_text(lost), ": no answer within ", timeout_s_,
                             " s (STOKE_DIST_TIMEOUT) to an MPI ", what, "; stopping"),
                         lost);
        }
      }
    }
  }

  void answer_pings() {
    for (;;) {
      int flag = 0;
      MPI_Status st;
      if (MPI_Iprobe(MPI_ANY_SOURCE, kPing, ping_, &flag, &st) != MPI_SUCCESS || !flag) return;
      int token = 0;
      MPI_Recv(&token, 1, MPI_INT, st.MPI_SOURCE, kPing, ping_, MPI_STATUS_IGNORE);
      MPI_Request r;
      MPI_Isend(&pong_token_, 1, MPI_INT, st.MPI_SOURCE, kPong, ping_, &r);
      MPI_Request_free(&r);
    }
  }

  // Asks every peer whether it is there; returns the ranks that gave no answer within a few seconds.
  std::vector<int> probe() {
    const size_t w = static_cast<size_t>(world_);
    std::vector<MPI_Request> recv(w, MPI_REQUEST_NULL);
    std::vector<int> answer(w, 0), done(w, 0);
    for (int p = 0; p < world_; ++p) {
      if (p == rank_) {
        done[static_cast<size_t>(p)] = 1;
        continue;
      }
      MPI_Request s;
      if (MPI_Isend(&ping_token_, 1, MPI_INT, p, kPing, ping_, &s) == MPI_SUCCESS) MPI_Request_free(&s);
      if (MPI_Irecv(&answer[static_cast<size_t>(p)], 1, MPI_INT, p, kPong, ping_, &recv[static_cast<size_t>(p)]) !=
          MPI_SUCCESS)
        recv[static_cast<size_t>(p)] = MPI_REQUEST_NULL;
    }
    const double grace = std::clamp(timeout_s_ / 4, 2.0, 10.0);
    const auto t0 = Clock::now();
    while (std::chrono::duration<double>(Clock::now() - t0).count() < grace) {
      bool all = true;
      for (size_t p = 0; p < w; ++p) {
        if (done[p] || recv[p] == MPI_REQUEST_NULL) continue;
        int flag = 0;
        if (MPI_Test(&recv[p], &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag) done[p] = 1;
        all = all && done[p];
      }
      if (all) break;
      answer_pings();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::vector<int> lost;
    for (size_t p = 0; p < w; ++p)
      if (!done[p]) lost.push_back(static_cast<int>(p));
    return lost;
  }

  static std::string ranks_text(const std::vector<int>& lost) {
    std::string s = lost.size() == 1 ? "rank " : "ranks ";
    for (size_t i = 0; i < lost.size(); ++i) s += (i ? ", " : "") + std::to_string(lost[i]);
    return s;
  }

  MPI_Comm comm_ = MPI_COMM_NULL, ping_ = MPI_COMM_NULL;
  int rank_ = 0, world_ = 1, local_rank_ = 0;
  int ping_token_ = 1, pong_token_ = 2;
  bool failed_ = false;
  std::string transport_;
  std::mutex mu_;
};

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(const LaunchInfo& launch) {
  return std::make_unique<MpiCommunicator>(launch);
}

}  // namespace stoke::dist
