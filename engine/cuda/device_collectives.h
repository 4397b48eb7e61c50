// The asynchronous side of a device communicator, for the training step: collectives enqueued on a CUDA stream
// that return at once (dist::Communicator's collectives wait for their result on the host, which a step must
// never do). The NCCL communicator (engine/cuda/nccl_communicator.h) is both; the CUDA backend finds this side
// with a dynamic_cast of BackendOptions::comm. No NCCL header here: the backend compiles without NCCL.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

#include "base/error.h"
#include "engine/cuda/poll_wait.h"
#include "engine/dist/communicator.h"

namespace stoke::cuda {

class DeviceCollectives {
 public:
  virtual ~DeviceCollectives() = default;
  // In-place sum over every rank of n floats of device memory, enqueued on `stream` (capturable into a CUDA graph).
  // Every rank enqueues the same sequence of calls with the same sizes.
  virtual void allreduce_sum_async(float* device_data, size_t n, cudaStream_t stream) = 0;
  // The same in doubles (batch-norm statistics under --sync-bn).
  virtual void allreduce_sum_async(double* device_data, size_t n, cudaStream_t stream) = 0;
  // Throws when the communicator has failed asynchronously (a peer is gone, a network error): the step's waits
  // call it while they poll, so a lost rank is an error instead of a hang.
  virtual void check_async_error() = 0;
  // The peer is lost: end every collective still queued or running (ncclCommAbort), so the device work behind them
  // completes and its memory can be released. The communicator is unusable afterwards.
  virtual void abort() = 0;
};

// Every host wait for device work that may include a collective: polls done() with the communicator's error check
// (engine/cuda/poll_wait.h). A failure, or no answer within the timeout, aborts the collectives before it leaves
// the wait (LostPeer past the timeout), so nothing the caller then frees is still waited on by the device.
template <typename Done>
void await_collectives(Done&& done, DeviceCollectives& c, const PollPolicy& p, const char* what) {
  try {
    if (poll_until(done, [&] { c.check_async_error(); }, p)) return;
  } catch (...) {
    c.abort();
    throw;
  }
  c.abort();
  throw dist::LostPeer(str(what, " did not complete within ", p.timeout_s,
                           " s (STOKE_DIST_TIMEOUT): a rank is lost or hung; stopping"),
                       {});
}

}  // namespace stoke::cuda
