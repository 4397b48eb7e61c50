#include "engine/cuda/context.h"

#include "base/cuda_check.h"
#include "engine/cuda/lib_check.h"

namespace stoke::cuda {

namespace {
DeviceInfo make_current(int device) { return use_device(device); }
}  // namespace

// The device is made current before the stream is created (member order: info_, then stream_).
CudaContext::CudaContext(int device) : info_(make_current(device)) {
  CUDNN_CHECK(cudnnCreate(&cudnn_));
  try {
    CUDNN_CHECK(cudnnSetStream(cudnn_, stream_.get()));
    CUBLAS_CHECK(cublasLtCreate(&cublaslt_));
  } catch (...) {
    if (cublaslt_) CUBLAS_CHECK_NOEXCEPT(cublasLtDestroy(cublaslt_));
    CUDNN_CHECK_NOEXCEPT(cudnnDestroy(cudnn_));
    throw;
  }
  cudnn_version_ = cudnnGetVersion();
  cublaslt_version_ = cublasLtGetVersion();
}

CudaContext::~CudaContext() {
  CUDA_CHECK_NOEXCEPT(cudaStreamSynchronize(stream_.get()));
  if (cublaslt_) CUBLAS_CHECK_NOEXCEPT(cublasLtDestroy(cublaslt_));
  if (cudnn_) CUDNN_CHECK_NOEXCEPT(cudnnDestroy(cudnn_));
}

}  // namespace stoke::cuda
