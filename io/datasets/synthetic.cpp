#include "io/datasets/synthetic.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>

#include "base/error.h"
#include "base/rng.h"
#include "io/codec/jpeg.h"
#include "io/datasets/synthetic_tree.h"

namespace stoke::io {

namespace {

constexpr const char* kMarker = ".stoke-synthetic-complete";
constexpr int kQuality = 90;
// MedNIST's images per class, in class-name order.
constexpr std::array<int64_t, 6> kMedNist = {10000, 8954, 10000, 10000, 10000, 10000};

// Uniform draws from one image's key, in a fixed order.
struct Draw {
  uint64_t key;
  uint64_t n = 0;
  float operator()(float lo, float hi) { return lo + (hi - lo) * uniform01(key, n++); }
};

// Coverage (0..1, about a pixel of soft edge) of an ellipse with semi-axes a (x) and b (y), turned by `angle`.
float ellipse(float x, float y, float cx, float cy, float a, float b, float angle = 0.f) {
  float dx = x - cx, dy = y - cy;
  if (angle != 0.f) {
    const float c = std::cos(angle), s = std::sin(angle), r = dx * c + dy * s;
    dy = -dx * s + dy * c;
    dx = r;
  }
  const float rx = dx / a, ry = dy / b;
  const float d = std::sqrt(rx * rx + ry * ry);
  return std::clamp((1.f - d) * std::min(a, b) + 0.5f, 0.f, 1.f);
}

void paint(float& v, float value, float coverage) { v += (value - v) * coverage; }

// Low-frequency texture in [-1, 1]: three plane waves with drawn directions and phases.
struct Texture {
  float fx[3], fy[3], ph[3];
  explicit Texture(Draw& d, float freq) {
    for (int i = 0; i < 3; ++i) {
      const float a = d(0.f, 6.2831853f);
      fx[i] = freq * std::cos(a);
      fy[i] = freq * std::sin(a);
      ph[i] = d(0.f, 6.2831853f);
    }
  }
  float operator()(float x, float y) const {
    float t = 0;
    for (int i = 0; i < 3; ++i) t += std::sin(fx[i] * x + fy[i] * y + ph[i]);
    return t / 3.f;
  }
};

// Per-class scene parameters, drawn once per image; shade(x, y) gives the intensity (0..255) at canonical
// coordinates (the object spans about +-27, y grows downwards).
struct Scene {
  int cls;
  float j[16];  // jitters
  Texture tex;
  Scene(int c, Draw& d) : cls(c), j{}, tex(d, d(0.15f, 0.45f)) {
    for (float& v : j) v = d(-1.f, 1.f);
  }

  float shade(float x, float y) const {
    float v = 0;
    switch (cls) {
      case 0: {  // AbdomenCT: body, liver, stomach, kidneys, spine
        v = 5;
        paint(v, 105 + 10 * tex(x, y), ellipse(x, y, 0, 0, 27 + j[0], 20 + j[1]));
        paint(v, 145, ellipse(x, y, -9 + 2 * j[2], -3 + 2 * j[3], 11, 8, 0.3f + 0.2f * j[4]));
        paint(v, 70, ellipse(x, y, 9 + 2 * j[5], -5 + j[6], 6, 5));
        paint(v, 165, ellipse(x, y, -11, 7 + j[7], 3.5f, 5));
        paint(v, 165, ellipse(x, y, 11, 7 + j[7], 3.5f, 5));
        paint(v, 235, ellipse(x, y, 0, 14 + j[8], 4, 4));
        break;
      }
      case 1: {  // BreastMRI: chest wall, two breasts with fibroglandular texture
        v = 8;
        paint(v, 55, ellipse(x, y, 0, 12 + j[0], 30, 6));
        const float wall = std::clamp(10.f + j[0] - y, 0.f, 1.f);
        for (int side : {-1, 1}) {
          const float cover = ellipse(x, y, side * (13 + j[1]), 2 + j[2], 12 + j[3], 15 + 2 * j[4]) * wall;
          paint(v, 95 + 45 * tex(x, y), cover);
        }
        paint(v, 200, ellipse(x, y, 8 * j[5], -2 + 4 * j[6], 1.5f, 1.5f));
        break;
      }
      case 2: {  // CXR: torso, dark lungs with ribs, heart, spine, clavicles
        v = 25;
        paint(v, 165, ellipse(x, y, 0, 4, 27 + j[0], 30));
        for (int side : {-1, 1}) {
          const float ribs = std::pow(std::max(0.f, std::sin(y * 0.9f + 3 * j[1])), 2.f);
          paint(v, 55 + 35 * ribs, ellipse(x, y, side * (11 + j[2]), -2, 9, 17 + j[3], side * 0.1f));
          paint(v, 210, ellipse(x, y, side * 9.f, -18 + j[4], 9, 1.5f, -side * 0.2f));
        }
        paint(v, 200, ellipse(x, y, 0, 0, 3, 28));
        paint(v, 190, ellipse(x, y, 3 + j[5], 9 + j[6], 9, 8));
        break;
      }
      case 3: {  // ChestCT: body, lungs with vessels, heart, spine, sternum
        v = 5;
        paint(v, 115, ellipse(x, y, 0, 0, 27 + j[0], 19 + j[1]));
        for (int side : {-1, 1}) {
          paint(v, 18, ellipse(x, y, side * (11 + j[2]), -1, 9, 12 + j[3]));
          paint(v, 90, ellipse(x, y, side * (10 + 3 * j[4]), -3 + 4 * j[5], 1, 1));
          paint(v, 90, ellipse(x, y, side * (13 + 2 * j[6]), 3 + 3 * j[7], 1.2f, 1.2f));
        }
        paint(v, 145, ellipse(x, y, 3 + j[8], 4 + j[9], 7, 6));
        paint(v, 235, ellipse(x, y, 0, 15 + j[10], 3.5f, 3.5f));
        paint(v, 220, ellipse(x, y, 0, -17 - j[1], 3, 1.5f));
        break;
      }
      case 4: {  // Hand: wrist, palm, four fingers and a thumb, each with a bone
        v = 12;
        paint(v, 170, ellipse(x, y, 0, 24, 8, 6));
        paint(v, 175, ellipse(x, y, 0, 12, 11, 10));
        for (int f = 0; f < 5; ++f) {
          const bool thumb = f == 4;
          const float angle = thumb ? -1.0f + 0.2f * j[10] : -0.35f + 0.23f * f + 0.08f * j[f];
          const float len = thumb ? 12.f : 15.f + 2 * j[5 + f];
          const float bx = thumb ? -10.f : -7.5f + 5.f * f, by = thumb ? 10.f : 3.f;
          const float cx = bx + std::sin(angle) * len / 2, cy = by - std::cos(angle) * len / 2;
          paint(v, 185, ellipse(x, y, cx, cy, 2.8f, len / 2, angle));
          paint(v, 235, ellipse(x, y, cx, cy, 1.1f, len / 2 - 1.5f, angle));
        }
        break;
      }
      default: {  // HeadCT: skull ring, brain, ventricles
        v = 3;
        paint(v, 245, ellipse(x, y, 0, 0, 22 + j[0], 27 + j[1]));
        paint(v, 95 + 10 * tex(x, y), ellipse(x, y, 0, 0, 19.5f + j[0], 24.5f + j[1]));
        for (int side : {-1, 1})
          paint(v, 35, ellipse(x, y, side * (3.5f + 0.5f * j[2]), -2 + j[3], 2.2f, 6 + j[4], side * 0.2f));
        break;
      }
    }
    return v;
  }
};

}  // namespace

const std::vector<std::string>& synthetic_mednist_classes() {
  static const std::vector<std::string> names = {"AbdomenCT", "BreastMRI", "CXR", "ChestCT", "Hand", "HeadCT"};
  return names;
}

std::vector<int64_t> synthetic_mednist_counts(int64_t count) {
  if (count < 0) throw UserError(str("a synthetic data set needs a count >= 0, got ", count));
  std::vector<int64_t> n(kMedNist.size());
  std::vector<std::pair<int64_t, int>> rest;  // (remainder, class): largest first, then class order
  int64_t given = 0;
  for (size_t c = 0; c < kMedNist.size(); ++c) {
    const int64_t num = count * kMedNist[c];
    n[c] = num / kMedNistCount;
    given += n[c];
    rest.emplace_back(num % kMedNistCount, static_cast<int>(c));
  }
  std::stable_sort(rest.begin(), rest.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; given < count; ++i, ++given) ++n[static_cast<size_t>(rest[i].second)];
  return n;
}

int64_t synthetic_split_held_out(int64_t n) { return n < 3 ? 0 : std::max<int64_t>(1, n / 10); }

void render_synthetic_mednist_like(int cls, uint64_t seed, int64_t index, uint8_t* pixels, SyntheticPose pose) {
  STOKE_CHECK(cls >= 0 && cls < 6, "class ", cls);
  const uint64_t key = hash_key(seed, 0x5e7ed1c, static_cast<uint64_t>(cls), static_cast<uint64_t>(index));
  Draw d{key};
  float ox = d(-8.f, 8.f), oy = d(-8.f, 8.f), scale = d(0.8f, 1.2f), angle = d(-0.3f, 0.3f);
  if (pose == SyntheticPose::upright) ox = oy = angle = 0.f, scale = 1.f;  // drawn all the same: the rest is unchanged
  const float gain = d(0.75f, 1.2f), bias = d(-20.f, 20.f), sigma = d(3.f, 10.f);
  const Scene scene(cls, d);
  const float c = std::cos(angle), s = std::sin(angle), centre = (kSyntheticSize - 1) / 2.f;
  const uint64_t noise = hash_key(key, 0x401 /* noise */);
  for (int y = 0; y < kSyntheticSize; ++y)
    for (int x = 0; x < kSyntheticSize; ++x) {
      const float dx = x - centre - ox, dy = y - centre - oy;
      const float u = (dx * c + dy * s) / scale, v = (-dx * s + dy * c) / scale;
      const int p = y * kSyntheticSize + x;
      const float value = gain * scene.shade(u, v) + bias + sigma * normal01(noise, static_cast<uint64_t>(p));
      pixels[p] = static_cast<uint8_t>(std::lround(std::clamp(value, 0.f, 255.f)));
    }
}

void write_synthetic_mednist_like(const std::string& out_dir, int64_t count, uint64_t seed,
                                  const std::function<void(int64_t, int64_t)>& progress, SyntheticSplit split,
                                  SyntheticPose pose) {
  const std::vector<int64_t> per_class = synthetic_mednist_counts(count);
  const auto& classes = synthetic_mednist_classes();
  const bool splitting = split == SyntheticSplit::train_val_test;
  const std::string marker = str("stoke synthetic MedNIST-like 64x64 gray JPEG tree\ncount ", count, "\nseed ", seed,
                                 "\nsplit ", splitting ? "train/val/test 80/10/10" : "none", "\nquality ", kQuality,
                                 "\n", pose == SyntheticPose::upright ? "pose upright\n" : "");
  for (size_t c = 0; c < per_class.size(); ++c)
    if (per_class[c] < (splitting ? 3 : 1))
      throw UserError(str("a synthetic data set of ", count, " images leaves class ", classes[c], " with ",
                          per_class[c], " images: every class needs at least ",
                          splitting ? "one image per split" : "one image", " (use a count of at least ",
                          splitting ? 18 : 6, ")"));
  SyntheticTree tree;
  tree.out_dir = out_dir;
  tree.marker_file = kMarker;
  tree.marker = marker;
  tree.what = "synthetic data set";
  tree.classes = classes;
  tree.per_class = per_class;
  tree.split = split;
  write_synthetic_tree(
      tree,
      [&](int cls, int64_t k) {
        uint8_t px[kSyntheticSize * kSyntheticSize];
        render_synthetic_mednist_like(cls, seed, k, px, pose);
        return encode_jpeg(px, kSyntheticSize, kSyntheticSize, 1, kQuality);
      },
      progress);
}

}  // namespace stoke::io
