// Checking CUDA runtime calls and kernel launches (header-only, like base/error.h, so kernels/ may use it).
//
//   CUDA_CHECK(cudaMalloc(&p, n));          throws stoke::Error: status name, code, text, expression, file, line
//   CUDA_CHECK_NOEXCEPT(cudaFree(p));       prints the same to stderr and carries on (for destructors)
//   CUDA_LAUNCH_CHECK(stream);              after a <<<...>>> launch: launch errors, and with STOKE_CUDA_SYNC=1
//                                           a stream synchronisation so an asynchronous fault names its kernel
//
// STOKE_CUDA_SYNC=1 (read once per process) is the debug switch: every checked launch waits for its stream,
// except while the stream is being captured into a CUDA graph (synchronising there is illegal).
//
// What CUDA_LAUNCH_CHECK cannot see: kernels that cuDNN and cuBLASLt launch themselves. They may launch through
// their own statically linked runtime or the driver API, so cudaGetLastError() in ours is not guaranteed to
// report their launch errors; their status codes (CUDNN_CHECK / CUBLAS_CHECK) cover argument errors only, and a fault
// inside one of their kernels shows up at some later synchronisation, blamed on whatever call happened to wait. The
// executor puts a CUDA_LAUNCH_CHECK after every library call anyway: with STOKE_CUDA_SYNC=1 that synchronises
// right after it, so a sticky fault from inside the library is reported at the cuDNN/cuBLASLt call that made it.
// scripts/gpu-check.sh therefore runs the first training step with STOKE_CUDA_SYNC=1.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/error.h"

namespace stoke::cuda {

// True when STOKE_CUDA_SYNC is set to anything but "" or "0".
inline bool debug_sync() {
  static const bool on = [] {
    const char* e = std::getenv("STOKE_CUDA_SYNC");
    return e != nullptr && *e != '\0' && std::strcmp(e, "0") != 0;
  }();
  return on;
}

inline std::string cuda_error_text(cudaError_t status, const char* expr, const char* file, int line) {
  return str("CUDA error ", cudaGetErrorName(status), " (", static_cast<int>(status), "): ", cudaGetErrorString(status),
             "\n  in ", expr, "\n  at ", file, ":", line);
}

[[noreturn]] inline void throw_cuda_error(cudaError_t status, const char* expr, const char* file, int line) {
  throw Error(cuda_error_text(status, expr, file, line));
}

inline void check_launch(cudaStream_t stream, const char* what, const char* file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw_cuda_error(e, what, file, line);
  if (!debug_sync()) return;
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  e = cudaStreamIsCapturing(stream, &capture);
  if (e != cudaSuccess) throw_cuda_error(e, "cudaStreamIsCapturing (STOKE_CUDA_SYNC=1)", file, line);
  if (capture != cudaStreamCaptureStatusNone) return;
  e = cudaStreamSynchronize(stream);
  if (e != cudaSuccess) throw_cuda_error(e, str(what, " (fault found by STOKE_CUDA_SYNC=1)").c_str(), file, line);
}

}  // namespace stoke::cuda

#define CUDA_CHECK(expr)                                                                  \
  do {                                                                                    \
    const cudaError_t stoke_cuda_status_ = (expr);                                        \
    if (stoke_cuda_status_ != cudaSuccess) [[unlikely]]                                   \
      ::stoke::cuda::throw_cuda_error(stoke_cuda_status_, #expr, __FILE__, __LINE__);     \
  } while (0)

#define CUDA_CHECK_NOEXCEPT(expr)                                                                                \
  do {                                                                                                           \
    const cudaError_t stoke_cuda_status_ = (expr);                                                               \
    if (stoke_cuda_status_ != cudaSuccess)                                                                       \
      std::fprintf(stderr, "%s\n",                                                                               \
                   ::stoke::cuda::cuda_error_text(stoke_cuda_status_, #expr, __FILE__, __LINE__).c_str());       \
  } while (0)

// `what` names the kernel in the message (defaults to the enclosing function).
#define CUDA_LAUNCH_CHECK(stream) ::stoke::cuda::check_launch((stream), __func__, __FILE__, __LINE__)
