// CUDA twins of kernels/activation.h (see kernels/README.md). T is the storage type (float, __half,
// __nv_bfloat16); math is fp32. The stream is the last argument; launches are checked (CUDA_LAUNCH_CHECK).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace stoke::cuda {

// y = max(x, 0). y may alias x.
template <typename T>
void relu_forward(int64_t n, const T* x, T* y, cudaStream_t stream);

// dx = dy where y > 0, else 0. dx may alias dy.
template <typename T>
void relu_backward(int64_t n, const T* y, const T* dy, T* dx, cudaStream_t stream);

}  // namespace stoke::cuda
