// Known answers for the one-pass augmentation (cpu::augment_transform_normalize) and its parameter drawer:
// identity is augment_normalize bit for bit, quarter turns permute pixels exactly, zoom is a bilinear upscale,
// intensity steps give their closed forms on constant images, and the drawer is a pure function of its key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/rng.h"
#include "kernels/augment.h"
#include "tests/kernels/test_util.h"

namespace stoke {
namespace {

using test::bitwise_equal;

std::vector<uint8_t> random_pixels(size_t count, uint64_t key) {
  std::vector<uint8_t> px(count);
  for (size_t i = 0; i < count; ++i) px[i] = static_cast<uint8_t>(uniform_below(key, i, 256));
  return px;
}

// Runs the op on n copies of `t` with scale 1, shift 0, so the output is in pixel units.
std::vector<float> apply(const std::vector<uint8_t>& px, int n, int h, int w, int c, const SampleTransform& t) {
  const std::vector<SampleTransform> ts(static_cast<size_t>(n), t);
  const std::vector<float> scale(static_cast<size_t>(c), 1.f), shift(static_cast<size_t>(c), 0.f);
  std::vector<float> y(px.size());
  cpu::augment_transform_normalize(n, h, w, c, px.data(), ts.data(), scale.data(), shift.data(), y.data());
  return y;
}

// Field by field and bit for bit (the struct has padding before noise_key, which memcmp would read).
bool same_transform(const SampleTransform& a, const SampleTransform& b) {
  auto bits = [](const float* p, int n) { return std::vector<float>(p, p + n); };
  const float sa[] = {a.brightness, a.contrast, a.saturation, a.hue_cos, a.hue_sin, a.gamma, a.noise_std};
  const float sb[] = {b.brightness, b.contrast, b.saturation, b.hue_cos, b.hue_sin, b.gamma, b.noise_std};
  return bitwise_equal(bits(a.m, 6), bits(b.m, 6)) && bitwise_equal(bits(a.fill, 4), bits(b.fill, 4)) &&
         bitwise_equal(bits(sa, 7), bits(sb, 7)) && a.noise_key == b.noise_key && a.erase_y == b.erase_y &&
         a.erase_x == b.erase_x && a.erase_h == b.erase_h && a.erase_w == b.erase_w;
}

TEST(AugmentTransform, IdentityIsAugmentNormalizeBitExact) {
  for (int c : {1, 3}) {
    const int n = 3, h = 7, w = 9;
    const auto px = random_pixels(static_cast<size_t>(n) * h * w * c, 1);
    std::vector<float> mean = {0.485f, 0.456f, 0.406f}, sd = {0.229f, 0.224f, 0.225f}, scale, shift;
    mean.resize(static_cast<size_t>(c));
    sd.resize(static_cast<size_t>(c));
    normalize_coefficients(mean, sd, scale, shift);
    // Sample 1 flipped by the drawer (hflip_p = 1): the flip is folded into the matrix and stays exact.
    AugmentRecipe flip;
    flip.hflip_p = 1.f;
    const std::vector<SampleTransform> ts = {SampleTransform{}, draw_sample_transform(flip, h, w, c, 7),
                                             draw_sample_transform(AugmentRecipe{}, h, w, c, 8)};
    const std::vector<uint8_t> flips = {0, 1, 0};
    std::vector<float> ref(px.size()), got(px.size());
    cpu::augment_normalize(n, h, w, c, px.data(), flips.data(), scale.data(), shift.data(), ref.data());
    cpu::augment_transform_normalize(n, h, w, c, px.data(), ts.data(), scale.data(), shift.data(), got.data());
    EXPECT_TRUE(bitwise_equal(got, ref)) << c << " channels";
  }
}

TEST(AugmentTransform, IdentityRecipeDrawsTheIdentity) {
  for (uint64_t key : {0ull, 1ull, 0xdeadbeefull})
    EXPECT_TRUE(same_transform(draw_sample_transform(AugmentRecipe{}, 13, 17, 3, key), SampleTransform{})) << key;
}

TEST(AugmentTransform, QuarterTurnsPermutePixelsExactly) {
  for (int side : {5, 6}) {
    const int c = 3;
    const auto px = random_pixels(static_cast<size_t>(side) * side * c, 2);
    for (float deg : {90.f, -90.f}) {
      AugmentRecipe r;
      r.rotate_deg = {deg, deg};
      const auto y = apply(px, 1, side, side, c, draw_sample_transform(r, side, side, c, 3));
      // Counter-clockwise on screen: out(y, x) = in(x, side-1-y); clockwise: in(side-1-x, y).
      for (int i = 0; i < side; ++i)
        for (int j = 0; j < side; ++j)
          for (int k = 0; k < c; ++k) {
            const int si = deg > 0 ? j : side - 1 - j, sj = deg > 0 ? side - 1 - i : i;
            ASSERT_EQ(y[(static_cast<size_t>(i) * side + j) * c + k], px[(static_cast<size_t>(si) * side + sj) * c + k])
                << "side " << side << " deg " << deg << " at " << i << "," << j << "," << k;
          }
    }
  }
}

// Bilinear value of a 1-channel image at pixel-index position (sy, sx), computed in double.
double bilinear(const std::vector<uint8_t>& px, int w, double sy, double sx) {
  const int y0 = static_cast<int>(std::floor(sy)), x0 = static_cast<int>(std::floor(sx));
  const double ay = sy - y0, ax = sx - x0;
  auto at = [&](int y, int x) { return static_cast<double>(px[static_cast<size_t>(y) * w + x]); };
  return (1 - ay) * ((1 - ax) * at(y0, x0) + ax * at(y0, x0 + 1)) +
         ay * ((1 - ax) * at(y0 + 1, x0) + ax * at(y0 + 1, x0 + 1));
}

TEST(AugmentTransform, ZoomTwoIsAnUpscaledCentreCrop) {
  const int h = 8, w = 10;
  const auto px = random_pixels(static_cast<size_t>(h) * w, 4);
  AugmentRecipe r;
  r.zoom = {2.f, 2.f};
  const auto y = apply(px, 1, h, w, 1, draw_sample_transform(r, h, w, 1, 5));
  double worst = 0;
  for (int i = 0; i < h; ++i)
    for (int j = 0; j < w; ++j) {
      // Output centre (j + 0.5) maps to w/2 + (j + 0.5 - w/2) / 2 in the input: the central half, upscaled.
      const double sx = 0.5 * w + (j + 0.5 - 0.5 * w) / 2 - 0.5, sy = 0.5 * h + (i + 0.5 - 0.5 * h) / 2 - 0.5;
      worst = std::max(worst, std::fabs(y[static_cast<size_t>(i) * w + j] - bilinear(px, w, sy, sx)));
    }
  EXPECT_LE(worst, 1e-3) << "pixel units";  // fp32 lerps of values up to 255: ~1e-5 expected
}

TEST(AugmentTransform, TranslationShiftsAndFillsTheUncoveredBorder) {
  const int h = 4, w = 6, c = 3;
  const auto px = random_pixels(static_cast<size_t>(h) * w * c, 6);
  SampleTransform t;
  t.m[2] = -2.f;  // out(y, x) = in(y, x - 2)
  t.fill[0] = 10.f, t.fill[1] = 20.f, t.fill[2] = 30.f;
  const auto y = apply(px, 1, h, w, c, t);
  for (int i = 0; i < h; ++i)
    for (int j = 0; j < w; ++j)
      for (int k = 0; k < c; ++k) {
        const float want = j < 2 ? t.fill[k] : px[(static_cast<size_t>(i) * w + j - 2) * c + k];
        EXPECT_EQ(y[(static_cast<size_t>(i) * w + j) * c + k], want) << i << "," << j << "," << k;
      }
  // Half a pixel: the first column is half fill, half the input's first column (a tap outside reads the fill).
  t.m[2] = -0.5f;
  const auto half = apply(px, 1, h, w, c, t);
  for (int i = 0; i < h; ++i)
    for (int k = 0; k < c; ++k) {
      const size_t at = static_cast<size_t>(i) * w * c + k;
      EXPECT_EQ(half[at], 0.5f * (t.fill[k] + px[at])) << i << "," << k;
    }
}

// A 4x5 image of one colour through transform t: every output pixel, in pixel units.
std::vector<float> on_constant(std::vector<uint8_t> colour, const SampleTransform& t) {
  const int h = 4, w = 5, c = static_cast<int>(colour.size());
  std::vector<uint8_t> px;
  for (int i = 0; i < h * w; ++i) px.insert(px.end(), colour.begin(), colour.end());
  return apply(px, 2, h / 2, w, c, t);  // two samples of 2x5, each getting t
}

void expect_all(const std::vector<float>& y, const std::vector<double>& want, double tol, const char* what) {
  for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], want[i % want.size()], tol) << what << " at " << i;
}

TEST(AugmentTransform, IntensityStepsGiveTheirClosedForms) {
  SampleTransform t;
  t.brightness = 25.5f;
  expect_all(on_constant({100}, t), {125.5}, 0, "brightness");
  t.brightness = 229.5f;
  expect_all(on_constant({100}, t), {255}, 0, "brightness clamped");
  t = SampleTransform{};
  t.contrast = 1.5f;
  expect_all(on_constant({100, 250, 0}, t), {127.5 + 1.5 * (100 - 127.5), 255, 0}, 1e-4, "contrast (clamped)");
  t = SampleTransform{};
  t.gamma = 2.f;
  expect_all(on_constant({100}, t), {255 * std::pow(100 / 255.0, 2.0)}, 1e-3, "gamma");
  t.brightness = -10.f;  // brightness before gamma
  expect_all(on_constant({100}, t), {255 * std::pow(90 / 255.0, 2.0)}, 1e-3, "brightness then gamma");
}

TEST(AugmentTransform, ColourJitterOnThreeChannelsOnly) {
  SampleTransform t;
  t.saturation = 0.f;  // grey: every channel the BT.601 luma
  const double luma = 0.299 * 200 + 0.587 * 100 + 0.114 * 50;
  expect_all(on_constant({200, 100, 50}, t), {luma, luma, luma}, 1e-4, "saturation 0");
  t.saturation = 2.f;
  expect_all(on_constant({200, 100, 50}, t), {255, 100 + (100 - luma), 0}, 1e-4, "saturation 2 (clamped)");
  expect_all(on_constant({77}, t), {77}, 0, "saturation ignored on 1 channel");
  t = SampleTransform{};
  t.hue_cos = -0.5f, t.hue_sin = std::sqrt(3.f) / 2;  // a third of a turn: R -> G -> B -> R
  expect_all(on_constant({255, 0, 0}, t), {0, 255, 0}, 1e-3, "hue 120 degrees");
  expect_all(on_constant({90, 90, 90}, t), {90, 90, 90}, 1e-3, "hue keeps grey");
}

TEST(AugmentTransform, EraseBoxIsFilledAndNothingElse) {
  const int h = 6, w = 7, c = 3;
  const auto px = random_pixels(static_cast<size_t>(h) * w * c, 9);
  SampleTransform t;
  t.erase_y = 1, t.erase_x = 2, t.erase_h = 3, t.erase_w = 4;
  t.fill[0] = 1.f, t.fill[1] = 2.f, t.fill[2] = 3.f;
  t.brightness = 5.f;  // the box is the fill as given, not brightened
  const auto y = apply(px, 1, h, w, c, t);
  for (int i = 0; i < h; ++i)
    for (int j = 0; j < w; ++j)
      for (int k = 0; k < c; ++k) {
        const bool in = i >= 1 && i < 4 && j >= 2 && j < 6;
        const size_t at = (static_cast<size_t>(i) * w + j) * c + k;
        EXPECT_EQ(y[at], in ? t.fill[k] : std::min(255.f, px[at] + 5.f)) << i << "," << j << "," << k;
      }
}

TEST(AugmentTransform, NoiseIsGaussianPerPixelAndKeyed) {
  for (int c : {1, 3}) {
    SampleTransform t;
    t.noise_std = 10.f;
    t.noise_key = 42;
    const int h = 64, w = 64;
    const std::vector<uint8_t> px(static_cast<size_t>(h) * w * c, 100);
    const auto y = apply(px, 1, h, w, c, t);
    double s = 0, ss = 0;
    for (float v : y) s += v, ss += static_cast<double>(v) * v;
    const double m = s / static_cast<double>(y.size()), sd = std::sqrt(ss / static_cast<double>(y.size()) - m * m);
    EXPECT_NEAR(m, 100, 0.5) << c;
    EXPECT_NEAR(sd, 10, 0.5) << c;
    EXPECT_TRUE(bitwise_equal(apply(px, 1, h, w, c, t), y)) << "the same key draws the same noise";
    t.noise_key = 43;
    EXPECT_FALSE(bitwise_equal(apply(px, 1, h, w, c, t), y)) << "another key draws other noise";
  }
}

AugmentRecipe everything() {
  AugmentRecipe r;
  r.rotate_deg = {-30.f, 30.f};
  r.zoom = {0.8f, 1.25f};
  r.translate = 0.1f;
  r.hflip_p = 0.5f;
  r.brightness = {-0.2f, 0.2f};
  r.contrast = {0.7f, 1.3f};
  r.gamma = {0.8f, 1.2f};
  r.saturation = {0.5f, 1.5f};
  r.hue = {-0.1f, 0.1f};
  r.noise_p = 0.5f;
  r.noise_std = {0.01f, 0.05f};
  r.erase_p = 0.5f;
  r.fill = {128.f};
  return r;
}

TEST(AugmentTransform, DrawerIsAPureFunctionOfTheKey) {
  const AugmentRecipe r = everything();
  EXPECT_TRUE(same_transform(draw_sample_transform(r, 32, 48, 3, 1234), draw_sample_transform(r, 32, 48, 3, 1234)));
  int differ = 0;
  for (uint64_t key = 0; key < 100; ++key)
    differ += !same_transform(draw_sample_transform(r, 32, 48, 3, key), draw_sample_transform(r, 32, 48, 3, key + 1));
  EXPECT_EQ(differ, 100);
}

// Recovers rotation, zoom and translation from the matrix (no shear) and checks every draw against its range.
TEST(AugmentTransform, DrawsStayInTheirRanges) {
  const AugmentRecipe r = everything();
  const int h = 32, w = 48, draws = 2000;
  int flipped = 0, noisy = 0, erased = 0;
  double th_lo = 1e9, th_hi = -1e9;
  for (int i = 0; i < draws; ++i) {
    const SampleTransform t = draw_sample_transform(r, h, w, 3, static_cast<uint64_t>(i));
    const double det = static_cast<double>(t.m[0]) * t.m[4] - static_cast<double>(t.m[1]) * t.m[3];
    const bool flip = det < 0;
    flipped += flip;
    const double b00 = flip ? -t.m[0] : t.m[0], b10 = t.m[3];  // undo the flip's negated first row
    const double s = 1 / std::hypot(b00, b10), th = std::atan2(b10, b00) * 180 / 3.14159265358979;
    th_lo = std::min(th_lo, th), th_hi = std::max(th_hi, th);
    ASSERT_LE(std::fabs(th), 30.0 + 1e-3);
    ASSERT_TRUE(s >= 0.8 - 1e-5 && s <= 1.25 + 1e-5) << s;
    // The output centre (w/2 + tx, h/2 + ty) samples the input centre (flip: mirrored, still the centre).
    const double X = w / 2.0, Y = h / 2.0;
    const double cx = t.m[0] * X + t.m[1] * Y + t.m[2], cy = t.m[3] * X + t.m[4] * Y + t.m[5];
    const double tx = (flip ? w - cx : cx) - X, ty = cy - Y;  // input offset = B t, |B t| <= |t| / s
    ASSERT_LE(std::hypot(tx, ty), std::hypot(0.1 * w, 0.1 * h) / s + 1e-3);
    ASSERT_TRUE(t.brightness >= -0.2f * 255 - 1e-3f && t.brightness <= 0.2f * 255 + 1e-3f) << t.brightness;
    ASSERT_TRUE(t.contrast >= 0.7f && t.contrast <= 1.3f);
    ASSERT_TRUE(t.gamma >= 0.8f && t.gamma <= 1.2f);
    ASSERT_TRUE(t.saturation >= 0.5f && t.saturation <= 1.5f);
    ASSERT_LE(std::fabs(std::atan2(t.hue_sin, t.hue_cos)), 0.1 * 2 * 3.14159265358979 + 1e-5);
    ASSERT_FLOAT_EQ(t.fill[0], 128.f);
    ASSERT_FLOAT_EQ(t.fill[2], 128.f);
    if (t.noise_std > 0) {
      ++noisy;
      ASSERT_TRUE(t.noise_std >= 0.01f * 255 - 1e-3f && t.noise_std <= 0.05f * 255 + 1e-3f);
    }
    if (t.erase_h > 0) {
      ++erased;
      ASSERT_TRUE(t.erase_y >= 0 && t.erase_x >= 0 && t.erase_y + t.erase_h <= h && t.erase_x + t.erase_w <= w);
      const double area = static_cast<double>(t.erase_h) * t.erase_w / (h * w);
      ASSERT_TRUE(area > 0.02 * 0.5 && area < 0.33 * 1.5) << area;  // rounding of small boxes
    }
  }
  EXPECT_LT(th_lo, -27.0);  // the range is covered, not just respected
  EXPECT_GT(th_hi, 27.0);
  for (int count : {flipped, noisy, erased}) EXPECT_NEAR(count, draws / 2, draws / 20);
}

TEST(AugmentTransform, ShearKeepsTheMatrixInvertible) {
  AugmentRecipe r;
  r.shear_deg = {-40.f, 40.f};
  double lo = 1e9, hi = -1e9;
  for (uint64_t key = 0; key < 500; ++key) {
    const SampleTransform t = draw_sample_transform(r, 16, 16, 1, key);
    const double det = static_cast<double>(t.m[0]) * t.m[4] - static_cast<double>(t.m[1]) * t.m[3];
    ASSERT_GT(det, 0);
    lo = std::min(lo, static_cast<double>(t.m[1])), hi = std::max(hi, static_cast<double>(t.m[1]));
  }
  EXPECT_LT(lo, -0.3);  // shear drawn both ways
  EXPECT_GT(hi, 0.3);
}

}  // namespace
}  // namespace stoke
