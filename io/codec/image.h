// Images in memory and what a decoder hands back: pixels are uint8, HWC, rows contiguous.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace stoke::io {

struct Image {
  int h = 0, w = 0, c = 0;  // c = 1 (gray) or 3 (RGB)
  std::vector<uint8_t> pixels;
};

// A rectangle in source-image pixels. h <= 0 or w <= 0 means the whole image.
struct CropBox {
  int y = 0, x = 0, h = 0, w = 0;
};

// Chooses the crop once the header has given the source size (random-resized-crop needs it). fn == nullptr:
// the whole image. A plain function pointer and context: no allocation, no exceptions across libjpeg.
struct CropChooser {
  CropBox (*fn)(const void* ctx, int src_h, int src_w) = nullptr;
  const void* ctx = nullptr;
};

// The decoded crop: `h` rows of `w` pixels x `c` channels, rows `stride` bytes apart.
struct DecodedRegion {
  const uint8_t* pixels = nullptr;
  int h = 0, w = 0, c = 0;
  size_t stride = 0;
  int src_h = 0, src_w = 0;  // the JPEG's own size
  CropBox crop;              // the crop chosen, clamped to the image (source pixels)
  // The scale of the region against the crop, scale_num / scale_denom: JPEG's DCT scaling n/8; PNG's area average
  // of k x k pixels, 1/k (each region pixel the mean of a k x k block of the crop, fewer at its bottom and right).
  int scale_num = 8, scale_denom = 8;
};

}  // namespace stoke::io
