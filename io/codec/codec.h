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
// never a throw, never an abort. A reason that starts with "unsupported" means a real image of a kind this build
// does not read (12-bit or lossless JPEG, an animated WebP, a GIF); any other reason means the bytes are bad
// (corrupt, truncated, empty, not an image at all). problem_of() tells the two apart for the quarantine list.
//
// Formats: JPEG (libjpeg-turbo; EXIF orientation applied, see below), PNG (libpng) and WebP (libwebp). Whatever
// the file holds -- gray, gray + alpha, palette, RGB, RGBA, CMYK, 16-bit -- comes out as the requested channels:
// 3 = RGB, 1 = luminance with BT.601 weights (0.299 R + 0.587 G + 0.114 B, libjpeg's own); alpha is composited
// over black (a transparent pixel is black). io/codec/pixels.h has the details.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "io/codec/image.h"

namespace stoke::io {

// Header facts without decoding the pixels.
struct ImageInfo {
  const char* format = "";  // "JPEG", "PNG", "WebP"
  int h = 0, w = 0;         // as displayed: a JPEG turned by its EXIF orientation has h and w swapped
  int components = 0;       // in the file: 1 gray, 2 gray + alpha, 3 colour, 4 CMYK or colour + alpha
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

// Whether an image is gray (decode it to 1 channel without losing colour): 1 or 2 (gray + alpha) components.
inline bool is_gray(const ImageInfo& info) { return info.components == 1 || info.components == 2; }

// Why bytes did not become pixels, from the reason a decoder gave (see the error contract above).
enum class Problem { corrupt, unsupported };
Problem problem_of(const std::string& reason);
const char* problem_name(Problem p);  // "corrupt", "unsupported"

// EXIF orientation (JPEG): on by default, so images come out as every viewer shows them, and image_info reports
// the displayed height and width. Process-wide; set it before decoding starts (e.g. from a command-line flag).
void set_apply_exif_orientation(bool on);
bool apply_exif_orientation();

// Decodes the part of the image that covers the chosen crop (CropChooser: decided once the header has given
// the source size), as `channels` (1 gray, 3 RGB) whatever the file holds, at the smallest scale the format
// can decode directly that still covers target_h x target_w (JPEG: a DCT scale n/8; PNG: an area average 1/k,
// out.scale_num / out.scale_denom). out.pixels points into a per-thread buffer valid
// until this thread's next decode -- or, when the region comes out exactly target_h x target_w and
// dst_if_exact is given, straight into dst_if_exact (h*w*channels bytes) and out.pixels == dst_if_exact.
bool decode_region(const uint8_t* data, size_t size, CropChooser choose, int target_h, int target_w, int channels,
                   DecodedRegion& out, std::string* error, uint8_t* dst_if_exact = nullptr);

// decode_region + bilinear resize to exactly h x w x channels into dst (+ a horizontal mirror when flip).
bool decode_crop_to(const uint8_t* data, size_t size, CropChooser choose, bool flip, int h, int w, int channels,
                    uint8_t* dst, std::string* error);

// The largest centred crop of a src_h x src_w image with the aspect ratio of target_h x target_w (the whole image
// when the ratios agree within 1%): what torchvision's Resize(shorter side) + CenterCrop keep.
CropBox centre_crop_to_aspect(int src_h, int src_w, int target_h, int target_w);
// A CropChooser for it: ctx points at an int[2] {target_h, target_w}.
CropBox choose_centre_crop(const void* ctx, int src_h, int src_w);

// The image centre-cropped to the target's aspect and resized to exactly h x w x channels into dst.
bool decode_to(const uint8_t* data, size_t size, int h, int w, int channels, uint8_t* dst, std::string* error);

}  // namespace stoke::io
