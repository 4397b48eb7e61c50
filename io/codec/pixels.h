// What the whole-image decoders (PNG, WebP) share: the limits, the crop a CropChooser asks for clamped to the
// image, and the one conversion from what a file holds to what a caller asked for.
//
// Channel rules (every format; JPEG's own path applies the same weights):
//   - gray (1), gray + alpha (2), RGB (3), RGBA (4) at 8 bits per channel come in; palettes, 1/2/4-bit gray and
//     16-bit samples are expanded or scaled (rounded) to this by the format's decoder first;
//   - alpha is composited over black: c' = round(c * a / 255), so a fully transparent pixel is black whatever
//     colour it stores (what a viewer with a black background shows; dropping alpha would instead expose the
//     arbitrary colours transparent pixels often hold);
//   - 1 channel out of colour: luminance with ITU-R BT.601 weights, 0.299 R + 0.587 G + 0.114 B (libjpeg's
//     RGB -> gray, in 16-bit fixed point); 3 channels out of gray: the gray value in R, G and B.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/codec/image.h"

namespace stoke::io::pixels {

inline constexpr int kMaxSide = 16384;                  // per side, as the JPEG path
inline constexpr uint64_t kMaxPixels = 100'000'000;     // per image, as the JPEG path

// Whether h x w is within the limits; if not, *error says so (naming `format`).
bool dims_ok(const char* format, uint64_t h, uint64_t w, std::string* error);
// A decode target every codec accepts: 1 or 3 channels, a positive size. False with the reason otherwise.
bool target_ok(int channels, int h, int w, std::string* error);

// BT.601 luma of 8-bit R, G, B (libjpeg's weights, 16-bit fixed point).
inline uint8_t luma(unsigned r, unsigned g, unsigned b) {
  return static_cast<uint8_t>((19595u * r + 38470u * g + 7471u * b + 32768u) >> 16);
}

// Rows [y, y + h), columns [x, x + w) of an 8-bit image with in_c channels (1 G, 2 GA, 3 RGB, 4 RGBA; rows
// src_stride bytes apart) into dst as `channels` (1 or 3; rows dst_stride bytes apart), by the rules above.
void convert(const uint8_t* src, size_t src_stride, int in_c, int y, int x, int h, int w, int channels, uint8_t* dst,
             size_t dst_stride);

// The crop the chooser picks for an ih x iw image, clamped into it (the whole image when it picks none).
CropBox choose_crop(CropChooser choose, int ih, int iw);

// Hands back the chosen crop of a fully decoded image (src: ih x iw x in_c, rows src_stride apart) as a
// DecodedRegion of `channels`: into dst_if_exact when the crop is exactly target_h x target_w, else into the
// calling thread's buffer.
void region_from_whole(const uint8_t* src, size_t src_stride, int in_c, int ih, int iw, CropChooser choose,
                       int target_h, int target_w, int channels, DecodedRegion& out, uint8_t* dst_if_exact);

// Makes a per-thread buffer hold at least n bytes: grows, never shrinks, except that a giant image's capacity
// (> 64 MiB) is dropped when a normal one follows.
void size_buffer(std::vector<uint8_t>& v, size_t n);

}  // namespace stoke::io::pixels
