#include "base/error.h"
#include "kernels/cuda_util.cuh"
#include "kernels/metrics.cuh"

namespace stoke::cuda {
namespace {

constexpr int kThreads = 128;

// One thread per row: the class counts of stoke's classifiers are small, so a sequential arg-max is cheap.
template <typename T>
__global__ void confusion_kernel(int n, int K, const T* __restrict__ logits, const int32_t* __restrict__ labels,
                                 int32_t* __restrict__ counts) {
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= n) return;
  const int y = labels[row];
  if (y < 0 || y >= K) return;
  const T* z = logits + static_cast<int64_t>(row) * K;
  int am = 0;
  float best = to_float(z[0]);
  for (int k = 1; k < K; ++k) {
    const float v = to_float(z[k]);
    if (v > best) {
      best = v;
      am = k;
    }
  }
  atomicAdd(&counts[static_cast<int64_t>(y) * K + am], 1);
}

}  // namespace

template <typename T>
void confusion_update(int n, int classes, const T* logits, const int32_t* labels, int32_t* counts,
                      cudaStream_t stream) {
  STOKE_CHECK(classes > 0, "confusion matrix of no classes");
  if (n <= 0) return;
  confusion_kernel<T><<<(n + kThreads - 1) / kThreads, kThreads, 0, stream>>>(n, classes, logits, labels, counts);
  CUDA_LAUNCH_CHECK(stream);
}

#define INSTANTIATE(T) \
  template void confusion_update<T>(int, int, const T*, const int32_t*, int32_t*, cudaStream_t);
STOKE_FOR_EACH_STORAGE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace stoke::cuda
