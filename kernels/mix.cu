// Batch mixing on the device: one thread per value of the first half of the batch (and the middle sample of an odd
// one), rewriting it and its partner's value together so the pair can be mixed in place.
#include "base/error.h"
#include "kernels/cuda_util.cuh"
#include "kernels/mix.cuh"

namespace stoke::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void mix_kernel(int n, int64_t image, int W, int C, int64_t total, const BatchMix* __restrict__ mix,
                           T* __restrict__ x) {
  const BatchMix m = *mix;
  if (m.lam == 1.f && !m.cutmix) return;  // a batch that is not mixed
  const float lam = m.lam, rest = __fsub_rn(1.f, m.lam);
  for (int64_t e = global_thread(); e < total; e += grid_threads()) {
    const int64_t i = e / image, k = e % image;
    T* a = x + i * image + k;
    T* b = x + (n - 1 - i) * image + k;
    if (m.cutmix) {
      const int64_t pixel = k / C;
      const int y = static_cast<int>(pixel / W), col = static_cast<int>(pixel % W);
      if (a != b && y >= m.y0 && y < m.y1 && col >= m.x0 && col < m.x1) {
        const T t = *a;
        *a = *b;
        *b = t;
      }
      continue;
    }
    const float va = to_float(*a), vb = to_float(*b);
    *a = from_float<T>(__fadd_rn(__fmul_rn(va, lam), __fmul_rn(vb, rest)));
    *b = from_float<T>(__fadd_rn(__fmul_rn(vb, lam), __fmul_rn(va, rest)));
  }
}

}  // namespace

template <typename T>
void mix_batch(int n, int h, int w, int c, const BatchMix* mix_device, T* x, cudaStream_t stream) {
  STOKE_CHECK(n > 0 && h > 0 && w > 0 && c > 0 && mix_device, "mixing an empty batch");
  const int64_t image = static_cast<int64_t>(h) * w * c;
  const int64_t total = static_cast<int64_t>((n + 1) / 2) * image;
  mix_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(n, image, w, c, total, mix_device, x);
  CUDA_LAUNCH_CHECK(stream);
}

#define INSTANTIATE(T) template void mix_batch<T>(int, int, int, int, const BatchMix*, T*, cudaStream_t);
STOKE_FOR_EACH_STORAGE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace stoke::cuda
