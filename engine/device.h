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
  int device = 0;            // the device probed (a data-parallel rank's local rank)
  std::string description;   // "NVIDIA H100 80GB HBM3, 132 SMs, 79.1 GiB, sm_90" for that device
  int64_t free_bytes = 0;     // its free and total memory (cudaMemGetInfo), when usable
  int64_t total_bytes = 0;
  std::string reason;        // why not usable, in one line, e.g. the runtime's error name and text
};

// Probes `device` (0 unless a launcher gave this process another one): only that device gets a context, so the
// ranks of a node each measure their own GPU's free memory. A device beyond the count is not usable, and says so.
DeviceProbe probe_cuda(int device = 0);

// --device auto|cpu|cuda resolved: whether the CUDA backend runs, with the probe that decided. Throws UserError
// for cuda when no usable GPU answers or this binary has no CUDA backend (cuda_linked: a
// backend factory was registered, engine/backend.h).
struct DeviceChoice {
  bool use_cuda = false;
  DeviceProbe probe;
};
DeviceChoice choose_device(DeviceRequest request, bool cuda_linked, int device = 0);

// Host->device copy bandwidth on device 0 in GB/s (1e9 bytes/s): `bytes` copied `repeats` times with
// cudaMemcpyAsync on one stream, timed with CUDA events after a warm-up copy, from pinned (cudaHostAlloc) or
// pageable (malloc) memory. Returns 0 without a usable GPU; throws stoke::Error when an allocation fails.
double measure_h2d_gb_s(size_t bytes, bool pinned, int repeats = 20);

}  // namespace stoke
