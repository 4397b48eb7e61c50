// The JPEG codec, resize_bilinear and file I/O.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "io/codec/jpeg.h"
#include "io/codec/resize.h"
#include "tests/pipeline/pipeline_util.h"  // libjpeg_encode: inputs the codec never writes (CMYK, progressive)

namespace {

using stoke::io::decode_jpeg;
using stoke::io::decode_jpeg_to;
using stoke::io::encode_jpeg;
using stoke::io::Image;
using stoke::io::JpegInfo;
using stoke::io::resize_bilinear;
using stoke::test::libjpeg_encode;
using stoke::test::max_abs_diff;
using stoke::test::mean_abs_diff;

// A smooth synthetic image: gradients plus low-frequency waves, different per channel.
std::vector<uint8_t> make_image(int h, int w, int c) {
  std::vector<uint8_t> px(static_cast<size_t>(h) * w * c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) {
        double v = 40.0 + 150.0 * (x + y + 20.0 * k) / (w + h + 40.0) + 30.0 * std::sin(x / (11.0 + 3 * k)) +
                   25.0 * std::cos(y / (13.0 + 2 * k) + x / 37.0);
        px[(static_cast<size_t>(y) * w + x) * c + k] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
  return px;
}

// Offset of the SOFn marker (FF C0..C2) in a JPEG, or -1.
long find_sof(const std::vector<uint8_t>& j) {
  for (size_t i = 2; i + 9 < j.size(); ++i)
    if (j[i] == 0xFF && (j[i + 1] == 0xC0 || j[i + 1] == 0xC1 || j[i + 1] == 0xC2)) return static_cast<long>(i);
  return -1;
}

// ---- round trips ---------------------------------------------------------------------------------------------

TEST(JpegCodec, RoundTripGray) {
  const int h = 61, w = 83;
  auto src = make_image(h, w, 1);
  auto jpg = encode_jpeg(src.data(), h, w, 1, 95);
  ASSERT_GT(jpg.size(), 100u);
  ASSERT_EQ(jpg[0], 0xFF);
  ASSERT_EQ(jpg[1], 0xD8);
  JpegInfo info;
  std::string err;
  ASSERT_TRUE(stoke::io::jpeg_info(jpg.data(), jpg.size(), info, &err)) << err;
  EXPECT_EQ(info.h, h);
  EXPECT_EQ(info.w, w);
  EXPECT_EQ(info.components, 1);
  Image img;
  ASSERT_TRUE(decode_jpeg(jpg.data(), jpg.size(), 1, img, &err)) << err;
  ASSERT_EQ(img.h, h);
  ASSERT_EQ(img.w, w);
  ASSERT_EQ(img.c, 1);
  ASSERT_EQ(img.pixels.size(), src.size());
  // Measured: max 1, mean 0.17 at quality 95.
  EXPECT_LE(max_abs_diff(img.pixels.data(), src.data(), src.size()), 3);
  EXPECT_LE(mean_abs_diff(img.pixels.data(), src.data(), src.size()), 0.5);
}

TEST(JpegCodec, RoundTripRgb) {
  const int h = 70, w = 95;
  auto src = make_image(h, w, 3);
  auto jpg = encode_jpeg(src.data(), h, w, 3, 95);
  JpegInfo info;
  std::string err;
  ASSERT_TRUE(stoke::io::jpeg_info(jpg.data(), jpg.size(), info, &err)) << err;
  EXPECT_EQ(info.components, 3);
  Image img;
  ASSERT_TRUE(decode_jpeg(jpg.data(), jpg.size(), 3, img, &err)) << err;
  ASSERT_EQ(img.h, h);
  ASSERT_EQ(img.w, w);
  ASSERT_EQ(img.c, 3);
  ASSERT_EQ(img.pixels.size(), src.size());
  // Measured: max 3, mean 0.50 at quality 95 (4:4:4).
  EXPECT_LE(max_abs_diff(img.pixels.data(), src.data(), src.size()), 6);
  EXPECT_LE(mean_abs_diff(img.pixels.data(), src.data(), src.size()), 1.0);
}

TEST(JpegCodec, LowQualityIsSmallerAndStillDecodes) {
  const int h = 64, w = 64;
  auto src = make_image(h, w, 3);
  auto hi = encode_jpeg(src.data(), h, w, 3, 95);
  auto lo = encode_jpeg(src.data(), h, w, 3, 30);  // 4:2:0
  EXPECT_LT(lo.size(), hi.size());
  Image img;
  std::string err;
  ASSERT_TRUE(decode_jpeg(lo.data(), lo.size(), 3, img, &err)) << err;
  EXPECT_LE(mean_abs_diff(img.pixels.data(), src.data(), src.size()), 5.0);  // measured 2.4
}

TEST(JpegCodec, ChannelConversions) {
  const int h = 32, w = 48;
  auto rgb = make_image(h, w, 3);
  auto jpg = encode_jpeg(rgb.data(), h, w, 3, 95);
  Image gray;
  std::string err;
  ASSERT_TRUE(decode_jpeg(jpg.data(), jpg.size(), 1, gray, &err)) << err;
  ASSERT_EQ(gray.c, 1);
  ASSERT_EQ(gray.pixels.size(), static_cast<size_t>(h * w));
  std::vector<uint8_t> luma(static_cast<size_t>(h * w));
  for (size_t i = 0; i < luma.size(); ++i)
    luma[i] = static_cast<uint8_t>(std::lround(0.299 * rgb[3 * i] + 0.587 * rgb[3 * i + 1] + 0.114 * rgb[3 * i + 2]));
  EXPECT_LE(max_abs_diff(gray.pixels.data(), luma.data(), luma.size()), 6);

  // Gray JPEG to RGB: three equal channels.
  auto g = make_image(h, w, 1);
  auto gj = encode_jpeg(g.data(), h, w, 1, 95);
  Image rgb_out;
  ASSERT_TRUE(decode_jpeg(gj.data(), gj.size(), 3, rgb_out, &err)) << err;
  ASSERT_EQ(rgb_out.c, 3);
  Image gray_out;
  ASSERT_TRUE(decode_jpeg(gj.data(), gj.size(), 1, gray_out, &err)) << err;
  for (size_t i = 0; i < gray_out.pixels.size(); ++i) {
    ASSERT_EQ(rgb_out.pixels[3 * i], gray_out.pixels[i]);
    ASSERT_EQ(rgb_out.pixels[3 * i + 1], gray_out.pixels[i]);
    ASSERT_EQ(rgb_out.pixels[3 * i + 2], gray_out.pixels[i]);
  }

  Image bad;
  EXPECT_FALSE(decode_jpeg(gj.data(), gj.size(), 2, bad, &err));
  EXPECT_NE(err.find("channels"), std::string::npos) << err;
}

// ---- decode_jpeg_to ------------------------------------------------------------------------------------------------

class DecodeTo : public ::testing::Test {
 protected:
  static constexpr int kH = 375, kW = 500;
  void SetUp() override {
    src_ = make_image(kH, kW, 3);
    jpg_ = encode_jpeg(src_.data(), kH, kW, 3, 95);
    std::string err;
    ASSERT_TRUE(decode_jpeg(jpg_.data(), jpg_.size(), 3, full_, &err)) << err;
  }
  // decode_jpeg_to(h, w) against full decode + resize_bilinear.
  double compare(int h, int w, int c) {
    Image full;
    std::string err;
    EXPECT_TRUE(decode_jpeg(jpg_.data(), jpg_.size(), c, full, &err)) << err;
    std::vector<uint8_t> ref(static_cast<size_t>(h) * w * c), got(ref.size(), 0xAB);
    resize_bilinear(full.pixels.data(), full.h, full.w, c, ref.data(), h, w);
    EXPECT_TRUE(decode_jpeg_to(jpg_.data(), jpg_.size(), h, w, c, got.data(), &err)) << err;
    return mean_abs_diff(ref.data(), got.data(), ref.size());
  }
  std::vector<uint8_t> src_, jpg_;
  Image full_;
};

TEST_F(DecodeTo, ScaledMatchesFullDecodeThenResize) {
  // 500x375 decodes at 1/8 (63x47), 2/8, 4/8 or 8/8, whichever is the smallest covering the target.
  // Measured mean abs diffs at 2/8 and 4/8: 0.79, 0.70 (rgb), 0.36, 0.31 (gray). 224x224 and 100x300 need 8/8,
  // so they match exactly.
  for (int c : {3, 1}) {
    SCOPED_TRACE(c);
    EXPECT_LT(compare(40, 50, c), 4.5);    // 1/8 (the 9x bilinear reference aliases: measured 3.3 rgb, 2.0 gray)
    EXPECT_LT(compare(64, 64, c), 1.6);    // 2/8
    EXPECT_LT(compare(150, 200, c), 1.6);  // 4/8
    EXPECT_EQ(compare(224, 224, c), 0.0);  // 8/8
    EXPECT_EQ(compare(100, 300, c), 0.0);  // non-square target, 8/8
  }
}

TEST_F(DecodeTo, ExactSizeEqualsPlainDecode) {
  std::vector<uint8_t> got(static_cast<size_t>(kH) * kW * 3);
  std::string err;
  ASSERT_TRUE(decode_jpeg_to(jpg_.data(), jpg_.size(), kH, kW, 3, got.data(), &err)) << err;
  EXPECT_EQ(got, full_.pixels);
}

TEST_F(DecodeTo, ExactDctScaleEqualsPlainScaledDecode) {
  // 500x375 at 4/8 is 250x188 (rounded up): no resize, and the result is a proper downscale of the image.
  std::vector<uint8_t> got(static_cast<size_t>(188) * 250 * 3), ref(got.size());
  std::string err;
  ASSERT_TRUE(decode_jpeg_to(jpg_.data(), jpg_.size(), 188, 250, 3, got.data(), &err)) << err;
  resize_bilinear(full_.pixels.data(), kH, kW, 3, ref.data(), 188, 250);
  EXPECT_LT(mean_abs_diff(got.data(), ref.data(), got.size()), 1.0);  // measured: 0.69
}

TEST_F(DecodeTo, OneEighthIsBlockAverages) {
  // At 1/8 libjpeg keeps only the DC terms: each output pixel is the mean of an 8x8 block.
  const int h = 47, w = 63;  // ceil(375/8) x ceil(500/8)
  std::vector<uint8_t> got(static_cast<size_t>(h) * w * 3), ref(got.size());
  std::string err;
  ASSERT_TRUE(decode_jpeg_to(jpg_.data(), jpg_.size(), h, w, 3, got.data(), &err)) << err;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < 3; ++k) {
        int sum = 0, n = 0;
        for (int yy = 8 * y; yy < std::min(kH, 8 * y + 8); ++yy)
          for (int xx = 8 * x; xx < std::min(kW, 8 * x + 8); ++xx, ++n)
            sum += full_.pixels[(static_cast<size_t>(yy) * kW + xx) * 3 + k];
        ref[(static_cast<size_t>(y) * w + x) * 3 + k] = static_cast<uint8_t>((sum + n / 2) / n);
      }
  EXPECT_LT(mean_abs_diff(got.data(), ref.data(), got.size()), 1.0);  // measured: 0.44
  EXPECT_LE(max_abs_diff(got.data(), ref.data(), got.size()), 6);    // measured: 3
}

TEST_F(DecodeTo, UpscaleIsFullDecodeThenResize) {
  std::vector<uint8_t> got(static_cast<size_t>(400) * 600 * 3), ref(got.size());
  std::string err;
  ASSERT_TRUE(decode_jpeg_to(jpg_.data(), jpg_.size(), 400, 600, 3, got.data(), &err)) << err;
  resize_bilinear(full_.pixels.data(), kH, kW, 3, ref.data(), 400, 600);
  EXPECT_EQ(got, ref);
}

TEST_F(DecodeTo, BadTargets) {
  std::vector<uint8_t> dst(64);
  std::string err;
  EXPECT_FALSE(decode_jpeg_to(jpg_.data(), jpg_.size(), 0, 8, 3, dst.data(), &err));
  EXPECT_FALSE(err.empty());
  err.clear();
  EXPECT_FALSE(decode_jpeg_to(jpg_.data(), jpg_.size(), 4, 4, 4, dst.data(), &err));
  EXPECT_FALSE(err.empty());
}

TEST_F(DecodeTo, ThreadsAgree) {
  std::vector<uint8_t> ref(static_cast<size_t>(224) * 224 * 3);
  std::string err;
  ASSERT_TRUE(decode_jpeg_to(jpg_.data(), jpg_.size(), 224, 224, 3, ref.data(), &err)) << err;
  std::vector<std::vector<uint8_t>> outs(4, std::vector<uint8_t>(ref.size()));
  std::vector<int> ok(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      int good = 1;
      for (int rep = 0; rep < 5; ++rep) {
        std::string e;
        // Interleave a failing decode: the per-thread decoder must recover.
        uint8_t junk[64] = {0xFF, 0xD8, 0xFF, 0xDB};
        if (decode_jpeg_to(junk, sizeof junk, 224, 224, 3, outs[t].data(), &e)) good = 0;
        if (!decode_jpeg_to(jpg_.data(), jpg_.size(), 224, 224, 3, outs[t].data(), &e)) good = 0;
      }
      ok[t] = good;
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) {
    EXPECT_EQ(ok[t], 1);
    EXPECT_EQ(outs[t], ref);
  }
}

// ---- colour spaces and coding modes the encoder never writes -------------------------------------------------------

TEST(JpegCodec, CmykAndYcckDecodeToRgb) {
  // Four quadrants: red, green, blue, white, stored Adobe-style (inverted: 255 = no ink).
  const int h = 32, w = 32;
  const uint8_t ink[4][4] = {{0, 255, 255, 0}, {255, 0, 255, 0}, {255, 255, 0, 0}, {0, 0, 0, 0}};
  const uint8_t rgb[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
  std::vector<uint8_t> cmyk(static_cast<size_t>(h) * w * 4);
  auto quad = [&](int y, int x) { return (y >= h / 2 ? 2 : 0) + (x >= w / 2 ? 1 : 0); };
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < 4; ++k) cmyk[(static_cast<size_t>(y) * w + x) * 4 + k] = 255 - ink[quad(y, x)][k];
  for (J_COLOR_SPACE space : {JCS_CMYK, JCS_YCCK}) {
    auto jpg = libjpeg_encode(cmyk, h, w, 4, false, 0, 0, 95, space);
    JpegInfo info;
    std::string err;
    ASSERT_TRUE(stoke::io::jpeg_info(jpg.data(), jpg.size(), info, &err)) << err;
    EXPECT_EQ(info.components, 4);
    Image img;
    ASSERT_TRUE(decode_jpeg(jpg.data(), jpg.size(), 3, img, &err)) << err;
    ASSERT_EQ(img.c, 3);
    ASSERT_EQ(img.h, h);
    // Sample the middle of each quadrant (away from the edges' ringing).
    for (int q = 0; q < 4; ++q) {
      int y = (q >= 2 ? 3 * h / 4 : h / 4), x = (q % 2 ? 3 * w / 4 : w / 4);
      for (int k = 0; k < 3; ++k)
        EXPECT_NEAR(img.pixels[(static_cast<size_t>(y) * w + x) * 3 + k], rgb[q][k], 12)
            << "space " << space << " quadrant " << q << " channel " << k;
    }
    Image gray;
    ASSERT_TRUE(decode_jpeg(jpg.data(), jpg.size(), 1, gray, &err)) << err;
    ASSERT_EQ(gray.c, 1);
    EXPECT_NEAR(gray.pixels[static_cast<size_t>(h / 4) * w + w / 4], 76, 12);               // red
    EXPECT_NEAR(gray.pixels[static_cast<size_t>(3 * h / 4) * w + 3 * w / 4], 255, 12);      // white
    std::vector<uint8_t> small(static_cast<size_t>(8) * 8 * 3);
    EXPECT_TRUE(decode_jpeg_to(jpg.data(), jpg.size(), 8, 8, 3, small.data(), &err)) << err;
    EXPECT_NEAR(small[(static_cast<size_t>(2) * 8 + 2) * 3], 255, 20);  // red quadrant, R
  }
}

TEST(JpegCodec, RgbColourSpaceDecodes) {
  // Components stored as R, G, B (Adobe transform 0) rather than YCbCr.
  const int h = 24, w = 40;
  auto src = make_image(h, w, 3);
  auto jpg = libjpeg_encode(src, h, w, 3, false, 0, 0, 95, JCS_RGB);
  Image img, gray;
  std::string err;
  ASSERT_TRUE(decode_jpeg(jpg.data(), jpg.size(), 3, img, &err)) << err;
  EXPECT_LE(mean_abs_diff(img.pixels.data(), src.data(), src.size()), 1.5);
  ASSERT_TRUE(decode_jpeg(jpg.data(), jpg.size(), 1, gray, &err)) << err;
  ASSERT_EQ(gray.pixels.size(), static_cast<size_t>(h * w));
  const size_t mid = static_cast<size_t>(h / 2) * w + w / 2;
  EXPECT_NEAR(gray.pixels[mid], 0.299 * src[3 * mid] + 0.587 * src[3 * mid + 1] + 0.114 * src[3 * mid + 2], 4);
}

TEST(JpegCodec, ProgressiveDecodes) {
  const int h = 120, w = 160;
  for (int c : {1, 3}) {
    auto src = make_image(h, w, c);
    auto jpg = libjpeg_encode(src, h, w, c, true, 0, 0, 95);
    long sof = find_sof(jpg);
    ASSERT_GE(sof, 0);
    EXPECT_EQ(jpg[static_cast<size_t>(sof) + 1], 0xC2) << "not progressive";
    Image img;
    std::string err;
    ASSERT_TRUE(decode_jpeg(jpg.data(), jpg.size(), c, img, &err)) << err;
    ASSERT_EQ(img.h, h);
    ASSERT_EQ(img.w, w);
    EXPECT_LE(mean_abs_diff(img.pixels.data(), src.data(), src.size()), 2.0);
    std::vector<uint8_t> small(static_cast<size_t>(30) * 40 * c), ref(small.size());
    ASSERT_TRUE(decode_jpeg_to(jpg.data(), jpg.size(), 30, 40, c, small.data(), &err)) << err;
    resize_bilinear(img.pixels.data(), h, w, c, ref.data(), 30, 40);
    EXPECT_LT(mean_abs_diff(small.data(), ref.data(), ref.size()), 2.0);
    // Truncated progressive data fails too.
    EXPECT_FALSE(decode_jpeg(jpg.data(), jpg.size() * 2 / 3, c, img, &err));
  }
}

// ---- bad data
// --------------------------------------------------------------------------------------------------------

class BadData : public ::testing::Test {
 protected:
  void SetUp() override {
    src_ = make_image(40, 56, 3);
    jpg_ = encode_jpeg(src_.data(), 40, 56, 3, 90);
  }
  // Every entry point must say no, with a message.
  void expect_rejected(const std::vector<uint8_t>& data, const char* what, const char* expect_in_message = nullptr) {
    SCOPED_TRACE(what);
    std::string err;
    Image img;
    EXPECT_FALSE(decode_jpeg(data.data(), data.size(), 3, img, &err));
    EXPECT_FALSE(err.empty());
    if (expect_in_message) {
      EXPECT_NE(err.find(expect_in_message), std::string::npos) << err;
    }
    err.clear();
    std::vector<uint8_t> dst(static_cast<size_t>(16) * 16 * 3);
    EXPECT_FALSE(decode_jpeg_to(data.data(), data.size(), 16, 16, 3, dst.data(), &err));
    EXPECT_FALSE(err.empty());
    err.clear();
    EXPECT_FALSE(decode_jpeg(data.data(), data.size(), 1, img, &err));
    EXPECT_FALSE(err.empty());
    // The decoder still works afterwards.
    ASSERT_TRUE(decode_jpeg(jpg_.data(), jpg_.size(), 3, img, &err)) << err;
  }
  std::vector<uint8_t> src_, jpg_;
};

TEST_F(BadData, Empty) {
  expect_rejected({}, "zero bytes");
  std::string err;
  Image img;
  EXPECT_FALSE(decode_jpeg(nullptr, 0, 3, img, &err));
  JpegInfo info;
  EXPECT_FALSE(stoke::io::jpeg_info(nullptr, 0, info, &err));
  EXPECT_FALSE(decode_jpeg(nullptr, 0, 3, img, nullptr));  // a null error pointer is allowed
}

TEST_F(BadData, RandomBytes) {
  std::mt19937 rng(7);
  for (size_t n : {1u, 3u, 100u, 5000u}) {
    std::vector<uint8_t> junk(n);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    expect_rejected(junk, "random bytes");
    // Random bytes behind a valid SOI marker get past the first check.
    if (n >= 3) {
      junk[0] = 0xFF;
      junk[1] = 0xD8;
      expect_rejected(junk, "SOI + random bytes");
    }
  }
}

TEST_F(BadData, Truncated) {
  std::vector<uint8_t> half(jpg_.begin(), jpg_.begin() + static_cast<long>(jpg_.size() / 2));
  expect_rejected(half, "half the bytes");
  // Every cut that loses scan data fails (only the final EOI may go missing).
  for (size_t n = 0; n + 8 < jpg_.size(); n += 7) {
    std::vector<uint8_t> cut(jpg_.begin(), jpg_.begin() + static_cast<long>(n));
    std::string err;
    Image img;
    EXPECT_FALSE(decode_jpeg(cut.data(), cut.size(), 3, img, &err)) << "cut at " << n;
  }
}

TEST_F(BadData, PngSignature) {
  std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
  png.resize(200, 0);
  expect_rejected(png, "png", "not a JPEG");
}

TEST_F(BadData, AbsurdDimensions) {
  long sof = find_sof(jpg_);
  ASSERT_GE(sof, 0);
  auto big = jpg_;
  const size_t p = static_cast<size_t>(sof);  // FF Cn len(2) precision(1) height(2) width(2)
  big[p + 5] = 0xEA;
  big[p + 6] = 0x60;  // 60000
  big[p + 7] = 0xEA;
  big[p + 8] = 0x60;
  expect_rejected(big, "60000x60000", "60000x60000");
  JpegInfo info;
  std::string err;
  EXPECT_FALSE(stoke::io::jpeg_info(big.data(), big.size(), info, &err));
  EXPECT_NE(err.find("out of range"), std::string::npos) << err;
  // One side over 16384, the other tiny: still refused.
  big[p + 5] = 0x00;
  big[p + 6] = 0x08;
  big[p + 7] = 0x50;
  big[p + 8] = 0x00;  // 8 x 20480
  expect_rejected(big, "8x20480", "out of range");
}

TEST_F(BadData, TwelveBitPrecision) {
  long sof = find_sof(jpg_);
  ASSERT_GE(sof, 0);
  auto twelve = jpg_;
  twelve[static_cast<size_t>(sof) + 4] = 12;
  expect_rejected(twelve, "12-bit", "precision");
}

TEST_F(BadData, FuzzSingleByteMutations) {
  // Smaller inputs make the loop quick; both a gray and a colour, and a progressive one.
  std::vector<std::vector<uint8_t>> seeds;
  auto g = make_image(24, 24, 1);
  seeds.push_back(encode_jpeg(g.data(), 24, 24, 1, 90));
  auto c = make_image(24, 32, 3);
  seeds.push_back(encode_jpeg(c.data(), 24, 32, 3, 75));
  seeds.push_back(libjpeg_encode(c, 24, 32, 3, true, 0, 0, 95));
  std::mt19937 rng(12345);
  int accepted = 0, rejected = 0;
  std::vector<uint8_t> dst(static_cast<size_t>(16) * 16 * 3);
  for (int i = 0; i < 2000; ++i) {
    const auto& seed = seeds[static_cast<size_t>(i) % seeds.size()];
    auto m = seed;
    m[rng() % m.size()] = static_cast<uint8_t>(rng());
    if (i % 3 == 2) m[rng() % m.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));  // and a bit flip
    std::string err;
    Image img;
    bool ok = decode_jpeg(m.data(), m.size(), i % 2 ? 3 : 1, img, &err);
    if (ok) {
      ++accepted;
      ASSERT_EQ(img.pixels.size(), static_cast<size_t>(img.h) * img.w * img.c);
    } else {
      ++rejected;
      ASSERT_FALSE(err.empty());
    }
    (void)decode_jpeg_to(m.data(), m.size(), 16, 16, 3, dst.data(), &err);
    JpegInfo info;
    (void)stoke::io::jpeg_info(m.data(), m.size(), info, &err);
  }
  EXPECT_EQ(accepted + rejected, 2000);
  EXPECT_GT(rejected, 0);
  EXPECT_GT(accepted, 0);  // most single-byte hits land in entropy data and still decode
  std::printf("fuzz: %d accepted, %d rejected\n", accepted, rejected);
}

// ---- resize_bilinear
// -------------------------------------------------------------------------------------------------

TEST(ResizeBilinear, TwoByTwoToFourByFour) {
  const uint8_t src[4] = {0, 100, 200, 40};
  uint8_t dst[16];
  resize_bilinear(src, 2, 2, 1, dst, 4, 4);
  // Source coordinates of the destination centres: -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
  const uint8_t want[16] = {0,   25,  75, 100,  //
                            50,  59,  76, 85,   // 58.75, 76.25
                            150, 126, 79, 55,   // 126.25, 78.75
                            200, 160, 80, 40};
  for (int i = 0; i < 16; ++i) EXPECT_EQ(dst[i], want[i]) << "at " << i / 4 << "," << i % 4;

  // The same per channel, with channels kept apart.
  uint8_t src3[12], dst3[48];
  for (int i = 0; i < 4; ++i) {
    src3[3 * i] = src[i];
    src3[3 * i + 1] = static_cast<uint8_t>(255 - src[i]);
    src3[3 * i + 2] = 7;
  }
  resize_bilinear(src3, 2, 2, 3, dst3, 4, 4);
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(dst3[3 * i], want[i]);
    EXPECT_NEAR(dst3[3 * i + 1], 255 - want[i], 1);  // x.25/x.75 round the other way
    EXPECT_EQ(dst3[3 * i + 2], 7);
  }
}

TEST(ResizeBilinear, HalvingAveragesBlocks) {
  const uint8_t src[16] = {10, 20, 30, 41,  //
                           30, 40, 50, 61,  //
                           0,  0,  255, 255,  //
                           0,  2,  255, 255};
  uint8_t dst[4];
  resize_bilinear(src, 4, 4, 1, dst, 2, 2);
  EXPECT_EQ(dst[0], 25);   // (10+20+30+40)/4
  EXPECT_EQ(dst[1], 46);   // (30+41+50+61)/4 = 45.5 -> 46
  EXPECT_EQ(dst[2], 1);    // 0.5 -> 1
  EXPECT_EQ(dst[3], 255);
}

TEST(ResizeBilinear, IdentityAndEdges) {
  auto src = make_image(13, 17, 3);
  std::vector<uint8_t> dst(src.size());
  resize_bilinear(src.data(), 13, 17, 3, dst.data(), 13, 17);
  EXPECT_EQ(dst, src);
  // A single row/column stretches to constant columns/rows.
  const uint8_t row[3] = {10, 20, 30};
  uint8_t out[15];
  resize_bilinear(row, 1, 3, 1, out, 5, 3);
  for (int y = 0; y < 5; ++y)
    for (int x = 0; x < 3; ++x) EXPECT_EQ(out[y * 3 + x], row[x]);
  // Constant images stay constant at any size.
  std::vector<uint8_t> flat(static_cast<size_t>(9) * 7 * 3, 200), big(static_cast<size_t>(31) * 5 * 3);
  resize_bilinear(flat.data(), 9, 7, 3, big.data(), 31, 5);
  for (uint8_t v : big) ASSERT_EQ(v, 200);
}

// ---- files
// ------------------------------------------------------------------------------------------------------------

TEST(Files, WriteReadAndErrors) {
  namespace fs = std::filesystem;
  char tmpl[] = "/tmp/stoke-io-files-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  std::vector<uint8_t> data(100000);
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 31 + 7);
  const std::string path = dir + "/a.bin";
  stoke::write_file(path, data.data(), data.size());
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  EXPECT_EQ(stoke::read_file(path), data);
  stoke::write_file(path, "xy", 2);  // replaces
  EXPECT_EQ(stoke::read_file(path), (std::vector<uint8_t>{'x', 'y'}));
  stoke::write_file(dir + "/empty", nullptr, 0);
  EXPECT_TRUE(stoke::read_file(dir + "/empty").empty());

  try {
    stoke::read_file(dir + "/missing.jpg");
    ADD_FAILURE() << "no throw";
  } catch (const stoke::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find(dir + "/missing.jpg"), std::string::npos) << m;
    EXPECT_NE(m.find("No such file"), std::string::npos) << m;
  }
  EXPECT_THROW(stoke::read_file(dir), stoke::Error);  // a folder
  try {
    stoke::write_file(dir + "/no/such/dir/x.bin", "a", 1);
    ADD_FAILURE() << "no throw";
  } catch (const stoke::Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/no/such/dir/x.bin"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

}  // namespace
