#include "io/codec/webp.h"

#include <webp/decode.h>
#include <webp/encode.h>

#include <cstring>

#include "base/error.h"
#include "io/codec/pixels.h"

namespace stoke::io {

namespace {

void set_error(std::string* error, const std::string& msg) {
  if (error) *error = msg;
}

// The reason for a libwebp status: UNSUPPORTED_FEATURE is a real WebP we cannot read, everything else bad data.
std::string status_text(VP8StatusCode s) {
  switch (s) {
    case VP8_STATUS_OK: return "ok";
    case VP8_STATUS_OUT_OF_MEMORY: return "WebP: out of memory";
    case VP8_STATUS_INVALID_PARAM: return "WebP: invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "WebP: bitstream error (corrupt data)";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported WebP feature";
    case VP8_STATUS_SUSPENDED: return "WebP: decoding suspended";
    case VP8_STATUS_USER_ABORT: return "WebP: decoding aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "truncated WebP file (the data ends early)";
  }
  return "WebP: unknown decoder status";
}

// The header checks shared by webp_info and the decoder.
bool open_webp(const uint8_t* data, size_t size, WebPBitstreamFeatures& f, std::string* error) {
  if (!webp_matches(data, size)) {
    set_error(error, "not a WebP file (no RIFF/WEBP signature)");
    return false;
  }
  const VP8StatusCode s = WebPGetFeatures(data, size, &f);
  if (s != VP8_STATUS_OK) {
    set_error(error, status_text(s));
    return false;
  }
  if (f.has_animation) {
    set_error(error, "unsupported WebP kind: an animation (only still images are read)");
    return false;
  }
  return pixels::dims_ok("WebP", static_cast<uint64_t>(f.height), static_cast<uint64_t>(f.width), error);
}

thread_local std::vector<uint8_t> t_pixels;  // the decoded image, RGB or RGBA

bool decode_region_impl(const uint8_t* data, size_t size, CropChooser choose, int th, int tw, int channels,
                        DecodedRegion& out, std::string* error, uint8_t* dst_exact) {
  if (!pixels::target_ok(channels, th, tw, error)) return false;
  WebPDecoderConfig config;
  if (!WebPInitDecoderConfig(&config)) {
    set_error(error, "WebP: library version mismatch");
    return false;
  }
  if (!open_webp(data, size, config.input, error)) return false;
  const int ih = config.input.height, iw = config.input.width;
  const int in_c = config.input.has_alpha ? 4 : 3;
  const size_t stride = static_cast<size_t>(iw) * in_c;
  pixels::size_buffer(t_pixels, stride * ih);
  config.output.colorspace = in_c == 4 ? MODE_RGBA : MODE_RGB;
  config.output.is_external_memory = 1;
  config.output.u.RGBA.rgba = t_pixels.data();
  config.output.u.RGBA.stride = static_cast<int>(stride);
  config.output.u.RGBA.size = stride * ih;
  const VP8StatusCode s = WebPDecode(data, size, &config);
  WebPFreeDecBuffer(&config.output);  // nothing to free with external memory; kept for symmetry with the API
  if (s != VP8_STATUS_OK) {
    set_error(error, status_text(s));
    return false;
  }
  pixels::region_from_whole(t_pixels.data(), stride, in_c, ih, iw, choose, th, tw, channels, out, dst_exact);
  return true;
}

}  // namespace

bool webp_matches(const uint8_t* d, size_t n) {
  return d != nullptr && n >= 12 && std::memcmp(d, "RIFF", 4) == 0 && std::memcmp(d + 8, "WEBP", 4) == 0;
}

bool webp_info(const uint8_t* data, size_t size, WebpInfo& info, std::string* error) {
  WebPBitstreamFeatures f;
  if (!open_webp(data, size, f, error)) return false;
  info.h = f.height;
  info.w = f.width;
  info.components = f.has_alpha ? 4 : 3;
  info.lossless = f.format == 2;
  return true;
}

bool decode_webp_region(const uint8_t* data, size_t size, CropChooser choose, int target_h, int target_w,
                        int channels, DecodedRegion& out, std::string* error, uint8_t* dst_if_exact) {
  try {
    return decode_region_impl(data, size, choose, target_h, target_w, channels, out, error, dst_if_exact);
  } catch (const std::exception& e) {  // a buffer that cannot be allocated
    out = DecodedRegion{};
    set_error(error, str("WebP decoding failed: ", e.what()));
    return false;
  }
}

std::vector<uint8_t> encode_webp(const uint8_t* pixels, int h, int w, int c, bool lossless, float quality) {
  STOKE_CHECK(pixels != nullptr && h > 0 && w > 0 && (c == 3 || c == 4), "encode_webp(", h, "x", w, "x", c, ")");
  uint8_t* buf = nullptr;
  const int stride = w * c;
  size_t n = 0;
  if (lossless)
    n = c == 3 ? WebPEncodeLosslessRGB(pixels, w, h, stride, &buf) : WebPEncodeLosslessRGBA(pixels, w, h, stride, &buf);
  else
    n = c == 3 ? WebPEncodeRGB(pixels, w, h, stride, quality, &buf)
               : WebPEncodeRGBA(pixels, w, h, stride, quality, &buf);
  if (n == 0 || buf == nullptr) {
    WebPFree(buf);
    throw Error(str("WebP encoding of ", w, "x", h, "x", c, " failed"));
  }
  std::vector<uint8_t> out(buf, buf + n);
  WebPFree(buf);
  return out;
}

}  // namespace stoke::io
