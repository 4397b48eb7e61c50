#include "engine/device.h"

#include "engine/error.h"

#if STOKE_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace stoke {

DeviceProbe probe_cuda() {
  DeviceProbe p;
#if STOKE_WITH_CUDA
  p.cuda_built = true;
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    p.reason = str(cudaGetErrorName(err), " (", static_cast<int>(err), "): ", cudaGetErrorString(err));
    cudaGetLastError();  // clear the sticky state so later probes start clean
    return p;
  }
  if (count == 0) {
    p.reason = "the CUDA runtime reports no devices";
    return p;
  }
  cudaDeviceProp prop{};
  err = cudaGetDeviceProperties(&prop, 0);
  if (err != cudaSuccess) {
    p.reason = str(cudaGetErrorName(err), ": ", cudaGetErrorString(err));
    return p;
  }
  p.usable = true;
  p.count = count;
  size_t free_b = 0, total_b = 0;
  if (cudaSetDevice(0) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
    p.free_bytes = static_cast<int64_t>(free_b);
    p.total_bytes = static_cast<int64_t>(total_b);
  } else {
    cudaGetLastError();
  }
  p.description = str(prop.name, ", ", prop.multiProcessorCount, " SMs, ",
                      static_cast<double>(prop.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0), " GiB, sm_", prop.major,
                      prop.minor);
#else
  p.reason = "this build has no CUDA backend (configured with STOKE_CUDA=OFF or without nvcc)";
#endif
  return p;
}

}  // namespace stoke
