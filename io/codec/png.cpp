// The PNG codec over libpng's classic API.
//
// libpng reports fatal errors through an error callback that must not return: we longjmp back to a setjmp()
// taken in small "phase" functions that hold no C++ objects with destructors; the buffers live in the callers
// (and in thread-local vectors), outside the setjmp frames. So a corrupt or truncated file costs a
// `return false` with libpng's own message, never an exit() or a crash.

#include "io/codec/png.h"

#include <png.h>

#include <algorithm>
#include <csetjmp>
#include <cstdio>
#include <cstring>

#include "base/error.h"
#include "io/codec/pixels.h"

namespace stoke::io {

namespace {

// Deflate's best case is 258 bytes from a 2-bit length/distance pair (1032:1); anything beyond is not in the file.
constexpr uint64_t kMaxInflateRatio = 1032;

struct Reader {
  png_structp png = nullptr;
  png_infop info = nullptr;
  const uint8_t* data = nullptr;
  size_t size = 0, pos = 0;
  char message[256] = {};

  ~Reader() {
    if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
  }
};

void on_error(png_structp png, png_const_charp msg) {
  auto* r = static_cast<Reader*>(png_get_error_ptr(png));
  std::snprintf(r->message, sizeof r->message, "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}

void on_read(png_structp png, png_bytep out, size_t n) {
  auto* r = static_cast<Reader*>(png_get_io_ptr(png));
  if (n > r->size - r->pos) {
    std::snprintf(r->message, sizeof r->message, "truncated PNG file (%zu bytes; the data ends early)", r->size);
    png_longjmp(png, 1);
  }
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

// Phase 1: create, then the chunks up to the first IDAT. No C++ objects with destructors in this frame.
bool read_header(Reader* r) {
  r->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, r, on_error, on_warning);
  if (!r->png) {
    std::snprintf(r->message, sizeof r->message, "cannot create a PNG decoder (out of memory?)");
    return false;
  }
  r->info = png_create_info_struct(r->png);
  if (!r->info) {
    std::snprintf(r->message, sizeof r->message, "cannot create a PNG decoder (out of memory?)");
    return false;
  }
  if (setjmp(png_jmpbuf(r->png))) return false;
  png_set_read_fn(r->png, r, on_read);
#ifdef STOKE_FUZZING
  png_set_crc_action(r->png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
  png_set_option(r->png, PNG_IGNORE_ADLER32, PNG_OPTION_ON);
#endif
  png_set_chunk_cache_max(r->png, 1000);                // ancillary chunks kept (sPLT, text, unknown)
  png_set_chunk_malloc_max(r->png, size_t{8} << 20);   // bytes any one chunk may decompress to (iCCP, zTXt)
  png_read_info(r->png, r->info);
  return true;
}

// Phase 2: transforms to 8-bit G / GA / RGB / RGBA, then the output geometry.
bool set_transforms(Reader* r, int* channels, size_t* rowbytes) {
  if (setjmp(png_jmpbuf(r->png))) return false;
  png_structp png = r->png;
  png_infop info = r->info;
  const int ct = png_get_color_type(png, info);
  const int bd = png_get_bit_depth(png, info);
  if (ct == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (ct == PNG_COLOR_TYPE_GRAY && bd < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (bd == 16) png_set_scale_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  *channels = png_get_channels(png, info);
  *rowbytes = png_get_rowbytes(png, info);
  return true;
}

// Phase 3: every row.
bool read_rows(Reader* r, png_bytepp rows) {
  if (setjmp(png_jmpbuf(r->png))) return false;
  png_read_image(r->png, rows);
  // No png_read_end: what follows the image data (text, a missing IEND) does not change the pixels.
  return true;
}

void set_error(std::string* error, const std::string& msg) {
  if (error) *error = msg;
}

int file_components(png_structp png, png_infop info) {
  const int ct = png_get_color_type(png, info);
  const bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
  switch (ct) {
    case PNG_COLOR_TYPE_GRAY: return trns ? 2 : 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_PALETTE: return trns ? 4 : 3;
    case PNG_COLOR_TYPE_RGB: return trns ? 4 : 3;
    default: return 4;
  }
}

// Reads and checks the header: dimensions within the limits and not more than the file can hold.
bool open_png(Reader& r, const uint8_t* data, size_t size, std::string* error) {
  if (!png_matches(data, size)) {
    set_error(error, "not a PNG file (no PNG signature)");
    return false;
  }
  r.data = data;
  r.size = size;
  if (!read_header(&r)) {
    set_error(error, str("PNG: ", r.message));
    return false;
  }
  const uint64_t w = png_get_image_width(r.png, r.info), h = png_get_image_height(r.png, r.info);
  if (!pixels::dims_ok("PNG", h, w, error)) return false;
  const int ct = png_get_color_type(r.png, r.info);
  const uint64_t samples = ct == PNG_COLOR_TYPE_PALETTE ? 1 : png_get_channels(r.png, r.info);
  const uint64_t min_raw = h * ((w * samples * png_get_bit_depth(r.png, r.info) + 7) / 8);
  if (min_raw > kMaxInflateRatio * size + 4096) {
    set_error(error, str("truncated PNG file: its header says ", w, "x", h, " pixels, which cannot fit in ", size,
                         " bytes"));
    return false;
  }
  return true;
}

thread_local std::vector<uint8_t> t_pixels;      // the decoded image, 8-bit, 1..4 channels
thread_local std::vector<png_bytep> t_rows;       // row pointers into t_pixels

bool decode_region_impl(const uint8_t* data, size_t size, CropChooser choose, int th, int tw, int channels,
                        DecodedRegion& out, std::string* error, uint8_t* dst_exact) {
  if (!pixels::target_ok(channels, th, tw, error)) return false;
  Reader r;
  if (!open_png(r, data, size, error)) return false;
  int in_c = 0;
  size_t rowbytes = 0;
  if (!set_transforms(&r, &in_c, &rowbytes)) {
    set_error(error, str("PNG: ", r.message));
    return false;
  }
  const int ih = static_cast<int>(png_get_image_height(r.png, r.info));
  const int iw = static_cast<int>(png_get_image_width(r.png, r.info));
  if (in_c < 1 || in_c > 4 || rowbytes != static_cast<size_t>(iw) * in_c) {
    set_error(error, str("PNG: unexpected output layout (", in_c, " channels, ", rowbytes, " bytes a row)"));
    return false;
  }
  pixels::size_buffer(t_pixels, rowbytes * ih);
  if (t_rows.size() < static_cast<size_t>(ih)) t_rows.resize(static_cast<size_t>(ih));
  for (int y = 0; y < ih; ++y) t_rows[static_cast<size_t>(y)] = t_pixels.data() + rowbytes * y;
  if (!read_rows(&r, t_rows.data())) {
    set_error(error, str("PNG: ", r.message));
    return false;
  }
  pixels::region_from_whole(t_pixels.data(), rowbytes, in_c, ih, iw, choose, th, tw, channels, out, dst_exact);
  if (t_rows.capacity() > (size_t{1} << 16)) std::vector<png_bytep>().swap(t_rows);
  return true;
}

// ---- encoder (tests and tools) ------------------------------------------------------------------------

struct Writer {
  png_structp png = nullptr;
  png_infop info = nullptr;
  std::vector<uint8_t>* out = nullptr;
  char message[256] = {};
  ~Writer() {
    if (png) png_destroy_write_struct(&png, info ? &info : nullptr);
  }
};

void on_write(png_structp png, png_bytep data, size_t n) {
  auto* w = static_cast<Writer*>(png_get_io_ptr(png));
  w->out->insert(w->out->end(), data, data + n);
}
void on_flush(png_structp) {}

void on_write_error(png_structp png, png_const_charp msg) {
  auto* w = static_cast<Writer*>(png_get_error_ptr(png));
  std::snprintf(w->message, sizeof w->message, "%s", msg ? msg : "libpng error");
  png_longjmp(png, 1);
}

bool encode_core(Writer* w, const uint8_t* px, int h, int wd, int c, png_bytepp rows) {
  w->png = png_create_write_struct(PNG_LIBPNG_VER_STRING, w, on_write_error, on_warning);
  if (!w->png) return false;
  w->info = png_create_info_struct(w->png);
  if (!w->info) return false;
  if (setjmp(png_jmpbuf(w->png))) return false;
  png_set_write_fn(w->png, w, on_write, on_flush);
  static const int kTypes[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                PNG_COLOR_TYPE_RGB_ALPHA};
  png_set_IHDR(w->png, w->info, static_cast<png_uint_32>(wd), static_cast<png_uint_32>(h), 8, kTypes[c],
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  for (int y = 0; y < h; ++y) rows[y] = const_cast<png_bytep>(px + static_cast<size_t>(y) * wd * c);
  png_set_rows(w->png, w->info, rows);
  png_write_png(w->png, w->info, PNG_TRANSFORM_IDENTITY, nullptr);
  return true;
}

}  // namespace

bool png_matches(const uint8_t* d, size_t n) {
  return d != nullptr && n >= 8 && std::memcmp(d, "\x89PNG\r\n\x1a\n", 8) == 0;
}

bool png_info(const uint8_t* data, size_t size, PngInfo& info, std::string* error) {
  try {
    Reader r;
    if (!open_png(r, data, size, error)) return false;
    info.h = static_cast<int>(png_get_image_height(r.png, r.info));
    info.w = static_cast<int>(png_get_image_width(r.png, r.info));
    info.components = file_components(r.png, r.info);
    info.bit_depth = png_get_bit_depth(r.png, r.info);
    return true;
  } catch (const std::exception& e) {
    set_error(error, str("PNG decoding failed: ", e.what()));
    return false;
  }
}

bool decode_png_region(const uint8_t* data, size_t size, CropChooser choose, int target_h, int target_w, int channels,
                       DecodedRegion& out, std::string* error, uint8_t* dst_if_exact) {
  try {
    return decode_region_impl(data, size, choose, target_h, target_w, channels, out, error, dst_if_exact);
  } catch (const std::exception& e) {  // a buffer that cannot be allocated
    out = DecodedRegion{};
    set_error(error, str("PNG decoding failed: ", e.what()));
    return false;
  }
}

std::vector<uint8_t> encode_png(const uint8_t* pixels, int h, int w, int c) {
  STOKE_CHECK(pixels != nullptr && h > 0 && w > 0 && c >= 1 && c <= 4, "encode_png(", h, "x", w, "x", c, ")");
  std::vector<uint8_t> out;
  std::vector<png_bytep> rows(static_cast<size_t>(h));
  Writer wr;
  wr.out = &out;
  if (!encode_core(&wr, pixels, h, w, c, rows.data())) throw Error(str("PNG encoding failed: ", wr.message));
  return out;
}

}  // namespace stoke::io
