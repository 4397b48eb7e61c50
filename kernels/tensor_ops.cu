// CUDA residual add, concatenation by channel-slice copies, and per-channel bias forward/backward.
#include "base/error.h"
#include "kernels/channel_reduce.cuh"
#include "kernels/cuda_util.cuh"
#include "kernels/tensor_ops.cuh"

namespace stoke::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T, int V>
__global__ void add_kernel(int64_t n, const T* a, const T* b, T* y) {
  const int64_t nv = n / V;
  for (int64_t j = global_thread(); j < nv; j += grid_threads()) {
    float fa[V], fb[V];
    load_f<V>(a + j * V, fa);
    load_f<V>(b + j * V, fb);
#pragma unroll
    for (int k = 0; k < V; ++k) fa[k] += fb[k];
    store_f<V>(y + j * V, fa);
  }
  for (int64_t i = nv * V + global_thread(); i < n; i += grid_threads())
    y[i] = from_float<T>(to_float(a[i]) + to_float(b[i]));
}

template <typename T>
__global__ void copy_channels_kernel(int64_t rows, int channels, const T* __restrict__ src, int64_t src_stride,
                                     T* __restrict__ dst, int64_t dst_stride) {
  const int64_t total = rows * channels;
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int64_t r = i / channels;
    const int c = static_cast<int>(i - r * channels);
    dst[r * dst_stride + c] = src[r * src_stride + c];
  }
}

template <typename T>
__global__ void bias_forward_kernel(int64_t total, int C, const float* __restrict__ b, T* __restrict__ y) {
  for (int64_t i = global_thread(); i < total; i += grid_threads())
    y[i] = from_float<T>(to_float(y[i]) + b[i % C]);
}

__global__ void __launch_bounds__(reduce::kFinThreads)
    bias_finalize_kernel(int C, int chunks, const double* __restrict__ part, float* __restrict__ db) {
  double s1, s2;
  reduce::sums_combine(C, chunks, part, s1, s2);
  if (threadIdx.x == 0) db[blockIdx.x] += static_cast<float>(s1);
}

}  // namespace

template <typename T>
void add_forward(int64_t n, const T* a, const T* b, T* y, cudaStream_t stream) {
  if (n <= 0) return;
  constexpr int V = vec_width<T>();
  if (aligned16(a) && aligned16(b) && aligned16(y))
    add_kernel<T, V><<<grid_for(n / V + 1, kThreads), kThreads, 0, stream>>>(n, a, b, y);
  else
    add_kernel<T, 1><<<grid_for(n, kThreads), kThreads, 0, stream>>>(n, a, b, y);
  CUDA_LAUNCH_CHECK(stream);
}

template <typename T>
void add_backward(int64_t n, const T* dy, T* da, T* db, cudaStream_t stream) {
  if (n <= 0) return;
  for (T* d : {da, db})
    if (d && d != dy)
      CUDA_CHECK(cudaMemcpyAsync(d, dy, static_cast<size_t>(n) * sizeof(T), cudaMemcpyDeviceToDevice, stream));
}

template <typename T>
void copy_channels(int64_t rows, int channels, const T* src, int64_t src_stride, T* dst, int64_t dst_stride,
                   cudaStream_t stream) {
  if (rows <= 0 || channels <= 0) return;
  STOKE_CHECK(src_stride >= channels && dst_stride >= channels, "channel slice wider than its row");
  if (src_stride == channels && dst_stride == channels) {  // both dense: one plain copy
    CUDA_CHECK(cudaMemcpyAsync(dst, src, static_cast<size_t>(rows * channels) * sizeof(T), cudaMemcpyDeviceToDevice,
                               stream));
    return;
  }
  const int64_t total = rows * channels;
  copy_channels_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(rows, channels, src, src_stride, dst,
                                                                              dst_stride);
  CUDA_LAUNCH_CHECK(stream);
}

template <typename T>
void concat_forward(int64_t rows, int nparts, const T* const* xs, const int* cs, T* y, cudaStream_t stream) {
  int64_t total = 0;
  for (int i = 0; i < nparts; ++i) total += cs[i];
  int64_t off = 0;
  for (int i = 0; i < nparts; ++i) {
    copy_channels(rows, cs[i], xs[i], cs[i], y + off, total, stream);
    off += cs[i];
  }
}

template <typename T>
void concat_backward(int64_t rows, int nparts, const T* dy, const int* cs, T* const* dxs, cudaStream_t stream) {
  int64_t total = 0;
  for (int i = 0; i < nparts; ++i) total += cs[i];
  int64_t off = 0;
  for (int i = 0; i < nparts; ++i) {
    if (dxs[i]) copy_channels(rows, cs[i], dy + off, total, dxs[i], cs[i], stream);
    off += cs[i];
  }
}

template <typename T>
void bias_forward(int64_t rows, int C, const float* b, T* y, cudaStream_t stream) {
  if (rows <= 0 || C <= 0 || !b) return;
  const int64_t total = rows * C;
  bias_forward_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(total, C, b, y);
  CUDA_LAUNCH_CHECK(stream);
}

int64_t bias_backward_workspace_bytes(int64_t rows, int C) {
  return static_cast<int64_t>(sizeof(double)) * reduce::partial_doubles(rows, C);
}

template <typename T>
void bias_backward(int64_t rows, int C, const T* dy, float* db, void* workspace, cudaStream_t stream) {
  if (rows <= 0 || C <= 0 || !db) return;
  const int chunks = reduce::chunks_for(rows);
  auto* part = static_cast<double*>(workspace);
  reduce::sums_partial_kernel<T><<<reduce::partial_grid(chunks, C), reduce::partial_block(), 0, stream>>>(
      rows, C, chunks, dy, nullptr, false, nullptr, nullptr, nullptr, part);
  CUDA_LAUNCH_CHECK(stream);
  bias_finalize_kernel<<<C, reduce::kFinThreads, 0, stream>>>(C, chunks, part, db);
  CUDA_LAUNCH_CHECK(stream);
}

#define INSTANTIATE(T)                                                                                         \
  template void add_forward<T>(int64_t, const T*, const T*, T*, cudaStream_t);                                 \
  template void add_backward<T>(int64_t, const T*, T*, T*, cudaStream_t);                                      \
  template void copy_channels<T>(int64_t, int, const T*, int64_t, T*, int64_t, cudaStream_t);                  \
  template void concat_forward<T>(int64_t, int, const T* const*, const int*, T*, cudaStream_t);                \
  template void concat_backward<T>(int64_t, int, const T*, const int*, T* const*, cudaStream_t);               \
  template void bias_forward<T>(int64_t, int, const float*, T*, cudaStream_t);                                 \
  template void bias_backward<T>(int64_t, int, const T*, float*, void*, cudaStream_t);
STOKE_FOR_EACH_STORAGE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace stoke::cuda
