// Images in memory and the JPEG codec (libjpeg-turbo). Pixels are uint8, HWC, rows contiguous.
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

// Header facts without decoding the pixels. Returns false (and says why in *error) on bad data.
struct JpegInfo {
  int h = 0, w = 0, components = 0;
};
bool jpeg_info(const uint8_t* data, size_t size, JpegInfo& info, std::string* error);

// Decodes a whole JPEG to `channels` (1: gray, 3: RGB), whatever its own colour space.
// Never throws and never aborts on bad data: returns false with the reason in *error.
bool decode_jpeg(const uint8_t* data, size_t size, int channels, Image& out, std::string* error);

// Decodes and resizes to exactly h x w x channels into dst (caller's buffer of h*w*channels bytes), using
// libjpeg-turbo's DCT-domain scaling to the smallest scale >= the target before a bilinear resize.
// Same error contract as decode_jpeg.
bool decode_jpeg_to(const uint8_t* data, size_t size, int h, int w, int channels, uint8_t* dst, std::string* error);

// Encodes HWC pixels (c = 1 or 3) as a baseline JPEG.
std::vector<uint8_t> encode_jpeg(const uint8_t* pixels, int h, int w, int c, int quality);

// Bilinear resize (half-pixel centres, as OpenCV/PIL "bilinear" without antialiasing), HWC uint8.
void resize_bilinear(const uint8_t* src, int sh, int sw, int c, uint8_t* dst, int dh, int dw);

// Whole file into memory. Throws stoke::Error naming the file on failure.
std::vector<uint8_t> read_file(const std::string& path);
// Atomically enough for data files: write to path.tmp then rename. Throws stoke::Error on failure.
void write_file(const std::string& path, const void* data, size_t size);

}  // namespace stoke::io
