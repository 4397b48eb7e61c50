// See engine/cuda/nccl_communicator.h.
#include "engine/cuda/nccl_communicator.h"

#include <dlfcn.h>
#include <nccl.h>

#include <cstring>
#include <vector>

#include "base/cuda_check.h"
#include "engine/cuda/device_collectives.h"
#include "engine/cuda/poll_wait.h"
#include "engine/dist/tcp_rendezvous.h"

namespace stoke {

namespace {

// NCCL is loaded when the first communicator is made, not linked: the program then starts on machines without
// NCCL (the GPU check's machine may lack it; a single-GPU run never needs it), and only a run that asks for the
// NCCL path needs libnccl.so.2, with a message naming it when it is missing.
struct NcclApi {
  decltype(&::ncclAllReduce) AllReduce;
  decltype(&::ncclBroadcast) Broadcast;
  decltype(&::ncclCommAbort) CommAbort;
  decltype(&::ncclCommDestroy) CommDestroy;
  decltype(&::ncclCommGetAsyncError) CommGetAsyncError;
  decltype(&::ncclCommInitRankConfig) CommInitRankConfig;
  decltype(&::ncclGetErrorString) GetErrorString;
  decltype(&::ncclGetUniqueId) GetUniqueId;
  decltype(&::ncclGetVersion) GetVersion;
};

template <typename F>
void load(void* lib, const char* name, F& f) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  if (!f) throw Error(str("NCCL: libnccl.so.2 has no ", name, " (NCCL 2.14 or later is needed)"));
}

const NcclApi& nccl() {
  static const NcclApi api = [] {
    void* lib = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (!lib)
      throw UserError(
          str("data-parallel training on the CUDA backend needs NCCL, and libnccl.so.2 could not be loaded (",
              dlerror(), "): install NCCL or put its lib folder on LD_LIBRARY_PATH"));
    NcclApi a{};
    load(lib, "ncclAllReduce", a.AllReduce);
    load(lib, "ncclBroadcast", a.Broadcast);
    load(lib, "ncclCommAbort", a.CommAbort);
    load(lib, "ncclCommDestroy", a.CommDestroy);
    load(lib, "ncclCommGetAsyncError", a.CommGetAsyncError);
    load(lib, "ncclCommInitRankConfig", a.CommInitRankConfig);
    load(lib, "ncclGetErrorString", a.GetErrorString);
    load(lib, "ncclGetUniqueId", a.GetUniqueId);
    load(lib, "ncclGetVersion", a.GetVersion);
    return a;
  }();
  return api;
}

void nccl_check(ncclResult_t r, const char* expr, const char* file, int line) {
  if (r != ncclSuccess)
    throw Error(str("NCCL: ", expr, " failed: ", nccl().GetErrorString(r), " (", file, ":", line, ")"));
}
#define NCCL_CHECK(x) nccl_check((x), #x, __FILE__, __LINE__)

class NcclCommunicator final : public dist::Communicator, public cuda::DeviceCollectives {
 public:
  NcclCommunicator(const dist::LaunchInfo& launch, dist::Communicator* bootstrap, cudaStream_t stream)
      : rank_(launch.rank), world_(launch.world), local_rank_(launch.local_rank), stream_(stream) {
    if (bootstrap) timeout_s_ = bootstrap->timeout_seconds();
    CUDA_CHECK(cudaSetDevice(local_rank_));
    if (!stream_) {
      CUDA_CHECK(cudaStreamCreateWithFlags(&own_stream_, cudaStreamNonBlocking));
      stream_ = own_stream_;
    }
    ncclUniqueId id;
    std::memset(&id, 0, sizeof id);
    if (rank_ == 0) NCCL_CHECK(nccl().GetUniqueId(&id));
    if (world_ == 1) {
      via_ = "one process";  // nobody to hand the id to
    } else if (bootstrap && bootstrap->world() == world_) {
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
    enqueued(nccl().CommInitRankConfig(&comm_, world_, id, rank_, &config), "initialisation");
    await_comm("initialisation");
    CUDA_CHECK(cudaMalloc(&scratch_, kScratch));
    int version = 0;
    nccl().GetVersion(&version);
    transport_ = str("NCCL ", version / 10000, ".", version / 100 % 100, ".", version % 100, " (", via_, ")");
  }

  ~NcclCommunicator() override {
    if (scratch_) cudaFree(scratch_);
    if (own_stream_) cudaStreamDestroy(own_stream_);
    if (comm_) {
      if (failed_)
        nccl().CommAbort(comm_);
      else
        nccl().CommDestroy(comm_);
    }
  }

  int rank() const override { return rank_; }
  int world() const override { return world_; }
  int local_rank() const override { return local_rank_; }
  std::string transport() const override { return transport_; }

  // Host memory, as dist::Communicator's callers (the trainer's agreement check) hand it: staged through the
  // device scratch in chunks.
  void allreduce_sum(float* host_data, size_t n) override { host_sum(host_data, n, ncclFloat); }
  void allreduce_sum(double* host_data, size_t n) override { host_sum(host_data, n, ncclFloat64); }

  void allreduce_sum_async(float* device_data, size_t n, cudaStream_t stream) override {
    enqueued(nccl().AllReduce(device_data, device_data, n, ncclFloat, ncclSum, comm_, stream), "gradient all-reduce");
  }

  void allreduce_sum_async(double* device_data, size_t n, cudaStream_t stream) override {
    enqueued(nccl().AllReduce(device_data, device_data, n, ncclFloat64, ncclSum, comm_, stream),
             "batch-norm statistics all-reduce");
  }

  void abort() override {
    if (!comm_) return;
    failed_ = true;
    nccl().CommAbort(comm_);  // its kernels return; the streams that waited on them go on
    comm_ = nullptr;
  }

  void check_async_error() override {
    if (!comm_) throw Error("NCCL: the communicator was aborted after a lost peer");
    ncclResult_t state = ncclSuccess;
    NCCL_CHECK(nccl().CommGetAsyncError(comm_, &state));
    if (state != ncclSuccess && state != ncclInProgress) {
      failed_ = true;
      throw Error(str("NCCL: ", nccl().GetErrorString(state), " during a training step's all-reduce"));
    }
  }

  void broadcast(void* host_data, size_t bytes, int root) override {
    for (size_t at = 0; at < bytes; at += kScratch) {
      const size_t k = std::min(kScratch, bytes - at);
      auto* p = static_cast<uint8_t*>(host_data) + at;
      if (rank_ == root) CUDA_CHECK(cudaMemcpyAsync(scratch_, p, k, cudaMemcpyHostToDevice, stream_));
      enqueued(nccl().Broadcast(scratch_, scratch_, k, ncclUint8, root, comm_, stream_), "broadcast");
      CUDA_CHECK(cudaMemcpyAsync(p, scratch_, k, cudaMemcpyDeviceToHost, stream_));
      await_stream("broadcast");
    }
  }

  void barrier() override {
    enqueued(nccl().AllReduce(scratch_, scratch_, 1, ncclFloat, ncclSum, comm_, stream_), "barrier");
    await_stream("barrier");
  }

 private:
  static constexpr size_t kScratch = size_t{1} << 20;

  // Host memory, as dist::Communicator's callers (the trainer's agreement check) hand it: staged through the
  // device scratch in chunks.
  template <typename V>
  void host_sum(V* host_data, size_t n, ncclDataType_t type) {
    const size_t per = kScratch / sizeof(V);
    for (size_t at = 0; at < n; at += per) {
      const size_t k = std::min(per, n - at);
      V* d = static_cast<V*>(scratch_);
      CUDA_CHECK(cudaMemcpyAsync(d, host_data + at, k * sizeof(V), cudaMemcpyHostToDevice, stream_));
      enqueued(nccl().AllReduce(d, d, k, type, ncclSum, comm_, stream_), "all-reduce");
      CUDA_CHECK(cudaMemcpyAsync(host_data + at, d, k * sizeof(V), cudaMemcpyDeviceToHost, stream_));
      await_stream("all-reduce");
    }
  }

  // NCCL cannot say which peer is missing: past the timeout the communicator is aborted and the error says so.
  [[noreturn]] void lost(const char* what) {
    failed_ = true;
    throw dist::LostPeer(str("an NCCL ", what, " did not complete within ", timeout_s_,
                             " s (STOKE_DIST_TIMEOUT): a rank is lost or hung; stopping"),
                         {});
  }

  // The communicator is non-blocking (config.blocking = 0), so any call may answer ncclInProgress: the operation
  // is still being enqueued, and nothing else may be called on the communicator until it has been. Inside a graph
  // capture this wait is what makes the collective part of the captured graph before the capture ends.
  void enqueued(ncclResult_t r, const char* what) {
    if (r == ncclInProgress)
      await_comm(what);
    else
      NCCL_CHECK(r);
  }

  // Both waits poll as the backend's do (engine/cuda/poll_wait.h): the first millisecond yields, so an enqueue that
  // answered ncclInProgress (every collective of a non-blocking communicator may) costs microseconds, not a nap.
  cuda::PollPolicy policy() const {
    cuda::PollPolicy p;
    p.timeout_s = timeout_s_;
    return p;
  }

  void fail_on_async_error(const char* what) {
    ncclResult_t state = ncclSuccess;
    NCCL_CHECK(nccl().CommGetAsyncError(comm_, &state));
    if (state != ncclSuccess && state != ncclInProgress) {
      failed_ = true;
      throw Error(str("NCCL ", what, ": ", nccl().GetErrorString(state)));
    }
  }

  void await_comm(const char* what) {
    auto ready = [&] {
      ncclResult_t state = ncclSuccess;
      NCCL_CHECK(nccl().CommGetAsyncError(comm_, &state));
      if (state == ncclSuccess) return true;
      if (state == ncclInProgress) return false;
      failed_ = true;
      throw Error(str("NCCL ", what, ": ", nccl().GetErrorString(state)));
    };
    if (!cuda::poll_until(ready, [] {}, policy())) lost(what);
  }

  void await_stream(const char* what) {
    auto done = [&] {
      const cudaError_t e = cudaStreamQuery(stream_);
      if (e == cudaErrorNotReady) return false;
      CUDA_CHECK(e);
      return true;
    };
    if (!cuda::poll_until(done, [&] { fail_on_async_error(what); }, policy())) lost(what);
  }

  int rank_, world_, local_rank_;
  cudaStream_t stream_;
  cudaStream_t own_stream_ = nullptr;  // when the caller gave no stream
  ncclComm_t comm_ = nullptr;
  void* scratch_ = nullptr;
  bool failed_ = false;
  std::string via_, transport_;
};

}  // namespace

std::unique_ptr<dist::Communicator> make_nccl_communicator(const dist::LaunchInfo& launch,
                                                           dist::Communicator* bootstrap, cudaStream_t stream) {
  return std::make_unique<NcclCommunicator>(launch, bootstrap, stream);
}

}  // namespace stoke
