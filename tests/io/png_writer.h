// The tests' PNG writer (libpng directly): every colour type and bit depth, palettes with transparency, Adam7,
// from packed rows in memory or from rows given one at a time (so a large image never exists in memory whole).
#pragma once

#include <gtest/gtest.h>
#include <png.h>

#include <csetjmp>
#include <cstdint>
#include <functional>
#include <vector>

namespace stoke::test {

struct PngSpec {
  PngSpec(int h_, int w_, int color_type_, int bit_depth_)
      : h(h_), w(w_), color_type(color_type_), bit_depth(bit_depth_) {}
  int h = 0, w = 0;
  int color_type = PNG_COLOR_TYPE_GRAY;
  int bit_depth = 8;
  bool interlace = false;
  bool fast = false;  // compression level 1 and no filtering: for large images
  std::vector<png_color> palette;
  std::vector<uint8_t> trns;  // palette alpha
  std::vector<uint8_t> raw;   // rows of packed samples as PNG stores them (16-bit big-endian)
};

// row(y, dst) fills row y with its packed samples.
using PngRowFn = std::function<void(int, uint8_t*)>;

namespace png_writer_detail {

inline void append(png_structp png, png_bytep d, size_t n) {
  auto* out = static_cast<std::vector<uint8_t>*>(png_get_io_ptr(png));
  out->insert(out->end(), d, d + n);
}

// libpng's part, in a frame without destructors (its errors longjmp here). rows: every row (Adam7 needs them at
// once), or nullptr: a row at a time from row() through buf.
inline bool write_rows(png_structp png, png_infop info, std::vector<uint8_t>* out, const PngSpec& s, png_bytepp rows,
                       uint8_t* buf, const PngRowFn* row) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_write_fn(png, out, append, nullptr);
  png_set_IHDR(png, info, static_cast<png_uint_32>(s.w), static_cast<png_uint_32>(s.h), s.bit_depth, s.color_type,
               s.interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (s.fast) {
    png_set_compression_level(png, 1);
    png_set_filter(png, 0, PNG_FILTER_NONE);
  }
  if (!s.palette.empty()) png_set_PLTE(png, info, s.palette.data(), static_cast<int>(s.palette.size()));
  if (!s.trns.empty()) png_set_tRNS(png, info, s.trns.data(), static_cast<int>(s.trns.size()), nullptr);
  png_write_info(png, info);
  if (rows) {
    png_write_image(png, rows);
  } else {
    for (int y = 0; y < s.h; ++y) {
      (*row)(y, buf);
      png_write_row(png, buf);
    }
  }
  png_write_end(png, nullptr);
  return true;
}

inline std::vector<uint8_t> write(const PngSpec& s, png_bytepp rows, uint8_t* buf, const PngRowFn* row) {
  std::vector<uint8_t> out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  const bool ok = write_rows(png, info, &out, s, rows, buf, row);
  png_destroy_write_struct(&png, &info);
  EXPECT_TRUE(ok) << "libpng could not write the test file";
  return ok ? out : std::vector<uint8_t>{};
}

}  // namespace png_writer_detail

// The PNG of s.raw.
inline std::vector<uint8_t> write_png(const PngSpec& s) {
  const size_t row = s.raw.size() / static_cast<size_t>(s.h);
  std::vector<png_bytep> rows(static_cast<size_t>(s.h));
  for (int y = 0; y < s.h; ++y) rows[static_cast<size_t>(y)] = const_cast<png_bytep>(s.raw.data() + row * y);
  return png_writer_detail::write(s, rows.data(), nullptr, nullptr);
}

// The PNG of the rows row() gives (s.raw unused), written as they come unless interlaced.
inline std::vector<uint8_t> write_png(const PngSpec& s, const PngRowFn& row) {
  const int channels = (s.color_type & PNG_COLOR_MASK_PALETTE) ? 1
                       : (s.color_type & PNG_COLOR_MASK_COLOR) ? 3 + !!(s.color_type & PNG_COLOR_MASK_ALPHA)
                                                               : 1 + !!(s.color_type & PNG_COLOR_MASK_ALPHA);
  std::vector<uint8_t> buf((static_cast<size_t>(s.w) * channels * s.bit_depth + 7) / 8), whole;
  std::vector<png_bytep> rows;
  if (s.interlace) {
    whole.resize(buf.size() * s.h);
    for (int y = 0; y < s.h; ++y) {
      rows.push_back(whole.data() + buf.size() * y);
      row(y, rows.back());
    }
  }
  return png_writer_detail::write(s, s.interlace ? rows.data() : nullptr, buf.data(), &row);
}

}  // namespace stoke::test
