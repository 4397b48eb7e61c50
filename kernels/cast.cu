#include "kernels/cast.cuh"
#include "kernels/cuda_util.cuh"

namespace stoke::cuda {
namespace {

constexpr int kThreads = 256;

template <typename Tin, typename Tout>
__global__ void cast_kernel(int64_t n, const Tin* __restrict__ x, Tout* __restrict__ y) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] = from_float<Tout>(to_float(x[i]));
}

template <typename Tin, typename Tout, int V>
__global__ void cast_vec_kernel(int64_t n, const Tin* __restrict__ x, Tout* __restrict__ y) {
  const int64_t nv = n / V;
  for (int64_t j = global_thread(); j < nv; j += grid_threads()) {
    float f[V];
    load_f<V>(x + j * V, f);
    store_f<V>(y + j * V, f);
  }
  for (int64_t i = nv * V + global_thread(); i < n; i += grid_threads()) y[i] = from_float<Tout>(to_float(x[i]));
}

template <typename T>
__global__ void accumulate_kernel(int64_t n, const T* __restrict__ x, float* __restrict__ y) {
  for (int64_t i = global_thread(); i < n; i += grid_threads()) y[i] += to_float(x[i]);
}

}  // namespace

template <typename Tin, typename Tout>
void cast(int64_t n, const Tin* x, Tout* y, cudaStream_t stream) {
  if (n <= 0) return;
  // 16-byte loads of the wider type, 8-byte stores of the narrower: 4 elements per step.
  constexpr int V = 4;
  if (aligned16(x) && aligned16(y))
    cast_vec_kernel<Tin, Tout, V><<<grid_for(n / V + 1, kThreads), kThreads, 0, stream>>>(n, x, y);
  else
    cast_kernel<Tin, Tout><<<grid_for(n, kThreads), kThreads, 0, stream>>>(n, x, y);
  CUDA_LAUNCH_CHECK(stream);
}

template <typename T>
void accumulate(int64_t n, const T* x, float* y, cudaStream_t stream) {
  if (n <= 0) return;
  accumulate_kernel<T><<<grid_for(n, kThreads), kThreads, 0, stream>>>(n, x, y);
  CUDA_LAUNCH_CHECK(stream);
}

template void cast<float, float>(int64_t, const float*, float*, cudaStream_t);
template void cast<float, __half>(int64_t, const float*, __half*, cudaStream_t);
template void cast<__half, float>(int64_t, const __half*, float*, cudaStream_t);
template void cast<float, __nv_bfloat16>(int64_t, const float*, __nv_bfloat16*, cudaStream_t);
template void cast<__nv_bfloat16, float>(int64_t, const __nv_bfloat16*, float*, cudaStream_t);

#define INSTANTIATE(T) template void accumulate<T>(int64_t, const T*, float*, cudaStream_t);
STOKE_FOR_EACH_STORAGE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace stoke::cuda
