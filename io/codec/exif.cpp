#include "io/codec/exif.h"

#include <algorithm>
#include <cstring>

namespace stoke::io::exif {

int orientation(const uint8_t* p, size_t n) {
  // "Exif\0\0", then the TIFF header: byte order ("II" little, "MM" big), 42, the offset of IFD0.
  if (p == nullptr || n < 6 + 8 || std::memcmp(p, "Exif\0\0", 6) != 0) return 1;
  const uint8_t* t = p + 6;
  const size_t tn = n - 6;
  bool le;
  if (t[0] == 'I' && t[1] == 'I')
    le = true;
  else if (t[0] == 'M' && t[1] == 'M')
    le = false;
  else
    return 1;
  auto u16 = [&](size_t at) -> uint32_t {
    return le ? (t[at] | (uint32_t{t[at + 1]} << 8)) : ((uint32_t{t[at]} << 8) | t[at + 1]);
  };
  auto u32 = [&](size_t at) -> uint32_t {
    return le ? (u16(at) | (u16(at + 2) << 16)) : ((u16(at) << 16) | u16(at + 2));
  };
  if (u16(2) != 42) return 1;
  const uint32_t ifd = u32(4);
  if (ifd < 8 || ifd > tn || tn - ifd < 2) return 1;
  const uint32_t count = u16(ifd);
  for (uint32_t i = 0; i < count; ++i) {
    const size_t e = size_t{ifd} + 2 + size_t{i} * 12;
    if (e + 12 > tn) return 1;
    if (u16(e) != 0x0112) continue;
    // Type SHORT (3), count 1: the value sits in the first two bytes of the value field.
    if (u16(e + 2) != 3 || u32(e + 4) != 1) return 1;
    const uint32_t v = u16(e + 8);
    return v >= 1 && v <= 8 ? static_cast<int>(v) : 1;
  }
  return 1;
}

void stored_of(int o, int sh, int sw, int y, int x, int* sy, int* sx) {
  switch (o) {
    case 2: *sy = y, *sx = sw - 1 - x; break;
    case 3: *sy = sh - 1 - y, *sx = sw - 1 - x; break;
    case 4: *sy = sh - 1 - y, *sx = x; break;
    case 5: *sy = x, *sx = y; break;
    case 6: *sy = sh - 1 - x, *sx = y; break;
    case 7: *sy = sh - 1 - x, *sx = sw - 1 - y; break;
    case 8: *sy = x, *sx = sw - 1 - y; break;
    default: *sy = y, *sx = x; break;
  }
}

CropBox stored_box(int o, int sh, int sw, CropBox b) {
  int ay, ax, by, bx;
  stored_of(o, sh, sw, b.y, b.x, &ay, &ax);
  stored_of(o, sh, sw, b.y + b.h - 1, b.x + b.w - 1, &by, &bx);
  const int y0 = std::min(ay, by), x0 = std::min(ax, bx);
  return CropBox{y0, x0, std::max(ay, by) - y0 + 1, std::max(ax, bx) - x0 + 1};
}

void apply(int o, const uint8_t* src, int sh, int sw, int c, size_t src_stride, uint8_t* dst, size_t dst_stride) {
  const int dh = swaps_axes(o) ? sw : sh, dw = swaps_axes(o) ? sh : sw;
  for (int y = 0; y < dh; ++y) {
    uint8_t* d = dst + static_cast<size_t>(y) * dst_stride;
    for (int x = 0; x < dw; ++x) {
      int sy, sx;
      stored_of(o, sh, sw, y, x, &sy, &sx);
      const uint8_t* s = src + static_cast<size_t>(sy) * src_stride + static_cast<size_t>(sx) * c;
      for (int k = 0; k < c; ++k) d[static_cast<size_t>(x) * c + k] = s[k];
    }
  }
}

}  // namespace stoke::io::exif
