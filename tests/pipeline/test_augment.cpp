// Crop decoding (DCT scaling + jpeg_skip_scanlines + jpeg_crop_scanline), random-resized-crop, flip, and the
// per-sample decode: deterministic, thread-independent, identical to the simple loader's path for evaluation.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <thread>

#include "io/pipeline/augment.h"
#include "io/codec/codec.h"
#include "io/codec/jpeg.h"
#include "io/codec/resize.h"
#include "tests/pipeline/pipeline_util.h"

namespace {

using namespace stoke::io;
using stoke::test::libjpeg_encode;
using stoke::test::max_abs_diff;
using stoke::test::mean_abs_diff;
using stoke::test::smooth_image;

bool inside(const CropBox& b, int h, int w) {
  return b.h >= 1 && b.w >= 1 && b.y >= 0 && b.x >= 0 && b.y + b.h <= h && b.x + b.w <= w;
}

TEST(RandomResizedCrop, InsideTheImageAndDeterministic) {
  const std::pair<int, int> sizes[] = {{1, 1}, {2, 500}, {500, 2}, {375, 500}, {28, 28}, {3, 3}, {1000, 1}};
  for (auto [h, w] : sizes)
    for (uint64_t key = 0; key < 500; ++key) {
      const CropBox b = random_resized_crop(key, h, w, 0.08f, 1.0f, 0.75f, 4.0f / 3.0f);
      ASSERT_TRUE(inside(b, h, w)) << h << "x" << w << " key " << key << ": " << b.y << "," << b.x << " " << b.h << "x"
                                   << b.w;
      const CropBox again = random_resized_crop(key, h, w, 0.08f, 1.0f, 0.75f, 4.0f / 3.0f);
      ASSERT_TRUE(again.y == b.y && again.x == b.x && again.h == b.h && again.w == b.w);
    }
}

TEST(RandomResizedCrop, TorchvisionStatisticsAndFallback) {
  // 375x500: nearly every first try fits; the area fraction is uniform in [0.08, 1], the log-aspect uniform.
  double scale_sum = 0;
  int n = 4000;
  for (int k = 0; k < n; ++k) {
    const CropBox b = random_resized_crop(static_cast<uint64_t>(k), 375, 500, 0.08f, 1.0f, 0.75f, 4.0f / 3.0f);
    const double frac = static_cast<double>(b.h) * b.w / (375.0 * 500.0);
    const double aspect = static_cast<double>(b.w) / b.h;
    ASSERT_GT(frac, 0.07);
    ASSERT_LE(frac, 1.0);
    ASSERT_GT(aspect, 0.70);
    ASSERT_LT(aspect, 1.40);
    scale_sum += frac;
  }
  // Large areas fit only with an aspect near 4/3 and are redrawn otherwise, which pulls the mean below 0.54:
  // torchvision's get_params simulated with Python's random over 200,000 draws gives 0.4332.
  EXPECT_NEAR(scale_sum / n, 0.4332, 0.015);
  // A 1x1000 strip: no try can fit the ratio, so the centre crop with the ratio clamped to 4/3: 1x1, centred.
  const CropBox f = random_resized_crop(3, 1, 1000, 0.08f, 1.0f, 0.75f, 4.0f / 3.0f);
  EXPECT_EQ(f.h, 1);
  EXPECT_EQ(f.w, 1);
  EXPECT_EQ(f.x, 499);
  // A 100x400 image, ratio limited to exactly 1: fallback h = 100, w = 100, centred.
  int fallbacks = 0;
  for (uint64_t key = 0; key < 200; ++key) {
    const CropBox b = random_resized_crop(key, 100, 400, 0.99f, 1.0f, 1.0f, 1.0f);
    if (b.h == 100 && b.w == 100 && b.x == 150) ++fallbacks;
  }
  EXPECT_EQ(fallbacks, 200);
}

TEST(Augment, FlipProbabilityAndKeys) {
  AugmentConfig cfg;
  int flips = 0;
  for (uint64_t id = 0; id < 4000; ++id) flips += augment_params(cfg, augment_key(5, 2, id), 100, 100).flip;
  EXPECT_NEAR(flips / 4000.0, 0.5, 0.04);
  EXPECT_NE(augment_key(5, 2, 7), augment_key(5, 3, 7));
  EXPECT_NE(augment_key(5, 2, 7), augment_key(6, 2, 7));
  EXPECT_NE(augment_key(5, 2, 7), augment_key(5, 2, 8));
  cfg.hflip = false;
  for (uint64_t id = 0; id < 100; ++id) ASSERT_FALSE(augment_params(cfg, augment_key(5, 2, id), 100, 100).flip);
}

TEST(Augment, FlipHorizontalMirrorsRows) {
  std::vector<uint8_t> g = {1, 2, 3, 4, 5, 6, 7, 8, 9};  // 3x3 gray
  flip_horizontal(g.data(), 3, 3, 1);
  EXPECT_EQ(g, (std::vector<uint8_t>{3, 2, 1, 6, 5, 4, 9, 8, 7}));
  std::vector<uint8_t> rgb = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};  // 2x2 RGB
  flip_horizontal(rgb.data(), 2, 2, 3);
  EXPECT_EQ(rgb, (std::vector<uint8_t>{4, 5, 6, 1, 2, 3, 10, 11, 12, 7, 8, 9}));
}

struct Kind {
  const char* name;
  int comps;  // of the decoded output
  std::vector<uint8_t> jpeg;
};

std::vector<Kind> kinds(int h, int w) {
  const auto g = smooth_image(h, w, 1, 1), c = smooth_image(h, w, 3, 2), k = smooth_image(h, w, 4, 3);
  return {
      {"gray", 1, encode_jpeg(g.data(), h, w, 1, 95)},
      {"rgb444", 3, encode_jpeg(c.data(), h, w, 3, 95)},
      {"rgb420", 3, encode_jpeg(c.data(), h, w, 3, 85)},
      {"rgb422", 3, libjpeg_encode(c, h, w, 3, false, 2, 1)},
      {"rgb420_progressive", 3, libjpeg_encode(c, h, w, 3, true, 2, 2)},
      {"gray_progressive", 1, libjpeg_encode(g, h, w, 1, true)},
      {"cmyk", 3, libjpeg_encode(k, h, w, 4, false)},
      {"rgb420_as_gray", 1, encode_jpeg(c.data(), h, w, 3, 85)},
  };
}

// Full-scale crops (scale 8/8) must equal the same rectangle of a whole-image decode: the skipped rows and
// columns change nothing inside the crop.
TEST(CropDecode, FullScaleRegionEqualsTheWholeDecode) {
  const int h = 161, w = 213;
  const CropBox crops[] = {{17, 23, 60, 90}, {0, 0, h, w}, {100, 150, 61, 63}, {5, 200, 150, 13}, {160, 0, 1, 9},
                           {33, 41, 1, 170}, {0, 17, h, 1}};
  for (const Kind& k : kinds(h, w)) {
    Image ref;
    std::string err;
    ASSERT_TRUE(decode_jpeg(k.jpeg.data(), k.jpeg.size(), k.comps, ref, &err)) << k.name << ": " << err;
    for (const CropBox& cb : crops) {
      auto fn = [](const void* ctx, int, int) { return *static_cast<const CropBox*>(ctx); };
      DecodedRegion r;
      ASSERT_TRUE(decode_jpeg_region(k.jpeg.data(), k.jpeg.size(), CropChooser{fn, &cb}, cb.h, cb.w, k.comps, r, &err))
          << k.name << ": " << err;
      ASSERT_EQ(r.scale_num, 8);
      ASSERT_EQ(r.h, cb.h);
      ASSERT_EQ(r.w, cb.w);
      ASSERT_EQ(r.src_h, h);
      ASSERT_EQ(r.src_w, w);
      int worst = 0;
      for (int y = 0; y < cb.h; ++y)
        worst = std::max(worst, max_abs_diff(r.pixels + y * r.stride,
                                             ref.pixels.data() + (static_cast<size_t>(cb.y + y) * w + cb.x) * k.comps,
                                             static_cast<size_t>(cb.w) * k.comps));
      // Exact, subsampled chroma included: the decoder keeps a margin around the crop so the upsampler never
      // sees a cut edge inside it (without the margin, 4:2:x crops were off by up to 9 levels at their edges).
      EXPECT_EQ(worst, 0) << k.name << " crop " << cb.y << "," << cb.x << " " << cb.h << "x" << cb.w;
    }
  }
}

// Downscaled crops: the partial decode (skipped rows, cropped iMCU columns) at DCT scale n/8 equals the same
// rectangle of the whole image decoded at n/8, then resized.
TEST(CropDecode, ScaledCropsEqualTheSameCropOfAWholeScaledDecode) {
  const int h = 375, w = 500;
  const CropBox crops[] = {{0, 0, h, w}, {37, 51, 300, 400}, {100, 200, 120, 90}, {3, 5, 370, 80}, {200, 311, 97, 150}};
  const std::pair<int, int> targets[] = {{64, 64}, {40, 56}, {150, 100}, {17, 13}, {90, 90}};
  auto fn = [](const void* ctx, int, int) { return *static_cast<const CropBox*>(ctx); };
  for (const Kind& k : kinds(h, w))
    for (const CropBox& cb : crops)
      for (auto [th, tw] : targets) {
        std::string err;
        DecodedRegion r;
        ASSERT_TRUE(decode_jpeg_region(k.jpeg.data(), k.jpeg.size(), CropChooser{fn, &cb}, th, tw, k.comps, r, &err))
            << k.name << ": " << err;
        const unsigned num = static_cast<unsigned>(r.scale_num);
        ASSERT_TRUE(num == 1 || num == 2 || num == 4 || num == 8);
        if (num < 8) {  // the scale covers the target (at 8/8 the crop may simply be smaller: upscaling)
          ASSERT_GE(r.h, th);
          ASSERT_GE(r.w, tw);
        }
        if (num > 1) {
          const unsigned half = num / 2;  // the next smaller scale would not cover the target
          ASSERT_TRUE((cb.h * half + 7) / 8 < static_cast<unsigned>(th) ||
                      (cb.w * half + 7) / 8 < static_cast<unsigned>(tw));
        }
        const std::vector<uint8_t> region_copy(r.pixels,
                                               r.pixels + (r.h - 1) * r.stride + static_cast<size_t>(r.w) * k.comps);
        // The whole image at the same scale: a target of exactly the scaled size picks the same n.
        const int sh = static_cast<int>((h * num + 7) / 8), sw = static_cast<int>((w * num + 7) / 8);
        DecodedRegion whole;
        ASSERT_TRUE(decode_jpeg_region(k.jpeg.data(), k.jpeg.size(), CropChooser{}, sh, sw, k.comps, whole, &err))
            << err;
        ASSERT_EQ(whole.scale_num, r.scale_num);
        ASSERT_EQ(whole.h, sh);
        ASSERT_EQ(whole.w, sw);
        const int sy0 = static_cast<int>(cb.y * num / 8), sx0 = static_cast<int>(cb.x * num / 8);
        int worst = 0;
        for (int y = 0; y < r.h; ++y)
          worst =
              std::max(worst, max_abs_diff(region_copy.data() + y * r.stride,
                                           whole.pixels + (sy0 + y) * whole.stride + static_cast<size_t>(sx0) * k.comps,
                                           static_cast<size_t>(r.w) * k.comps));
        EXPECT_EQ(worst, 0) << k.name << " crop " << cb.h << "x" << cb.w << " -> " << th << "x" << tw;
      }
}

// ... and stays close to "decode at full size, crop, bilinear resize" where that reference is not itself aliased
// (downscaling by at most 4x; beyond, DCT scaling averages where bilinear skips pixels).
TEST(CropDecode, ScaledCropsMatchDecodeCropResize) {
  const int h = 375, w = 500;
  const CropBox crops[] = {{0, 0, h, w}, {37, 51, 300, 400}, {100, 200, 120, 90}, {3, 5, 370, 80}};
  const std::pair<int, int> targets[] = {{64, 64}, {40, 56}, {150, 100}, {17, 13}, {120, 160}};
  auto fn = [](const void* ctx, int, int) { return *static_cast<const CropBox*>(ctx); };
  int compared = 0;
  double worst_mad = 0;
  for (const Kind& k : kinds(h, w)) {
    Image ref;
    std::string err;
    ASSERT_TRUE(decode_jpeg(k.jpeg.data(), k.jpeg.size(), k.comps, ref, &err)) << k.name << ": " << err;
    for (const CropBox& cb : crops)
      for (auto [th, tw] : targets) {
        if (cb.h > 4 * th || cb.w > 4 * tw) continue;
        std::vector<uint8_t> cropped(static_cast<size_t>(cb.h) * cb.w * k.comps),
            want(static_cast<size_t>(th) * tw * k.comps), got(want.size());
        for (int y = 0; y < cb.h; ++y)
          std::memcpy(&cropped[static_cast<size_t>(y) * cb.w * k.comps],
                      &ref.pixels[(static_cast<size_t>(cb.y + y) * w + cb.x) * k.comps],
                      static_cast<size_t>(cb.w) * k.comps);
        resize_bilinear(cropped.data(), cb.h, cb.w, k.comps, want.data(), th, tw);
        ASSERT_TRUE(decode_jpeg_crop_to(k.jpeg.data(), k.jpeg.size(), CropChooser{fn, &cb}, false, th, tw, k.comps,
                                        got.data(), &err))
            << k.name << ": " << err;
        const double mad = mean_abs_diff(want.data(), got.data(), want.size());
        EXPECT_LT(mad, 4.0) << k.name << " crop " << cb.h << "x" << cb.w << " -> " << th << "x" << tw;
        worst_mad = std::max(worst_mad, mad);
        ++compared;
      }
  }
  EXPECT_GT(compared, 40);
  std::printf("decode-crop-resize vs crop decode: worst mean abs diff %.2f of 4.0 allowed\n", worst_mad);
}

TEST(CropDecode, EvalPathIsTheSimpleLoadersPath) {
  // decode_sample without augmentation gives exactly what decode_to (the codec seam's simple path, which predict
  // uses) gives: the centred crop with the target's aspect, resized; the whole image when the aspects agree.
  for (auto [h, w] : {std::pair{28, 28}, {161, 213}, {64, 64}})
    for (const Kind& k : kinds(h, w))
      for (auto [th, tw] : {std::pair{28, 28}, {64, 64}, {100, 120}, {h, w}}) {
        TransformConfig t;
        t.h = th;
        t.w = tw;
        t.c = k.comps;
        std::vector<uint8_t> a(static_cast<size_t>(th) * tw * k.comps), b(a.size());
        std::string err;
        ASSERT_TRUE(decode_to(k.jpeg.data(), k.jpeg.size(), th, tw, k.comps, a.data(), &err)) << err;
        AugmentParams p;
        ASSERT_TRUE(decode_sample(t, k.jpeg, 0, 1, b.data(), &err, nullptr, &p)) << err;
        ASSERT_EQ(a, b) << k.name << " " << h << "x" << w << " -> " << th << "x" << tw;
        EXPECT_FALSE(p.flip);
        const CropBox want = centre_crop_to_aspect(h, w, th, tw);
        EXPECT_TRUE(p.crop.h == want.h && p.crop.w == want.w) << p.crop.h << "x" << p.crop.w;
        if (h * tw == w * th) {
          // Same aspect: the whole image, and byte for byte what the JPEG path's plain resize gives.
          EXPECT_TRUE(p.crop.h == h && p.crop.w == w);
          ASSERT_TRUE(decode_jpeg_to(k.jpeg.data(), k.jpeg.size(), th, tw, k.comps, a.data(), &err)) << err;
          EXPECT_EQ(a, b);
        }
      }
}

TEST(DecodeSample, DeterministicAndFlipIsAMirror) {
  const int h = 120, w = 160;
  const auto px = smooth_image(h, w, 3, 9);
  const std::vector<uint8_t> jpg = encode_jpeg(px.data(), h, w, 3, 90);
  TransformConfig t;
  t.h = 48;
  t.w = 40;
  t.c = 3;
  t.augment = true;
  t.seed = 11;
  TransformConfig no_flip = t;
  no_flip.aug.hflip = false;
  const size_t n = static_cast<size_t>(t.h) * t.w * t.c;
  int flipped = 0, differ_by_epoch = 0;
  for (uint64_t id = 0; id < 40; ++id) {
    std::vector<uint8_t> a(n), b(n), c(n), d(n);
    std::string err;
    AugmentParams pa, pc;
    ASSERT_TRUE(decode_sample(t, jpg, 3, id, a.data(), &err, nullptr, &pa)) << err;
    ASSERT_TRUE(decode_sample(t, jpg, 3, id, b.data(), &err)) << err;
    ASSERT_EQ(a, b) << "same (seed, epoch, id), same bytes";
    ASSERT_TRUE(inside(pa.crop, h, w));
    ASSERT_TRUE(decode_sample(no_flip, jpg, 3, id, c.data(), &err, nullptr, &pc)) << err;
    ASSERT_TRUE(pc.crop.y == pa.crop.y && pc.crop.x == pa.crop.x && pc.crop.h == pa.crop.h && pc.crop.w == pa.crop.w);
    if (pa.flip) {
      ++flipped;
      flip_horizontal(c.data(), t.h, t.w, t.c);
    }
    ASSERT_EQ(a, c) << "flip = mirror of the unflipped crop";
    ASSERT_TRUE(decode_sample(t, jpg, 4, id, d.data(), &err)) << err;
    differ_by_epoch += a != d;
  }
  EXPECT_GT(flipped, 5);
  EXPECT_LT(flipped, 35);
  EXPECT_GT(differ_by_epoch, 35);
}

TEST(DecodeSample, SameBytesOnEveryThread) {
  const auto px = smooth_image(200, 260, 3, 4);
  const std::vector<uint8_t> jpg = encode_jpeg(px.data(), 200, 260, 3, 85);
  TransformConfig t;
  t.h = t.w = 56;
  t.c = 3;
  t.augment = true;
  const size_t n = static_cast<size_t>(56 * 56 * 3);
  std::vector<std::vector<uint8_t>> want(64, std::vector<uint8_t>(n));
  std::string err;
  for (uint64_t id = 0; id < 64; ++id) ASSERT_TRUE(decode_sample(t, jpg, 0, id, want[id].data(), &err));
  std::atomic<int> mismatches{0};
  std::vector<std::thread> ts;
  for (int k = 0; k < 4; ++k)
    ts.emplace_back([&, k] {
      std::vector<uint8_t> got(n);
      std::string e;
      for (int rep = 0; rep < 3; ++rep)
        for (uint64_t id = static_cast<uint64_t>(k); id < 64; id += 2)
          if (!decode_sample(t, jpg, 0, id, got.data(), &e) || got != want[id]) mismatches.fetch_add(1);
    });
  for (auto& th : ts) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST(DecodeSample, BadInputIsFalseWithAReason) {
  const auto px = smooth_image(40, 50, 3, 1);
  const std::vector<uint8_t> good = encode_jpeg(px.data(), 40, 50, 3, 90);
  std::vector<uint8_t> truncated(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(good.size() / 2));
  std::vector<uint8_t> garbage(300);
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<uint8_t>(stoke::uniform_below(1, i, 256));
  std::vector<uint8_t> corrupt_body = good;  // valid headers, a scan full of junk markers
  for (size_t i = corrupt_body.size() / 2; i + 2 < corrupt_body.size(); i += 7) corrupt_body[i] = 0xFF;
  const struct {
    const char* name;
    std::vector<uint8_t> bytes;
    const char* reason;
  } cases[] = {
      {"empty", {}, "empty"},
      {"garbage", garbage, "not an image"},
      {"truncated", truncated, ""},
      {"12-bit", stoke::test::with_precision(good, 12), "precision"},
      {"absurd", stoke::test::with_dims(good, 60000, 60000), "out of range"},
  };
  TransformConfig t;
  t.h = t.w = 32;
  t.c = 3;
  t.augment = true;
  std::vector<uint8_t> dst(32 * 32 * 3);
  for (const auto& c : cases) {
    std::string err;
    EXPECT_FALSE(decode_sample(t, c.bytes, 0, 0, dst.data(), &err)) << c.name;
    EXPECT_FALSE(err.empty()) << c.name;
    EXPECT_NE(err.find(c.reason), std::string::npos) << c.name << ": " << err;
  }
  std::string err;
  decode_sample(t, corrupt_body, 0, 0, dst.data(), &err);  // either outcome, but no crash
  // Valid kinds that are not baseline RGB decode fine.
  for (const Kind& k : kinds(40, 50))
    EXPECT_TRUE(decode_sample(t, k.jpeg, 0, 5, dst.data(), &err)) << k.name << ": " << err;
}

TEST(DecodeSample, StageClockAccumulates) {
  const auto px = smooth_image(300, 300, 3, 1);
  const std::vector<uint8_t> jpg = encode_jpeg(px.data(), 300, 300, 3, 90);
  TransformConfig t;
  t.h = t.w = 100;
  t.c = 3;
  StageClock clock;
  std::vector<uint8_t> dst(100 * 100 * 3);
  std::string err;
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(decode_sample(t, jpg, 0, 0, dst.data(), &err, &clock));
  clock.enter(Stage::idle);
  EXPECT_GT(clock.seconds(Stage::decode), 0.0);
  EXPECT_GT(clock.seconds(Stage::resize), 0.0);
  EXPECT_EQ(clock.stage.load(), static_cast<int>(Stage::idle));
  EXPECT_STREQ(stage_name(Stage::read), "read");
}

}  // namespace
