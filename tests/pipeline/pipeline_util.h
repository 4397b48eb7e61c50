// Helpers for the input-pipeline tests: synthetic images and JPEGs (including the odd kinds the codec never
// writes), ImageFolder trees with sizes that vary, and broken files.
#pragma once

// jpeglib.h needs size_t and FILE declared first.
#include <cstddef>
#include <cstdio>
#include <jpeglib.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "base/fs.h"
#include "base/rng.h"
#include "io/codec/jpeg.h"
#include "io/source/source.h"
#include "tests/test_util.h"

namespace stoke::test {

// A smooth image (gradients and waves) whose phase depends on `seed`, so every sample differs.
inline std::vector<uint8_t> smooth_image(int h, int w, int c, uint64_t seed = 0) {
  std::vector<uint8_t> px(static_cast<size_t>(h) * w * c);
  const double ph = static_cast<double>(seed % 97) * 0.37;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) {
        double v = 40.0 + 150.0 * (x + y + 20.0 * k) / (w + h + 40.0) + 30.0 * std::sin(x / (7.0 + 3 * k) + ph) +
                   25.0 * std::cos(y / (9.0 + 2 * k) + x / 37.0 + 2 * ph);
        px[(static_cast<size_t>(y) * w + x) * c + k] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
  return px;
}

inline void write_bytes(const fs::path& p, const std::vector<uint8_t>& b) {
  fs::create_directories(p.parent_path());
  write_file(p.string(), b.data(), b.size());
}

// root/c<k>/<i>.jpg for k < classes, i < per_class: h x w x c images, sizes varying by up to +-jitter pixels.
inline void write_folder(const fs::path& root, int classes, int per_class, int h, int w, int c, int jitter = 0,
                         int quality = 90) {
  for (int k = 0; k < classes; ++k)
    for (int i = 0; i < per_class; ++i) {
      const uint64_t s = static_cast<uint64_t>(k * 1000 + i);
      const int hh = jitter ? h + static_cast<int>(uniform_below(s, 1, 2 * jitter + 1)) - jitter : h;
      const int ww = jitter ? w + static_cast<int>(uniform_below(s, 2, 2 * jitter + 1)) - jitter : w;
      const std::vector<uint8_t> px = smooth_image(hh, ww, c, s);
      // (stoke::str, not "c" + std::to_string(k): GCC 12 -O3 raises a false -Wrestrict on the latter)
      write_bytes(root / str("c", k) / str(i, ".jpg"),
                  io::encode_jpeg(px.data(), hh, ww, c, quality));
    }
}

// Encodes with libjpeg directly: 1, 3 (RGB/YCbCr) or 4 (CMYK, stored Adobe-inverted) components, optionally
// progressive, with luma sampling factors h_samp x v_samp (chroma 1x1; 0: libjpeg's default, 2x2), stored in
// jpeg_space when one is given (JCS_RGB: no colour transform; JCS_YCCK for CMYK).
inline std::vector<uint8_t> libjpeg_encode(const std::vector<uint8_t>& px, int h, int w, int comps, bool progressive,
                                           int h_samp = 1, int v_samp = 1, int quality = 92,
                                           J_COLOR_SPACE jpeg_space = JCS_UNKNOWN) {
  jpeg_compress_struct cinfo;
  jpeg_error_mgr jerr;
  cinfo.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&cinfo);
  unsigned char* buf = nullptr;
  unsigned long len = 0;
  jpeg_mem_dest(&cinfo, &buf, &len);
  cinfo.image_width = static_cast<JDIMENSION>(w);
  cinfo.image_height = static_cast<JDIMENSION>(h);
  cinfo.input_components = comps;
  cinfo.in_color_space = comps == 1 ? JCS_GRAYSCALE : comps == 3 ? JCS_RGB : JCS_CMYK;
  jpeg_set_defaults(&cinfo);
  if (jpeg_space != JCS_UNKNOWN) jpeg_set_colorspace(&cinfo, jpeg_space);
  jpeg_set_quality(&cinfo, quality, TRUE);
  if (comps == 3 && h_samp > 0) {
    cinfo.comp_info[0].h_samp_factor = h_samp;
    cinfo.comp_info[0].v_samp_factor = v_samp;
  }
  if (progressive) jpeg_simple_progression(&cinfo);
  jpeg_start_compress(&cinfo, TRUE);
  while (cinfo.next_scanline < cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(px.data() + static_cast<size_t>(cinfo.next_scanline) * w * comps);
    jpeg_write_scanlines(&cinfo, &row, 1);
  }
  jpeg_finish_compress(&cinfo);
  jpeg_destroy_compress(&cinfo);
  std::vector<uint8_t> out(buf, buf + len);
  std::free(buf);
  return out;
}

// Offset of the SOFn marker (FF C0..C2), or 0.
inline size_t find_sof(const std::vector<uint8_t>& j) {
  for (size_t i = 2; i + 9 < j.size(); ++i)
    if (j[i] == 0xFF && (j[i + 1] == 0xC0 || j[i + 1] == 0xC1 || j[i + 1] == 0xC2)) return i;
  return 0;
}

// The same JPEG claiming another sample precision (12-bit: which this decoder must refuse).
inline std::vector<uint8_t> with_precision(std::vector<uint8_t> j, int bits) {
  const size_t s = find_sof(j);
  if (s) j[s + 4] = static_cast<uint8_t>(bits);
  return j;
}

// The same JPEG claiming other dimensions in its frame header (absurd sizes must be refused, not allocated).
inline std::vector<uint8_t> with_dims(std::vector<uint8_t> j, int h, int w) {
  const size_t s = find_sof(j);
  if (s) {
    j[s + 5] = static_cast<uint8_t>(h >> 8);
    j[s + 6] = static_cast<uint8_t>(h);
    j[s + 7] = static_cast<uint8_t>(w >> 8);
    j[s + 8] = static_cast<uint8_t>(w);
  }
  return j;
}

// How far two images (pixel values, uint8 or int) are apart: the largest and the mean absolute difference, and how
// many values differ.
struct PixelDiff {
  int max = 0;
  double mean = 0;
  size_t differing = 0;
};
template <typename A, typename B>
PixelDiff pixel_diff(const A* a, const B* b, size_t n) {
  PixelDiff d;
  for (size_t i = 0; i < n; ++i) {
    const int e = std::abs(static_cast<int>(a[i]) - static_cast<int>(b[i]));
    d.max = std::max(d.max, e);
    d.mean += e;
    d.differing += e != 0;
  }
  d.mean /= static_cast<double>(n);
  return d;
}
template <typename A, typename B>
PixelDiff pixel_diff(const std::vector<A>& a, const std::vector<B>& b) {
  return pixel_diff(a.data(), b.data(), a.size());
}

inline double mean_abs_diff(const uint8_t* a, const uint8_t* b, size_t n) { return pixel_diff(a, b, n).mean; }
inline int max_abs_diff(const uint8_t* a, const uint8_t* b, size_t n) { return pixel_diff(a, b, n).max; }

// Runs f on another thread; when it has not finished within `limit`, the test process exits with a failure
// instead of hanging (threads stuck in a wait cannot be joined, and ctest's own timeout is long).
template <typename F>
void finishes_within(std::chrono::milliseconds limit, F&& f, const char* what = "") {
  auto fut = std::async(std::launch::async, std::forward<F>(f));
  if (fut.wait_for(limit) != std::future_status::ready) {
    std::fprintf(stderr, "FAILED: %s did not finish within %lld ms (a hang)\n", what,
                 static_cast<long long>(limit.count()));
    std::fflush(stderr);
    std::quick_exit(1);
  }
  fut.get();  // rethrows
}

// A source that behaves like `base` but takes `delay` to read sample `slow_id` (every time), or throws for it.
class FaultySource final : public io::Source {
 public:
  enum class Fault { slow, throws };
  FaultySource(std::shared_ptr<const io::Source> base, int64_t id, Fault fault, std::chrono::milliseconds delay = {})
      : base_(std::move(base)), id_(id), fault_(fault), delay_(delay) {}
  int64_t size() const override { return base_->size(); }
  int32_t label(int64_t i) const override { return base_->label(i); }
  const std::vector<std::string>& classes() const override { return base_->classes(); }
  std::string name(int64_t i) const override { return base_->name(i); }
  std::string description() const override { return "faulty " + base_->description(); }
  io::ReadStatus read(int64_t i, std::vector<uint8_t>& scratch, std::span<const uint8_t>& bytes,
                      std::string* error) const override {
    if (i == id_) {
      if (fault_ == Fault::throws) throw std::runtime_error("disk on fire");
      std::this_thread::sleep_for(delay_);
    }
    return base_->read(i, scratch, bytes, error);
  }

 private:
  std::shared_ptr<const io::Source> base_;
  int64_t id_;
  Fault fault_;
  std::chrono::milliseconds delay_;
};

}  // namespace stoke::test
