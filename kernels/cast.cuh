// Conversions between fp32 and the half-precision storage types (round to nearest even), and the fp32
// accumulation of a half-precision result into an fp32 gradient. Element-wise; any element offset works.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace stoke::cuda {

// y = Tout(x). Instantiated for float <-> __half, float <-> __nv_bfloat16, and float -> float (a copy).
template <typename Tin, typename Tout>
void cast(int64_t n, const Tin* x, Tout* y, cudaStream_t stream);

// y += float(x) (fp32 y): a parameter gradient computed in half precision, added to the fp32 gradients.
template <typename T>
void accumulate(int64_t n, const T* x, float* y, cudaStream_t stream);

}  // namespace stoke::cuda
