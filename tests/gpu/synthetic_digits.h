// MNIST-like synthetic digits, generated on the fly, for training tests on machines without the MNIST download
// (the GPU machine has no network). Each digit 0-9 is a fixed stroke drawing (polylines in a unit box) rendered
// anti-aliased into 28x28 uint8 with a random affine jitter (scale, rotation, shear, shift), stroke width and
// background noise, so a CNN has to learn shapes. Image i of a set is a pure function of (seed, i), via the
// counter-based RNG of base/rng.h: identical on every machine and for every thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <vector>

#include "base/rng.h"

namespace stoke::test {

struct DigitSet {
  int n = 0;
  static constexpr int kSize = 28;
  std::vector<uint8_t> pixels;  // n x 28 x 28 (x 1)
  std::vector<int32_t> labels;
};

namespace digits_detail {

using Pt = std::pair<float, float>;
using Stroke = std::vector<Pt>;

inline Stroke ellipse(float cx, float cy, float rx, float ry, int segments = 20) {
  Stroke s;
  for (int i = 0; i <= segments; ++i) {
    const float a = 6.2831853f * static_cast<float>(i) / static_cast<float>(segments);
    s.push_back({cx + rx * std::cos(a), cy + ry * std::sin(a)});
  }
  return s;
}

// The ten drawings: x to the right, y down, in [0, 1].
inline const std::vector<Stroke>& glyph(int d) {
  static const std::vector<std::vector<Stroke>> g = {
      {ellipse(0.5f, 0.5f, 0.28f, 0.42f)},
      {{{0.5f, 0.08f}, {0.5f, 0.92f}}, {{0.32f, 0.26f}, {0.5f, 0.08f}}, {{0.34f, 0.92f}, {0.66f, 0.92f}}},
      {{{0.24f, 0.3f}, {0.34f, 0.12f}, {0.58f, 0.08f}, {0.75f, 0.24f}, {0.72f, 0.44f}, {0.24f, 0.9f}, {0.8f, 0.9f}}},
      {{{0.24f, 0.14f}, {0.7f, 0.1f}, {0.74f, 0.32f}, {0.44f, 0.48f}, {0.76f, 0.6f}, {0.72f, 0.86f}, {0.24f, 0.88f}}},
      {{{0.66f, 0.92f}, {0.66f, 0.08f}, {0.18f, 0.64f}, {0.82f, 0.64f}}},
      {{{0.76f, 0.1f}, {0.3f, 0.1f}, {0.27f, 0.46f}, {0.6f, 0.42f}, {0.76f, 0.6f}, {0.68f, 0.86f}, {0.24f, 0.88f}}},
      {{{0.7f, 0.08f},
        {0.4f, 0.28f},
        {0.27f, 0.64f},
        {0.44f, 0.9f},
        {0.7f, 0.82f},
        {0.74f, 0.6f},
        {0.5f, 0.5f},
        {0.3f, 0.62f}}},
      {{{0.2f, 0.1f}, {0.8f, 0.1f}, {0.42f, 0.92f}}, {{0.36f, 0.5f}, {0.66f, 0.5f}}},
      {ellipse(0.5f, 0.29f, 0.2f, 0.19f), ellipse(0.5f, 0.7f, 0.25f, 0.21f)},
      {ellipse(0.48f, 0.31f, 0.22f, 0.2f), {{0.7f, 0.32f}, {0.6f, 0.92f}}},
  };
  return g[static_cast<size_t>(d)];
}

inline float segment_distance(float px, float py, Pt a, Pt b) {
  const float dx = b.first - a.first, dy = b.second - a.second;
  const float len2 = dx * dx + dy * dy;
  float t = len2 > 0.f ? ((px - a.first) * dx + (py - a.second) * dy) / len2 : 0.f;
  t = std::clamp(t, 0.f, 1.f);
  const float ex = a.first + t * dx - px, ey = a.second + t * dy - py;
  return std::sqrt(ex * ex + ey * ey);
}

}  // namespace digits_detail

// Draws digit `label` with the jitter keyed by `key` into 28 x 28 bytes. The distortions are strong enough that
// a small CNN does not reach 100% in a few hundred steps (so an accuracy band means something): every vertex of the
// drawing moves, the whole digit is scaled, rotated, sheared and shifted, strokes vary in width, a third of the
// images get a stray stroke, and every pixel gets noise.
inline void render_digit(int label, uint64_t key, uint8_t* out) {
  using namespace digits_detail;
  constexpr int S = DigitSet::kSize;
  auto u = [&](uint64_t c, float lo, float hi) { return lo + (hi - lo) * uniform01(key, c); };
  const float scale = u(1, 15.f, 24.f);  // glyph box size in pixels
  const float rot = u(2, -0.42f, 0.42f), shear = u(3, -0.4f, 0.4f);
  const float tx = u(4, -2.5f, 2.5f), ty = u(5, -2.5f, 2.5f);
  const float width = u(6, 1.2f, 3.2f);  // stroke width in pixels
  const float cr = std::cos(rot), sr = std::sin(rot);
  // image = centre + R * Sh * (glyph - 0.5) * scale + t; invert it for every pixel centre.
  const float a = cr, b = cr * shear - sr, c = sr, d = sr * shear + cr;  // R * [[1, shear], [0, 1]]
  const float det = a * d - b * c;
  std::vector<Stroke> strokes = glyph(label);
  uint64_t ctr = 1000;
  for (Stroke& st : strokes)
    for (Pt& p : st) {
      p.first += u(ctr++, -0.08f, 0.08f);
      p.second += u(ctr++, -0.08f, 0.08f);
    }
  if (u(7, 0.f, 1.f) < 0.33f)  // a stray stroke somewhere in the box
    strokes.push_back({{u(8, 0.f, 1.f), u(9, 0.f, 1.f)}, {u(10, 0.f, 1.f), u(11, 0.f, 1.f)}});
  for (int y = 0; y < S; ++y)
    for (int x = 0; x < S; ++x) {
      const float px = (static_cast<float>(x) + 0.5f - 14.f - tx) / scale;
      const float py = (static_cast<float>(y) + 0.5f - 14.f - ty) / scale;
      const float gx = (d * px - b * py) / det + 0.5f, gy = (-c * px + a * py) / det + 0.5f;
      float best = 1e9f;
      for (const Stroke& st : strokes)
        for (size_t i = 1; i < st.size(); ++i) best = std::min(best, segment_distance(gx, gy, st[i - 1], st[i]));
      const float ink = std::clamp(width * 0.5f + 0.5f - best * scale, 0.f, 1.f);
      const float noise = u(100 + static_cast<uint64_t>(y * S + x), -40.f, 40.f);
      out[y * S + x] = static_cast<uint8_t>(std::clamp(ink * 230.f + 20.f + noise, 0.f, 255.f));
    }
}

// n digits of set `seed` (labels uniform over 0-9).
inline DigitSet make_digits(int n, uint64_t seed) {
  DigitSet s;
  s.n = n;
  s.pixels.resize(static_cast<size_t>(n) * DigitSet::kSize * DigitSet::kSize);
  s.labels.resize(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const uint64_t key = hash_key(seed, 0xd161, static_cast<uint64_t>(i));
    const int label = static_cast<int>(uniform_below(key, 0, 10));
    s.labels[static_cast<size_t>(i)] = label;
    render_digit(label, key, s.pixels.data() + static_cast<size_t>(i) * DigitSet::kSize * DigitSet::kSize);
  }
  return s;
}

// Mean and std of pixel/255 over a set (the trainer's normalisation).
inline std::pair<float, float> digit_stats(const DigitSet& s) {
  double sum = 0, sum2 = 0;
  for (uint8_t p : s.pixels) {
    const double v = p / 255.0;
    sum += v;
    sum2 += v * v;
  }
  const double n = static_cast<double>(s.pixels.size());
  const double m = sum / n;
  return {static_cast<float>(m), static_cast<float>(std::sqrt(std::max(sum2 / n - m * m, 1e-6)))};
}

}  // namespace stoke::test
