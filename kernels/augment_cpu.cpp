#include "kernels/augment.h"

#include <cstddef>

#include "base/parallel.h"

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

}  // namespace cpu
}  // namespace stoke
