#include "io/codec/pixels.h"

#include <algorithm>

#include "base/error.h"

namespace stoke::io::pixels {

bool dims_ok(const char* format, uint64_t h, uint64_t w, std::string* error) {
  if (h > 0 && w > 0 && h <= kMaxSide && w <= kMaxSide && h * w <= kMaxPixels) return true;
  if (error)
    *error = str(format, " dimensions ", w, "x", h, " are out of range (at least 1, at most ", kMaxSide,
                 " per side and ", kMaxPixels, " pixels)");
  return false;
}

bool target_ok(int channels, int h, int w, std::string* error) {
  if (channels != 1 && channels != 3) {
    if (error) *error = str("cannot decode to ", channels, " channels (1 or 3)");
    return false;
  }
  if (h <= 0 || w <= 0) {
    if (error) *error = str("bad decode target ", h, "x", w);
    return false;
  }
  return true;
}

namespace {
inline unsigned over_black(unsigned c, unsigned a) { return (c * a + 127) / 255; }
}  // namespace

void convert(const uint8_t* src, size_t src_stride, int in_c, int y, int x, int h, int w, int channels, uint8_t* dst,
             size_t dst_stride) {
  for (int r = 0; r < h; ++r) {
    const uint8_t* s = src + static_cast<size_t>(y + r) * src_stride + static_cast<size_t>(x) * in_c;
    uint8_t* d = dst + static_cast<size_t>(r) * dst_stride;
    switch (in_c * 4 + channels) {
      case 1 * 4 + 1:
        std::copy(s, s + w, d);
        break;
      case 1 * 4 + 3:
        for (int i = 0; i < w; ++i) d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = s[i];
        break;
      case 2 * 4 + 1:
        for (int i = 0; i < w; ++i) d[i] = static_cast<uint8_t>(over_black(s[2 * i], s[2 * i + 1]));
        break;
      case 2 * 4 + 3:
        for (int i = 0; i < w; ++i)
          d[3 * i] = d[3 * i + 1] = d[3 * i + 2] = static_cast<uint8_t>(over_black(s[2 * i], s[2 * i + 1]));
        break;
      case 3 * 4 + 1:
        for (int i = 0; i < w; ++i) d[i] = luma(s[3 * i], s[3 * i + 1], s[3 * i + 2]);
        break;
      case 3 * 4 + 3:
        std::copy(s, s + 3 * static_cast<size_t>(w), d);
        break;
      case 4 * 4 + 1:
        for (int i = 0; i < w; ++i) {
          const unsigned a = s[4 * i + 3];
          d[i] = luma(over_black(s[4 * i], a), over_black(s[4 * i + 1], a), over_black(s[4 * i + 2], a));
        }
        break;
      case 4 * 4 + 3:
        for (int i = 0; i < w; ++i) {
          const unsigned a = s[4 * i + 3];
          d[3 * i] = static_cast<uint8_t>(over_black(s[4 * i], a));
          d[3 * i + 1] = static_cast<uint8_t>(over_black(s[4 * i + 1], a));
          d[3 * i + 2] = static_cast<uint8_t>(over_black(s[4 * i + 2], a));
        }
        break;
      default:
        STOKE_CHECK(false, "pixels::convert from ", in_c, " to ", channels, " channels");
    }
  }
}

CropBox choose_crop(CropChooser choose, int ih, int iw) {
  CropBox cb = choose.fn ? choose.fn(choose.ctx, ih, iw) : CropBox{};
  if (cb.h <= 0 || cb.w <= 0) cb = CropBox{0, 0, ih, iw};
  cb.y = std::clamp(cb.y, 0, ih - 1);
  cb.x = std::clamp(cb.x, 0, iw - 1);
  cb.h = std::clamp(cb.h, 1, ih - cb.y);
  cb.w = std::clamp(cb.w, 1, iw - cb.x);
  return cb;
}

void size_buffer(std::vector<uint8_t>& v, size_t n) {
  if (v.capacity() > (size_t{64} << 20) && n <= (size_t{64} << 20)) std::vector<uint8_t>().swap(v);
  if (v.size() < n) v.resize(n);
}

namespace {
thread_local std::vector<uint8_t> t_region;
}  // namespace

void region_from_whole(const uint8_t* src, size_t src_stride, int in_c, int ih, int iw, CropChooser choose,
                       int target_h, int target_w, int channels, DecodedRegion& out, uint8_t* dst_if_exact) {
  const CropBox cb = choose_crop(choose, ih, iw);
  out = DecodedRegion{};
  out.src_h = ih;
  out.src_w = iw;
  out.crop = cb;
  out.scale_num = 8;
  out.c = channels;
  out.h = cb.h;
  out.w = cb.w;
  out.stride = static_cast<size_t>(cb.w) * channels;
  uint8_t* dst = nullptr;
  if (dst_if_exact && cb.h == target_h && cb.w == target_w) {
    dst = dst_if_exact;
  } else {
    size_buffer(t_region, static_cast<size_t>(cb.h) * out.stride);
    dst = t_region.data();
  }
  convert(src, src_stride, in_c, cb.y, cb.x, cb.h, cb.w, channels, dst, out.stride);
  out.pixels = dst;
}

}  // namespace stoke::io::pixels
