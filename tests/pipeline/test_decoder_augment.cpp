// The decoder threads' augmentation (--augment-on decoders): the geometry folded into the resize
// (io/codec/resize.h resize_affine), the colour and erase pass (io/pipeline/decoder_augment.h) and the engine's
// split of a transform between the decoders and the step (engine/augment_plan.h). The reference is the step's op,
// cpu::augment_transform_normalize (kernels/augment.h), in pixel units: the decoders work in uint8, so they must
// agree with it to within one level, and exactly where no interpolation is involved.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "base/rng.h"
#include "engine/augment_plan.h"
#include "io/codec/jpeg.h"
#include "io/codec/resize.h"
#include "io/pipeline/augment.h"
#include "io/pipeline/decoder_augment.h"
#include "kernels/augment.h"
#include "tests/pipeline/pipeline_util.h"

using namespace stoke;
using stoke::test::pixel_diff;
using stoke::test::PixelDiff;

namespace {

// Random bytes with some smooth structure: edges test the rounding, gradients the interpolation.
std::vector<uint8_t> image(int h, int w, int c, uint64_t seed) {
  std::vector<uint8_t> px(static_cast<size_t>(h) * w * c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) {
        const size_t i = (static_cast<size_t>(y) * w + x) * c + k;
        const double smooth = 128 + 90 * std::sin(0.3 * x + 0.2 * y + k);
        px[i] = static_cast<uint8_t>((i % 5 == 0) ? uniform_below(seed, i, 256) : std::lround(smooth));
      }
  return px;
}

// The op in pixel units (scale 1, shift 0), rounded to the nearest level as the decoders round.
std::vector<int> op_reference(const std::vector<uint8_t>& px, int h, int w, int c, const SampleTransform& t) {
  std::vector<float> out(px.size()), scale(static_cast<size_t>(c), 1.f), shift(static_cast<size_t>(c), 0.f);
  cpu::augment_transform_normalize(1, h, w, c, px.data(), &t, scale.data(), shift.data(), out.data());
  std::vector<int> r(out.size());
  for (size_t i = 0; i < out.size(); ++i) r[i] = static_cast<int>(std::floor(std::clamp(out[i], 0.f, 255.f) + 0.5f));
  return r;
}

// The decoders' whole share of t applied to an image already at the model's size (the resize is then 1:1).
std::vector<uint8_t> on_decoders(const std::vector<uint8_t>& px, int h, int w, int c, const SampleTransform& t) {
  io::DecoderAugment d;
  EXPECT_TRUE(decoder_share(t, Shape3{h, w, c}, d));
  std::vector<uint8_t> out(px.size());
  io::apply_decoder_geometry(d, px.data(), h, w, static_cast<size_t>(w) * c, out.data(), h, w, c);
  io::apply_decoder_colour(d, out.data(), h, w, c);
  return out;
}

AugmentRecipe geometry_recipe() {
  AugmentRecipe r;
  r.rotate_deg = {-30.f, 30.f};
  r.zoom = {0.8f, 1.25f};
  r.translate = 0.2f;
  r.shear_deg = {-10.f, 10.f};
  r.hflip_p = r.vflip_p = 0.5f;
  r.fill = {10.f, 200.f, 30.f};
  return r;
}

}  // namespace

TEST(ResizeAffine, IdentityAtTheSameSizeIsACopy) {
  const auto px = image(13, 17, 3, 1);
  std::vector<uint8_t> out(px.size());
  const double m[6] = {1, 0, 0, 0, 1, 0};
  const uint8_t fill[3] = {9, 9, 9};
  io::resize_affine(px.data(), 13, 17, 3, 17 * 3, out.data(), 13, 17, m, fill);
  EXPECT_EQ(out, px);
}

TEST(ResizeAffine, IdentityWhileResizingIsThePlainResizeWithinALevel) {
  for (int c : {1, 3}) {
    const auto px = image(41, 53, c, 2);
    std::vector<uint8_t> plain(static_cast<size_t>(29) * 31 * c), affine(plain.size());
    io::resize_bilinear(px.data(), 41, 53, c, plain.data(), 29, 31);
    const double m[6] = {1, 0, 0, 0, 1, 0};
    const uint8_t fill[3] = {};
    io::resize_affine(px.data(), 41, 53, c, static_cast<size_t>(53) * c, affine.data(), 29, 31, m, fill);
    const PixelDiff d = pixel_diff(affine, std::vector<int>(plain.begin(), plain.end()));
    EXPECT_LE(d.max, 1) << c;
    EXPECT_LT(d.differing, plain.size() / 50) << c;  // the staged rounding moves a few values by one level
  }
}

TEST(ResizeAffine, QuarterTurnsAndMirrorsMovePixelsExactly) {
  AugmentRecipe r;
  r.rotate_deg = {90.f, 90.f};
  for (int c : {1, 3}) {
    const auto px = image(15, 15, c, 3);
    for (float deg : {90.f, -90.f, 180.f}) {
      r.rotate_deg = {deg, deg};
      const SampleTransform t = draw_sample_transform(r, 15, 15, c, 7);
      std::vector<uint8_t> out(px.size());
      const uint8_t fill[3] = {};
      const double m[6] = {t.m[0], t.m[1], t.m[2], t.m[3], t.m[4], t.m[5]};
      io::resize_affine(px.data(), 15, 15, c, static_cast<size_t>(15) * c, out.data(), 15, 15, m, fill);
      const PixelDiff d = pixel_diff(out, op_reference(px, 15, 15, c, t));
      EXPECT_EQ(d.max, 0) << deg << " degrees, " << c << " channels";
    }
  }
}

TEST(ResizeAffine, MatchesTheOpsGeometryWithinALevel) {
  const AugmentRecipe r = geometry_recipe();
  for (int c : {1, 3}) {
    const int h = 29, w = 37;
    const auto px = image(h, w, c, 4);
    AugmentRecipe rc = r;
    if (c == 1) rc.fill = {77.f};
    double worst_mean = 0;
    for (uint64_t key = 0; key < 40; ++key) {
      const SampleTransform t = draw_sample_transform(rc, h, w, c, key);
      const PixelDiff d = pixel_diff(on_decoders(px, h, w, c, t), op_reference(px, h, w, c, t));
      EXPECT_LE(d.max, 1) << "key " << key << ", " << c << " channels";
      worst_mean = std::max(worst_mean, d.mean);
    }
    EXPECT_LT(worst_mean, 0.05) << c;
  }
}

TEST(ResizeAffine, TheVectorPathComputesWhatTheScalarPathDoes) {
  // Three channels take the SSE2 path in the interior; one channel the scalar code. Each channel of an RGB image
  // warped alone must give that channel of the RGB result, bit for bit.
  const int h = 31, w = 27;
  const auto rgb = image(h, w, 3, 5);
  const SampleTransform t = draw_sample_transform(geometry_recipe(), h, w, 3, 11);
  const double m[6] = {t.m[0], t.m[1], t.m[2], t.m[3], t.m[4], t.m[5]};
  const uint8_t fill[3] = {10, 200, 30};
  std::vector<uint8_t> out(rgb.size());
  io::resize_affine(rgb.data(), h, w, 3, static_cast<size_t>(w) * 3, out.data(), 24, 20, m, fill);
  for (int k = 0; k < 3; ++k) {
    std::vector<uint8_t> plane(static_cast<size_t>(h) * w), warped(static_cast<size_t>(24) * 20);
    for (size_t i = 0; i < plane.size(); ++i) plane[i] = rgb[i * 3 + static_cast<size_t>(k)];
    io::resize_affine(plane.data(), h, w, 1, static_cast<size_t>(w), warped.data(), 24, 20, m, &fill[k]);
    for (size_t i = 0; i < warped.size(); ++i)
      ASSERT_EQ(warped[i], out[i * 3 + static_cast<size_t>(k)]) << k << " " << i;
  }
}

TEST(DecoderColour, MatchesTheOpsIntensityAndColourWithinALevel) {
  struct Case {
    const char* name;
    AugmentRecipe r;
  };
  std::vector<Case> cases(4);
  cases[0].name = "brightness and contrast (tables)";
  cases[0].r.brightness_factor = {0.6f, 1.4f};
  cases[0].r.contrast = {0.6f, 1.4f};
  cases[1].name = "colour jitter (the matrix)";
  cases[1].r = cases[0].r;
  cases[1].r.saturation = {0.6f, 1.4f};
  cases[1].r.hue = {-0.1f, 0.1f};
  cases[2].name = "gamma";
  cases[2].r.gamma = {0.7f, 1.5f};
  cases[3].name = "everything and an erase box";
  cases[3].r = cases[1].r;
  cases[3].r.gamma = {0.8f, 1.25f};
  cases[3].r.erase_p = 1.f;
  cases[3].r.fill = {50.f};
  for (const Case& cs : cases)
    for (int c : {1, 3}) {
      const auto px = image(19, 23, c, 6);
      for (uint64_t key = 0; key < 20; ++key) {
        const SampleTransform t = draw_sample_transform(cs.r, 19, 23, c, key);
        const PixelDiff d = pixel_diff(on_decoders(px, 19, 23, c, t), op_reference(px, 19, 23, c, t));
        // The op keeps the value in fp32 from the sample to the end; here the colour is rounded to a level once,
        // and where saturation or hue come with gamma, rounded again after the gamma table: one level apart, two
        // where gamma's slope exceeds one.
        const bool gamma = cs.r.gamma.lo != 1.f, twice = gamma && c == 3 && cs.r.saturation.lo != 1.f;
        EXPECT_LE(d.max, gamma ? 2 : 1) << cs.name << ", key " << key << ", " << c << " channels";
        EXPECT_LT(d.mean, twice ? 0.3 : 0.1) << cs.name << ", key " << key;
      }
    }
}

TEST(DecoderShare, SplitsATransformBetweenTheDecodersAndTheStep) {
  const Shape3 s{16, 20, 3};
  io::DecoderAugment d;
  ASSERT_TRUE(decoder_share(SampleTransform{}, s, d));
  EXPECT_FALSE(d.warp || d.hflip || d.vflip || d.colour);

  SampleTransform flip;  // the mirror the drawer makes: x -> w - x
  flip.m[0] = -1.f;
  flip.m[2] = 20.f;
  ASSERT_TRUE(decoder_share(flip, s, d));
  EXPECT_TRUE(d.hflip);
  EXPECT_FALSE(d.warp || d.vflip);
  flip.m[2] = 19.f;  // a mirror and a shift: a warp
  ASSERT_TRUE(decoder_share(flip, s, d));
  EXPECT_TRUE(d.warp);
  EXPECT_TRUE(is_identity(step_share(flip)));

  SampleTransform noisy;
  noisy.noise_std = 3.f;
  noisy.noise_key = 42;
  noisy.erase_h = noisy.erase_w = 4;
  noisy.contrast = 1.3f;
  const SampleTransform step = step_share(noisy);
  EXPECT_EQ(step.noise_std, 3.f);
  EXPECT_EQ(step.noise_key, 42u);
  EXPECT_EQ(step.erase_h, 4);     // no noise inside the box, as the op
  EXPECT_EQ(step.contrast, 1.f);  // the decoders did that
  ASSERT_TRUE(decoder_share(noisy, s, d));
  EXPECT_TRUE(d.colour);
  EXPECT_EQ(d.erase_h, 4);

  SampleTransform tiny;  // a zoom of 1/10000: past the decoders' fixed point, all of it stays in the step
  tiny.m[0] = tiny.m[4] = 1e4f;
  EXPECT_FALSE(decoder_share(tiny, s, d));
  EXPECT_EQ(step_share(tiny).m[0], 1e4f);
}

TEST(DecoderAugment, DecodeSampleAppliesEachSamplesShareAndOnlyIts) {
  const int h = 32, w = 32;
  const auto px = image(h, w, 3, 8);
  const std::vector<uint8_t> jpg = io::encode_jpeg(px.data(), h, w, 3, 95);
  io::TransformConfig plain;
  plain.h = h;
  plain.w = w;
  plain.c = 3;
  std::vector<uint8_t> decoded(px.size());
  std::string err;
  ASSERT_TRUE(io::decode_sample(plain, jpg, 0, 0, decoded.data(), &err)) << err;

  AugmentRecipe r = geometry_recipe();
  r.contrast = {0.7f, 1.3f};
  io::TransformConfig aug = plain;
  aug.decoder_augment = decoder_augment_fn(r, Shape3{h, w, 3}, 9);
  for (uint64_t id = 0; id < 6; ++id) {
    std::vector<uint8_t> out(px.size());
    ASSERT_TRUE(io::decode_sample(aug, jpg, 3, id, out.data(), &err)) << err;
    // The transform of (seed 9, epoch 3, sample id), as the trainer draws it, applied to the plain decode.
    const SampleTransform t = draw_sample_transform(r, h, w, 3, io::augment_key(9, 3, id));
    const PixelDiff d = pixel_diff(out, op_reference(decoded, h, w, 3, t));
    EXPECT_LE(d.max, 1) << "sample " << id;
    EXPECT_GT(pixel_diff(out, std::vector<int>(decoded.begin(), decoded.end())).mean, 1.0) << "sample " << id;
  }
}

TEST(ResizeAffine, AnySizeAndTransformStaysInItsBuffersAndBetweenItsInputs) {
  // Sources from 1x1 up, any affine: every value is a convex blend of source pixels and the fill, so it lies
  // between their extremes; the buffers are exactly sized, so a tap past an edge is an error under AddressSanitizer.
  for (uint64_t i = 0; i < 400; ++i) {
    auto draw = [&](uint64_t k, int lo, int hi) {
      return lo + static_cast<int>(uniform_below(i, k, static_cast<uint64_t>(hi - lo + 1)));
    };
    const int sh = draw(0, 1, 9), sw = draw(1, 1, 9), dh = draw(2, 1, 9), dw = draw(3, 1, 9), c = draw(4, 0, 1) ? 3 : 1;
    double m[6];
    for (int k = 0; k < 6; ++k)
      m[k] = (uniform01(i, 10 + static_cast<uint64_t>(k)) - 0.5) * (k == 2 || k == 5 ? 20 : 6);
    const auto src = image(sh, sw, c, i);
    const uint8_t fill[3] = {static_cast<uint8_t>(draw(5, 0, 255)), static_cast<uint8_t>(draw(6, 0, 255)),
                             static_cast<uint8_t>(draw(7, 0, 255))};
    std::vector<uint8_t> out(static_cast<size_t>(dh) * dw * c);
    io::resize_affine(src.data(), sh, sw, c, static_cast<size_t>(sw) * c, out.data(), dh, dw, m, fill);
    for (int k = 0; k < c; ++k) {
      int lo = fill[k], hi = fill[k];
      for (size_t p = static_cast<size_t>(k); p < src.size(); p += static_cast<size_t>(c))
        lo = std::min<int>(lo, src[p]), hi = std::max<int>(hi, src[p]);
      for (size_t p = static_cast<size_t>(k); p < out.size(); p += static_cast<size_t>(c)) {
        ASSERT_GE(out[p], lo) << "case " << i;
        ASSERT_LE(out[p], hi) << "case " << i;
      }
    }
  }
}
