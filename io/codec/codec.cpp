#include "io/codec/codec.h"

#include <atomic>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <string_view>

#include "base/error.h"
#include "io/codec/jpeg.h"
#include "io/codec/png.h"
#include "io/codec/resize.h"
#include "io/codec/webp.h"

namespace stoke::io {

namespace {

bool jpeg_matches(const uint8_t* d, size_t n) { return n >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF; }

bool jpeg_header(const uint8_t* d, size_t n, ImageInfo& info, std::string* error) {
  JpegInfo j;
  if (!jpeg_info(d, n, j, error)) return false;
  info = ImageInfo{"JPEG", j.h, j.w, j.components};
  return true;
}

bool png_header(const uint8_t* d, size_t n, ImageInfo& info, std::string* error) {
  PngInfo p;
  if (!png_info(d, n, p, error)) return false;
  info = ImageInfo{"PNG", p.h, p.w, p.components};
  return true;
}

bool webp_header(const uint8_t* d, size_t n, ImageInfo& info, std::string* error) {
  WebpInfo p;
  if (!webp_info(d, n, p, error)) return false;
  info = ImageInfo{"WebP", p.h, p.w, p.components};
  return true;
}

// The registered formats, tried in order. One line per format.
constexpr Codec kCodecs[] = {
    {"JPEG", "jpg jpeg", jpeg_matches, jpeg_header, decode_jpeg_region},
    {"PNG", "png", png_matches, png_header, decode_png_region},
    {"WebP", "webp", webp_matches, webp_header, decode_webp_region},
};

// What the bytes look like when no codec claims them: for the message. A known image format we do not read is
// "unsupported" (problem_of), anything else is bad data.
std::string describe_unknown(const uint8_t* d, size_t n) {
  if (n == 0) return "empty file";
  using namespace std::string_view_literals;  // "..."sv keeps embedded zero bytes
  auto starts = [&](std::string_view magic, size_t at = 0) {
    return n >= at + magic.size() && std::memcmp(d + at, magic.data(), magic.size()) == 0;
  };
  const char* kind = nullptr;
  if (starts("\x89PNG\r\n\x1a\n"sv)) kind = "PNG";
  else if (starts("RIFF"sv) && starts("WEBP"sv, 8)) kind = "WebP";
  else if (starts("GIF87a"sv) || starts("GIF89a"sv)) kind = "GIF";
  else if (starts("BM"sv)) kind = "BMP";
  else if (starts("II*"sv) || starts("MM\x00*"sv)) kind = "TIFF";
  else if (starts("ftypheic"sv, 4) || starts("ftypheix"sv, 4) || starts("ftypmif1"sv, 4)) kind = "HEIF";
  else if (starts("ftypavif"sv, 4)) kind = "AVIF";
  else if (starts("\xff\x0a"sv) || starts("\x00\x00\x00\x0cJXL "sv)) kind = "JPEG XL";
  else if (starts("\x00\x00\x00\x0cjP  "sv)) kind = "JPEG 2000";
  if (kind) return str("unsupported format: a ", kind, " image");
  return "not an image (unrecognised content)";
}

const Codec* find(const uint8_t* data, size_t size, std::string* error) {
  if (const Codec* c = codec_for(data, size)) return c;
  if (error) *error = describe_unknown(data, size) + "; readable formats: " + supported_formats();
  return nullptr;
}

}  // namespace

Problem problem_of(const std::string& reason) {
  return reason.rfind("unsupported", 0) == 0 ? Problem::unsupported : Problem::corrupt;
}

const char* problem_name(Problem p) { return p == Problem::unsupported ? "unsupported" : "corrupt"; }

namespace {
std::atomic<bool> g_exif_orientation{true};
}  // namespace

void set_apply_exif_orientation(bool on) { g_exif_orientation.store(on, std::memory_order_relaxed); }
bool apply_exif_orientation() { return g_exif_orientation.load(std::memory_order_relaxed); }

const Codec* codec_for(const uint8_t* data, size_t size) {
  if (data == nullptr) return nullptr;
  for (const Codec& c : kCodecs)
    if (c.matches(data, size)) return &c;
  return nullptr;
}

std::string supported_formats() {
  std::string s;
  for (const Codec& c : kCodecs) s += (s.empty() ? "" : ", ") + std::string(c.name);
  return s;
}

namespace {
// Calls f(extension) for every registered extension.
template <typename F>
void for_each_extension(F f) {
  for (const Codec& c : kCodecs) {
    const std::string all = c.extensions;
    for (size_t b = 0; b < all.size();) {
      size_t e = all.find(' ', b);
      if (e == std::string::npos) e = all.size();
      if (e > b) f(all.substr(b, e - b));
      b = e + 1;
    }
  }
}
}  // namespace

bool has_image_extension(const std::string& name) {
  const size_t dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0) return false;
  std::string ext = name.substr(dot + 1);
  for (char& ch : ext)
    if (ch >= 'A' && ch <= 'Z') ch = static_cast<char>(ch - 'A' + 'a');
  bool found = false;
  for_each_extension([&](const std::string& e) { found = found || e == ext; });
  return found;
}

std::string image_extensions() {
  std::string s;
  for_each_extension([&](const std::string& e) { s += (s.empty() ? "." : "/.") + e; });
  return s;
}

bool image_info(const uint8_t* data, size_t size, ImageInfo& info, std::string* error) {
  const Codec* c = find(data, size, error);
  return c != nullptr && c->info(data, size, info, error);
}

bool decode_region(const uint8_t* data, size_t size, CropChooser choose, int target_h, int target_w, int channels,
                   DecodedRegion& out, std::string* error, uint8_t* dst_if_exact) {
  const Codec* c = find(data, size, error);
  return c != nullptr && c->decode_region(data, size, choose, target_h, target_w, channels, out, error, dst_if_exact);
}

bool decode_crop_to(const uint8_t* data, size_t size, CropChooser choose, bool flip, int h, int w, int channels,
                    uint8_t* dst, std::string* error) {
  DecodedRegion r;
  if (!decode_region(data, size, choose, h, w, channels, r, error, dst)) return false;
  if (r.pixels != dst) resize_bilinear_strided(r.pixels, r.h, r.w, channels, r.stride, dst, h, w);
  if (flip) flip_horizontal(dst, h, w, channels);
  return true;
}

CropBox centre_crop_to_aspect(int src_h, int src_w, int target_h, int target_w) {
  const double target = static_cast<double>(target_w) / target_h, source = static_cast<double>(src_w) / src_h;
  if (std::abs(source / target - 1.0) < 0.01) return CropBox{0, 0, src_h, src_w};
  int h = src_h, w = src_w;
  if (source > target)
    w = std::clamp(static_cast<int>(std::lround(src_h * target)), 1, src_w);
  else
    h = std::clamp(static_cast<int>(std::lround(src_w / target)), 1, src_h);
  return CropBox{(src_h - h) / 2, (src_w - w) / 2, h, w};
}

CropBox choose_centre_crop(const void* ctx, int src_h, int src_w) {
  const int* t = static_cast<const int*>(ctx);
  return centre_crop_to_aspect(src_h, src_w, t[0], t[1]);
}

bool decode_to(const uint8_t* data, size_t size, int h, int w, int channels, uint8_t* dst, std::string* error) {
  const int target[2] = {h, w};
  return decode_crop_to(data, size, CropChooser{&choose_centre_crop, target}, false, h, w, channels, dst, error);
}

}  // namespace stoke::io
