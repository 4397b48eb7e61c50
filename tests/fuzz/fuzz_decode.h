// The body of the per-format libFuzzer targets (fuzz_png.cpp, fuzz_webp.cpp): the format's path through the codec
// seam (io/codec/codec.h) — header probe, whole-image region decode with and without a crop, decode + resize, to 1
// and 3 channels. The first byte picks the channels, the target size and the crop, so the fuzzer explores the crop
// and conversion paths too. A target defines its format's name and magic test, then includes this file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/codec/codec.h"

namespace {

stoke::io::CropBox pick_crop(const void* ctx, int h, int w) {
  const uint8_t m = *static_cast<const uint8_t*>(ctx);
  // Anything, even out of range: the codec clamps it.
  return stoke::io::CropBox{(m & 3) * h / 5 - (m >> 7), ((m >> 2) & 3) * w / 5, h / (1 + (m >> 4 & 3)) + (m >> 6),
                            w / (1 + (m >> 5 & 3))};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0], crop_mode = data[1];
  const uint8_t* img = data + 2;
  const size_t n = size - 2;
  std::string err;
  stoke::io::ImageInfo info;
  const bool header = stoke::io::image_info(img, n, info, &err);
  // The header reader and the magic test agree on what this format claims.
  if (header && std::string(info.format) == kFormat && !kMatches(img, n)) __builtin_trap();
  const int channels = (mode & 1) ? 3 : 1;
  static const int sizes[8] = {1, 3, 16, 28, 32, 64, 97, 224};
  const int h = sizes[(mode >> 1) & 7], w = sizes[(mode >> 4) & 7];
  std::vector<uint8_t> dst(static_cast<size_t>(h) * w * channels);
  stoke::io::DecodedRegion r;
  const stoke::io::CropChooser chooser{(mode & 0x80) ? pick_crop : nullptr, &crop_mode};
  if (stoke::io::decode_region(img, n, chooser, h, w, channels, r, &err, (mode & 0x80) ? nullptr : dst.data())) {
    // Touch every byte of the region handed back (ASan checks the pointer arithmetic).
    unsigned sum = 0;
    for (int y = 0; y < r.h; ++y)
      for (size_t x = 0; x < static_cast<size_t>(r.w) * r.c; ++x) sum += r.pixels[y * r.stride + x];
    if (r.c != channels || r.h <= 0 || r.w <= 0 || sum == 0xFFFFFFFFu) __builtin_trap();
    if (header && (r.src_h != info.h || r.src_w != info.w)) __builtin_trap();
  }
  stoke::io::decode_to(img, n, h, w, channels, dst.data(), &err);
  return 0;
}
