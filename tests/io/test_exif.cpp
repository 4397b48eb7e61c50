// EXIF orientation for JPEG: a JPEG made here, with an APP1 "Exif" segment spliced in after SOI, comes out as
// viewers show it (sizes, whole decodes, crops), and not when the switch is off. The parser survives garbage.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "io/codec/codec.h"
#include "io/codec/exif.h"
#include "io/codec/jpeg.h"

namespace stoke::io {
namespace {

constexpr int H = 32, W = 48;  // stored: top-left red, top-right green, bottom-left blue, bottom-right white

std::vector<uint8_t> quadrants() {
  std::vector<uint8_t> px(H * W * 3);
  for (int y = 0; y < H; ++y)
    for (int x = 0; x < W; ++x) {
      uint8_t* p = &px[(y * W + x) * 3];
      const bool bottom = y >= H / 2, right = x >= W / 2;
      const uint8_t rgb[4][3] = {{255, 0, 0}, {0, 255, 0}, {0, 0, 255}, {255, 255, 255}};
      const int q = (bottom ? 2 : 0) + (right ? 1 : 0);
      p[0] = rgb[q][0], p[1] = rgb[q][1], p[2] = rgb[q][2];
    }
  return px;
}

// The APP1 payload: "Exif\0\0", a TIFF header (big- or little-endian) and IFD0 with one entry, Orientation.
std::vector<uint8_t> exif_payload(int orientation, bool little_endian) {
  auto u16 = [&](std::vector<uint8_t>& v, unsigned x) {
    if (little_endian) {
      v.push_back(static_cast<uint8_t>(x)), v.push_back(static_cast<uint8_t>(x >> 8));
    } else {
      v.push_back(static_cast<uint8_t>(x >> 8)), v.push_back(static_cast<uint8_t>(x));
    }
  };
  auto u32 = [&](std::vector<uint8_t>& v, uint32_t x) {
    if (little_endian) {
      u16(v, x & 0xFFFF), u16(v, x >> 16);
    } else {
      u16(v, x >> 16), u16(v, x & 0xFFFF);
    }
  };
  std::vector<uint8_t> p = {'E', 'x', 'i', 'f', 0, 0};
  p.push_back(little_endian ? 'I' : 'M'), p.push_back(little_endian ? 'I' : 'M');
  u16(p, 42);
  u32(p, 8);       // IFD0 right after the header
  u16(p, 2);       // two entries: ImageDescription (ignored), Orientation
  u16(p, 0x010E), u16(p, 2), u32(p, 1), u32(p, 0);
  u16(p, 0x0112), u16(p, 3), u32(p, 1), u16(p, static_cast<unsigned>(orientation)), u16(p, 0);
  u32(p, 0);       // no next IFD
  return p;
}

std::vector<uint8_t> with_app1(const std::vector<uint8_t>& jpg, const std::vector<uint8_t>& payload) {
  const size_t len = payload.size() + 2;
  std::vector<uint8_t> out;
  out.reserve(jpg.size() + len + 2);
  for (uint8_t b : {uint8_t{0xFF}, uint8_t{0xD8}, uint8_t{0xFF}, uint8_t{0xE1}, static_cast<uint8_t>(len >> 8),
                    static_cast<uint8_t>(len)})
    out.push_back(b);  // SOI, then the APP1 marker and its length
  for (uint8_t b : payload) out.push_back(b);
  for (size_t i = 2; i < jpg.size(); ++i) out.push_back(jpg[i]);
  return out;
}

std::vector<uint8_t> oriented_jpeg(int o, bool le = false) {
  const auto px = quadrants();
  return with_app1(encode_jpeg(px.data(), H, W, 3, 95), exif_payload(o, le));
}

// The colour at (y, x) of an h x w x 3 image, as one of "R", "G", "B", "W" (or "?").
std::string colour(const std::vector<uint8_t>& img, int w, int y, int x) {
  const uint8_t* p = &img[(y * w + x) * 3];
  auto hi = [](uint8_t v) { return v > 200; };
  auto lo = [](uint8_t v) { return v < 55; };
  if (hi(p[0]) && lo(p[1]) && lo(p[2])) return "R";
  if (lo(p[0]) && hi(p[1]) && lo(p[2])) return "G";
  if (lo(p[0]) && lo(p[1]) && hi(p[2])) return "B";
  if (hi(p[0]) && hi(p[1]) && hi(p[2])) return "W";
  return "?";
}

// The four corners (inset by 2 pixels): top-left, top-right, bottom-left, bottom-right.
std::string corners(const std::vector<uint8_t>& img, int h, int w) {
  return colour(img, w, 2, 2) + colour(img, w, 2, w - 3) + colour(img, w, h - 3, 2) + colour(img, w, h - 3, w - 3);
}

TEST(Exif, ParserReadsBothByteOrdersAndSurvivesGarbage) {
  for (int o = 1; o <= 8; ++o) {
    for (bool le : {false, true}) {
      const auto p = exif_payload(o, le);
      EXPECT_EQ(exif::orientation(p.data(), p.size()), o);
    }
  }
  auto p = exif_payload(6, false);
  EXPECT_EQ(exif::orientation(p.data(), p.size() - 8), 1) << "the entry cut off";
  EXPECT_EQ(exif::orientation(p.data(), 10), 1);
  EXPECT_EQ(exif::orientation(nullptr, 0), 1);
  auto bad = exif_payload(9, false);
  EXPECT_EQ(exif::orientation(bad.data(), bad.size()), 1) << "out of range";
  auto far = p;
  far[6 + 4] = 0x7F;  // IFD0 offset far past the end
  EXPECT_EQ(exif::orientation(far.data(), far.size()), 1);
  auto many = p;
  many[6 + 8] = 0xFF, many[6 + 9] = 0xFF;  // 65535 entries claimed: read while they are inside the segment
  EXPECT_EQ(exif::orientation(many.data(), many.size()), 6);
  many[6 + 10 + 12] = 0;  // the Orientation entry no longer is one: the walk stops at the end, no tag
  EXPECT_EQ(exif::orientation(many.data(), many.size()), 1);
  for (size_t i = 0; i < p.size(); ++i) {  // every single-byte change: no read out of bounds (ASan), any answer
    auto q = p;
    q[i] ^= 0xA5;
    const int o = exif::orientation(q.data(), q.size());
    EXPECT_TRUE(o >= 1 && o <= 8);
  }
}

TEST(Exif, StoredImageHasTheExpectedCorners) {
  set_apply_exif_orientation(true);
  const auto px = quadrants();
  const auto jpg = encode_jpeg(px.data(), H, W, 3, 95);
  std::vector<uint8_t> out(H * W * 3);
  ASSERT_TRUE(decode_to(jpg.data(), jpg.size(), H, W, 3, out.data(), nullptr));
  EXPECT_EQ(corners(out, H, W), "RGBW");
}

TEST(Exif, Orientation6TurnsClockwise) {
  set_apply_exif_orientation(true);
  const auto jpg = oriented_jpeg(6);
  ImageInfo info;
  std::string err;
  ASSERT_TRUE(image_info(jpg.data(), jpg.size(), info, &err)) << err;
  EXPECT_EQ(info.h, W) << "displayed height";
  EXPECT_EQ(info.w, H);
  std::vector<uint8_t> out(H * W * 3);
  ASSERT_TRUE(decode_to(jpg.data(), jpg.size(), W, H, 3, out.data(), &err)) << err;
  // Turned 90 degrees clockwise: the stored left column (red over blue) becomes the top row, blue on the left.
  EXPECT_EQ(corners(out, W, H), "BRWG");
  // The JPEG-only entry points agree.
  Image img;
  ASSERT_TRUE(decode_jpeg(jpg.data(), jpg.size(), 3, img, &err)) << err;
  ASSERT_EQ(img.h, W);
  ASSERT_EQ(img.w, H);
  EXPECT_EQ(img.pixels, out);
  std::vector<uint8_t> out2(out.size());
  ASSERT_TRUE(decode_jpeg_to(jpg.data(), jpg.size(), W, H, 3, out2.data(), &err)) << err;
  EXPECT_EQ(out2, out);
  // Little-endian EXIF too.
  const auto le = oriented_jpeg(6, true);
  ASSERT_TRUE(decode_to(le.data(), le.size(), W, H, 3, out2.data(), &err)) << err;
  EXPECT_EQ(out2, out);
}

TEST(Exif, Orientation3TurnsHalfway) {
  set_apply_exif_orientation(true);
  const auto jpg = oriented_jpeg(3);
  ImageInfo info;
  ASSERT_TRUE(image_info(jpg.data(), jpg.size(), info, nullptr));
  EXPECT_EQ(info.h, H);
  EXPECT_EQ(info.w, W);
  std::vector<uint8_t> out(H * W * 3);
  ASSERT_TRUE(decode_to(jpg.data(), jpg.size(), H, W, 3, out.data(), nullptr));
  EXPECT_EQ(corners(out, H, W), "WBGR");
  // Scaled down (DCT scaling on the stored image, then turned).
  std::vector<uint8_t> small(8 * 12 * 3);
  ASSERT_TRUE(decode_to(jpg.data(), jpg.size(), 8, 12, 3, small.data(), nullptr));
  EXPECT_EQ(corners(small, 8, 12), "WBGR");
}

TEST(Exif, EveryOrientationMatchesTheGeometry) {
  set_apply_exif_orientation(true);
  // Where each stored corner lands, from exif::stored_of: the displayed corners hold the stored ones it names.
  const std::string stored = "RGBW";  // TL TR BL BR
  for (int o = 1; o <= 8; ++o) {
    const auto jpg = oriented_jpeg(o);
    const bool swap = exif::swaps_axes(o);
    const int dh = swap ? W : H, dw = swap ? H : W;
    std::vector<uint8_t> out(H * W * 3);
    ASSERT_TRUE(decode_to(jpg.data(), jpg.size(), dh, dw, 3, out.data(), nullptr)) << o;
    std::string want;
    const int ys[4] = {0, 0, dh - 1, dh - 1}, xs[4] = {0, dw - 1, 0, dw - 1};
    for (int k = 0; k < 4; ++k) {
      int sy, sx;
      exif::stored_of(o, H, W, ys[k], xs[k], &sy, &sx);
      want += stored[(sy >= H / 2 ? 2 : 0) + (sx >= W / 2 ? 1 : 0)];
    }
    EXPECT_EQ(corners(out, dh, dw), want) << "orientation " << o;
  }
}

TEST(Exif, CropsAreInDisplayedCoordinates) {
  set_apply_exif_orientation(true);
  const auto jpg = oriented_jpeg(6);  // displayed 48 x 32: top half blue | red, bottom half white | green
  struct Ctx {
    int h = 0, w = 0;
  } seen;
  // The displayed top-left quadrant: all blue.
  CropChooser ch{[](const void* c, int h, int w) {
                   auto* s = const_cast<Ctx*>(static_cast<const Ctx*>(c));
                   s->h = h, s->w = w;
                   return CropBox{0, 0, h / 2, w / 2};
                 },
                 &seen};
  DecodedRegion r;
  std::string err;
  ASSERT_TRUE(decode_region(jpg.data(), jpg.size(), ch, 24, 16, 3, r, &err)) << err;
  EXPECT_EQ(seen.h, W) << "the chooser sees the displayed size";
  EXPECT_EQ(seen.w, H);
  EXPECT_EQ(r.src_h, W);
  EXPECT_EQ(r.src_w, H);
  EXPECT_EQ(r.crop.h, 24);
  EXPECT_EQ(r.crop.w, 16);
  std::vector<uint8_t> out(24 * 16 * 3);
  ASSERT_TRUE(decode_crop_to(jpg.data(), jpg.size(), ch, false, 24, 16, 3, out.data(), &err)) << err;
  EXPECT_EQ(corners(out, 24, 16), "BBBB");
}

TEST(Exif, SwitchedOffGivesTheStoredImage) {
  set_apply_exif_orientation(false);
  const auto jpg = oriented_jpeg(6);
  ImageInfo info;
  ASSERT_TRUE(image_info(jpg.data(), jpg.size(), info, nullptr));
  EXPECT_EQ(info.h, H);
  EXPECT_EQ(info.w, W);
  std::vector<uint8_t> out(H * W * 3);
  ASSERT_TRUE(decode_to(jpg.data(), jpg.size(), H, W, 3, out.data(), nullptr));
  EXPECT_EQ(corners(out, H, W), "RGBW");
  set_apply_exif_orientation(true);
  EXPECT_TRUE(apply_exif_orientation());
}

}  // namespace
}  // namespace stoke::io
