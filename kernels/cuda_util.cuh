// Device-side helpers shared by the CUDA twins (kernels/*.cu only; host code includes the op headers).
//
// Storage types: float, __half, __nv_bfloat16. Every kernel loads its storage type, computes in fp32 and
// rounds once when it stores (round to nearest even). Vector access: Pack<T, V> moves V elements in one
// 16-byte (or narrower) load/store; launchers use it only when every pointer involved is 16-byte aligned and
// fall back to V = 1 otherwise, so callers may pass any element offset.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <array>
#include <cstdint>

#include "base/cuda_check.h"

namespace stoke::cuda {

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T from_float(float v);
template <>
__device__ __forceinline__ float from_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Elements of T per 16-byte vector.
template <typename T>
constexpr int vec_width() { return static_cast<int>(16 / sizeof(T)); }

template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <int V, typename T>
__device__ __forceinline__ void load_f(const T* p, float (&f)[V]) {
  const Pack<T, V> pk = *reinterpret_cast<const Pack<T, V>*>(p);
#pragma unroll
  for (int j = 0; j < V; ++j) f[j] = to_float(pk.v[j]);
}

template <int V, typename T>
__device__ __forceinline__ void store_f(T* p, const float (&f)[V]) {
  Pack<T, V> pk;
#pragma unroll
  for (int j = 0; j < V; ++j) pk.v[j] = from_float<T>(f[j]);
  *reinterpret_cast<Pack<T, V>*>(p) = pk;
}

__device__ __forceinline__ int64_t global_thread() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_threads() { return static_cast<int64_t>(gridDim.x) * blockDim.x; }

inline bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// The multiprocessor count of the current device (cached per device).
inline int sm_count() {
  static std::array<int, 64> cache{};
  int dev = 0;
  CUDA_CHECK(cudaGetDevice(&dev));
  const size_t slot = dev >= 0 && dev < 64 ? static_cast<size_t>(dev) : 0;
  if (cache[slot] == 0) {
    int n = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    cache[slot] = n > 0 ? n : 1;
  }
  return cache[slot];
}

// Blocks for a grid-stride loop over `items` with `threads` per block: enough to fill the device a few times,
// never more than the work needs. Results never depend on this number (grid-stride loops, no reductions).
inline int grid_for(int64_t items, int threads, int blocks_per_sm = 8) {
  const int64_t need = (items + threads - 1) / threads;
  const int64_t cap = static_cast<int64_t>(sm_count()) * blocks_per_sm;
  const int64_t b = need < cap ? need : cap;
  return b < 1 ? 1 : static_cast<int>(b);
}

}  // namespace stoke::cuda

// Explicit instantiation of a launcher template for every storage type.
#define STOKE_FOR_EACH_STORAGE(M) M(float) M(__half) M(__nv_bfloat16)
