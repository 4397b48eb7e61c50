// See engine/cuda/nccl_communicator.h.
#include "engine/cuda/nccl_communicator.h"

#include <nccl.h>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "base/cuda_check.h"
#include "engine/dist/tcp_rendezvous.h"

namespace stoke {

namespace {

void nccl_check(ncclResult_t r, const char* expr, const char* file, int line) {
  if (r != ncclSuccess) throw Error(str("NCCL: ", expr, " failed: ", ncclGetErrorString(r), " (", file, ":", line, ")"));
}
#define NCCL_CHECK(x) nccl_check((x), #x, __FILE__, __LINE__)

class NcclCommunicator final : public dist::Communicator {
 public:
  NcclCommunicator(const dist::LaunchInfo& launch, dist::Communicator* bootstrap, cudaStream_t stream)
      : rank_(launch.rank), world_(launch.world), local_rank_(launch.local_rank), stream_(stream) {
    if (bootstrap) timeout_s_ = bootstrap->timeout_seconds();
    CUDA_CHECK(cudaSetDevice(local_rank_));
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (rank_ == 0) NCCL_CHECK(ncclGetUniqueId(&id));
    if (bootstrap && bootstrap->world() == world_) {
      bootstrap->broadcast(&id, sizeof id, 0);
      via_ = "unique id over MPI";
    } else {
      std::vector<uint8_t> bytes(sizeof id);
      std::memcpy(bytes.data(), &id, sizeof id);
      bytes = dist::tcp_rendezvous(launch.master_addr, launch.master_port, rank_, world_, bytes, timeout_s_);
      if (bytes.size() != sizeof id) throw Error(str("rendezvous: got ", bytes.size(), " bytes for NCCL's unique id"));
      std::memcpy(&id, bytes.data(), sizeof id);
      via_ = str("unique id over TCP from ", launch.master_addr, ":", launch.master_port);
    }
    // Non-blocking initialisation, so a rank that never joins cannot hang this one.
    ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
    config.blocking = 0;
    NCCL_CHECK(ncclCommInitRankConfig(&comm_, world_, id, rank_, &config));
    await_comm("initialisation");
    CUDA_CHECK(cudaMalloc(&scratch_, kScratch));
    int version = 0;
    ncclGetVersion(&version);
    transport_ = str("NCCL ", version / 10000, ".", version / 100 % 100, ".", version % 100, " (", via_, ")");
  }

  ~NcclCommunicator() override {
    if (scratch_) cudaFree(scratch_);
    if (comm_) {
      if (failed_)
        ncclCommAbort(comm_);
      else
        ncclCommDestroy(comm_);
    }
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  int local_rank() const override { return local_rank_; }
  std::string transport() const override { return transport_; }

  void allreduce_sum(float* device_data, size_t n) override {
    NCCL_CHECK(ncclAllReduce(device_data, device_data, n, ncclFloat, ncclSum, comm_, stream_));
    await_stream("all-reduce");
  }

  void broadcast(void* host_data, size_t bytes, int root) override {
    for (size_t at = 0; at < bytes; at += kScratch) {
      const size_t k = std::min(kScratch, bytes - at);
      auto* p = static_cast<uint8_t*>(host_data) + at;
      if (rank_ == root) CUDA_CHECK(cudaMemcpyAsync(scratch_, p, k, cudaMemcpyHostToDevice, stream_));
      NCCL_CHECK(ncclBroadcast(scratch_, scratch_, k, ncclUint8, root, comm_, stream_));
      CUDA_CHECK(cudaMemcpyAsync(p, scratch_, k, cudaMemcpyDeviceToHost, stream_));
      await_stream("broadcast");
    }
  }

  void barrier() override {
    NCCL_CHECK(ncclAllReduce(scratch_, scratch_, 1, ncclFloat, ncclSum, comm_, stream_));
    await_stream("barrier");
  }

 private:
  static constexpr size_t kScratch = size_t{1} << 20;

  double elapsed(std::chrono::steady_clock::time_point t0) const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  // NCCL cannot say which peer is missing: past the timeout the communicator is aborted and the error says so.
  [[noreturn]] void lost(const char* what) {
    failed_ = true;
    throw dist::LostPeer(str("an NCCL ", what, " did not complete within ", timeout_s_,
                             " s (STOKE_DIST_TIMEOUT): a rank is lost or hung; stopping"),
                         {});
  }

  void await_comm(const char* what) {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      ncclResult_t state = ncclSuccess;
      NCCL_CHECK(ncclCommGetAsyncError(comm_, &state));
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) {
        failed_ = true;
        throw Error(str("NCCL ", what, ": ", ncclGetErrorString(state)));
      }
      if (elapsed(t0) > timeout_s_) lost(what);
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }

  void await_stream(const char* what) {
    const auto t0 = std::chrono::steady_clock::now();
    for (;;) {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaSuccess) return;
      if (e != cudaErrorNotReady) CUDA_CHECK(e);
      ncclResult_t state = ncclSuccess;
      NCCL_CHECK(ncclCommGetAsyncError(comm_, &state));
      if (state != ncclSuccess && state != ncclInProgress) {
        failed_ = true;
        throw Error(str("NCCL ", what, ": ", ncclGetErrorString(state)));
      }
      if (elapsed(t0) > timeout_s_) lost(what);
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  int rank_, world_, local_rank_;
  cudaStream_t stream_;
  ncclComm_t comm_ = nullptr;
  void* scratch_ = nullptr;
  bool failed_ = false;
  std::string via_, transport_;
};

}  // namespace

std::unique_ptr<dist::Communicator> make_nccl_communicator(const dist::LaunchInfo& launch, dist::Communicator* bootstrap,
                                                           cudaStream_t stream) {
  return std::make_unique<NcclCommunicator>(launch, bootstrap, stream);
}

}  // namespace stoke
