// The NCCL transport for data-parallel training on the CUDA backend: one communicator per process, on its local
// device. NCCL's unique id comes from rank 0 over MPI when the job has it (mpirun, srun), else over the TCP
// rendezvous on MASTER_ADDR:MASTER_PORT (torchrun style). Collectives run on the given stream and are awaited with
// the communicator's timeout: past it the communicator is aborted and a LostPeer error says so.
// The trainer creates it for a CUDA run started by a launcher (engine/training_run.cpp) and hands it to the CUDA
// backend, whose step all-reduces its gradient buckets through the DeviceCollectives side (engine/cuda/grad_sync.h).
// Written and compiled; never run on a GPU yet.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>

#include "engine/dist/communicator.h"

namespace stoke {

// bootstrap: an MPI communicator of the same world, or null (then the TCP rendezvous). The host-side collectives
// (allreduce_sum, broadcast, barrier: host memory, waited for) run on `stream`, or on a stream of the
// communicator's own when it is null; they are meant for the start of a run, with no training step in flight
// (the step's collectives go through cuda::DeviceCollectives on the backend's communication stream, and NCCL
// needs the two never to run concurrently on one communicator). The returned object is also a
// cuda::DeviceCollectives (engine/cuda/device_collectives.h).
std::unique_ptr<dist::Communicator> make_nccl_communicator(const dist::LaunchInfo& launch,
                                                           dist::Communicator* bootstrap, cudaStream_t stream);

}  // namespace stoke
