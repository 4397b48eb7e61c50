// The JPEG codec over libjpeg-turbo's libjpeg API.
//
// libjpeg reports fatal errors through error_exit(), which must not return. We longjmp out of it back to a
// setjmp() taken in a small function that holds no C++ objects with destructors (the "phase" functions
// below); everything that owns memory lives in the callers, outside the setjmp frames. So a corrupt or
// truncated file costs a `return false` with libjpeg's own message, never an exit() or a crash.

#include "io/codec/jpeg.h"

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>

// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>

#include "base/error.h"
#include "io/codec/codec.h"
#include "io/codec/exif.h"
#include "io/codec/jpeg_errors.h"
#include "io/codec/pixels.h"
#include "io/codec/resize.h"

namespace stoke::io {

namespace {

using jpeg_detail::ErrorMgr;

constexpr JDIMENSION kMaxSide = 16384;               // per side
constexpr uint64_t kMaxPixels = 100'000'000;         // per image
constexpr int kMaxScans = 500;                       // progressive scans (a crafted file can hold thousands)

using jpeg_detail::install_error_mgr;

// Bounds the work a crafted progressive file can ask for (libjpeg-turbo's TurboJPEG API does the same).
void on_progress(j_common_ptr cinfo) {
  if (!cinfo->is_decompressor) return;
  auto* d = reinterpret_cast<j_decompress_ptr>(cinfo);
  if (d->input_scan_number > kMaxScans) {
    auto* err = reinterpret_cast<ErrorMgr*>(cinfo->err);
    std::snprintf(err->message, sizeof err->message, "progressive JPEG has more than %d scans", kMaxScans);
    longjmp(err->jump, 1);
  }
}

// ---- the decoder: one libjpeg decompressor per thread, reused --------------------------------------------

struct Decoder {
  jpeg_decompress_struct cinfo;
  ErrorMgr err;
  jpeg_progress_mgr progress;
  bool created = false;
  int orientation = 1;  // EXIF orientation of the file whose header was read last (1 when not applied)

  Decoder() {
    std::memset(&cinfo, 0, sizeof cinfo);
    std::memset(&progress, 0, sizeof progress);
    progress.progress_monitor = on_progress;
    created = create();
  }
  ~Decoder() {
    if (created) jpeg_destroy_decompress(&cinfo);
  }
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  bool create() {
    install_error_mgr(err);
    cinfo.err = &err.pub;
    if (setjmp(err.jump)) return false;
    jpeg_create_decompress(&cinfo);
    return true;
  }

  // Phase 1: the headers, up to the first scan.
  bool read_header(const uint8_t* data, size_t size) {
    install_error_mgr(err);
    if (setjmp(err.jump)) {
      jpeg_abort_decompress(&cinfo);
      return false;
    }
    cinfo.progress = nullptr;
    orientation = 1;
    const bool exif = apply_exif_orientation();
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, exif ? 0xFFFF : 0);  // APP1: EXIF
    jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
    jpeg_read_header(&cinfo, TRUE);
    if (exif) {
      for (jpeg_saved_marker_ptr m = cinfo.marker_list; m != nullptr; m = m->next) {
        if (m->marker != JPEG_APP0 + 1) continue;
        const int o = exif::orientation(m->data, m->data_length);
        if (o != 1 || (m->data_length >= 6 && std::memcmp(m->data, "Exif\0\0", 6) == 0)) {
          orientation = o;
          break;  // the first EXIF segment decides
        }
      }
    }
    return true;
  }

  // Phase 2: output geometry for the parameters the caller set on cinfo.
  bool calc_output() {
    if (setjmp(err.jump)) {
      jpeg_abort_decompress(&cinfo);
      return false;
    }
    jpeg_calc_output_dimensions(&cinfo);
    return true;
  }

  // Phase 3: every scanline into dst (rows of output_width * output_components bytes, contiguous).
  bool read_pixels(uint8_t* dst) {
    if (setjmp(err.jump)) {
      jpeg_abort_decompress(&cinfo);
      return false;
    }
    cinfo.progress = cinfo.progressive_mode ? &progress : nullptr;
    jpeg_start_decompress(&cinfo);
    const size_t stride = static_cast<size_t>(cinfo.output_width) * static_cast<size_t>(cinfo.output_components);
    JSAMPROW rows[16];
    while (cinfo.output_scanline < cinfo.output_height) {
      JDIMENSION n = std::min<JDIMENSION>(16, cinfo.output_height - cinfo.output_scanline);
      for (JDIMENSION i = 0; i < n; ++i) rows[i] = dst + (cinfo.output_scanline + i) * stride;
      jpeg_read_scanlines(&cinfo, rows, n);
    }
    // Skip jpeg_finish_decompress: it would only parse what follows the last scan (a missing EOI is fine).
    jpeg_abort_decompress(&cinfo);
    return true;
  }

  // Phase 3b: rows [skip, skip + rows) of the output, optionally only the columns jpeg_crop_scanline keeps
  // (*xoff, *width in: wanted, out: widened to iMCU boundaries; xoff == nullptr: every column), into dst
  // (rows of the resulting output_width * output_components bytes, contiguous).
  bool read_region(uint8_t* dst, JDIMENSION* xoff, JDIMENSION* width, JDIMENSION skip, JDIMENSION rows) {
    if (setjmp(err.jump)) {
      jpeg_abort_decompress(&cinfo);
      return false;
    }
    cinfo.progress = cinfo.progressive_mode ? &progress : nullptr;
    jpeg_start_decompress(&cinfo);
    if (xoff) jpeg_crop_scanline(&cinfo, xoff, width);
    *width = cinfo.output_width;
    if (skip > 0) jpeg_skip_scanlines(&cinfo, skip);
    const size_t stride = static_cast<size_t>(cinfo.output_width) * static_cast<size_t>(cinfo.output_components);
    JSAMPROW rowp[16];
    const JDIMENSION end = skip + rows;
    while (cinfo.output_scanline < end) {
      const JDIMENSION at = cinfo.output_scanline;
      const JDIMENSION n = std::min<JDIMENSION>(16, end - at);
      for (JDIMENSION i = 0; i < n; ++i) rowp[i] = dst + (at - skip + i) * stride;
      if (jpeg_read_scanlines(&cinfo, rowp, n) == 0) break;  // cannot happen with a memory source
    }
    const bool complete = cinfo.output_scanline >= end;
    jpeg_abort_decompress(&cinfo);  // the rows below the region are never decoded
    if (!complete) std::snprintf(err.message, sizeof err.message, "JPEG decoder stopped early");
    return complete;
  }
};

Decoder& thread_decoder() {
  thread_local Decoder dec;
  return dec;
}

// Resets the decompressor whatever happens between the phases (e.g. a bad_alloc from a buffer resize).
struct AbortGuard {
  j_decompress_ptr cinfo;
  ~AbortGuard() { jpeg_abort_decompress(cinfo); }
};

void set_error(std::string* error, std::string msg) {
  if (error) *error = std::move(msg);
}

// Reads the headers and checks what we accept. On success the decoder is in DSTATE_READY.
bool open_jpeg(Decoder& dec, const uint8_t* data, size_t size, std::string* error) {
  if (!dec.created) {
    set_error(error, "cannot create a JPEG decompressor (out of memory?)");
    return false;
  }
  if (data == nullptr || size == 0) {
    set_error(error, "empty JPEG data");
    return false;
  }
  if (size < 4 || data[0] != 0xFF || data[1] != 0xD8) {
    set_error(error, "not a JPEG file (no SOI marker)");
    return false;
  }
  if (!dec.read_header(data, size)) {
    set_error(error, dec.err.message);
    return false;
  }
  const jpeg_decompress_struct& c = dec.cinfo;
  if (c.data_precision != 8) {
    set_error(error, str("unsupported JPEG data precision ", c.data_precision, " (only 8-bit)"));
    jpeg_abort_decompress(&dec.cinfo);
    return false;
  }
  if (c.image_width == 0 || c.image_height == 0 || c.image_width > kMaxSide || c.image_height > kMaxSide ||
      uint64_t{c.image_width} * c.image_height > kMaxPixels) {
    set_error(error, str("JPEG dimensions ", c.image_width, "x", c.image_height, " are out of range (at most ",
                         kMaxSide, " per side and ", kMaxPixels, " pixels)"));
    jpeg_abort_decompress(&dec.cinfo);
    return false;
  }
  return true;
}

bool is_cmyk(J_COLOR_SPACE cs) { return cs == JCS_CMYK || cs == JCS_YCCK; }

// Picks the output colour space for `channels`. CMYK/YCCK decode to CMYK and are converted by us.
bool choose_color_space(Decoder& dec, int channels, std::string* error) {
  jpeg_decompress_struct& c = dec.cinfo;
  switch (c.jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
      c.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
      return true;
    case JCS_CMYK:
    case JCS_YCCK:
      c.out_color_space = JCS_CMYK;
      return true;
    default:
      set_error(error, str("unsupported JPEG colour space (", c.num_components, " components, libjpeg colour space ",
                           static_cast<int>(c.jpeg_color_space), ")"));
      jpeg_abort_decompress(&c);
      return false;
  }
}

// CMYK -> RGB or gray. Adobe files (APP14 marker, which is what Photoshop and libjpeg write) store inverted
// CMYK: 255 means no ink. Without the marker the values are taken as plain ink amounts.
void convert_cmyk(const uint8_t* src, size_t npix, bool adobe_inverted, int channels, uint8_t* dst) {
  for (size_t i = 0; i < npix; ++i) {
    unsigned cc = src[4 * i], m = src[4 * i + 1], y = src[4 * i + 2], k = src[4 * i + 3];
    if (!adobe_inverted) {
      cc = 255 - cc;
      m = 255 - m;
      y = 255 - y;
      k = 255 - k;
    }
    unsigned r = (cc * k + 127) / 255, g = (m * k + 127) / 255, b = (y * k + 127) / 255;
    if (channels == 3) {
      dst[3 * i] = static_cast<uint8_t>(r);
      dst[3 * i + 1] = static_cast<uint8_t>(g);
      dst[3 * i + 2] = static_cast<uint8_t>(b);
    } else {
      // libjpeg's own RGB -> gray weights (ITU-R BT.601), 16-bit fixed point.
      dst[i] = static_cast<uint8_t>((19595u * r + 38470u * g + 7471u * b + 32768u) >> 16);
    }
  }
}

thread_local std::vector<uint8_t> t_scratch;  // decoded pixels before a resize
thread_local std::vector<uint8_t> t_cmyk;     // CMYK pixels before conversion

// The per-thread buffers keep their capacity between images, but not after a rare giant one.
void release_if_huge(std::vector<uint8_t>& v) {
  if (v.capacity() > (size_t{64} << 20)) std::vector<uint8_t>().swap(v);
}

// Decodes the prepared decoder (colour space and scale set, output dimensions calculated) into dst, which
// holds output_height * output_width * channels bytes.
bool decode_into(Decoder& dec, int channels, uint8_t* dst, std::string* error) {
  jpeg_decompress_struct& c = dec.cinfo;
  if (is_cmyk(c.jpeg_color_space)) {
    const size_t npix = static_cast<size_t>(c.output_width) * c.output_height;
    const bool inverted = c.saw_Adobe_marker;
    t_cmyk.resize(npix * 4);
    if (!dec.read_pixels(t_cmyk.data())) {
      set_error(error, dec.err.message);
      return false;
    }
    convert_cmyk(t_cmyk.data(), npix, inverted, channels, dst);
    return true;
  }
  if (!dec.read_pixels(dst)) {
    set_error(error, dec.err.message);
    return false;
  }
  return true;
}

bool valid_channels(int channels, std::string* error) {
  if (channels == 1 || channels == 3) return true;
  set_error(error, str("cannot decode to ", channels, " channels (1 or 3)"));
  return false;
}

}  // namespace

// ---- public API ---------------------------------------------------------------------------------------

bool jpeg_info(const uint8_t* data, size_t size, JpegInfo& info, std::string* error) {
  Decoder& dec = thread_decoder();
  if (!open_jpeg(dec, data, size, error)) return false;
  info.h = static_cast<int>(dec.cinfo.image_height);
  info.w = static_cast<int>(dec.cinfo.image_width);
  if (exif::swaps_axes(dec.orientation)) std::swap(info.h, info.w);
  info.orientation = dec.orientation;
  info.components = dec.cinfo.num_components;
  jpeg_abort_decompress(&dec.cinfo);
  return true;
}

namespace {

bool decode_jpeg_impl(const uint8_t* data, size_t size, int channels, Image& out, std::string* error) {
  if (!valid_channels(channels, error)) return false;
  Decoder& dec = thread_decoder();
  if (!open_jpeg(dec, data, size, error)) return false;
  AbortGuard guard{&dec.cinfo};
  if (!choose_color_space(dec, channels, error)) return false;
  dec.cinfo.scale_num = 1;
  dec.cinfo.scale_denom = 1;
  if (!dec.calc_output()) {
    set_error(error, dec.err.message);
    return false;
  }
  const int h = static_cast<int>(dec.cinfo.output_height), w = static_cast<int>(dec.cinfo.output_width);
  out.h = h;
  out.w = w;
  out.c = channels;
  out.pixels.resize(static_cast<size_t>(h) * w * channels);
  const bool ok = decode_into(dec, channels, out.pixels.data(), error);
  release_if_huge(t_cmyk);
  if (!ok) {
    out = Image{};
    return false;
  }
  if (const int o = dec.orientation; o != 1) {
    Image turned;
    turned.h = exif::swaps_axes(o) ? w : h;
    turned.w = exif::swaps_axes(o) ? h : w;
    turned.c = channels;
    turned.pixels.resize(out.pixels.size());
    exif::apply(o, out.pixels.data(), h, w, channels, static_cast<size_t>(w) * channels, turned.pixels.data(),
                static_cast<size_t>(turned.w) * channels);
    out = std::move(turned);
  }
  return true;
}

bool decode_jpeg_to_impl(const uint8_t* data, size_t size, int h, int w, int channels, uint8_t* dst,
                         std::string* error) {
  if (!valid_channels(channels, error)) return false;
  if (h <= 0 || w <= 0 || dst == nullptr) {
    set_error(error, str("bad decode target ", h, "x", w));
    return false;
  }
  Decoder& dec = thread_decoder();
  if (!open_jpeg(dec, data, size, error)) return false;
  if (dec.orientation != 1) {  // the region path turns the image
    jpeg_abort_decompress(&dec.cinfo);
    return decode_jpeg_crop_to(data, size, CropChooser{}, false, h, w, channels, dst, error);
  }
  AbortGuard guard{&dec.cinfo};
  if (!choose_color_space(dec, channels, error)) return false;
  // DCT-domain scaling by num/8: the smallest num in {1, 2, 4, 8} that still covers the target in both
  // dimensions. Only these have SIMD IDCTs in libjpeg-turbo: 5/8..7/8 decode slower than 8/8 (measured on a
  // 500x375 4:4:4 image: 700-1200 us against 550 us), and 3/8 slower than 4/8. The bilinear pass then
  // shrinks by less than 2x.
  const uint64_t ih = dec.cinfo.image_height, iw = dec.cinfo.image_width;
  unsigned num = 1;
  while (num < 8 && ((ih * num + 7) / 8 < static_cast<uint64_t>(h) || (iw * num + 7) / 8 < static_cast<uint64_t>(w)))
    num *= 2;
  dec.cinfo.scale_num = num;
  dec.cinfo.scale_denom = 8;
  if (!dec.calc_output()) {
    set_error(error, dec.err.message);
    return false;
  }
  const int oh = static_cast<int>(dec.cinfo.output_height), ow = static_cast<int>(dec.cinfo.output_width);
  if (oh == h && ow == w) return decode_into(dec, channels, dst, error);
  t_scratch.resize(static_cast<size_t>(oh) * ow * channels);
  const bool ok = decode_into(dec, channels, t_scratch.data(), error);
  if (ok) resize_bilinear(t_scratch.data(), oh, ow, channels, dst, h, w);
  release_if_huge(t_scratch);
  release_if_huge(t_cmyk);
  return ok;
}

// Makes a per-thread buffer hold at least n bytes. It only grows (growing within the capacity would still zero
// the new part on every image of a varying-size data set), except that the capacity a rare giant image left
// behind is dropped.
void size_scratch(std::vector<uint8_t>& v, size_t n) {
  if (v.capacity() > (size_t{64} << 20) && n <= (size_t{64} << 20)) std::vector<uint8_t>().swap(v);
  if (v.size() < n) v.resize(n);
}

// Scaled-image coordinate of source coordinate `v` at scale num/8, rounded down (up when `up`).
int64_t scaled(int64_t v, unsigned num, bool up) { return up ? (v * num + 7) / 8 : v * num / 8; }

// Decodes in stored orientation; *orientation gets the file's EXIF orientation and *shown the crop chosen in
// displayed coordinates. With an orientation other than 1, choose picks its crop from the displayed size, th x tw
// is the displayed target, and out describes the stored region (the caller turns it).
bool decode_region_impl(const uint8_t* data, size_t size, CropChooser choose, int th, int tw, int channels,
                        DecodedRegion& out, std::string* error, uint8_t* dst_exact, int* orientation,
                        CropBox* shown) {
  if (!valid_channels(channels, error)) return false;
  if (th <= 0 || tw <= 0) {
    set_error(error, str("bad decode target ", th, "x", tw));
    return false;
  }
  Decoder& dec = thread_decoder();
  if (!open_jpeg(dec, data, size, error)) return false;
  AbortGuard guard{&dec.cinfo};
  if (!choose_color_space(dec, channels, error)) return false;
  const int ih = static_cast<int>(dec.cinfo.image_height), iw = static_cast<int>(dec.cinfo.image_width);
  const int o = dec.orientation;
  *orientation = o;
  const bool swap = exif::swaps_axes(o);
  CropBox cb = pixels::choose_crop(choose, swap ? iw : ih, swap ? ih : iw);  // displayed coordinates
  *shown = cb;
  if (o != 1) {
    cb = exif::stored_box(o, ih, iw, cb);
    if (swap) std::swap(th, tw);
    dst_exact = nullptr;  // the caller turns the region into place
  }
  // The smallest of the SIMD-accelerated scales 1/8, 2/8, 4/8, 8/8 at which the crop still covers the target
  // (see decode_jpeg_to for why not 3/8, 5/8..7/8).
  unsigned num = 1;
  while (num < 8 && (scaled(cb.h, num, true) < th || scaled(cb.w, num, true) < tw)) num *= 2;
  dec.cinfo.scale_num = num;
  dec.cinfo.scale_denom = 8;
  if (!dec.calc_output()) {
    set_error(error, dec.err.message);
    return false;
  }
  const auto oh = static_cast<int64_t>(dec.cinfo.output_height), ow = static_cast<int64_t>(dec.cinfo.output_width);
  // The crop in scaled pixels, edges rounded outwards.
  const int64_t sy0 = std::min(scaled(cb.y, num, false), oh - 1);
  const int64_t sy1 = std::clamp(scaled(int64_t{cb.y} + cb.h, num, true), sy0 + 1, oh);
  const int64_t sx0 = std::min(scaled(cb.x, num, false), ow - 1);
  const int64_t sx1 = std::clamp(scaled(int64_t{cb.x} + cb.w, num, true), sx0 + 1, ow);
  const bool cmyk = is_cmyk(dec.cinfo.jpeg_color_space);
  const int comps = dec.cinfo.output_components;
  const bool whole = sy0 == 0 && sy1 == oh && sx0 == 0 && sx1 == ow;

  out = DecodedRegion{};
  out.src_h = ih;
  out.src_w = iw;
  out.crop = cb;
  out.scale_num = static_cast<int>(num);
  out.c = channels;
  out.h = static_cast<int>(sy1 - sy0);
  out.w = static_cast<int>(sx1 - sx0);
  if (whole && dst_exact && !cmyk && oh == th && ow == tw) {
    JDIMENSION width = static_cast<JDIMENSION>(ow);
    if (!dec.read_region(dst_exact, nullptr, &width, 0, static_cast<JDIMENSION>(oh))) {
      set_error(error, dec.err.message);
      return false;
    }
    out.pixels = dst_exact;
    out.stride = static_cast<size_t>(tw) * channels;
    return true;
  }

  // Decode a margin around the crop: chroma upsampling ("fancy", the default) blends each pixel with its
  // neighbours, and at the edge of what jpeg_crop_scanline / jpeg_skip_scanlines leave it sees replicated edge
  // pixels instead. With the margin, the crop's own pixels equal those of a whole-image decode.
  constexpr int64_t kMargin = 4;
  const int64_t dy0 = std::max<int64_t>(0, sy0 - kMargin), dy1 = std::min(oh, sy1 + kMargin);
  const int64_t dx0 = std::max<int64_t>(0, sx0 - kMargin), dx1 = std::min(ow, sx1 + kMargin);
  std::vector<uint8_t>& raw = cmyk ? t_cmyk : t_scratch;
  const auto rows = static_cast<JDIMENSION>(dy1 - dy0);
  size_scratch(raw, static_cast<size_t>(rows) * static_cast<size_t>(ow) * static_cast<size_t>(comps));
  const bool crop_x = !(dx0 == 0 && dx1 == ow);
  JDIMENSION xoff = static_cast<JDIMENSION>(dx0), width = static_cast<JDIMENSION>(dx1 - dx0);
  bool ok = dec.read_region(raw.data(), crop_x ? &xoff : nullptr, &width, static_cast<JDIMENSION>(dy0), rows);
  if (!ok && !whole) {
    // A valid file must never be called corrupt because of the partial-decode path: try it whole.
    const std::string first = dec.err.message;
    if (!dec.read_header(data, size) || !choose_color_space(dec, channels, error)) {
      set_error(error, first);
      return false;
    }
    dec.cinfo.scale_num = num;
    dec.cinfo.scale_denom = 8;
    if (!dec.calc_output()) {
      set_error(error, first);
      return false;
    }
    size_scratch(raw, static_cast<size_t>(oh) * static_cast<size_t>(ow) * static_cast<size_t>(comps));
    xoff = 0;
    width = static_cast<JDIMENSION>(ow);
    ok = dec.read_region(raw.data(), nullptr, &width, 0, static_cast<JDIMENSION>(oh));
    if (!ok) {
      set_error(error, first);
      return false;
    }
    // The whole scaled image is in raw: the region starts at row sy0, column sx0.
    if (cmyk) {
      size_scratch(t_scratch, static_cast<size_t>(oh) * static_cast<size_t>(ow) * channels);
      convert_cmyk(raw.data(), static_cast<size_t>(oh) * static_cast<size_t>(ow), dec.cinfo.saw_Adobe_marker, channels,
                   t_scratch.data());
    }
    out.stride = static_cast<size_t>(width) * channels;
    out.pixels = t_scratch.data() + static_cast<size_t>(sy0) * out.stride + static_cast<size_t>(sx0) * channels;
    return true;
  }
  if (!ok) {
    set_error(error, dec.err.message);
    return false;
  }
  if (cmyk) {
    const size_t npix = static_cast<size_t>(rows) * width;
    size_scratch(t_scratch, npix * channels);
    convert_cmyk(raw.data(), npix, dec.cinfo.saw_Adobe_marker, channels, t_scratch.data());
  }
  out.stride = static_cast<size_t>(width) * channels;
  out.pixels = t_scratch.data() + static_cast<size_t>(sy0 - dy0) * out.stride +
               static_cast<size_t>(sx0 - static_cast<int64_t>(xoff)) * channels;
  return true;
}

}  // namespace

namespace {
thread_local std::vector<uint8_t> t_turned;  // a region turned by its EXIF orientation
}  // namespace

bool decode_jpeg_region(const uint8_t* data, size_t size, CropChooser choose, int target_h, int target_w,
                        int channels, DecodedRegion& out, std::string* error, uint8_t* dst_if_exact) {
  try {
    int o = 1;
    CropBox shown;
    if (!decode_region_impl(data, size, choose, target_h, target_w, channels, out, error, dst_if_exact, &o, &shown))
      return false;
    if (o == 1) return true;
    // Turn the stored region into the displayed one.
    const bool swap = exif::swaps_axes(o);
    const int h = swap ? out.w : out.h, w = swap ? out.h : out.w;
    const size_t stride = static_cast<size_t>(w) * channels;
    uint8_t* dst = nullptr;
    if (dst_if_exact && h == target_h && w == target_w) {
      dst = dst_if_exact;
    } else {
      pixels::size_buffer(t_turned, stride * h);
      dst = t_turned.data();
    }
    exif::apply(o, out.pixels, out.h, out.w, channels, out.stride, dst, stride);
    out.pixels = dst;
    out.h = h;
    out.w = w;
    out.stride = stride;
    if (swap) std::swap(out.src_h, out.src_w);
    out.crop = shown;
    return true;
  } catch (const std::exception& e) {
    out = DecodedRegion{};
    set_error(error, str("JPEG decoding failed: ", e.what()));
    return false;
  }
}

bool decode_jpeg_crop_to(const uint8_t* data, size_t size, CropChooser choose, bool flip, int h, int w,
                         int channels, uint8_t* dst, std::string* error) {
  DecodedRegion r;
  if (!decode_jpeg_region(data, size, choose, h, w, channels, r, error, dst)) return false;
  if (r.pixels != dst) resize_bilinear_strided(r.pixels, r.h, r.w, channels, r.stride, dst, h, w);
  if (flip) flip_horizontal(dst, h, w, channels);
  return true;
}


// The pixel buffers can fail to allocate (a 100-megapixel image): that too is a `false`, never a throw.
bool decode_jpeg(const uint8_t* data, size_t size, int channels, Image& out, std::string* error) {
  try {
    return decode_jpeg_impl(data, size, channels, out, error);
  } catch (const std::exception& e) {
    out = Image{};
    set_error(error, str("JPEG decoding failed: ", e.what()));
    return false;
  }
}

bool decode_jpeg_to(const uint8_t* data, size_t size, int h, int w, int channels, uint8_t* dst, std::string* error) {
  try {
    return decode_jpeg_to_impl(data, size, h, w, channels, dst, error);
  } catch (const std::exception& e) {
    set_error(error, str("JPEG decoding failed: ", e.what()));
    return false;
  }
}

}  // namespace stoke::io
