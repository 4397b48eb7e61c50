#include "engine/device.h"

#include "base/error.h"

#include <cstdlib>
#include <memory>

#if STOKE_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace stoke {

DeviceChoice choose_device(DeviceRequest request, bool cuda_linked, int device) {
  DeviceChoice c;
  if (request == DeviceRequest::cpu) return c;
  c.probe = probe_cuda(device);
  // A launcher's local rank with no GPU of its own is a misconfigured job, not a reason to train on the CPU
  // beside ranks that train on GPUs.
  if (device > 0 && !c.probe.usable && c.probe.count > 0) throw UserError(c.probe.reason);
  const bool available = c.probe.usable && cuda_linked;
  if (request == DeviceRequest::cuda && !available) {
    if (!c.probe.usable) throw UserError(str("--device cuda: no usable GPU: ", c.probe.reason));
    throw UserError(
        str("--device cuda: found ", c.probe.description, ", but this program was built without the CUDA backend"));
  }
  c.use_cuda = available;
  return c;
}

DeviceProbe probe_cuda(int device) {
  DeviceProbe p;
  p.device = device;
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
  p.count = count;
  if (device < 0 || device >= count) {
    p.reason = str("this process's device is cuda:", device, " (its launcher's local rank) but there ",
                   count == 1 ? "is " : "are ", count, " GPU", count == 1 ? "" : "s", " here (cuda:0",
                   count > 1 ? str("..cuda:", count - 1) : std::string(), ")");
    return p;
  }
  cudaDeviceProp prop{};
  err = cudaGetDeviceProperties(&prop, device);
  if (err != cudaSuccess) {
    p.reason = str(cudaGetErrorName(err), ": ", cudaGetErrorString(err));
    return p;
  }
  p.usable = true;
  size_t free_b = 0, total_b = 0;
  if (cudaSetDevice(device) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess) {
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

double measure_h2d_gb_s([[maybe_unused]] size_t bytes, [[maybe_unused]] bool pinned, [[maybe_unused]] int repeats) {
#if STOKE_WITH_CUDA
  if (!probe_cuda().usable || bytes == 0 || repeats < 1) return 0;
  auto check = [](cudaError_t e, const char* what) {
    if (e != cudaSuccess) {
      cudaGetLastError();
      throw Error(str("H2D measurement: ", what, ": ", cudaGetErrorName(e), " ", cudaGetErrorString(e)));
    }
  };
  check(cudaSetDevice(0), "cudaSetDevice");
  void* dev = nullptr;
  check(cudaMalloc(&dev, bytes), "cudaMalloc");
  std::unique_ptr<void, void (*)(void*)> dev_guard(dev, [](void* p) { cudaFree(p); });
  void* host = nullptr;
  if (pinned) {
    check(cudaHostAlloc(&host, bytes, cudaHostAllocDefault), "cudaHostAlloc");
  } else {
    host = std::malloc(bytes);
    if (!host) throw Error(str("H2D measurement: cannot allocate ", bytes, " bytes of host memory"));
  }
  void (*release)(void*) = pinned ? +[](void* p) { cudaFreeHost(p); } : +[](void* p) { std::free(p); };
  std::unique_ptr<void, void (*)(void*)> host_guard(host, release);
  for (size_t i = 0; i < bytes; i += 4096)
    static_cast<unsigned char*>(host)[i] = static_cast<unsigned char>(i);  // touch every page
  cudaStream_t s = nullptr;
  check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
  std::unique_ptr<CUstream_st, void (*)(cudaStream_t)> stream_guard(s, [](cudaStream_t x) { cudaStreamDestroy(x); });
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  check(cudaEventCreate(&e0), "cudaEventCreate");
  check(cudaEventCreate(&e1), "cudaEventCreate");
  check(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, s), "warm-up copy");
  check(cudaEventRecord(e0, s), "cudaEventRecord");
  for (int r = 0; r < repeats; ++r) check(cudaMemcpyAsync(dev, host, bytes, cudaMemcpyHostToDevice, s), "copy");
  check(cudaEventRecord(e1, s), "cudaEventRecord");
  check(cudaEventSynchronize(e1), "cudaEventSynchronize");
  float ms = 0;
  check(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime");
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  return ms > 0 ? static_cast<double>(bytes) * repeats / (static_cast<double>(ms) * 1e-3) / 1e9 : 0;
#else
  return 0;
#endif
}

}  // namespace stoke
