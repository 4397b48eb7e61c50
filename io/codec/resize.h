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

// One bilinear pass that resizes a source region to dh x dw and applies an affine warp on the way (the decoder
// threads' augmentation, io/pipeline/decoder_augment.h). m maps an output pixel centre (x + 0.5, y + 0.5) to a
// position in the dh x dw image the plain resize would give (as kernels/augment.h's SampleTransform::m); that
// position scaled to the source is sampled with the plain resize's taps (clamped to the edge pixels). Where the
// position falls outside that dh x dw image, the value blends into `fill` (c values) with the weight the four taps
// of a bilinear sample there would give the outside, as grid_sample with align_corners=False: so with a source of
// dh x dw this is augment_transform's geometry exactly, rounded to uint8 once. Integer arithmetic (11-bit weights).
// resize_affine's domain, which keeps its 32.32 fixed-point positions in range: |m[0]|, |m[1]|, |m[3]|, |m[4]| below
// kMaxAffineScale (a zoom of at least 1/1000) and |m[2]|, |m[5]| below kMaxAffineShift.
inline constexpr double kMaxAffineScale = 1e3, kMaxAffineShift = 1e6;
bool affine_in_domain(const double m[6]);
void resize_affine(const uint8_t* src, int sh, int sw, int c, size_t src_stride, uint8_t* dst, int dh, int dw,
                   const double m[6], const uint8_t* fill);

// Mirrors HWC pixels left-right in place.
void flip_horizontal(uint8_t* pixels, int h, int w, int c);
// Mirrors HWC pixels top-bottom in place.
void flip_vertical(uint8_t* pixels, int h, int w, int c);

}  // namespace stoke::io
