// CUDA twins of the activations: grid-stride, 16-byte vectors when aligned, a scalar tail.
#include "kernels/activation.cuh"
#include "kernels/cuda_util.cuh"

namespace stoke::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T, int V>
__global__ void relu_forward_kernel(int64_t n, const T* x, T* y) {
  const int64_t nv = n / V;
  for (int64_t j = global_thread(); j < nv; j += grid_threads()) {
    float f[V];
    load_f<V>(x + j * V, f);
#pragma unroll
    for (int k = 0; k < V; ++k) f[k] = f[k] > 0.f ? f[k] : 0.f;
    store_f<V>(y + j * V, f);
  }
  for (int64_t i = nv * V + global_thread(); i < n; i += grid_threads()) {
    const float v = to_float(x[i]);
    y[i] = from_float<T>(v > 0.f ? v : 0.f);
  }
}

template <typename T, int V>
__global__ void relu_backward_kernel(int64_t n, const T* y, const T* dy, T* dx) {
  const int64_t nv = n / V;
  for (int64_t j = global_thread(); j < nv; j += grid_threads()) {
    float fy[V], g[V];
    load_f<V>(y + j * V, fy);
    load_f<V>(dy + j * V, g);
#pragma unroll
    for (int k = 0; k < V; ++k) g[k] = fy[k] > 0.f ? g[k] : 0.f;
    store_f<V>(dx + j * V, g);
  }
  for (int64_t i = nv * V + global_thread(); i < n; i += grid_threads())
    dx[i] = to_float(y[i]) > 0.f ? dy[i] : from_float<T>(0.f);
}

}  // namespace

template <typename T>
void relu_forward(int64_t n, const T* x, T* y, cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int V = vec_width<T>();
  if (aligned16(x) && aligned16(y))
    relu_forward_kernel<T, V><<<grid_for(n / V + 1, kThreads), kThreads, 0, stream>>>(n, x, y);
  else
    relu_forward_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, stream>>>(n, x, y);
  CUDA_LAUNCH_CHECK(stream);
}

template <typename T>
void relu_backward(int64_t n, const T* y, const T* dy, T* dx, cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int V = vec_width<T>();
  if (aligned16(y) && aligned16(dy) && aligned16(dx))
    relu_backward_kernel<T, V><<<grid_for(n / V + 1, kThreads), kThreads, 0, stream>>>(n, y, dy, dx);
  else
    relu_backward_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, stream>>>(n, y, dy, dx);
  CUDA_LAUNCH_CHECK(stream);
}

#define INSTANTIATE(T)                                                       \
  template void relu_forward<T>(int64_t, const T*, T*, cudaStream_t);        \
  template void relu_backward<T>(int64_t, const T*, const T*, T*, cudaStream_t);
STOKE_FOR_EACH_STORAGE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace stoke::cuda
