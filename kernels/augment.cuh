// The GPU end of the input pipeline: a uint8 NHWC batch (as the decoders wrote it) -> normalised NHWC in the
// storage type T, with an optional horizontal flip per sample.
//
//   y[n, h, w, c] = x[n, h, flip[n] ? W-1-w : w, c] * scale[c] + shift[c],   scale = 1 / (255 std), shift = -mean / std
//
// in fp32 with the multiply and add rounded separately, which is exactly the CPU trainer's normalisation
// (engine/trainer.cpp), so the fp32 result is bit-identical to it. mean/std are those of pixel/255.
//
// augment_transform_normalize is the CUDA twin of cpu::augment_transform_normalize (kernels/augment.h): the
// whole per-sample augmentation and the normalisation in one kernel, uint8 read once, T written once.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

#include "kernels/augment.h"

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

// transforms_device: n SampleTransforms in device memory (drawn on the host, one small copy per batch). Same
// arithmetic as the CPU twin (kernels/augment_transform.h): fp32 bit-identical except where gamma or noise run
// (CUDA's powf/logf/cosf against the host's libm, a few ulp). out_c as for augment_normalize (at most 8).
template <typename T>
void augment_transform_normalize(int n, int h, int w, int c, const uint8_t* x, const SampleTransform* transforms_device,
                                 const NormalizeParams& p, T* y, cudaStream_t stream, int out_c = 0);

}  // namespace stoke::cuda
