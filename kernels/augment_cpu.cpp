#include "kernels/augment.h"

#include <cstddef>

#include "base/error.h"
#include "base/parallel.h"
#include "kernels/augment_transform.h"

namespace stoke {

void normalize_coefficients(const std::vector<float>& mean, const std::vector<float>& stdev, std::vector<float>& scale,
                            std::vector<float>& shift) {
  scale.resize(mean.size());
  shift.resize(mean.size());
  for (std::size_t i = 0; i < mean.size(); ++i) {
    scale[i] = 1.f / (255.f * stdev[i]);
    shift[i] = -mean[i] / stdev[i];
  }
}

namespace cpu {

void augment_normalize(int n, int h, int w, int c, const uint8_t* x, const uint8_t* flips, const float* scale,
                       const float* shift, float* y) {
  const int64_t rows = int64_t{n} * h;  // one image row per item
  parallel_for(rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const bool flip = flips && flips[r / h];
      const uint8_t* src = x + r * w * c;
      float* dst = y + r * w * c;
      for (int j = 0; j < w; ++j) {
        const uint8_t* px = src + (flip ? w - 1 - j : j) * c;
        for (int k = 0; k < c; ++k) {
          const float v = static_cast<float>(px[k]) * scale[k];  // two roundings, as the CUDA twin
          dst[j * c + k] = v + shift[k];
        }
      }
    }
  });
}

void augment_transform_normalize(int n, int h, int w, int c, const uint8_t* x, const SampleTransform* transforms,
                                 const float* scale, const float* shift, float* y) {
  STOKE_CHECK(c >= 1 && c <= kMaxAugmentChannels, "augmentation of ", c, " channels (at most ", kMaxAugmentChannels,
              ")");
  const int64_t rows = int64_t{n} * h;  // one output row per item
  const int64_t image = int64_t{h} * w * c;
  parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t i = r / h;
      const int row = static_cast<int>(r % h);
      float* dst = y + r * w * c;
      for (int j = 0; j < w; ++j) {
        float v[kMaxAugmentChannels];
        augment_pixel::transform(transforms[i], h, w, c, x + i * image, row, j, v);
        for (int k = 0; k < c; ++k) dst[j * c + k] = augment_pixel::normalize(v[k], scale[k], shift[k]);
      }
    }
  });
}

}  // namespace cpu
}  // namespace stoke
