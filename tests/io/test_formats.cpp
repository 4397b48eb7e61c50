// PNG and WebP through the codec seam (io/codec/codec.h), on files the tests make: every PNG kind to 1 and 3
// channels, alpha over black, WebP lossy and lossless, format by content, limits, and reasons that say corrupt
// or unsupported.
#include <gtest/gtest.h>
#include <png.h>
#include <zlib.h>

#include <csetjmp>
#include <cstring>
#include <string>
#include <vector>

#include "io/codec/codec.h"
#include "io/codec/jpeg.h"
#include "io/codec/png.h"
#include "io/codec/webp.h"
#include "tests/io/png_writer.h"
#include "tests/pipeline/pipeline_util.h"

namespace stoke::io {
namespace {

using test::PngSpec;
using test::write_png;

std::vector<uint8_t> decode(const std::vector<uint8_t>& bytes, int h, int w, int c) {
  std::vector<uint8_t> dst(static_cast<size_t>(h) * w * c);
  std::string err;
  EXPECT_TRUE(decode_to(bytes.data(), bytes.size(), h, w, c, dst.data(), &err)) << err;
  return dst;
}

uint8_t over_black(int v, int a) { return static_cast<uint8_t>((v * a + 127) / 255); }

uint8_t luma(int r, int g, int b) {
  return static_cast<uint8_t>((19595u * r + 38470u * g + 7471u * b + 32768u) >> 16);
}

std::string why_not(const std::vector<uint8_t>& bytes) {
  std::vector<uint8_t> dst(8 * 8 * 3);
  std::string err;
  EXPECT_FALSE(decode_to(bytes.data(), bytes.size(), 8, 8, 3, dst.data(), &err));
  EXPECT_FALSE(err.empty());
  return err;
}

// Sets a PNG's IHDR size and fixes its CRC, so only the new size can be the reason for a refusal.
std::vector<uint8_t> png_with_dims(std::vector<uint8_t> p, uint32_t h, uint32_t w) {
  // Signature (8), IHDR length (4), "IHDR" (4), width, height, ...; the CRC covers type + 13 data bytes.
  for (int i = 0; i < 4; ++i) {
    p[16 + i] = static_cast<uint8_t>(w >> (24 - 8 * i));
    p[20 + i] = static_cast<uint8_t>(h >> (24 - 8 * i));
  }
  const uLong crc = crc32(0, p.data() + 12, 17);
  for (int i = 0; i < 4; ++i) p[29 + i] = static_cast<uint8_t>(crc >> (24 - 8 * i));
  return p;
}

// ---- PNG ----------------------------------------------------------------------------------------------------

TEST(Png, Gray8ToOneAndThreeChannels) {
  PngSpec s{5, 7, PNG_COLOR_TYPE_GRAY, 8};
  for (int i = 0; i < 35; ++i) s.raw.push_back(static_cast<uint8_t>(i * 7));
  const auto png = write_png(s);
  ImageInfo info;
  std::string err;
  ASSERT_TRUE(image_info(png.data(), png.size(), info, &err)) << err;
  EXPECT_STREQ(info.format, "PNG");
  EXPECT_EQ(info.h, 5);
  EXPECT_EQ(info.w, 7);
  EXPECT_EQ(info.components, 1);
  EXPECT_TRUE(is_gray(info));
  EXPECT_EQ(decode(png, 5, 7, 1), s.raw);
  const auto rgb = decode(png, 5, 7, 3);
  for (int i = 0; i < 35; ++i)
    for (int k = 0; k < 3; ++k) ASSERT_EQ(rgb[3 * i + k], s.raw[i]);
}

TEST(Png, LowBitGrayIsExpanded) {
  PngSpec s{2, 8, PNG_COLOR_TYPE_GRAY, 1};
  s.raw = {0b10110000, 0b01001111};  // one byte per row of 8 one-bit pixels
  const auto g = decode(write_png(s), 2, 8, 1);
  const std::vector<uint8_t> want = {255, 0, 255, 255, 0, 0, 0, 0, 0, 255, 0, 0, 255, 255, 255, 255};
  EXPECT_EQ(g, want);
}

TEST(Png, GrayAlphaIsCompositedOverBlack) {
  PngSpec s{1, 3, PNG_COLOR_TYPE_GRAY_ALPHA, 8};
  s.raw = {200, 255, 200, 128, 200, 0};
  const auto png = write_png(s);
  ImageInfo info;
  ASSERT_TRUE(image_info(png.data(), png.size(), info, nullptr));
  EXPECT_EQ(info.components, 2);
  EXPECT_TRUE(is_gray(info)) << "gray + alpha trains as gray";
  EXPECT_EQ(decode(png, 1, 3, 1), (std::vector<uint8_t>{200, over_black(200, 128), 0}));
}

TEST(Png, PaletteWithTransparency) {
  PngSpec s{2, 2, PNG_COLOR_TYPE_PALETTE, 8};
  s.palette = {{255, 0, 0}, {0, 255, 0}, {10, 20, 30}};
  s.trns = {255, 255, 0};  // entry 2 fully transparent
  s.raw = {0, 1, 2, 0};
  const auto png = write_png(s);
  ImageInfo info;
  ASSERT_TRUE(image_info(png.data(), png.size(), info, nullptr));
  EXPECT_EQ(info.components, 4);
  EXPECT_EQ(decode(png, 2, 2, 3), (std::vector<uint8_t>{255, 0, 0, 0, 255, 0, 0, 0, 0, 255, 0, 0}));
  EXPECT_EQ(decode(png, 2, 2, 1), (std::vector<uint8_t>{luma(255, 0, 0), luma(0, 255, 0), 0, luma(255, 0, 0)}));
}

TEST(Png, RgbAndRgba) {
  std::vector<uint8_t> rgb = {10, 20, 30, 200, 100, 50, 0, 0, 0, 255, 255, 255};
  auto png = encode_png(rgb.data(), 2, 2, 3);
  EXPECT_EQ(decode(png, 2, 2, 3), rgb);
  EXPECT_EQ(decode(png, 2, 2, 1), (std::vector<uint8_t>{luma(10, 20, 30), luma(200, 100, 50), 0, 255}));
  // RGBA: the transparent pixel keeps a colour in the file, and comes out black.
  std::vector<uint8_t> rgba = {10, 20, 30, 255, 200, 100, 50, 0, 40, 80, 120, 64, 255, 255, 255, 255};
  png = encode_png(rgba.data(), 2, 2, 4);
  EXPECT_EQ(decode(png, 2, 2, 3), (std::vector<uint8_t>{10, 20, 30, 0, 0, 0, over_black(40, 64), over_black(80, 64),
                                                         over_black(120, 64), 255, 255, 255}));
}

TEST(Png, SixteenBitIsScaledWithRounding) {
  PngSpec s{1, 3, PNG_COLOR_TYPE_RGB, 16};
  // 257 * k maps to exactly k; big-endian samples.
  const int v[9] = {0, 257 * 17, 65535, 257 * 100, 257 * 200, 257 * 1, 65535, 65535, 65535};
  for (int x : v) {
    s.raw.push_back(static_cast<uint8_t>(x >> 8));
    s.raw.push_back(static_cast<uint8_t>(x & 255));
  }
  const auto png = write_png(s);
  EXPECT_EQ(decode(png, 1, 3, 3), (std::vector<uint8_t>{0, 17, 255, 100, 200, 1, 255, 255, 255}));
  PngSpec g{1, 2, PNG_COLOR_TYPE_GRAY, 16};
  g.raw = {0x80, 0x80, 0xFF, 0xFF};  // 0x8080 = 257 * 128
  EXPECT_EQ(decode(write_png(g), 1, 2, 1), (std::vector<uint8_t>{128, 255}));
}

TEST(Png, InterlacedDecodesLikePlain) {
  PngSpec s{9, 11, PNG_COLOR_TYPE_RGB, 8};
  for (int i = 0; i < 9 * 11 * 3; ++i) s.raw.push_back(static_cast<uint8_t>(i * 13));
  const auto plain = decode(write_png(s), 9, 11, 3);
  s.interlace = true;
  EXPECT_EQ(decode(write_png(s), 9, 11, 3), plain);
  EXPECT_EQ(plain, s.raw);
}

TEST(Png, RegionIsTheCropOfTheWholeImage) {
  const auto px = stoke::test::smooth_image(40, 30, 3, 9);
  const auto png = encode_png(px.data(), 40, 30, 3);
  static const CropBox box{5, 7, 20, 12};
  CropChooser ch{[](const void*, int h, int w) {
                   EXPECT_EQ(h, 40);
                   EXPECT_EQ(w, 30);
                   return box;
                 },
                 nullptr};
  DecodedRegion r;
  std::string err;
  // Under twice the target per side: the crop as it is (larger, it is area-averaged: tests/io/test_png_stream.cpp).
  ASSERT_TRUE(decode_region(png.data(), png.size(), ch, 11, 7, 3, r, &err)) << err;
  EXPECT_EQ(r.scale_denom, 1);
  EXPECT_EQ(r.src_h, 40);
  EXPECT_EQ(r.src_w, 30);
  ASSERT_EQ(r.h, 20);
  ASSERT_EQ(r.w, 12);
  for (int y = 0; y < 20; ++y)
    ASSERT_EQ(std::memcmp(r.pixels + y * r.stride, px.data() + ((5 + y) * 30 + 7) * 3, 12 * 3), 0) << y;
  // A crop exactly the target size goes straight into the caller's buffer.
  std::vector<uint8_t> dst(20 * 12 * 3);
  ASSERT_TRUE(decode_region(png.data(), png.size(), ch, 20, 12, 3, r, &err, dst.data())) << err;
  EXPECT_EQ(r.pixels, dst.data());
}

TEST(Png, NamedJpgIsDecodedAsPng) {
  stoke::test::TempDir dir("png-as-jpg");
  std::vector<uint8_t> rgb = {1, 2, 3, 4, 5, 6};
  const auto png = encode_png(rgb.data(), 1, 2, 3);
  const std::string path = (dir.path() / "photo.jpg").string();
  stoke::write_file(path, png.data(), png.size());
  const std::vector<uint8_t> bytes = stoke::read_file(path);
  const Codec* c = codec_for(bytes.data(), bytes.size());
  ASSERT_NE(c, nullptr);
  EXPECT_STREQ(c->name, "PNG");
  EXPECT_EQ(decode(bytes, 1, 2, 3), rgb);
}

TEST(Png, TruncatedIsCorruptWithAReason) {
  const auto px = stoke::test::smooth_image(64, 64, 3, 4);
  auto png = encode_png(px.data(), 64, 64, 3);
  png.resize(png.size() / 2);
  const std::string err = why_not(png);
  EXPECT_NE(err.find("PNG"), std::string::npos) << err;
  EXPECT_EQ(problem_of(err), Problem::corrupt) << err;
  // Cut inside the header too.
  png.resize(20);
  EXPECT_EQ(problem_of(why_not(png)), Problem::corrupt);
  // A flipped byte in the image data: the zlib or CRC check says so.
  png = encode_png(px.data(), 64, 64, 3);
  png[png.size() / 2] ^= 0x55;
  EXPECT_EQ(problem_of(why_not(png)), Problem::corrupt);
}

TEST(Png, OnePixelDecodesAndHostileHeadersAreRefused) {
  std::vector<uint8_t> one = {77, 88, 99, 255};
  const auto png = encode_png(one.data(), 1, 1, 4);
  EXPECT_EQ(decode(png, 1, 1, 3), (std::vector<uint8_t>{77, 88, 99}));
  // Beyond the side limit.
  std::string err = why_not(png_with_dims(png, 1, 20000));
  EXPECT_NE(err.find("out of range"), std::string::npos) << err;
  // Within the side limit but over 100 megapixels.
  err = why_not(png_with_dims(png, 16000, 16000));
  EXPECT_NE(err.find("out of range"), std::string::npos) << err;
  // Within every limit, but a 60-byte file cannot hold 80 megapixels: refused before anything is allocated.
  err = why_not(png_with_dims(png, 8000, 10000));
  EXPECT_NE(err.find("cannot fit"), std::string::npos) << err;
  EXPECT_EQ(problem_of(err), Problem::corrupt);
  ImageInfo info;
  EXPECT_FALSE(image_info(png_with_dims(png, 0, 5).data(), png.size(), info, &err));
}

// ---- WebP ---------------------------------------------------------------------------------------------------

TEST(Webp, LosslessIsExact) {
  const auto px = stoke::test::smooth_image(23, 17, 3, 2);
  const auto webp = encode_webp(px.data(), 23, 17, 3, /*lossless=*/true);
  ImageInfo info;
  std::string err;
  ASSERT_TRUE(image_info(webp.data(), webp.size(), info, &err)) << err;
  EXPECT_STREQ(info.format, "WebP");
  EXPECT_EQ(info.h, 23);
  EXPECT_EQ(info.w, 17);
  EXPECT_EQ(info.components, 3);
  EXPECT_EQ(decode(webp, 23, 17, 3), px);
  const auto gray = decode(webp, 23, 17, 1);
  for (size_t i = 0; i < gray.size(); ++i) ASSERT_EQ(gray[i], luma(px[3 * i], px[3 * i + 1], px[3 * i + 2]));
}

TEST(Webp, LosslessAlphaIsCompositedOverBlack) {
  std::vector<uint8_t> rgba = {10, 20, 30, 255, 200, 100, 50, 0, 40, 80, 120, 64, 255, 255, 255, 255};
  const auto webp = encode_webp(rgba.data(), 2, 2, 4, true);
  ImageInfo info;
  ASSERT_TRUE(image_info(webp.data(), webp.size(), info, nullptr));
  EXPECT_EQ(info.components, 4);
  EXPECT_EQ(decode(webp, 2, 2, 3), (std::vector<uint8_t>{10, 20, 30, 0, 0, 0, over_black(40, 64), over_black(80, 64),
                                                          over_black(120, 64), 255, 255, 255}));
}

TEST(Webp, LossyIsClose) {
  const auto px = stoke::test::smooth_image(48, 64, 3, 7);
  const auto webp = encode_webp(px.data(), 48, 64, 3, /*lossless=*/false, 95);
  WebpInfo wi;
  ASSERT_TRUE(webp_info(webp.data(), webp.size(), wi, nullptr));
  EXPECT_FALSE(wi.lossless);
  const auto out = decode(webp, 48, 64, 3);
  EXPECT_LT(stoke::test::mean_abs_diff(out.data(), px.data(), px.size()), 4.0);
}

TEST(Webp, TruncatedIsCorruptWithAReason) {
  const auto px = stoke::test::smooth_image(64, 64, 3, 3);
  for (bool lossless : {false, true}) {
    auto webp = encode_webp(px.data(), 64, 64, 3, lossless);
    webp.resize(webp.size() * 2 / 3);
    const std::string err = why_not(webp);
    EXPECT_NE(err.find("WebP"), std::string::npos) << err;
    EXPECT_EQ(problem_of(err), Problem::corrupt) << err;
  }
}

TEST(Webp, AnimationIsUnsupported) {
  // RIFF, WEBP, a VP8X chunk with the animation flag and a 2x2 canvas, an ANIM chunk: an animated WebP header.
  std::vector<uint8_t> b = {'R', 'I', 'F', 'F', 0, 0, 0, 0, 'W', 'E', 'B', 'P',
                            'V', 'P', '8', 'X', 10, 0, 0, 0, 0x02, 0, 0, 0, 1, 0, 0, 1, 0, 0,
                            'A', 'N', 'I', 'M', 6, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  b[4] = static_cast<uint8_t>(b.size() - 8);
  const std::string err = why_not(b);
  EXPECT_EQ(problem_of(err), Problem::unsupported) << err;
  EXPECT_NE(err.find("animation"), std::string::npos) << err;
}

TEST(Webp, HugeHeaderIsRefusedByTheLimits) {
  const auto px = stoke::test::smooth_image(4, 4, 3, 1);
  auto webp = encode_webp(px.data(), 4, 4, 3, true);
  ASSERT_EQ(std::memcmp(webp.data() + 12, "VP8L", 4), 0);
  // VP8L: signature 0x2f at byte 20, then 14 bits width - 1, 14 bits height - 1, alpha, version (little-endian).
  uint32_t bits = webp[21] | (webp[22] << 8) | (webp[23] << 16) | (uint32_t{webp[24]} << 24);
  bits = (bits & ~((1u << 28) - 1)) | 16383u | (16383u << 14);  // 16384 x 16384: 268 megapixels
  for (int i = 0; i < 4; ++i) webp[21 + i] = static_cast<uint8_t>(bits >> (8 * i));
  const std::string err = why_not(webp);
  EXPECT_NE(err.find("out of range"), std::string::npos) << err;
}

// ---- the seam: reasons and other formats -------------------------------------------------------------------

TEST(Codec, ReasonsSayCorruptOrUnsupported) {
  const auto px = stoke::test::smooth_image(16, 16, 3, 1);
  const auto jpg = encode_jpeg(px.data(), 16, 16, 3, 90);
  EXPECT_EQ(problem_of(why_not(stoke::test::with_precision(jpg, 12))), Problem::unsupported);
  const std::vector<uint8_t> gif = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0, 0, 0, 0};
  std::string err = why_not(gif);
  EXPECT_EQ(problem_of(err), Problem::unsupported) << err;
  EXPECT_NE(err.find("GIF"), std::string::npos) << err;
  EXPECT_EQ(problem_of(why_not({'h', 'i'})), Problem::corrupt);
  EXPECT_EQ(problem_of(why_not({})), Problem::corrupt);
  auto trunc = jpg;
  trunc.resize(trunc.size() / 3);
  EXPECT_EQ(problem_of(why_not(trunc)), Problem::corrupt);
  EXPECT_STREQ(problem_name(Problem::unsupported), "unsupported");
  EXPECT_STREQ(problem_name(Problem::corrupt), "corrupt");
}

TEST(Codec, CmykJpegStillDecodes) {
  const auto k = stoke::test::smooth_image(30, 40, 4, 5);
  const auto jpg = stoke::test::libjpeg_encode(k, 30, 40, 4, false);
  ImageInfo info;
  ASSERT_TRUE(image_info(jpg.data(), jpg.size(), info, nullptr));
  EXPECT_EQ(info.components, 4);
  EXPECT_FALSE(is_gray(info));
  decode(jpg, 30, 40, 3);
  decode(jpg, 30, 40, 1);
}

TEST(Codec, AllFormatsAreRegistered) {
  EXPECT_EQ(supported_formats(), "JPEG, PNG, WebP");
  EXPECT_TRUE(has_image_extension("a.PNG"));
  EXPECT_TRUE(has_image_extension("a.webp"));
  EXPECT_FALSE(has_image_extension("a.gif"));
  EXPECT_EQ(image_extensions(), ".jpg/.jpeg/.png/.webp");
}

}  // namespace
}  // namespace stoke::io
