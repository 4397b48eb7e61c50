// Which backend runs: a probe of the CUDA runtime that never throws and explains itself in one line.
#pragma once

#include <cstdint>
#include <string>

#include "engine/options.h"

namespace stoke {

struct DeviceProbe {
  bool cuda_built = false;   // this binary contains the CUDA backend
  bool usable = false;       // a GPU answered
  int count = 0;
  std::string description;   // "NVIDIA H100 80GB HBM3, 132 SMs, 79.1 GiB, sm_90" for device 0
  int64_t free_bytes = 0;     // device 0's free and total memory (cudaMemGetInfo), when usable
  int64_t total_bytes = 0;
  std::string reason;        // why not usable, in one line, e.g. the runtime's error name and text
};

DeviceProbe probe_cuda();

// --device auto|cpu|cuda resolved: whether the CUDA backend runs, with the probe that decided. Throws UserError
// for cuda when no usable GPU answers or this binary has no CUDA backend (cuda_linked: a
// backend factory was registered, engine/backend.h).
struct DeviceChoice {
  bool use_cuda = false;
  DeviceProbe probe;
};
DeviceChoice choose_device(DeviceRequest request, bool cuda_linked);

// Host->device copy bandwidth on device 0 in GB/s (1e9 bytes/s): `bytes` copied `repeats` times with
// cudaMemcpyAsync on one stream, timed with CUDA events after a warm-up copy, from pinned (cudaHostAlloc) or
// pageable (malloc) memory. Returns 0 without a usable GPU; throws stoke::Error when an allocation fails.
double measure_h2d_gb_s(size_t bytes, bool pinned, int repeats = 20);

}  // namespace stoke
