// uint8 NHWC -> normalised T, one thread per output value (coalesced writes; the flipped read walks the row
// backwards a pixel at a time, which stays within the same cache lines).
#include "base/error.h"
#include "kernels/augment.cuh"
#include "kernels/augment_transform.h"
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

constexpr int kMaxOutChannels = 8;

// One thread per output pixel, all channels: the bilinear taps of a pixel are read once for every channel, and
// its out_c values leave in one 16-byte store when they fill one (bf16/fp16 padded to 8, fp32 with 4). I: the
// pixel index type; 32-bit division where the batch allows it, as 64-bit division costs several times more.
template <typename T, typename I>
__global__ void augment_transform_kernel(I pixels, int H, int W, int C, int OC, const uint8_t* __restrict__ x,
                                         const SampleTransform* __restrict__ transforms, NormalizeParams p,
                                         T* __restrict__ y, bool vector_store) {
  constexpr int V = vec_width<T>();
  for (I i = static_cast<I>(global_thread()); i < pixels; i += static_cast<I>(grid_threads())) {
    const int col = static_cast<int>(i % static_cast<I>(W));
    const I t = i / static_cast<I>(W);
    const int row = static_cast<int>(t % static_cast<I>(H));
    const I n = t / static_cast<I>(H);
    float v[kMaxAugmentChannels];
    augment_pixel::transform(transforms[n], H, W, C, x + static_cast<int64_t>(n) * H * W * C, row, col, v);
    float out[kMaxOutChannels];
#pragma unroll
    for (int k = 0; k < kMaxOutChannels; ++k)
      out[k] = k < C && k < kMaxAugmentChannels ? augment_pixel::normalize(v[k], p.scale[k], p.shift[k]) : 0.f;
    T* dst = y + static_cast<int64_t>(i) * OC;
    if (vector_store) {
      float pack[V];
#pragma unroll
      for (int k = 0; k < V; ++k) pack[k] = out[k];
      store_f<V>(dst, pack);
    } else {
#pragma unroll
      for (int k = 0; k < kMaxOutChannels; ++k)
        if (k < OC) dst[k] = from_float<T>(out[k]);
    }
  }
}

}  // namespace

NormalizeParams normalize_params(const float* mean, const float* stdev, int channels) {
  STOKE_CHECK(channels >= 1 && channels <= kMaxNormalizeChannels, "normalisation of ", channels, " channels (at most ",
              kMaxNormalizeChannels, ")");
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
  augment_normalize_kernel<T>
      <<<grid_for(total, kThreads), kThreads, 0, stream>>>(total, h, w, c, out_c, x, flips, p, y);
  CUDA_LAUNCH_CHECK(stream);
}

template <typename T>
void augment_transform_normalize(int n, int h, int w, int c, const uint8_t* x, const SampleTransform* transforms_device,
                                 const NormalizeParams& p, T* y, cudaStream_t stream, int out_c) {
  STOKE_CHECK(n > 0 && h > 0 && w > 0 && c > 0, "empty input batch");
  STOKE_CHECK(c == p.channels && c <= kMaxAugmentChannels, "normalisation for ", p.channels, " channels applied to ",
              c);
  if (out_c == 0) out_c = c;
  STOKE_CHECK(out_c >= c && out_c <= kMaxOutChannels, "output of ", out_c, " channels for a ", c, "-channel input");
  const bool vector_store = out_c == vec_width<T>() && aligned16(y);
  const int64_t pixels = static_cast<int64_t>(n) * h * w;
  const int grid = grid_for(pixels, kThreads);
  if (pixels + static_cast<int64_t>(grid) * kThreads <= int64_t{UINT32_MAX})  // the stride loop cannot wrap
    augment_transform_kernel<T, uint32_t><<<grid, kThreads, 0, stream>>>(static_cast<uint32_t>(pixels), h, w, c, out_c,
                                                                         x, transforms_device, p, y, vector_store);
  else
    augment_transform_kernel<T, int64_t>
        <<<grid, kThreads, 0, stream>>>(pixels, h, w, c, out_c, x, transforms_device, p, y, vector_store);
  CUDA_LAUNCH_CHECK(stream);
}

#define INSTANTIATE(T)                                                                                               \
  template void augment_normalize<T>(int, int, int, int, const uint8_t*, const uint8_t*, const NormalizeParams&, T*, \
                                     cudaStream_t, int);                                                             \
  template void augment_transform_normalize<T>(int, int, int, int, const uint8_t*, const SampleTransform*,           \
                                               const NormalizeParams&, T*, cudaStream_t, int);
STOKE_FOR_EACH_STORAGE(INSTANTIATE)
#undef INSTANTIATE

}  // namespace stoke::cuda
