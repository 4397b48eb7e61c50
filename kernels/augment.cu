// uint8 NHWC -> normalised T, one thread per output value (coalesced writes; the flipped read walks the row
// backwards a pixel at a time, which stays within the same cache lines).
#include "base/error.h"
#include "kernels/augment.cuh"
#include "kernels/cuda_util.cuh"

namespace stoke::cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
__global__ void augment_normalize_kernel(int64_t total, int H, int W, int C, int OC, const uint8_t* __restrict__ x,
                                         const uint8_t* __restrict__ flips, NormalizeParams p, T* __restrict__ y) {
  for (int64_t i = global_thread(); i < total; i += grid_threads()) {
    const int c = static_cast<int>(i % OC);
    if (c >= C) {  // a padding channel (out_c > c): an exact zero
      y[i] = from_float<T>(0.f);
      continue;
    }
    int64_t t = i / OC;
    int w = static_cast<int>(t % W);
    t /= W;
    const int h = static_cast<int>(t % H);
    const int64_t n = t / H;
    if (flips && flips[n]) w = W - 1 - w;
    const float v = static_cast<float>(x[((n * H + h) * W + w) * C + c]);
    y[i] = from_float<T>(__fadd_rn(__fmul_rn(v, p.scale[c]), p.shift[c]));
  }
}

}  // namespace

NormalizeParams normalize_params(const float* mean, const float* stdev, int channels) {
  STOKE_CHECK(channels >= 1 && channels <= kMaxNormalizeChannels, "normalisation of ", channels,
              " channels (at most ", kMaxNormalizeChannels, ")");
  NormalizeParams p;
  p.channels = channels;
  for (int c = 0; c < channels; ++c) {
    p.scale[c] = 1.f / (255.f * stdev[c]);
    p.shift[c] = -mean[c] / stdev[c];
  }
  return p;
}

template <typename T>
void augment_normalize(int n, int h, int w, int c, const uint8_t* x, const uint8_t* flips, const NormalizeParams& p,
                       T* y, cudaStream_t stream, int out_c) {
  STOKE_CHECK(n > 0 && h > 0 && w > 0 && c > 0, "empty input batch");
  STOKE_CHECK(c == p.channels, "normalisation for ", p.channels, " channels applied to ", c);
  if (out_c == 0) out_c = c;
  STOKE_CHECK(out_c >= c, "output of ", out_c, " channels for a ", c, "-channel input");
  const int64_t total = static_cast<int64_t>(n) * h * w * out_c;
  augment_normalize_kernel<T><<<grid_for(total, kThreads), kThreads, 0, stream>>>(total, h, w, c, out_c, x, flips, p, y);
  CUDA_LAUNCH_CHECK(stream);
}

#define INSTANTIATE(T)                                                                                         \
  template void augment_normalize<T>(int, int, int, int, const uint8_t*, const uint8_t*, const NormalizeParams&, \
                                     T*, cudaStream_t, int);
STOKE_FOR_EACH_STORAGE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace stoke::cuda
