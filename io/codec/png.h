// The PNG codec (libpng): header facts, and a crop decoded row by row into an area average near the target size.
//
// Every PNG kind maps to the requested channels (io/codec/pixels.h has the rules): gray, gray + alpha, palette
// (with or without transparency), RGB, RGBA, at 1, 2, 4, 8 or 16 bits per sample, interlaced or not. 16-bit
// samples are scaled to 8 bits with rounding; alpha (an alpha channel or a tRNS chunk) is composited over black;
// 1 channel is BT.601 luminance, as for JPEG. Gamma and colour-profile chunks are ignored (the stored values are
// used as they are, as torchvision and PIL do). An animated PNG gives its default image.
//
// Limits as for JPEG: at most 16384 per side and 100 megapixels; and a header whose pixels could not fit in the
// file even at deflate's best ratio is called truncated before anything is allocated. Within them any size costs
// a decoder a few hundred KB: the rows stream through an area average to about the training size.
// Error contract as every codec (io/codec/codec.h): false and the reason, never a throw, never an abort.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/codec/image.h"

namespace stoke::io {

bool png_matches(const uint8_t* data, size_t size);

struct PngInfo {
  int h = 0, w = 0;
  int components = 0;  // 1 gray, 2 gray + alpha, 3 RGB or palette, 4 with alpha (a channel or tRNS)
  int bit_depth = 0;   // as stored: 1, 2, 4, 8 or 16
};
bool png_info(const uint8_t* data, size_t size, PngInfo& info, std::string* error);

// As io::decode_region (io/codec/codec.h). Reads the image a row at a time and area-averages the crop by k, the
// largest integer factor at which it still covers target_h x target_w (the region is then at least the target and
// under twice it per side, as JPEG's DCT scaling gives; k = 1, the crop as it is, when it is smaller than twice
// the target). Memory: one source row and the reduced crop (for an interlaced image, its sums), not the image.
bool decode_png_region(const uint8_t* data, size_t size, CropChooser choose, int target_h, int target_w, int channels,
                       DecodedRegion& out, std::string* error, uint8_t* dst_if_exact = nullptr);

// Encodes 8-bit HWC pixels (c = 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA) as a PNG: for tests and tools.
std::vector<uint8_t> encode_png(const uint8_t* pixels, int h, int w, int c);

}  // namespace stoke::io
