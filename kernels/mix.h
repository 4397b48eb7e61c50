// Batch-level mixing, as timm's Mixup (mode "batch"): mixup blends every sample with its partner, cutmix pastes a
// box of the partner into it, and the targets are mixed with the same weight (kernels/softmax_ce.h,
// softmax_cross_entropy_mixed). The partner of sample i of an n-sample batch is sample n-1-i: the batch reversed,
// timm's x.flip(0). One BatchMix per batch, drawn on the host by draw_batch_mix from a MixRecipe and a key, so the
// CPU reference and the CUDA twin (kernels/mix.cuh) mix alike. docs/AUGMENTATION.md has the flags and the key.
//
//   mixup:  x_i = x_i * lam + x_{n-1-i} * (1 - lam)                  every value, product and sum rounded apart
//   cutmix: x_i[y0:y1, x0:x1] = x_{n-1-i}[y0:y1, x0:x1]             every channel; lam = 1 - box area / image area
//
// Both run in place on the normalised NHWC batch (after the per-sample transform), all channels of a pixel alike.
#pragma once

#include <cstdint>

namespace stoke {

// One batch's mixing. Plain data: the CUDA twin reads it from device memory. The default is the identity (no
// mixing): lam 1 with mixup leaves every value as it was, and the loss is the plain label-smoothed one.
struct BatchMix {
  float lam = 1.f;         // weight of each sample's own pixels and label; 1 - lam is its partner's
  int32_t cutmix = 0;      // 1: paste the partner's box; 0: blend with weight lam
  int32_t y0 = 0, y1 = 0;  // cutmix box: rows [y0, y1), columns [x0, x1)
  int32_t x0 = 0, x1 = 0;
};

// What to draw per batch (timm's Mixup arguments). An alpha of 0 turns that kind off.
struct MixRecipe {
  float mixup_alpha = 0.f;   // lam ~ Beta(alpha, alpha)
  float cutmix_alpha = 0.f;  // lam ~ Beta(alpha, alpha), then corrected to the box's actual area
  float prob = 1.f;          // probability that a batch is mixed at all
  float switch_prob = 0.5f;  // with both on: probability of cutmix rather than mixup
};

bool mix_active(const MixRecipe& r);  // some batch may be mixed: an alpha > 0 and prob > 0

// One batch of h x w images. key: the batch's key (the engine's mix_key(seed, epoch, batch index)), mixed here with
// a purpose of its own; each decision has its own counter, so the draw is a pure function of (recipe, h, w, key).
BatchMix draw_batch_mix(const MixRecipe& r, int h, int w, uint64_t key);

// timm's rand_bbox with correct_lam: a box of sides int(h sqrt(1 - lam)), int(w sqrt(1 - lam)) centred on a uniform
// pixel (cy, cx), clipped to the image; lam becomes 1 - its clipped area / (h w). cy, cx in [0, h), [0, w).
BatchMix cutmix_box(float lam, int h, int w, int cy, int cx);

namespace cpu {

// x: n x h x w x c fp32 NHWC, mixed in place as above (c: the channels stored per pixel).
void mix_batch(int n, int h, int w, int c, const BatchMix* mix, float* x);

}  // namespace cpu
}  // namespace stoke
