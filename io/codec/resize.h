// Bilinear resizing and mirroring of uint8 HWC pixels.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stoke::io {

// Bilinear resize (half-pixel centres, as OpenCV/PIL "bilinear" without antialiasing), HWC uint8.
void resize_bilinear(const uint8_t* src, int sh, int sw, int c, uint8_t* dst, int dh, int dw);

// resize_bilinear from a source whose rows are src_stride bytes apart (a region of a larger image).
void resize_bilinear_strided(const uint8_t* src, int sh, int sw, int c, size_t src_stride, uint8_t* dst, int dh,
                             int dw);

// Mirrors HWC pixels left-right in place.
void flip_horizontal(uint8_t* pixels, int h, int w, int c);

}  // namespace stoke::io
