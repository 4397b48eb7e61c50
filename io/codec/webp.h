// The WebP codec (libwebp): header facts and whole-image decoding handed back as a crop region.
//
// Lossy (VP8, with or without an alpha plane) and lossless (VP8L) still images map to the requested channels by
// the rules of io/codec/pixels.h: alpha composited over black, 1 channel = BT.601 luminance. An animated WebP
// is a real image of a kind we do not read: "unsupported". Limits as for JPEG (WebP itself stops at 16383 per
// side): at most 100 megapixels.
// Error contract as every codec (io/codec/codec.h): false and the reason, never a throw, never an abort.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/codec/image.h"

namespace stoke::io {

bool webp_matches(const uint8_t* data, size_t size);

struct WebpInfo {
  int h = 0, w = 0;
  int components = 0;     // 3, or 4 with alpha
  bool lossless = false;
};
bool webp_info(const uint8_t* data, size_t size, WebpInfo& info, std::string* error);

// As io::decode_region (io/codec/codec.h): decodes the whole image, hands back the crop (scale_num = 8).
bool decode_webp_region(const uint8_t* data, size_t size, CropChooser choose, int target_h, int target_w,
                        int channels, DecodedRegion& out, std::string* error, uint8_t* dst_if_exact = nullptr);

// Encodes 8-bit HWC pixels (c = 3 RGB or 4 RGBA) as a WebP, lossless or lossy at `quality` (0..100): for tests
// and tools.
std::vector<uint8_t> encode_webp(const uint8_t* pixels, int h, int w, int c, bool lossless, float quality = 90);

}  // namespace stoke::io
