// The GPU end of the input pipeline: a uint8 NHWC batch (as the decoders wrote it) -> normalised NHWC in the
// storage type T, with an optional horizontal flip per sample.
//
//   y[n, h, w, c] = x[n, h, flip[n] ? W-1-w : w, c] * scale[c] + shift[c],   scale = 1 / (255 std), shift = -mean / std
//
// in fp32 with the multiply and add rounded separately, which is exactly the CPU trainer's normalisation
// (engine/trainer.cpp), so the fp32 result is bit-identical to it. mean/std are those of pixel/255.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace stoke::cuda {

inline constexpr int kMaxNormalizeChannels = 4;

struct NormalizeParams {
  int channels = 1;
  float scale[kMaxNormalizeChannels] = {1.f, 1.f, 1.f, 1.f};
  float shift[kMaxNormalizeChannels] = {0.f, 0.f, 0.f, 0.f};
};

// From per-channel mean and std of pixel/255 (host arrays of `channels` values, channels <= 4).
NormalizeParams normalize_params(const float* mean, const float* stdev, int channels);

// flips: n bytes, nonzero = mirror that sample (may be null: no flips). out_c (0 = c): channels of y per pixel;
// channels c..out_c-1 are written as zeros (the executor pads 1- or 3-channel inputs to 8 in half precision, see
// engine/cuda/param_layout.h).
template <typename T>
void augment_normalize(int n, int h, int w, int c, const uint8_t* x, const uint8_t* flips, const NormalizeParams& p,
                       T* y, cudaStream_t stream, int out_c = 0);

}  // namespace stoke::cuda
