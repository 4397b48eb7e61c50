// Parity of the augmentation kernels (kernels/augment.cuh) with their CPU references (kernels/augment.h), for each
// storage type, at odd sizes, with 1 and 3 channels, and padded to the executor's device channel count.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/cuda_check.h"
#include "kernels/augment.cuh"
#include "kernels/augment.h"
#include "tests/gpu/gpu_test_util.h"

namespace stoke {
namespace {

using namespace stoke::test;

constexpr cudaStream_t kStream = nullptr;

template <typename T>
class GpuAugment : public ::testing::Test {};
TYPED_TEST_SUITE(GpuAugment, StorageTypes, StorageNames);

// ---- augment / normalise ----------------------------------------------------------------------------------------
TYPED_TEST(GpuAugment, AugmentNormalize) {
  REQUIRE_GPU();
  using T = TypeParam;
  const int n = 5, h = 7, w = 9, c = 3;
  std::vector<uint8_t> px(static_cast<size_t>(n) * h * w * c);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
  const std::vector<uint8_t> flips = {0, 1, 1, 0, 1};
  const float mean[3] = {0.485f, 0.456f, 0.406f}, stdev[3] = {0.229f, 0.224f, 0.225f};
  const cuda::NormalizeParams p = cuda::normalize_params(mean, stdev, c);
  auto dpx = upload_raw(px), dfl = upload_raw(flips);
  DeviceBuffer<T> dy(px.size());
  cuda::augment_normalize<T>(n, h, w, c, dpx.get(), dfl.get(), p, dy.get(), kStream);
  // The CPU trainer's normalisation, with the flip applied to the source column.
  std::vector<float> ref(px.size());
  for (int i = 0; i < n; ++i)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x)
        for (int k = 0; k < c; ++k) {
          const int sx = flips[static_cast<size_t>(i)] ? w - 1 - x : x;
          const float scale = 1.f / (255.f * stdev[k]), shift = -mean[k] / stdev[k];
          const float v = static_cast<float>(px[((static_cast<size_t>(i) * h + y) * w + sx) * c + k]);
          ref[((static_cast<size_t>(i) * h + y) * w + x) * c + k] = v * scale + shift;
        }
  expect_bitwise(tag<T>("augment+normalise (bit-exact after rounding)"), download(dy.get(), ref.size()),
                 rounded<T>(ref));

  // Padded to 8 channels (the executor's half-precision input): the same values, then exact zeros, written over
  // a buffer first filled with NaN-like bytes so a channel the kernel skipped shows up.
  constexpr int oc = 8;
  DeviceBuffer<T> dp(static_cast<size_t>(n) * h * w * oc);
  CUDA_CHECK(cudaMemset(dp.get(), 0xFF, dp.size() * sizeof(T)));
  CUDA_CHECK(cudaDeviceSynchronize());
  cuda::augment_normalize<T>(n, h, w, c, dpx.get(), dfl.get(), p, dp.get(), kStream, oc);
  std::vector<float> padded(dp.size(), 0.f);
  const std::vector<float> r = rounded<T>(ref);
  for (size_t pix = 0; pix < static_cast<size_t>(n) * h * w; ++pix)
    for (int k = 0; k < c; ++k) padded[pix * oc + static_cast<size_t>(k)] = r[pix * c + static_cast<size_t>(k)];
  expect_bitwise(tag<T>("augment+normalise padded to 8 channels"), download(dp.get(), dp.size()), padded);
}

// ---- augment: transform + normalise ---------------------------------------------------------------------------
// Three samples at odd sizes: the identity, a geometric one (rotation, zoom, shear, translation, both flips, fill,
// erase box) and one with everything (intensity, colour on 3 channels, gamma, noise). Both twins share their
// arithmetic (kernels/augment_transform.h), so without gamma and noise the result is bit-identical after rounding
// to T; with them CUDA's powf/logf/cosf differ from the host's libm by a few ulp, inside the table's rtol.
std::vector<SampleTransform> transform_cases(int h, int w, int c, bool with_intensity) {
  AugmentRecipe geo;
  geo.rotate_deg = {-25.f, 25.f};
  geo.zoom = {0.7f, 1.4f};
  geo.shear_deg = {-10.f, 10.f};
  geo.translate = 0.15f;
  geo.hflip_p = geo.vflip_p = 0.5f;
  geo.erase_p = 1.f;
  geo.fill = {40.f, 128.f, 220.f};
  geo.fill.resize(static_cast<size_t>(c));
  AugmentRecipe all = geo;
  all.erase_p = 0.f;
  if (with_intensity) {
    all.brightness = {-0.2f, 0.2f};
    all.contrast = {0.6f, 1.4f};
    all.saturation = {0.5f, 1.5f};
    all.hue = {-0.2f, 0.2f};
    all.gamma = {0.7f, 1.5f};
    all.noise_p = 1.f;
    all.noise_std = {0.05f, 0.1f};
  }
  return {SampleTransform{}, draw_sample_transform(geo, h, w, c, 11), draw_sample_transform(all, h, w, c, 12)};
}

TYPED_TEST(GpuAugment, AugmentTransformNormalize) {
  REQUIRE_GPU();
  using T = TypeParam;
  const int n = 3, h = 13, w = 17;
  for (int c : {1, 3}) {
    std::vector<uint8_t> px(static_cast<size_t>(n) * h * w * c);
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 37 + 11) % 256);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, stdev[3] = {0.229f, 0.224f, 0.225f};
    const cuda::NormalizeParams p = cuda::normalize_params(mean, stdev, c);
    std::vector<float> scale(p.scale, p.scale + c), shift(p.shift, p.shift + c);
    auto dpx = upload_raw(px);
    for (bool intensity : {false, true}) {
      const std::vector<SampleTransform> ts = transform_cases(h, w, c, intensity);
      auto dts = upload_raw(ts);
      std::vector<float> ref(px.size());
      cpu::augment_transform_normalize(n, h, w, c, px.data(), ts.data(), scale.data(), shift.data(), ref.data());
      DeviceBuffer<T> dy(px.size());
      cuda::augment_transform_normalize<T>(n, h, w, c, dpx.get(), dts.get(), p, dy.get(), kStream);
      const std::string what = std::string(intensity ? "augment transform, all steps" : "augment transform, geometry") +
                               ", c " + std::to_string(c);
      if (intensity)
        expect_close(tag<T>(what), download(dy.get(), ref.size()), rounded<T>(ref), Tol<T>::rtol);
      else
        expect_bitwise(tag<T>(what), download(dy.get(), ref.size()), rounded<T>(ref));

      // Padded to a 16-byte pixel (the vector store), and the same one element off alignment (the scalar store),
      // over NaN-like bytes so a skipped channel shows up.
      const int oc = static_cast<int>(16 / sizeof(T));
      const size_t pixels = static_cast<size_t>(n) * h * w;
      DeviceBuffer<T> dp(pixels * oc + 1);
      const std::vector<float> r = rounded<T>(ref);
      std::vector<float> padded(pixels * oc, 0.f);
      for (size_t pix = 0; pix < pixels; ++pix)
        for (int k = 0; k < c; ++k) padded[pix * oc + static_cast<size_t>(k)] = r[pix * c + static_cast<size_t>(k)];
      for (int off : {0, 1}) {
        CUDA_CHECK(cudaMemset(dp.get(), 0xFF, dp.size() * sizeof(T)));
        CUDA_CHECK(cudaDeviceSynchronize());
        cuda::augment_transform_normalize<T>(n, h, w, c, dpx.get(), dts.get(), p, dp.get() + off, kStream, oc);
        expect_close(tag<T>(what + " padded, off " + std::to_string(off)), download(dp.get() + off, padded.size()),
                     padded, Tol<T>::rtol);
      }
    }
  }
}

}  // namespace
}  // namespace stoke
