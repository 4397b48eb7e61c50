// The PNG codec over libpng's classic API, read a row at a time: the rows of the crop are area-averaged as they
// arrive (k x k source pixels to one, k the largest factor at which the crop still covers the target), so a
// decoder holds one source row and the reduced crop, never the image (a legal 10000x10000 RGBA PNG is 400 MB).
// Every allocation, libpng's and zlib's included, goes through operator new (a test counts them).
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
#include <new>

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

png_voidp on_malloc(png_structp, png_alloc_size_t n) { return ::operator new(n, std::nothrow); }
void on_free(png_structp, png_voidp p) { ::operator delete(p); }

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
  r->png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, r, on_error, on_warning, nullptr, on_malloc, on_free);
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

// Phase 2: transforms to 8-bit G / GA / RGB / RGBA, then the output geometry. An interlaced image is read pass by
// pass, each row of a pass being the pixels of that pass's columns (no interlace handling: that needs the image).
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
  png_read_update_info(png, info);
  *channels = png_get_channels(png, info);
  *rowbytes = png_get_rowbytes(png, info);
  return true;
}

// Phase 3: the next row (of the current pass). No png_read_end: what follows the image data (text, a missing IEND)
// does not change the pixels.
bool read_row(Reader* r, png_bytep row) {
  if (setjmp(png_jmpbuf(r->png))) return false;
  png_read_row(r->png, row, nullptr);
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

thread_local std::vector<uint8_t> t_row;        // one source row as libpng gives it (1..4 channels)
thread_local std::vector<uint8_t> t_converted;  // the crop's part of it in the requested channels
thread_local std::vector<uint32_t> t_sums;      // area sums of the reduced rows not yet complete
thread_local std::vector<uint8_t> t_region;     // the reduced crop handed back

// The crop, reduced by k as its rows arrive. Reduced pixel (ry, rx) is the rounded mean of the crop's pixels
// [ry k, ry k + k) x [rx k, rx k + k) (fewer at the crop's bottom and right edges). k = 1 copies.
struct Reduction {
  CropBox cb;
  int k = 1, rh = 0, rw = 0, c = 0;
  uint8_t* out = nullptr;  // rh x rw x c
  // k > 1. A plain image: the column sums of the reduced row being gathered (cb.w x c); an interlaced one: the sums
  // of every reduced pixel (rh x rw x c), its rows arriving over seven passes.
  uint32_t* sums = nullptr;

  // Plain: crop row cy (cb.w converted pixels), rows in order.
  void add_row(int cy, const uint8_t* px) {
    const size_t n = static_cast<size_t>(cb.w) * c;
    if (k == 1) {
      std::memcpy(out + static_cast<size_t>(cy) * n, px, n);
      return;
    }
    for (size_t i = 0; i < n; ++i) sums[i] += px[i];  // contiguous: vectorizes
    if (cy % k != k - 1 && cy != cb.h - 1) return;
    // The reduced row is complete: k columns at a time.
    const int ry = cy / k;
    const auto rows = static_cast<uint32_t>(std::min(k, cb.h - ry * k));
    uint8_t* d = out + static_cast<size_t>(ry) * rw * c;
    for (int rx = 0; rx < rw; ++rx) {
      const int x0 = rx * k, x1 = std::min(x0 + k, cb.w);
      const uint32_t count = rows * static_cast<uint32_t>(x1 - x0);
      for (int ch = 0; ch < c; ++ch) {
        uint32_t sum = 0;
        for (int x = x0; x < x1; ++x) sum += sums[static_cast<size_t>(x) * c + ch];
        d[static_cast<size_t>(rx) * c + ch] = static_cast<uint8_t>((sum + count / 2) / count);
      }
    }
    std::fill(sums, sums + n, 0u);
  }

  // Interlaced: n converted pixels of crop row cy at crop columns x0, x0 + step, ...
  void add_pixels(int cy, const uint8_t* px, int n, int x0, int step) {
    if (k == 1) {
      uint8_t* d = out + (static_cast<size_t>(cy) * rw + x0) * c;
      for (int i = 0; i < n; ++i)
        std::memcpy(d + static_cast<size_t>(i) * step * c, px + static_cast<size_t>(i) * c, c);
      return;
    }
    uint32_t* row = sums + static_cast<size_t>(cy / k) * rw * c;
    for (int i = 0; i < n; ++i) {
      uint32_t* s = row + static_cast<size_t>((x0 + i * step) / k) * c;
      for (int ch = 0; ch < c; ++ch) s[ch] += px[static_cast<size_t>(i) * c + ch];
    }
  }

  // Interlaced, after the last pass: every reduced pixel's sum divided.
  void finish_grid() const {
    if (k == 1) return;
    for (int ry = 0; ry < rh; ++ry) {
      const auto rows = static_cast<uint32_t>(std::min(k, cb.h - ry * k));
      for (int rx = 0; rx < rw; ++rx) {
        const uint32_t count = rows * static_cast<uint32_t>(std::min(k, cb.w - rx * k));
        for (int ch = 0; ch < c; ++ch) {
          const size_t i = (static_cast<size_t>(ry) * rw + rx) * c + ch;
          out[i] = static_cast<uint8_t>((sums[i] + count / 2) / count);
        }
      }
    }
  }
};

// Reads the rows of a plain image, reducing those of the crop. Every row is read: a file damaged below the crop
// fails whatever the crop, so whether a sample is readable does not depend on its random crop (the decoder pool's
// batches depend only on seed, epoch and index).
bool reduce_plain(Reader& r, Reduction& red, int in_c, int ih, std::string* error) {
  const CropBox& cb = red.cb;
  for (int y = 0; y < ih; ++y) {
    if (!read_row(&r, t_row.data())) {
      set_error(error, str("PNG: ", r.message));
      return false;
    }
    if (y < cb.y || y >= cb.y + cb.h) continue;
    pixels::convert(t_row.data(), 0, in_c, 0, cb.x, 1, cb.w, red.c, t_converted.data(), 0);
    red.add_row(y - cb.y, t_converted.data());
  }
  return true;
}

// Reads the seven passes of an Adam7 image: each pass's pixels of the crop go to their reduced pixels, every
// reduced row kept until the last pass.
bool reduce_interlaced(Reader& r, Reduction& red, int in_c, int ih, int iw, std::string* error) {
  const CropBox& cb = red.cb;
  for (int pass = 0; pass < 7; ++pass) {
    const int rows = static_cast<int>(PNG_PASS_ROWS(static_cast<png_uint_32>(ih), pass));
    const int cols = static_cast<int>(PNG_PASS_COLS(static_cast<png_uint_32>(iw), pass));
    if (rows == 0 || cols == 0) continue;  // libpng skips empty passes
    // The pass's columns inside the crop: i0 .. i0 + n - 1, at x = x0 + i step.
    const int step = 1 << PNG_PASS_COL_SHIFT(pass), start = PNG_PASS_START_COL(pass);
    const int i0 = std::max(0, (cb.x - start + step - 1) / step);
    const int n = std::max(0, std::min(cols, (cb.x + cb.w - start + step - 1) / step) - i0);
    for (int py = 0; py < rows; ++py) {
      if (!read_row(&r, t_row.data())) {
        set_error(error, str("PNG: ", r.message));
        return false;
      }
      const int y = static_cast<int>(PNG_ROW_FROM_PASS_ROW(static_cast<png_uint_32>(py), pass));
      if (y < cb.y || y >= cb.y + cb.h || n == 0) continue;
      pixels::convert(t_row.data(), 0, in_c, 0, i0, 1, n, red.c, t_converted.data(), 0);
      red.add_pixels(y - cb.y, t_converted.data(), n, start + i0 * step - cb.x, step);
    }
  }
  red.finish_grid();
  return true;
}

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
  const bool interlaced = png_get_interlace_type(r.png, r.info) == PNG_INTERLACE_ADAM7;
  Reduction red;
  red.cb = pixels::choose_crop(choose, ih, iw);
  red.k = std::max(1, std::min(red.cb.h / th, red.cb.w / tw));
  red.rh = (red.cb.h + red.k - 1) / red.k;
  red.rw = (red.cb.w + red.k - 1) / red.k;
  red.c = channels;
  const size_t region = static_cast<size_t>(red.rh) * red.rw * channels;
  if (dst_exact && red.rh == th && red.rw == tw) {
    red.out = dst_exact;
  } else {
    pixels::size_buffer(t_region, region);
    red.out = t_region.data();
  }
  pixels::size_buffer(t_row, rowbytes);
  pixels::size_buffer(t_converted, static_cast<size_t>(red.cb.w) * channels);
  if (red.k > 1) {
    const size_t sums =
        interlaced ? static_cast<size_t>(red.rh) * red.rw * channels : static_cast<size_t>(red.cb.w) * channels;
    if (t_sums.capacity() > (size_t{16} << 20) && sums <= (size_t{16} << 20)) std::vector<uint32_t>().swap(t_sums);
    t_sums.assign(sums, 0u);
    red.sums = t_sums.data();
  }
  if (!(interlaced ? reduce_interlaced(r, red, in_c, ih, iw, error) : reduce_plain(r, red, in_c, ih, error)))
    return false;
  out = DecodedRegion{};
  out.pixels = red.out;
  out.h = red.rh;
  out.w = red.rw;
  out.c = channels;
  out.stride = static_cast<size_t>(red.rw) * channels;
  out.src_h = ih;
  out.src_w = iw;
  out.crop = red.cb;
  out.scale_num = 1;
  out.scale_denom = red.k;
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
