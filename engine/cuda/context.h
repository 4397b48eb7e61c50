// The per-device CUDA context of a backend: the device, its compute stream, and the cuDNN and cuBLASLt
// handles bound to that stream. Owns them; create one per executor (handles are not shared across threads).
#pragma once

#include <cublasLt.h>
#include <cudnn.h>

#include "engine/cuda/runtime.h"

namespace stoke::cuda {

class CudaContext {
 public:
  explicit CudaContext(int device = 0);
  ~CudaContext();
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

  const DeviceInfo& device() const { return info_; }
  cudaStream_t stream() const { return stream_.get(); }
  cudnnHandle_t cudnn() const { return cudnn_; }         // cudnnSetStream(stream()) already done
  cublasLtHandle_t cublaslt() const { return cublaslt_; }  // takes the stream per call: always pass stream()
  size_t cudnn_version() const { return cudnn_version_; }
  size_t cublaslt_version() const { return cublaslt_version_; }

 private:
  DeviceInfo info_;
  Stream stream_;
  cudnnHandle_t cudnn_ = nullptr;
  cublasLtHandle_t cublaslt_ = nullptr;
  size_t cudnn_version_ = 0, cublaslt_version_ = 0;
};

}  // namespace stoke::cuda
