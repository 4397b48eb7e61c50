// The codec seam: the one place that decides how a file's bytes become pixels. The format is told by the
// bytes themselves (magic numbers), never by the file name, so a PNG named .jpg is decoded as a PNG and a
// text file named .jpg is "not an image", not a corrupt JPEG.
//
// Everything above io/codec/ (indexing, packing, the decoder pool, inference, benchmarks) calls image_info()
// and decode_region() / decode_crop_to() / decode_to() below and never a format's own functions. Adding a format
// is one new file here (its Codec: a magic test, a header reader, a region decoder), one line in the table in
// codec.cpp, and its fuzz target in tests/fuzz/.
//
// Error contract, for every codec: bad data gives false and the reason in *error (when error is not null);
// never a throw, never an abort.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "io/codec/image.h"

namespace stoke::io {

// Header facts without decoding the pixels.
struct ImageInfo {
  const char* format = "";  // "JPEG", ...
  int h = 0, w = 0;
  int components = 0;       // in the file: 1 gray, 3 colour, 4 CMYK or colour + alpha
};

struct Codec {
  const char* name;
  const char* extensions;  // lower case, space-separated ("jpg jpeg"): which files an ImageFolder picks up
  // Whether these bytes start like this format (only the first few bytes are looked at).
  bool (*matches)(const uint8_t* data, size_t size);
  bool (*info)(const uint8_t* data, size_t size, ImageInfo& info, std::string* error);
  // As decode_region() below.
  bool (*decode_region)(const uint8_t* data, size_t size, CropChooser choose, int target_h, int target_w,
                        int channels, DecodedRegion& out, std::string* error, uint8_t* dst_if_exact);
};

// The codec for these bytes, or nullptr when no registered format matches.
const Codec* codec_for(const uint8_t* data, size_t size);
// "JPEG" (for messages and documentation: every registered format's name, comma-separated).
std::string supported_formats();

// Whether a file name ends in an extension of a registered format (case-insensitive): what ImageFolder indexes.
// The content still decides how the file is decoded.
bool has_image_extension(const std::string& name);
// ".jpg/.jpeg" (for messages): every registered extension.
std::string image_extensions();

bool image_info(const uint8_t* data, size_t size, ImageInfo& info, std::string* error);

// Decodes the part of the image that covers the chosen crop (CropChooser: decided once the header has given
// the source size), as `channels` (1 gray, 3 RGB) whatever the file holds, at the smallest scale the format
// can decode directly that still covers target_h x target_w. out.pixels points into a per-thread buffer valid
// until this thread's next decode -- or, when the region comes out exactly target_h x target_w and
// dst_if_exact is given, straight into dst_if_exact (h*w*channels bytes) and out.pixels == dst_if_exact.
bool decode_region(const uint8_t* data, size_t size, CropChooser choose, int target_h, int target_w, int channels,
                   DecodedRegion& out, std::string* error, uint8_t* dst_if_exact = nullptr);

// decode_region + bilinear resize to exactly h x w x channels into dst (+ a horizontal mirror when flip).
bool decode_crop_to(const uint8_t* data, size_t size, CropChooser choose, bool flip, int h, int w, int channels,
                    uint8_t* dst, std::string* error);

// The whole image resized to exactly h x w x channels into dst.
bool decode_to(const uint8_t* data, size_t size, int h, int w, int channels, uint8_t* dst, std::string* error);

}  // namespace stoke::io
