// CUDA twins of kernels/pool.h (see kernels/README.md). T: float, __half, __nv_bfloat16; fp32 math.
// Backward passes gather (each input element sums the windows that cover it, in the CPU's (p, q) order) instead
// of scattering, so there are no atomics and the fp32 results match the CPU reference bit for bit.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/pool.h"

namespace stoke::cuda {

// argmax may be null (not recorded). Same tie and NaN rules as the CPU: first maximum, NaN propagates.
template <typename T>
void maxpool_forward(const PoolShape& sh, const T* x, T* y, int32_t* argmax, cudaStream_t stream);
template <typename T>
void maxpool_backward(const PoolShape& sh, const int32_t* argmax, const T* dy, T* dx, cudaStream_t stream);

template <typename T>
void avgpool_forward(const PoolShape& sh, const T* x, T* y, cudaStream_t stream);
template <typename T>
void avgpool_backward(const PoolShape& sh, const T* dy, T* dx, cudaStream_t stream);

template <typename T>
void global_avgpool_forward(int n, int hw, int c, const T* x, T* y, cudaStream_t stream);
template <typename T>
void global_avgpool_backward(int n, int hw, int c, const T* dy, T* dx, cudaStream_t stream);

}  // namespace stoke::cuda
