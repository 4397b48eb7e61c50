#include "io/datasets/imagenet_like.h"

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

constexpr const char* kMarker = ".stoke-imagenet-like-complete";
constexpr int kW = kImageNetLikeWidth, kH = kImageNetLikeHeight;
constexpr float kTwoPi = 6.2831853f;

// Uniform draws from one key, in a fixed order.
struct Draw {
  uint64_t key;
  uint64_t n = 0;
  float operator()(float lo, float hi) { return lo + (hi - lo) * uniform01(key, n++); }
  int below(int k) { return static_cast<int>(uniform_below(key, n++, static_cast<uint64_t>(k))); }
};

struct Rgb {
  float r = 0, g = 0, b = 0;
};
Rgb mix(const Rgb& a, const Rgb& b, float t) {
  return {a.r + (b.r - a.r) * t, a.g + (b.g - a.g) * t, a.b + (b.b - a.b) * t};
}
Rgb scale(const Rgb& a, float s) { return {a.r * s, a.g * s, a.b * s}; }

// h in [0, 1), s and v in [0, 1] -> 0..255.
Rgb hsv(float h, float s, float v) {
  h = (h - std::floor(h)) * 6.f;
  const int i = static_cast<int>(h) % 6;
  const float f = h - std::floor(h), p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
  Rgb c;
  switch (i) {
    case 0: c = {v, t, p}; break;
    case 1: c = {q, v, p}; break;
    case 2: c = {p, v, t}; break;
    case 3: c = {p, q, v}; break;
    case 4: c = {t, p, v}; break;
    default: c = {v, p, q}; break;
  }
  return scale(c, 255.f);
}

// A natural-ish colour: hue near `hue` (+-spread), moderate saturation, value in [vlo, vhi].
Rgb natural(Draw& d, float hue, float spread, float slo, float shi, float vlo, float vhi) {
  return hsv(hue + d(-spread, spread), d(slo, shi), d(vlo, vhi));
}

// Periodic value noise on a 128x128 lattice of uniforms (one per image), smooth-step interpolated; in [0, 1].
class Noise {
 public:
  static constexpr int kN = 128;
  explicit Noise(uint64_t key) {
    for (int i = 0; i < kN * kN; ++i) v_[static_cast<size_t>(i)] = uniform01(key, static_cast<uint64_t>(i));
  }
  float operator()(float x, float y) const {
    int ix = static_cast<int>(x), iy = static_cast<int>(y);  // floor without the libm call
    ix -= x < static_cast<float>(ix);
    iy -= y < static_cast<float>(iy);
    const int x0 = ix & (kN - 1), y0 = iy & (kN - 1);
    const int x1 = (x0 + 1) & (kN - 1), y1 = (y0 + 1) & (kN - 1);
    float tx = x - static_cast<float>(ix), ty = y - static_cast<float>(iy);
    tx = tx * tx * (3 - 2 * tx);
    ty = ty * ty * (3 - 2 * ty);
    const float a = at(x0, y0) + (at(x1, y0) - at(x0, y0)) * tx;
    const float b = at(x0, y1) + (at(x1, y1) - at(x0, y1)) * tx;
    return a + (b - a) * ty;
  }
  // Fractal sum of `octaves` octaves from frequency f (cycles per pixel), each decorrelated by an offset; in
  // about [0, 1].
  float fbm(float x, float y, float f, int octaves, float offset) const {
    // Each octave turned by about 37 degrees more than the last, so the lattice's axes do not show.
    constexpr float c = 0.7986f, s = 0.6018f;
    float sum = 0, amp = 0.5f, norm = 0;
    for (int o = 0; o < octaves; ++o) {
      sum += amp * (*this)(x * f + offset + 17.3f * static_cast<float>(o),
                           y * f + offset * 0.7f + 31.1f * static_cast<float>(o));
      norm += amp;
      amp *= 0.5f;
      f *= 2.03f;
      const float nx = x * c - y * s;
      y = x * s + y * c;
      x = nx;
    }
    return sum / norm;
  }

 private:
  float at(int x, int y) const { return v_[static_cast<size_t>(y * kN + x)]; }
  std::array<float, kN * kN> v_;
};

enum class Kind { ellipse, rect, triangle, blob, ring };
enum class Fill { smooth, stripes, spots, checks, grain };

// One shape: centre (px), semi-axes (px), rotation, two colours and a fill texture in the shape's own frame.
struct Shape {
  Kind kind = Kind::ellipse;
  Fill fill = Fill::smooth;
  float cx = 0, cy = 0, a = 1, b = 1, cos_r = 1, sin_r = 0;
  float freq = 0.1f, tex_angle = 0, blob_amp = 0.2f, blob_k = 5, blob_phase = 0, noise_off = 0;
  Rgb c0, c1;
  int x0 = 0, x1 = 0, y0 = 0, y1 = 0;  // bounding box (clipped to the image)

  void finish() {
    const float r = std::max(a, b) * (kind == Kind::blob ? 1.f + blob_amp : 1.f) + 2.f;
    x0 = std::clamp(static_cast<int>(std::floor(cx - r)), 0, kW);
    x1 = std::clamp(static_cast<int>(std::ceil(cx + r)), 0, kW);
    y0 = std::clamp(static_cast<int>(std::floor(cy - r)), 0, kH);
    y1 = std::clamp(static_cast<int>(std::ceil(cy + r)), 0, kH);
  }

  // Coverage in [0, 1] with about one pixel of soft edge; (lx, ly) returns the point in the shape's frame.
  float coverage(float x, float y, float& lx, float& ly) const {
    const float dx = x - cx, dy = y - cy;
    lx = dx * cos_r + dy * sin_r;
    ly = -dx * sin_r + dy * cos_r;
    float sd;  // signed distance in pixels (negative inside), approximate away from the edge
    switch (kind) {
      case Kind::rect: sd = std::max(std::abs(lx) - a, std::abs(ly) - b); break;
      case Kind::triangle: {  // apex up at (0, -b), base at y = b from -a to a
        const float n = 1.f / std::sqrt(4 * b * b + a * a);
        const float side = (2 * b * std::abs(lx) + a * ly - a * b) * n;
        sd = std::max(ly - b, side);
        break;
      }
      case Kind::blob: {
        const float u = lx / a, v = ly / b, rho = std::sqrt(u * u + v * v);
        const float r = 1.f + blob_amp * std::sin(blob_k * std::atan2(v, u) + blob_phase);
        sd = (rho - r) * std::min(a, b);
        break;
      }
      case Kind::ring: {
        const float u = lx / a, v = ly / b, rho = std::sqrt(u * u + v * v);
        sd = std::abs(rho - 0.78f) * std::min(a, b) - 0.22f * std::min(a, b);
        break;
      }
      default: {
        const float u = lx / a, v = ly / b;
        sd = (std::sqrt(u * u + v * v) - 1.f) * std::min(a, b);
        break;
      }
    }
    return std::clamp(0.5f - sd, 0.f, 1.f);
  }

  Rgb colour(float lx, float ly, const Noise& noise) const {
    float t;
    switch (fill) {
      case Fill::stripes: {
        const float s = std::sin(freq * (lx * std::cos(tex_angle) + ly * std::sin(tex_angle)));
        t = 0.5f + 0.5f * s;
        break;
      }
      case Fill::spots: {
        const float nv = noise(lx * freq * 0.5f + noise_off, ly * freq * 0.5f + noise_off);
        t = std::clamp((nv - 0.45f) * 8.f, 0.f, 1.f);
        break;
      }
      case Fill::checks: {
        const float s = std::sin(freq * lx) * std::sin(freq * ly);
        t = std::clamp(0.5f + 2.f * s, 0.f, 1.f);
        break;
      }
      case Fill::grain: t = noise.fbm(lx, ly, freq * 0.6f, 3, noise_off); break;
      default: t = std::clamp(0.5f + 0.5f * ly / b, 0.f, 1.f); break;
    }
    // Shading across the shape (light from the upper left) and some fine texture on every fill.
    const float shade = 1.f + 0.18f * (-lx / a - ly / b) * 0.5f;
    const float fine = 0.9f + 0.2f * noise(lx * 0.35f + noise_off + 50.f, ly * 0.35f + noise_off);
    return scale(mix(c0, c1, t), shade * fine);
  }
};

// One part of a class's object, in object units (the object spans about +-1).
struct PartProto {
  Kind kind;
  Fill fill;
  float dx, dy, a, b, angle, freq, tex_angle, blob_amp, blob_k;
  int colour0, colour1;
};

struct ClassProto {
  std::array<Rgb, 3> palette;
  float hue = 0;
  int parts = 2;
  std::array<PartProto, 4> part;
  int background = 0;  // preferred: 0 outdoor, 1 indoor, 2 foliage
  float bg_hue = 0;
};

ClassProto class_proto(int cls, uint64_t seed) {
  Draw d{hash_key(seed, 0x1a6e7e7, static_cast<uint64_t>(cls))};
  ClassProto p;
  p.hue = d(0.f, 1.f);
  p.palette[0] = natural(d, p.hue, 0.04f, 0.35f, 0.9f, 0.35f, 0.95f);
  p.palette[1] = natural(d, p.hue + d(0.1f, 0.5f), 0.05f, 0.2f, 0.8f, 0.2f, 0.9f);
  p.palette[2] = natural(d, d(0.f, 1.f), 0.05f, 0.0f, 0.5f, 0.1f, 1.0f);
  p.parts = 2 + d.below(3);
  for (int i = 0; i < p.parts; ++i) {
    PartProto& q = p.part[static_cast<size_t>(i)];
    q.kind = static_cast<Kind>(d.below(5));
    q.fill = static_cast<Fill>(d.below(5));
    const float r = i == 0 ? 0.f : d(0.3f, 0.75f), ang = d(0.f, kTwoPi);
    q.dx = r * std::cos(ang);
    q.dy = r * std::sin(ang);
    q.a = i == 0 ? d(0.55f, 0.9f) : d(0.2f, 0.55f);
    q.b = q.a * d(0.45f, 1.3f);
    q.angle = d(-0.8f, 0.8f);
    q.freq = d(0.12f, 0.6f);
    q.tex_angle = d(0.f, kTwoPi);
    q.blob_amp = d(0.1f, 0.3f);
    q.blob_k = static_cast<float>(3 + d.below(5));
    q.colour0 = d.below(3);
    q.colour1 = (q.colour0 + 1 + d.below(2)) % 3;
  }
  p.background = d.below(3);
  p.bg_hue = d(0.f, 1.f);
  return p;
}

// The background at (x, y) for a drawn scene.
struct Background {
  int kind = 0;
  Rgb top, bottom, ground0, ground1, wall, floor0, floor1, leaf0, leaf1;
  float horizon = 0, wobble = 0, cloud_f = 0, ground_f = 0, plank = 0, leaf_f = 0, off = 0, detail = 0;
  explicit Background(Draw& d, const ClassProto& p) {
    kind = d(0.f, 1.f) < 0.6f ? p.background : d.below(3);
    const float h = p.bg_hue;
    top = natural(d, 0.6f, 0.05f, 0.3f, 0.7f, 0.55f, 0.95f);      // sky blue
    bottom = natural(d, 0.58f, 0.08f, 0.05f, 0.3f, 0.75f, 1.0f);  // hazy horizon
    ground0 = natural(d, h * 0.3f + 0.08f, 0.06f, 0.3f, 0.7f, 0.25f, 0.6f);
    ground1 = natural(d, h * 0.3f + 0.15f, 0.06f, 0.3f, 0.7f, 0.15f, 0.45f);
    wall = natural(d, h, 0.1f, 0.05f, 0.35f, 0.5f, 0.95f);
    floor0 = natural(d, 0.08f, 0.03f, 0.35f, 0.7f, 0.3f, 0.7f);
    floor1 = scale(floor0, d(0.6f, 0.85f));
    leaf0 = natural(d, 0.25f + 0.1f * (h - 0.5f), 0.05f, 0.4f, 0.9f, 0.15f, 0.5f);
    leaf1 = natural(d, 0.2f + 0.1f * (h - 0.5f), 0.08f, 0.3f, 0.8f, 0.4f, 0.85f);
    horizon = d(0.3f, 0.7f) * kH;
    wobble = d(5.f, 30.f);
    cloud_f = d(0.004f, 0.012f);
    ground_f = d(0.02f, 0.06f);
    plank = d(18.f, 45.f);
    leaf_f = d(0.015f, 0.05f);
    off = d(0.f, 100.f);
    detail = d(0.5f, 1.2f);
  }
  Rgb at(float x, float y, const Noise& n) const {
    switch (kind) {
      case 0: {  // outdoor
        const float hz = horizon + wobble * (n(x * 0.01f + off, off) - 0.5f) * 2.f;
        if (y < hz) {
          const Rgb sky = mix(top, bottom, std::clamp(y / std::max(hz, 1.f), 0.f, 1.f));
          const float cloud = std::clamp((n.fbm(x, y * 2.f, cloud_f, 4, off) - 0.5f) * 3.f, 0.f, 1.f);
          return mix(sky, Rgb{240, 240, 245}, cloud * 0.85f);
        }
        const float depth = (y - hz) / std::max(kH - hz, 1.f);  // 0 at the horizon, 1 at the bottom
        const float t = n.fbm(x, y * 1.5f, ground_f * (0.5f + depth), 4, off + 40.f);
        const float fine = n.fbm(x, y, 0.15f + 0.2f * depth, 2, off + 70.f) - 0.5f;  // grass, gravel
        return scale(mix(ground0, ground1, t), (0.75f + 0.35f * depth) * (1.f + detail * fine));
      }
      case 1: {  // indoor: wall with a vertical gradient, planked floor
        if (y < horizon) {
          const float t = n.fbm(x, y, 0.02f, 2, off);
          return scale(wall, 0.8f + 0.25f * y / kH + 0.1f * (t - 0.5f));
        }
        const float p = std::fmod(x + 0.35f * (y - horizon) * (x / kW - 0.5f), plank);
        const float edge = p < 2.f ? 0.55f : 1.f;
        const float t = n.fbm(x * 0.2f, y * 3.f, 0.08f, 3, off + 20.f);
        return scale(mix(floor0, floor1, t), edge);
      }
      default: {  // foliage close-up
        const float t = n.fbm(x, y, leaf_f, 5, off);
        const float veins = std::clamp((n(x * leaf_f * 4.f + off, y * leaf_f * 4.f) - 0.5f) * 6.f, -1.f, 1.f);
        const float fine = n.fbm(x, y, 0.25f, 2, off + 70.f) - 0.5f;
        return scale(mix(leaf0, leaf1, t), (0.85f + 0.15f * veins) * (1.f + detail * fine));
      }
    }
  }
};

Shape make_shape(Draw& d, Kind kind, Fill fill, float cx, float cy, float a, float b, float angle, float freq,
                 float tex_angle, float blob_amp, float blob_k, const Rgb& c0, const Rgb& c1) {
  Shape s;
  s.kind = kind;
  s.fill = fill;
  s.cx = cx;
  s.cy = cy;
  s.a = std::max(a, 1.5f);
  s.b = std::max(b, 1.5f);
  s.cos_r = std::cos(angle);
  s.sin_r = std::sin(angle);
  s.freq = freq;
  s.tex_angle = tex_angle;
  s.blob_amp = blob_amp;
  s.blob_k = blob_k;
  s.blob_phase = d(0.f, kTwoPi);
  s.noise_off = d(0.f, 100.f);
  s.c0 = c0;
  s.c1 = c1;
  s.finish();
  return s;
}

}  // namespace

std::string imagenet_like_class_name(int cls) {
  char name[16];
  std::snprintf(name, sizeof name, "n%08d", cls);
  return name;
}

std::vector<int64_t> imagenet_like_counts(int64_t count, int classes) {
  if (classes < 1) throw UserError(str("an ImageNet-like data set needs at least 1 class, got ", classes));
  if (count < 0) throw UserError(str("an ImageNet-like data set needs a count >= 0, got ", count));
  std::vector<int64_t> n(static_cast<size_t>(classes), count / classes);
  for (int64_t c = 0; c < count % classes; ++c) ++n[static_cast<size_t>(c)];
  return n;
}

void render_imagenet_like(int cls, uint64_t seed, int64_t index, uint8_t* rgb) {
  STOKE_CHECK(cls >= 0, "class ", cls);
  const ClassProto proto = class_proto(cls, seed);
  const uint64_t key = hash_key(seed, 0x1a6e7e8, static_cast<uint64_t>(cls), static_cast<uint64_t>(index));
  Draw d{key};
  const Noise noise(hash_key(key, 0x4015e));
  const Background bg(d, proto);

  // Shapes in painting order: distractors behind, the object's parts, distractors in front.
  std::vector<Shape> shapes;
  const int distractors = d.below(4), behind = distractors > 0 ? d.below(distractors + 1) : 0;
  auto distractor = [&]() {
    const float r = d(0.04f, 0.2f) * kH;
    const Rgb c0 = natural(d, d(0.f, 1.f), 0.f, 0.1f, 0.8f, 0.2f, 0.95f);
    const Rgb c1 = scale(c0, d(0.5f, 0.9f));
    return make_shape(d, static_cast<Kind>(d.below(5)), static_cast<Fill>(d.below(5)), d(0.f, kW), d(0.f, kH), r,
                      r * d(0.4f, 1.6f), d(0.f, kTwoPi), d(0.1f, 0.6f), d(0.f, kTwoPi), d(0.1f, 0.3f),
                      static_cast<float>(3 + d.below(5)), c0, c1);
  };
  for (int i = 0; i < behind; ++i) shapes.push_back(distractor());
  {
    const float size = d(0.35f, 0.8f) * kH * 0.5f;  // object "radius" in pixels
    const float ox = d(size * 0.6f, kW - size * 0.6f), oy = d(size * 0.6f, kH - size * 0.6f);
    const float rot = d(-0.5f, 0.5f), mirror = d(0.f, 1.f) < 0.5f ? -1.f : 1.f;
    const float hue_jitter = d(-0.03f, 0.03f), bright = d(0.8f, 1.15f);
    std::array<Rgb, 3> pal;
    for (size_t i = 0; i < 3; ++i) {
      const Rgb& c = proto.palette[i];
      // A small hue rotation approximated by mixing towards the neighbouring channel, then brightness.
      const Rgb shifted = hue_jitter >= 0 ? mix(c, Rgb{c.b, c.r, c.g}, hue_jitter * 3.f)
                                          : mix(c, Rgb{c.g, c.b, c.r}, -hue_jitter * 3.f);
      pal[i] = scale(shifted, bright);
    }
    const float cr = std::cos(rot), sr = std::sin(rot);
    for (int i = 0; i < proto.parts; ++i) {
      const PartProto& q = proto.part[static_cast<size_t>(i)];
      const float px = q.dx * mirror * size, py = q.dy * size;
      shapes.push_back(make_shape(d, q.kind, q.fill, ox + px * cr - py * sr, oy + px * sr + py * cr, q.a * size,
                                  q.b * size, rot + q.angle * mirror, q.freq * d(0.85f, 1.15f), q.tex_angle * mirror,
                                  q.blob_amp, q.blob_k, pal[static_cast<size_t>(q.colour0)],
                                  pal[static_cast<size_t>(q.colour1)]));
    }
  }
  for (int i = behind; i < distractors; ++i) shapes.push_back(distractor());

  // Lighting, grain, sensor noise.
  const float gx = d(-0.25f, 0.25f) / kW, gy = d(-0.25f, 0.25f) / kH, vignette = d(0.f, 0.35f);
  const float exposure = d(0.85f, 1.12f), grain = d(2.f, 5.f), sigma = d(5.f, 9.5f);
  const Rgb tint{d(0.93f, 1.07f), d(0.95f, 1.05f), d(0.93f, 1.07f)};
  const uint64_t pixel_key = hash_key(key, 0x9a1);
  const float cx = kW * 0.5f, cy = kH * 0.5f, rmax2 = cx * cx + cy * cy;

  for (int y = 0; y < kH; ++y) {
    uint8_t* row = rgb + static_cast<size_t>(y) * kW * 3;
    const float fy = static_cast<float>(y) + 0.5f;
    for (int x = 0; x < kW; ++x) {
      const float fx = static_cast<float>(x) + 0.5f;
      Rgb c = bg.at(fx, fy, noise);
      for (const Shape& s : shapes) {
        if (x < s.x0 || x >= s.x1 || y < s.y0 || y >= s.y1) continue;
        float lx, ly;
        const float cov = s.coverage(fx, fy, lx, ly);
        if (cov > 0.f) c = mix(c, s.colour(lx, ly, noise), cov);
      }
      const float dx = fx - cx, dy = fy - cy;
      const float light = exposure * (1.f + gx * dx + gy * dy) * (1.f - vignette * (dx * dx + dy * dy) / rmax2);
      // Noise: per channel (sensor) and shared by the channels (film grain), each a sum of two 10-bit uniforms
      // (triangular, scaled to unit variance).
      const uint64_t p = static_cast<uint64_t>(y) * kW + static_cast<uint64_t>(x);
      const uint64_t bits = mix64(pixel_key ^ mix64(p)), bits2 = mix64(pixel_key ^ mix64(p + (uint64_t{1} << 32)));
      auto tri = [](uint64_t b, int shift) {
        const float u1 = static_cast<float>((b >> shift) & 1023u), u2 = static_cast<float>((b >> (shift + 10)) & 1023u);
        return (u1 + u2 - 1023.f) * (2.449f / 1023.f);
      };
      const float g = grain * tri(bits2, 0);
      const float v[3] = {c.r * tint.r * light + g + sigma * tri(bits, 0),
                          c.g * tint.g * light + g + sigma * tri(bits, 20),
                          c.b * tint.b * light + g + sigma * tri(bits, 40)};
      for (int k = 0; k < 3; ++k) row[x * 3 + k] = static_cast<uint8_t>(std::clamp(v[k], 0.f, 255.f) + 0.5f);
    }
  }
}

void write_imagenet_like(const std::string& out_dir, int64_t count, int classes, uint64_t seed,
                         const std::function<void(int64_t, int64_t)>& progress, SyntheticSplit split, int quality) {
  if (classes < 2 || classes > 100000)
    throw UserError(str("an ImageNet-like data set needs 2 to 100000 classes, got ", classes));
  if (quality < 1 || quality > 100) throw UserError(str("JPEG quality must be 1 to 100, got ", quality));
  const std::vector<int64_t> per_class = imagenet_like_counts(count, classes);
  const bool splitting = split == SyntheticSplit::train_val_test;
  const std::string marker = str("stoke synthetic ImageNet-like ", kW, "x", kH, " colour JPEG tree\ncount ", count,
                                 "\nclasses ", classes, "\nseed ", seed, "\nsplit ",
                                 splitting ? "train/val/test 80/10/10" : "none", "\nquality ", quality, "\n");
  const int64_t need = splitting ? 3 : 1;
  if (per_class.back() < need)
    throw UserError(str("an ImageNet-like data set of ", count, " images in ", classes, " classes leaves class ",
                        imagenet_like_class_name(classes - 1), " with ", per_class.back(),
                        " images: every class needs at least ", splitting ? "one image per split" : "one image",
                        " (use a count of at least ", need * classes, ")"));
  SyntheticTree tree;
  tree.out_dir = out_dir;
  tree.marker_file = kMarker;
  tree.marker = marker;
  tree.what = "ImageNet-like data set";
  for (int c = 0; c < classes; ++c) tree.classes.push_back(imagenet_like_class_name(c));
  tree.per_class = per_class;
  tree.split = split;
  tree.chunk = 512;
  tree.grain = 4;
  write_synthetic_tree(
      tree,
      [&](int cls, int64_t k) {
        thread_local std::vector<uint8_t> px;
        px.resize(static_cast<size_t>(kW) * kH * 3);
        render_imagenet_like(cls, seed, k, px.data());
        return encode_jpeg(px.data(), kH, kW, 3, quality);
      },
      progress);
}

}  // namespace stoke::io
