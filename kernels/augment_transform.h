// The per-pixel arithmetic of augment_transform_normalize, shared by the CPU reference (augment_cpu.cpp) and
// the CUDA twin (augment.cu) so both run the same operations in the same order. Every product and sum is
// rounded on its own: on the device through __fmul_rn/__fadd_rn (nvcc would fuse them otherwise), on the host
// because augment_cpu.cpp is built with -ffp-contract=off. Only powf (gamma) and the noise's logf/cosf/sqrtf
// may differ between the host's libm and CUDA's, by a few ulp.
#pragma once

#include <cmath>
#include <cstdint>

#include "base/rng.h"
#include "kernels/augment.h"

#if defined(__CUDA_ARCH__)
#define STOKE_AUG_UNROLL _Pragma("unroll")
#else
#define STOKE_AUG_UNROLL
#endif

namespace stoke::augment_pixel {

STOKE_HD inline float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
STOKE_HD inline float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
STOKE_HD inline float sub(float a, float b) { return add(a, -b); }
STOKE_HD inline float lerp(float a, float b, float t) { return add(a, mul(t, sub(b, a))); }  // t = 0: a exactly

// Standard normal by Box-Muller in fp32 from one 64-bit draw (normal01 in base/rng.h is host-only double).
STOKE_HD inline float normal(uint64_t key, uint64_t counter) {
  const uint64_t bits = mix64(key ^ mix64(counter));
  const float u1 = static_cast<float>((bits >> 40) + 1) * (1.f / 16777216.f);  // (0, 1]
  const float u2 = static_cast<float>(bits & 0xffffff) * (1.f / 16777216.f);   // [0, 1)
  return mul(sqrtf(mul(-2.f, logf(u1))), cosf(mul(6.28318531f, u2)));
}

// Bilinear sample of output pixel (y, x) into v[0..c): taps outside the input read the fill value, so the border
// blends into it as grid_sample with align_corners=False does.
STOKE_HD inline void sample(const SampleTransform& t, int h, int w, int c, const uint8_t* img, int y, int x, float* v) {
  const float X = static_cast<float>(x) + 0.5f, Y = static_cast<float>(y) + 0.5f;
  const float sx = sub(add(add(mul(t.m[0], X), mul(t.m[1], Y)), t.m[2]), 0.5f);  // in pixel-index units
  const float sy = sub(add(add(mul(t.m[3], X), mul(t.m[4], Y)), t.m[5]), 0.5f);
  if (!(sx > -1.f && sx < static_cast<float>(w) && sy > -1.f && sy < static_cast<float>(h))) {  // NaN too
    STOKE_AUG_UNROLL
    for (int k = 0; k < kMaxAugmentChannels; ++k)
      if (k < c) v[k] = t.fill[k];
    return;
  }
  const float fx = floorf(sx), fy = floorf(sy);
  const float ax = sub(sx, fx), ay = sub(sy, fy);
  const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
  const bool l = x0 >= 0, r = x0 + 1 < w, u = y0 >= 0, d = y0 + 1 < h;
  const uint8_t* row0 = img + (static_cast<int64_t>(y0) * w + x0) * c;  // only dereferenced where inside
  const uint8_t* row1 = row0 + static_cast<int64_t>(w) * c;
  STOKE_AUG_UNROLL
  for (int k = 0; k < kMaxAugmentChannels; ++k) {
    if (k >= c) break;
    const float f = t.fill[k];
    const float p00 = u && l ? static_cast<float>(row0[k]) : f, p01 = u && r ? static_cast<float>(row0[c + k]) : f;
    const float p10 = d && l ? static_cast<float>(row1[k]) : f, p11 = d && r ? static_cast<float>(row1[c + k]) : f;
    v[k] = lerp(lerp(p00, p01, ax), lerp(p10, p11, ax), ay);
  }
}

// Saturation then hue, on 3 channels (ITU-R BT.601 luma; the hue rotation keeps grey grey).
STOKE_HD inline void colour(const SampleTransform& t, float* v) {
  if (t.saturation != 1.f) {
    const float luma = add(add(mul(0.299f, v[0]), mul(0.587f, v[1])), mul(0.114f, v[2]));
    for (int k = 0; k < 3; ++k) v[k] = lerp(luma, v[k], t.saturation);
  }
  if (t.hue_cos != 1.f || t.hue_sin != 0.f) {
    const float a = mul(sub(1.f, t.hue_cos), 1.f / 3.f), b = mul(t.hue_sin, 0.577350269f);  // 1/sqrt(3)
    const float dg = add(t.hue_cos, a), p = sub(a, b), q = add(a, b);
    const float r = v[0], g = v[1], bl = v[2];
    v[0] = add(add(mul(dg, r), mul(p, g)), mul(q, bl));
    v[1] = add(add(mul(q, r), mul(dg, g)), mul(p, bl));
    v[2] = add(add(mul(p, r), mul(q, g)), mul(dg, bl));
  }
}

// The augmented value of every channel of output pixel (y, x), in pixel units, before normalisation: erase box,
// else bilinear sample, brightness, contrast, saturation, hue, clamp to [0, 255], gamma, noise. A step whose
// parameter is at its identity is skipped, so the identity transform returns the input value exactly.
STOKE_HD inline void transform(const SampleTransform& t, int h, int w, int c, const uint8_t* img, int y, int x,
                               float* v) {
  if (y >= t.erase_y && y < t.erase_y + t.erase_h && x >= t.erase_x && x < t.erase_x + t.erase_w) {
    STOKE_AUG_UNROLL
    for (int k = 0; k < kMaxAugmentChannels; ++k)
      if (k < c) v[k] = t.fill[k];
    return;
  }
  sample(t, h, w, c, img, y, x, v);
  STOKE_AUG_UNROLL
  for (int k = 0; k < kMaxAugmentChannels; ++k) {
    if (k >= c) break;
    if (t.brightness != 0.f) v[k] = add(v[k], t.brightness);
    if (t.contrast != 1.f) v[k] = lerp(127.5f, v[k], t.contrast);
  }
  if (c == 3) colour(t, v);
  STOKE_AUG_UNROLL
  for (int k = 0; k < kMaxAugmentChannels; ++k) {
    if (k >= c) break;
    float s = fminf(fmaxf(v[k], 0.f), 255.f);
    if (t.gamma != 1.f) s = mul(255.f, powf(mul(s, 1.f / 255.f), t.gamma));
    if (t.noise_std != 0.f)
      s = add(s, mul(t.noise_std, normal(t.noise_key, (static_cast<uint64_t>(y) * w + x) * c + k)));
    v[k] = s;
  }
}

// The normalisation of augment_normalize: multiply and add rounded separately.
STOKE_HD inline float normalize(float v, float scale, float shift) { return add(mul(v, scale), shift); }

}  // namespace stoke::augment_pixel
