// The end of the input pipeline: a uint8 NHWC batch (as the decoders wrote it) -> normalised fp32 NHWC, with
// an optional horizontal flip per sample. CPU twin of stoke::cuda::augment_normalize (kernels/augment.cuh).
//
//   y[n, h, w, c] = x[n, h, flip[n] ? W-1-w : w, c] * scale[c] + shift[c],  scale = 1/(255 std), shift = -mean/std
//
// in fp32, multiply and add rounded separately (no FMA contraction), so the CUDA twin's fp32 path matches it
// bit for bit.
//
// augment_transform_normalize does the whole per-sample augmentation in the same single pass: a random affine
// warp (rotation, zoom, translation, shear, flips) with bilinear sampling, intensity and colour jitter, Gaussian
// noise and random erasing, then the same normalisation. Its parameters are one SampleTransform per sample, drawn
// on the host by draw_sample_transform from an AugmentRecipe and a key (seed, epoch, sample id), so the CPU and the
// CUDA twin (kernels/augment.cuh) apply the same transform. Order of operations, units: docs/AUGMENTATION.md.
#pragma once

#include <cstdint>
#include <vector>

namespace stoke {

inline constexpr int kMaxAugmentChannels = 4;

// One sample's augmentation, in pixel units (0..255). Plain data: the CUDA twin reads an array of these from the
// device. The default value is the identity (exactly: it reproduces augment_normalize bit for bit).
struct SampleTransform {
  // Inverse affine, output -> input, on continuous coordinates where pixel i spans [i, i+1): the output pixel
  // centre (X, Y) = (x + 0.5, y + 0.5) samples the input at (m[0] X + m[1] Y + m[2], m[3] X + m[4] Y + m[5]).
  // Flips are folded in.
  float m[6] = {1.f, 0.f, 0.f, 0.f, 1.f, 0.f};
  float fill[kMaxAugmentChannels] = {0.f, 0.f, 0.f, 0.f};  // outside the input, and inside the erase box
  float brightness = 0.f;                                  // added
  float contrast = 1.f;                                    // about mid-grey 127.5 (one pass has no image mean)
  float saturation = 1.f;                                  // 3 channels: blend with the luma
  float hue_cos = 1.f, hue_sin = 0.f;  // 3 channels: hue shift as a rotation about the grey axis (host trig)
  float gamma = 1.f;                   // 255 (v/255)^gamma
  float noise_std = 0.f;               // Gaussian, drawn per (noise_key, pixel, channel)
  uint64_t noise_key = 0;
  int erase_y = 0, erase_x = 0, erase_h = 0, erase_w = 0;  // output box set to fill; h or w 0 = none
};

struct AugmentRange {
  float lo = 0.f, hi = 0.f;  // uniform in [lo, hi]; lo == hi is that value exactly
};

// What to draw. Fractions are of the image side (translate), of its area (erase) or of full scale 255
// (brightness, noise std). Each parameter has its own counter, so adding one leaves the others' draws unchanged.
struct AugmentRecipe {
  AugmentRange rotate_deg;                   // positive: counter-clockwise on screen
  AugmentRange zoom{1.f, 1.f};               // > 1 enlarges the content
  float rotate_p = 1.f, zoom_p = 1.f;        // how often each is drawn (MONAI's prob); otherwise 0 degrees, zoom 1
  float translate = 0.f;                     // x, y each uniform in [-t, t] times the width, height
  AugmentRange shear_deg;                    // x and y shear drawn independently; |angle| < 45
  float hflip_p = 0.f, vflip_p = 0.f;        // probabilities
  AugmentRange brightness;                   // added, fraction of 255
  AugmentRange brightness_factor{1.f, 1.f};  // multiplied, as torchvision's brightness (> 0); before `brightness`
  AugmentRange contrast{1.f, 1.f};
  AugmentRange gamma{1.f, 1.f};
  AugmentRange saturation{1.f, 1.f};
  AugmentRange hue;  // fraction of a full turn, within [-0.5, 0.5]
  float noise_p = 0.f;
  AugmentRange noise_std;  // fraction of 255
  float erase_p = 0.f;
  AugmentRange erase_area{0.02f, 0.33f};  // fraction of the image
  AugmentRange erase_aspect{0.3f, 3.3f};  // height / width, log-uniform
  std::vector<float> fill;                // pixel values: one for every channel, or one per channel; empty = 0
};

// The transform of one h x w x c sample. key: what io::augment_key(seed, epoch, sample id) returns; mixed here
// with a purpose of its own, so these draws are independent of the crop and flip io/pipeline draws from it.
SampleTransform draw_sample_transform(const AugmentRecipe& r, int h, int w, int c, uint64_t key);

// scale/shift from the per-channel mean and std of pixel/255.
void normalize_coefficients(const std::vector<float>& mean, const std::vector<float>& stdev, std::vector<float>& scale,
                            std::vector<float>& shift);

namespace cpu {

// flips: n bytes, nonzero = mirror that sample (null: none).
void augment_normalize(int n, int h, int w, int c, const uint8_t* x, const uint8_t* flips, const float* scale,
                       const float* shift, float* y);

// transforms: n of them. fp32, each product and sum rounded on its own (kernels/augment_transform.h holds the
// per-pixel arithmetic both twins share).
void augment_transform_normalize(int n, int h, int w, int c, const uint8_t* x, const SampleTransform* transforms,
                                 const float* scale, const float* shift, float* y);

}  // namespace cpu
}  // namespace stoke
