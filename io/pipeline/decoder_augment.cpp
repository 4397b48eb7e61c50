#include "io/pipeline/decoder_augment.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>

#include "base/error.h"
#include "io/codec/resize.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace stoke::io {
namespace {

using Table = std::array<uint8_t, 256>;

uint8_t to_byte(double v) { return static_cast<uint8_t>(std::lround(std::clamp(v, 0.0, 255.0))); }

// Clamp, then gamma, of a value in pixel units: the op's step 5 without the noise.
uint8_t finish(double v, float gamma) {
  v = std::clamp(v, 0.0, 255.0);
  if (gamma != 1.f) v = 255.0 * std::pow(v / 255.0, static_cast<double>(gamma));
  return to_byte(v);
}

void erase(const DecoderAugment& a, uint8_t* pixels, int h, int w, int c) {
  const int y0 = std::clamp(a.erase_y, 0, h), y1 = std::clamp(a.erase_y + a.erase_h, 0, h);
  const int x0 = std::clamp(a.erase_x, 0, w), x1 = std::clamp(a.erase_x + a.erase_w, 0, w);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x)
      for (int k = 0; k < c; ++k) pixels[(static_cast<size_t>(y) * w + x) * c + k] = a.fill[k];
}

bool diagonal(const DecoderAugment& a, int c) {
  for (int i = 0; i < c; ++i)
    for (int j = 0; j < c; ++j)
      if (i != j && a.matrix[i][j] != 0.f) return false;
  return true;
}

// Saturation and hue mix the channels: v' = M v + o per pixel in fp32 (the op's precision), rounded to the nearest
// level after the clamp; the gamma, when there is one, then through its table.
void mix_channels(const DecoderAugment& a, uint8_t* pixels, size_t count) {
#if defined(__SSE2__)
  const __m128 c0 = _mm_setr_ps(a.matrix[0][0], a.matrix[1][0], a.matrix[2][0], 0.f);
  const __m128 c1 = _mm_setr_ps(a.matrix[0][1], a.matrix[1][1], a.matrix[2][1], 0.f);
  const __m128 c2 = _mm_setr_ps(a.matrix[0][2], a.matrix[1][2], a.matrix[2][2], 0.f);
  // + 0.5 rounds to nearest in the truncating conversion below (values clamped to [0, 255] first).
  const __m128 off = _mm_setr_ps(a.offset[0] + 0.5f, a.offset[1] + 0.5f, a.offset[2] + 0.5f, 0.f);
  const __m128 lo = _mm_set1_ps(0.5f), hi = _mm_set1_ps(255.5f);
  for (size_t i = 0; i < count; ++i) {
    uint8_t* p = pixels + i * 3;
    __m128 v = _mm_add_ps(_mm_mul_ps(c0, _mm_set1_ps(p[0])), off);
    v = _mm_add_ps(v, _mm_mul_ps(c1, _mm_set1_ps(p[1])));
    v = _mm_add_ps(v, _mm_mul_ps(c2, _mm_set1_ps(p[2])));
    const __m128i q = _mm_cvttps_epi32(_mm_min_ps(_mm_max_ps(v, lo), hi));
    const auto bytes = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm_packus_epi16(_mm_packs_epi32(q, q), q)));
    p[0] = static_cast<uint8_t>(bytes);
    p[1] = static_cast<uint8_t>(bytes >> 8);
    p[2] = static_cast<uint8_t>(bytes >> 16);
  }
#else
  for (size_t i = 0; i < count; ++i) {
    uint8_t* p = pixels + i * 3;
    const float r = p[0], g = p[1], b = p[2];
    for (int k = 0; k < 3; ++k) {
      const float v = a.matrix[k][0] * r + (a.offset[k] + 0.5f) + a.matrix[k][1] * g + a.matrix[k][2] * b;
      p[k] = static_cast<uint8_t>(std::clamp(v, 0.5f, 255.5f));
    }
  }
#endif
  if (a.gamma != 1.f) {
    Table g;
    for (int v = 0; v < 256; ++v) g[static_cast<size_t>(v)] = finish(v, a.gamma);
    for (size_t i = 0; i < count * 3; ++i) pixels[i] = g[pixels[i]];
  }
}

}  // namespace

void apply_decoder_geometry(const DecoderAugment& a, const uint8_t* region, int rh, int rw, size_t stride, uint8_t* dst,
                            int h, int w, int c, bool flip) {
  if (a.warp)
    resize_affine(region, rh, rw, c, stride, dst, h, w, a.m, a.fill);
  else if (region != dst)
    resize_bilinear_strided(region, rh, rw, c, stride, dst, h, w);
  if (flip != a.hflip) flip_horizontal(dst, h, w, c);
  if (a.vflip) flip_vertical(dst, h, w, c);
}

void apply_decoder_colour(const DecoderAugment& a, uint8_t* pixels, int h, int w, int c) {
  STOKE_CHECK(c == 1 || c == 3, "decoder augmentation of ", c, " channels");
  for (int i = 0; i < c; ++i)
    for (int j = 0; j < c; ++j)
      STOKE_CHECK(std::isfinite(a.matrix[i][j]) && std::fabs(a.matrix[i][j]) < 256.f, "colour matrix entry ",
                  a.matrix[i][j]);
  const size_t count = static_cast<size_t>(h) * w;
  if (a.colour && c == 3 && !diagonal(a, c)) {
    mix_channels(a, pixels, count);
  } else if (a.colour) {
    // One table per channel, built once when the channels share their scale and offset (brightness and contrast
    // alone: always), so gamma costs 256 pow calls an image, not 768.
    Table t[3];
    auto build = [&](int k) {
      for (int v = 0; v < 256; ++v)
        t[k][static_cast<size_t>(v)] = finish(static_cast<double>(a.matrix[k][k]) * v + a.offset[k], a.gamma);
    };
    bool shared = true;
    for (int k = 1; k < c; ++k) shared = shared && a.matrix[k][k] == a.matrix[0][0] && a.offset[k] == a.offset[0];
    build(0);
    if (shared) {
      for (size_t i = 0; i < count * static_cast<size_t>(c); ++i) pixels[i] = t[0][pixels[i]];
    } else {
      build(1);
      build(2);
      for (size_t i = 0; i < count; ++i) {
        uint8_t* p = pixels + i * 3;
        p[0] = t[0][p[0]];
        p[1] = t[1][p[1]];
        p[2] = t[2][p[2]];
      }
    }
  }
  if (a.erase_h > 0 && a.erase_w > 0) erase(a, pixels, h, w, c);
}

}  // namespace stoke::io
