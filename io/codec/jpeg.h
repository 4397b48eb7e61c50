// The JPEG codec (libjpeg-turbo): header facts, whole and region decoding with DCT-domain scaling, encoding.
// Every decoder returns false with the reason on bad data: never a throw, never an abort.
// Every decoder applies the EXIF orientation (APP1 "Exif", tag 0x0112; io/codec/exif.h) unless it is turned off
// with set_apply_exif_orientation(false): sizes, crops and pixels are those of the image as viewers show it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/codec/image.h"

namespace stoke::io {

// Header facts without decoding the pixels. Returns false (and says why in *error) on bad data.
// h and w are as displayed: swapped when the EXIF orientation (applied unless set_apply_exif_orientation(false),
// io/codec/codec.h) turns the image by 90 degrees.
struct JpegInfo {
  int h = 0, w = 0, components = 0;
  int orientation = 1;  // EXIF orientation 1..8 (1 when absent or not applied)
};
bool jpeg_info(const uint8_t* data, size_t size, JpegInfo& info, std::string* error);

// Decodes a whole JPEG to `channels` (1: gray, 3: RGB), whatever its own colour space.
// Never throws and never aborts on bad data: returns false with the reason in *error.
bool decode_jpeg(const uint8_t* data, size_t size, int channels, Image& out, std::string* error);

// Decodes and resizes to exactly h x w x channels into dst (caller's buffer of h*w*channels bytes), using
// libjpeg-turbo's DCT-domain scaling to the smallest scale >= the target before a bilinear resize.
// Same error contract as decode_jpeg.
bool decode_jpeg_to(const uint8_t* data, size_t size, int h, int w, int channels, uint8_t* dst, std::string* error);

// Decodes the part of a JPEG that covers the chosen crop, at the smallest DCT scale n/8 (n in 1, 2, 4, 8) at
// which the crop still covers target_h x target_w, skipping the rows above and below it
// (jpeg_skip_scanlines) and the iMCU columns left and right of it (jpeg_crop_scanline). The crop edges are
// rounded outwards to whole pixels of the scaled image.
// out.pixels points into a per-thread buffer, valid until this thread's next decode -- or, when the region
// comes out exactly target_h x target_w without cropping and dst_if_exact is given, the pixels are decoded
// straight into dst_if_exact (h*w*channels bytes) and out.pixels == dst_if_exact.
// Same error contract as decode_jpeg: false with the reason, never a throw, never an abort.
bool decode_jpeg_region(const uint8_t* data, size_t size, CropChooser choose, int target_h, int target_w,
                        int channels, DecodedRegion& out, std::string* error, uint8_t* dst_if_exact = nullptr);

// decode_jpeg_region + resize to exactly h x w x channels into dst (+ a horizontal mirror when flip).
bool decode_jpeg_crop_to(const uint8_t* data, size_t size, CropChooser choose, bool flip, int h, int w,
                         int channels, uint8_t* dst, std::string* error);

// Encodes HWC pixels (c = 1 or 3) as a baseline JPEG.
std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int h, int w, int c, int quality);

}  // namespace stoke::io
