// The codec seam (io/codec/codec.h): the format comes from the bytes, never from the file name, and every
// answer for bytes that are not a readable image is a clear reason, not a crash.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "io/codec/codec.h"
#include "io/codec/jpeg.h"

namespace stoke::io {
namespace {

std::vector<uint8_t> gradient_jpeg(int h, int w, int c) {
  std::vector<uint8_t> px(static_cast<size_t>(h) * w * c);
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 7) % 251);
  return encode_jpeg(px.data(), h, w, c, 90);
}

std::string why_not(const std::vector<uint8_t>& bytes) {
  ImageInfo info;
  std::string err;
  EXPECT_FALSE(image_info(bytes.data(), bytes.size(), info, &err));
  std::vector<uint8_t> dst(16 * 16 * 3);
  std::string err2;
  EXPECT_FALSE(decode_to(bytes.data(), bytes.size(), 16, 16, 3, dst.data(), &err2));
  EXPECT_EQ(err, err2) << "the header reader and the decoder give the same reason";
  return err;
}

TEST(Codec, JpegIsRecognisedByItsBytes) {
  const std::vector<uint8_t> jpg = gradient_jpeg(37, 53, 3);
  const Codec* c = codec_for(jpg.data(), jpg.size());
  ASSERT_NE(c, nullptr);
  EXPECT_STREQ(c->name, "JPEG");
  ImageInfo info;
  std::string err;
  ASSERT_TRUE(image_info(jpg.data(), jpg.size(), info, &err)) << err;
  EXPECT_STREQ(info.format, "JPEG");
  EXPECT_EQ(info.h, 37);
  EXPECT_EQ(info.w, 53);
  EXPECT_EQ(info.components, 3);
}

TEST(Codec, DecodeToCentreCropsToTheTargetAspectThenResizes) {
  const std::vector<uint8_t> jpg = gradient_jpeg(64, 48, 3);
  std::vector<uint8_t> a(20 * 30 * 3), b(a.size());
  std::string err;
  ASSERT_TRUE(decode_to(jpg.data(), jpg.size(), 20, 30, 3, a.data(), &err)) << err;
  const int target[2] = {20, 30};
  ASSERT_TRUE(decode_jpeg_crop_to(jpg.data(), jpg.size(), CropChooser{&choose_centre_crop, target}, false, 20, 30, 3,
                                  b.data(), &err))
      << err;
  EXPECT_EQ(a, b);
}

TEST(Codec, CentreCropKeepsTheTargetAspect) {
  // Wider than the target: full height, the middle columns (torchvision's Resize + CenterCrop).
  CropBox c = centre_crop_to_aspect(375, 500, 224, 224);
  EXPECT_EQ(c.h, 375);
  EXPECT_EQ(c.w, 375);
  EXPECT_EQ(c.x, 62);
  EXPECT_EQ(c.y, 0);
  // Taller: full width, the middle rows.
  c = centre_crop_to_aspect(300, 100, 10, 20);
  EXPECT_EQ(c.w, 100);
  EXPECT_EQ(c.h, 50);
  EXPECT_EQ(c.y, 125);
  // The same aspect (within 1%): the whole image, untouched.
  c = centre_crop_to_aspect(28, 28, 56, 56);
  EXPECT_EQ(c.h, 28);
  EXPECT_EQ(c.w, 28);
  c = centre_crop_to_aspect(101, 100, 100, 100);
  EXPECT_EQ(c.h, 101);
}

TEST(Codec, NonImagesAreNamedNotCalledCorrupt) {
  const std::string text = "hello, this is a text file named like a photo";
  std::string err = why_not(std::vector<uint8_t>(text.begin(), text.end()));
  EXPECT_NE(err.find("not an image"), std::string::npos) << err;
  EXPECT_NE(err.find("JPEG"), std::string::npos) << "names the formats it can read: " << err;
  EXPECT_NE(why_not({}).find("empty file"), std::string::npos);
  std::vector<uint8_t> gif = {'G', 'I', 'F', '8', '9', 'a', 1, 0, 1, 0};
  EXPECT_NE(why_not(gif).find("GIF"), std::string::npos) << "a GIF is named as one";
}

TEST(Codec, ATruncatedJpegIsCorruptWithTheDecodersReason) {
  std::vector<uint8_t> jpg = gradient_jpeg(32, 32, 1);
  jpg.resize(jpg.size() / 3);
  std::vector<uint8_t> dst(32 * 32);
  std::string err;
  // libjpeg pads a truncated stream; the decoder reports the premature end instead of returning grey rows.
  EXPECT_FALSE(decode_to(jpg.data(), jpg.size(), 32, 32, 1, dst.data(), &err));
  EXPECT_FALSE(err.empty());
}

TEST(Codec, ImageExtensionsAreTheRegisteredOnes) {
  EXPECT_TRUE(has_image_extension("a.jpg"));
  EXPECT_TRUE(has_image_extension("B.JPEG"));
  EXPECT_FALSE(has_image_extension("notes.txt"));
  EXPECT_FALSE(has_image_extension(".jpg"));
  EXPECT_FALSE(has_image_extension("jpg"));
  EXPECT_NE(image_extensions().find(".jpg"), std::string::npos);
  EXPECT_NE(supported_formats().find("JPEG"), std::string::npos);
}

}  // namespace
}  // namespace stoke::io
