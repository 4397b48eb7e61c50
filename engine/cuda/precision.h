// Storage precision of activations (and of the weight copies forward/backward read) on the CUDA backend.
// BN statistics, softmax, the loss, the optimizer and the master weights are fp32 whatever this says.
//
// automatic: bf16 on sm_80 and newer; fp16 (with dynamic loss scaling) below; fp32 only on request.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>
#include <type_traits>

namespace stoke::cuda {

enum class Precision { automatic, fp32, bf16, fp16 };

// "auto" | "fp32" | "bf16" | "fp16"; throws UserError for anything else.
Precision parse_precision(const std::string& s);
const char* to_string(Precision p);
// What `automatic` means on a device of compute capability `major`.x (and what an explicit choice stays).
Precision resolve_precision(Precision requested, int major);

template <typename T>
constexpr Precision precision_of() {
  if constexpr (std::is_same_v<T, float>)
    return Precision::fp32;
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return Precision::bf16;
  else
    return Precision::fp16;
}

inline int element_bytes(Precision p) { return p == Precision::fp32 ? 4 : 2; }

// One value between fp32 and a storage type on the host (round to nearest even), for uploads, downloads and the
// tests' references.
template <typename T>
T host_from_float(float v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else if constexpr (std::is_same_v<T, __half>)
    return __float2half_rn(v);
  else
    return __float2bfloat16_rn(v);
}

template <typename T>
float host_to_float(T v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else if constexpr (std::is_same_v<T, __half>)
    return __half2float(v);
  else
    return __bfloat162float(v);
}

}  // namespace stoke::cuda
