// The end of the input pipeline: a uint8 NHWC batch (as the decoders wrote it) -> normalised fp32 NHWC, with
// an optional horizontal flip per sample. CPU twin of stoke::cuda::augment_normalize (kernels/augment.cuh).
//
//   y[n, h, w, c] = x[n, h, flip[n] ? W-1-w : w, c] * scale[c] + shift[c],  scale = 1/(255 std), shift = -mean/std
//
// in fp32, multiply and add rounded separately (no FMA contraction), so the CUDA twin's fp32 path matches it
// bit for bit.
#pragma once

#include <cstdint>
#include <vector>

namespace stoke {

// scale/shift from the per-channel mean and std of pixel/255.
void normalize_coefficients(const std::vector<float>& mean, const std::vector<float>& stdev, std::vector<float>& scale,
                            std::vector<float>& shift);

namespace cpu {

// flips: n bytes, nonzero = mirror that sample (null: none).
void augment_normalize(int n, int h, int w, int c, const uint8_t* x, const uint8_t* flips, const float* scale,
                       const float* shift, float* y);

}  // namespace cpu
}  // namespace stoke
