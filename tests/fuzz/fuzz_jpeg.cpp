// libFuzzer target: the JPEG path (header probe, full decode, decode with DCT scaling + resize).
// The first byte picks the output geometry so the fuzzer explores scaling and cropping too.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/codec/jpeg.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const uint8_t* jpg = data + 1;
  const size_t n = size - 1;
  std::string err;
  stoke::io::JpegInfo info;
  stoke::io::jpeg_info(jpg, n, info, &err);
  const int channels = (mode & 1) ? 3 : 1;
  stoke::io::Image img;
  stoke::io::decode_jpeg(jpg, n, channels, img, &err);
  static const int sizes[8] = {1, 7, 28, 32, 64, 97, 224, 300};
  const int h = sizes[(mode >> 1) & 7], w = sizes[(mode >> 4) & 7];
  std::vector<uint8_t> dst(static_cast<size_t>(h) * w * channels);
  stoke::io::decode_jpeg_to(jpg, n, h, w, channels, dst.data(), &err);
  return 0;
}
