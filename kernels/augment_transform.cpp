// draw_sample_transform: an AugmentRecipe and a key -> one SampleTransform. Host only, in double, rounded to
// float once at the end, so the transform a sample gets depends on (recipe, size, key) and nothing else.
#include <algorithm>
#include <cmath>

#include "base/error.h"
#include "base/rng.h"
#include "kernels/augment.h"

namespace stoke {
namespace {

constexpr uint64_t kTransformPurpose = 0xa06e4a;  // beside io/pipeline's crop and flip purpose 0xa06e47
constexpr uint64_t kNoisePurpose = 0x6e015e;
constexpr double kPi = 3.14159265358979323846;

// One counter per parameter (the erase box's tries use kErase and up).
enum Counter : uint64_t {
  kRotate,
  kZoom,
  kTranslateX,
  kTranslateY,
  kShearX,
  kShearY,
  kHflip,
  kVflip,
  kBrightness,
  kContrast,
  kGamma,
  kSaturation,
  kHue,
  kNoiseOn,
  kNoiseStd,
  kEraseOn,
  kErase,
  // Added later, past the erase box's tries, so the counters above still draw what they drew.
  kRotateOn = kErase + 64,
  kZoomOn,
  kBrightnessFactor,
};

double draw(uint64_t key, uint64_t counter, AugmentRange r) {
  if (r.lo == r.hi) return r.lo;  // no draw, and the value exactly
  return r.lo + (static_cast<double>(r.hi) - r.lo) * static_cast<double>(uniform01(key, counter));
}

bool coin(uint64_t key, uint64_t counter, float p) { return uniform01(key, counter) < p; }

// cos(90 deg) is 6e-17 in double: snapped to 0 so quarter turns map pixel centres onto pixel centres exactly.
float snap(double v) { return std::fabs(v) < 1e-12 ? 0.f : static_cast<float>(v); }

void check_recipe(const AugmentRecipe& r, int h, int w, int c) {
  STOKE_CHECK(h > 0 && w > 0 && c >= 1 && c <= kMaxAugmentChannels, "augmentation of a ", h, "x", w, "x", c,
              " image (1 to ", kMaxAugmentChannels, " channels)");
  STOKE_CHECK(r.zoom.lo > 0 && r.zoom.hi >= r.zoom.lo, "zoom range [", r.zoom.lo, ", ", r.zoom.hi, "]");
  STOKE_CHECK(std::max(std::fabs(r.shear_deg.lo), std::fabs(r.shear_deg.hi)) < 45.f, "shear beyond 45 degrees");
  STOKE_CHECK(r.gamma.lo > 0, "gamma range must be positive");
  STOKE_CHECK(r.brightness_factor.lo > 0, "brightness factor range must be positive");
  STOKE_CHECK(r.fill.empty() || r.fill.size() == 1 || static_cast<int>(r.fill.size()) == c, r.fill.size(),
              " fill values for ", c, " channels");
}

// The inverse of: flips, then about the image centre zoom, shear and rotation, then the translation.
void draw_geometry(const AugmentRecipe& r, int h, int w, uint64_t k, SampleTransform& t) {
  const bool rotate = r.rotate_p >= 1.f || coin(k, kRotateOn, r.rotate_p);
  const bool zoom = r.zoom_p >= 1.f || coin(k, kZoomOn, r.zoom_p);
  const double th = rotate ? draw(k, kRotate, r.rotate_deg) * kPi / 180.0 : 0.0;
  const double s = zoom ? draw(k, kZoom, r.zoom) : 1.0;
  const double shx = std::tan(draw(k, kShearX, r.shear_deg) * kPi / 180.0);
  const double shy = std::tan(draw(k, kShearY, r.shear_deg) * kPi / 180.0);
  const double tx = draw(k, kTranslateX, {-r.translate, r.translate}) * w;
  const double ty = draw(k, kTranslateY, {-r.translate, r.translate}) * h;
  // Forward linear part A = R * Sh * s, with y pointing down: a counter-clockwise turn on screen.
  const double c = std::cos(th), sn = std::sin(th);
  const double a00 = s * (c + sn * shy), a01 = s * (c * shx + sn), a10 = s * (-sn + c * shy), a11 = s * (-sn * shx + c);
  const double det = a00 * a11 - a01 * a10;
  const double b00 = a11 / det, b01 = -a01 / det, b10 = -a10 / det, b11 = a00 / det;
  // input = B (out - centre - t) + centre
  const double cx = 0.5 * w, cy = 0.5 * h, ox = cx + tx, oy = cy + ty;
  double m[6] = {b00, b01, cx - (b00 * ox + b01 * oy), b10, b11, cy - (b10 * ox + b11 * oy)};
  if (coin(k, kHflip, r.hflip_p))  // the flipped input at x is the input at w - x
    for (int j = 0; j < 3; ++j) m[j] = (j == 2 ? w : 0) - m[j];
  if (coin(k, kVflip, r.vflip_p))
    for (int j = 3; j < 6; ++j) m[j] = (j == 5 ? h : 0) - m[j];
  for (int j = 0; j < 6; ++j) t.m[j] = snap(m[j]);
}

void draw_intensity(const AugmentRecipe& r, uint64_t k, SampleTransform& t) {
  // The op has one offset and one factor about 127.5. Contrast c of (f v + a) is the factor c f with the offset
  // (a + 127.5 (f - 1)) / f: the multiplied brightness f rides on the contrast step.
  const double f = draw(k, kBrightnessFactor, r.brightness_factor), a = 255.0 * draw(k, kBrightness, r.brightness);
  const double c = draw(k, kContrast, r.contrast);
  t.brightness = static_cast<float>(f == 1.0 ? a : (a + 127.5 * (f - 1.0)) / f);
  t.contrast = static_cast<float>(c * f);
  t.gamma = static_cast<float>(draw(k, kGamma, r.gamma));
  t.saturation = static_cast<float>(draw(k, kSaturation, r.saturation));
  const double hue = 2.0 * kPi * draw(k, kHue, r.hue);
  t.hue_cos = snap(std::cos(hue));
  t.hue_sin = snap(std::sin(hue));
  if (r.noise_p > 0 && coin(k, kNoiseOn, r.noise_p)) {
    t.noise_std = static_cast<float>(255.0 * draw(k, kNoiseStd, r.noise_std));
    t.noise_key = hash_key(k, kNoisePurpose);
  }
}

// torchvision RandomErasing.get_params: up to 10 tries of an area and a log-uniform aspect that fit.
void draw_erase(const AugmentRecipe& r, int h, int w, uint64_t k, SampleTransform& t) {
  if (!(r.erase_p > 0 && coin(k, kEraseOn, r.erase_p))) return;
  const double log_a0 = std::log(static_cast<double>(r.erase_aspect.lo));
  const double log_a1 = std::log(static_cast<double>(r.erase_aspect.hi));
  for (uint64_t attempt = 0; attempt < 10; ++attempt) {
    const uint64_t c = kErase + attempt * 4;
    const double area = static_cast<double>(h) * w * draw(k, c, r.erase_area);
    const double aspect = std::exp(log_a0 + (log_a1 - log_a0) * static_cast<double>(uniform01(k, c + 1)));
    const auto eh = static_cast<int>(std::lround(std::sqrt(area * aspect)));
    const auto ew = static_cast<int>(std::lround(std::sqrt(area / aspect)));
    if (eh <= 0 || ew <= 0 || eh > h || ew > w) continue;
    t.erase_y = static_cast<int>(uniform_below(k, c + 2, static_cast<uint64_t>(h - eh + 1)));
    t.erase_x = static_cast<int>(uniform_below(k, c + 3, static_cast<uint64_t>(w - ew + 1)));
    t.erase_h = eh;
    t.erase_w = ew;
    return;
  }
}

}  // namespace

SampleTransform draw_sample_transform(const AugmentRecipe& r, int h, int w, int c, uint64_t key) {
  check_recipe(r, h, w, c);
  const uint64_t k = hash_key(key, kTransformPurpose);
  SampleTransform t;
  for (int j = 0; j < c; ++j) {
    const float f = r.fill.empty() ? 0.f : r.fill[r.fill.size() == 1 ? 0 : static_cast<size_t>(j)];
    t.fill[j] = std::clamp(f, 0.f, 255.f);
  }
  draw_geometry(r, h, w, k, t);
  draw_intensity(r, k, t);
  draw_erase(r, h, w, k, t);
  return t;
}

}  // namespace stoke
