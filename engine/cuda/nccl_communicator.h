// The NCCL transport for data-parallel training on the CUDA backend: one communicator per process, on its local
// device. NCCL's unique id comes from rank 0 over MPI when the job has it (mpirun, srun), else over the TCP
// rendezvous on MASTER_ADDR:MASTER_PORT (torchrun style). Collectives run on the given stream and are awaited with
// the communicator's timeout: past it the communicator is aborted and a LostPeer error says so.
// Written and compiled; not yet used by the CUDA backend's step, and never run on a GPU.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>

#include "engine/dist/communicator.h"

namespace stoke {

// bootstrap: an MPI communicator of the same world, or null (then the TCP rendezvous). allreduce_sum and
// broadcast take DEVICE pointers; barrier is an all-reduce of one float.
std::unique_ptr<dist::Communicator> make_nccl_communicator(const dist::LaunchInfo& launch, dist::Communicator* bootstrap,
                                                           cudaStream_t stream);

}  // namespace stoke
