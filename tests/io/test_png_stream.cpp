// PNG decoded a row at a time into an area average near the target size (io/codec/png.h): the region equals the
// area average of the whole image (exactly), interlaced or not, cropped or not; the decode then resized equals the
// whole image averaged and resized; and a large legal image costs a decoder a bounded heap, counted here by
// replacing operator new for this binary (the codec routes libpng's and zlib's allocations through it).
#include <gtest/gtest.h>
#include <png.h>

#include <atomic>
#include <csetjmp>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "io/codec/codec.h"
#include "io/codec/pixels.h"
#include "io/codec/png.h"
#include "io/codec/resize.h"
#include "tests/io/png_writer.h"
#include "tests/pipeline/pipeline_util.h"

// ---- every heap byte of this binary, live and at its peak ---------------------------------------------------
// GCC sees these replacements inlined into the standard allocators: it takes the size header for a bounds error
// and the throwing new for one that may return null.
#pragma GCC diagnostic ignored "-Warray-bounds"
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#pragma GCC diagnostic ignored "-Wnull-dereference"
namespace {
std::atomic<int64_t> g_live{0}, g_peak{0};
constexpr size_t kHeader = 16;  // the size, kept in front of the block (keeps 16-byte alignment)

__attribute__((noinline)) void* counted_new(size_t n) {
  void* p = std::malloc(n + kHeader);
  if (!p) return nullptr;
  *static_cast<size_t*>(p) = n;
  const int64_t live = g_live.fetch_add(static_cast<int64_t>(n)) + static_cast<int64_t>(n);
  for (int64_t peak = g_peak.load(); live > peak && !g_peak.compare_exchange_weak(peak, live);) {
  }
  return static_cast<char*>(p) + kHeader;
}
__attribute__((noinline)) void counted_delete(void* p) {
  if (!p) return;
  void* block = static_cast<char*>(p) - kHeader;
  g_live.fetch_sub(static_cast<int64_t>(*static_cast<size_t*>(block)));
  std::free(block);
}
}  // namespace

void* operator new(size_t n) {
  if (void* p = counted_new(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept { return counted_new(n); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return counted_new(n); }
void operator delete(void* p) noexcept { counted_delete(p); }
void operator delete[](void* p) noexcept { counted_delete(p); }
void operator delete(void* p, size_t) noexcept { counted_delete(p); }
void operator delete[](void* p, size_t) noexcept { counted_delete(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { counted_delete(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { counted_delete(p); }

namespace stoke::io {
namespace {

// A PNG written a row at a time (so a large one never exists in memory): row(y, dst) fills row y (w x c bytes).
std::vector<uint8_t> stream_png(int h, int w, int c, bool interlace, const test::PngRowFn& row) {
  static const int kTypes[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                PNG_COLOR_TYPE_RGB_ALPHA};
  test::PngSpec s{h, w, kTypes[c], 8};
  s.interlace = interlace;
  s.fast = true;
  return test::write_png(s, row);
}

// The reference: the crop of the whole image (converted to `channels` as every codec does), each k x k block
// averaged with rounding (fewer pixels at the crop's bottom and right edges), plainly.
std::vector<uint8_t> area_average(const std::vector<uint8_t>& px, int w, int in_c, CropBox cb, int k, int channels,
                                  int* rh, int* rw) {
  std::vector<uint8_t> conv(static_cast<size_t>(cb.h) * cb.w * channels);
  pixels::convert(px.data(), static_cast<size_t>(w) * in_c, in_c, cb.y, cb.x, cb.h, cb.w, channels, conv.data(),
                  static_cast<size_t>(cb.w) * channels);
  *rh = (cb.h + k - 1) / k;
  *rw = (cb.w + k - 1) / k;
  std::vector<uint8_t> out(static_cast<size_t>(*rh) * *rw * channels);
  for (int ry = 0; ry < *rh; ++ry)
    for (int rx = 0; rx < *rw; ++rx)
      for (int ch = 0; ch < channels; ++ch) {
        uint32_t sum = 0, n = 0;
        for (int y = ry * k; y < std::min(cb.h, ry * k + k); ++y)
          for (int x = rx * k; x < std::min(cb.w, rx * k + k); ++x, ++n)
            sum += conv[(static_cast<size_t>(y) * cb.w + x) * channels + ch];
        out[(static_cast<size_t>(ry) * *rw + rx) * channels + ch] = static_cast<uint8_t>((sum + n / 2) / n);
      }
  return out;
}

CropBox fixed_crop(const void* ctx, int, int) { return *static_cast<const CropBox*>(ctx); }

TEST(PngStream, TheRegionIsTheAreaAverageOfTheWholeImageAndResizesLikeIt) {
  const int h = 97, w = 131;
  const CropBox crops[] = {{0, 0, h, w}, {13, 29, 80, 97}, {60, 90, 37, 41}, {0, 7, 1, 120}, {5, 130, 90, 1}};
  const std::pair<int, int> targets[] = {{300, 300}, {97, 131}, {40, 30}, {17, 13}, {7, 9}, {1, 1}};
  int checked = 0, reduced = 0;
  for (int in_c = 1; in_c <= 4; ++in_c) {
    const std::vector<uint8_t> px = test::smooth_image(h, w, in_c, static_cast<uint64_t>(in_c));
    for (const bool interlace : {false, true}) {
      const std::vector<uint8_t> png = stream_png(h, w, in_c, interlace, [&](int y, uint8_t* d) {
        std::memcpy(d, px.data() + static_cast<size_t>(y) * w * in_c, static_cast<size_t>(w) * in_c);
      });
      for (const CropBox& cb : crops)
        for (auto [th, tw] : targets)
          for (const int channels : {1, 3}) {
            SCOPED_TRACE(testing::Message()
                         << in_c << " channels in, " << channels << " out, interlaced " << interlace << ", crop "
                         << cb.y << "," << cb.x << " " << cb.h << "x" << cb.w << ", target " << th << "x" << tw);
            DecodedRegion r;
            std::string err;
            ASSERT_TRUE(decode_region(png.data(), png.size(), CropChooser{fixed_crop, &cb}, th, tw, channels, r, &err))
                << err;
            const int k = std::max(1, std::min(cb.h / th, cb.w / tw));  // the largest factor still covering the target
            ASSERT_EQ(r.scale_denom, k);
            int rh = 0, rw = 0;
            const std::vector<uint8_t> want = area_average(px, w, in_c, cb, k, channels, &rh, &rw);
            ASSERT_EQ(r.h, rh);
            ASSERT_EQ(r.w, rw);
            if (k > 1) {  // at least the target, under twice it per side
              EXPECT_TRUE(rh >= th && rw >= tw && (rh < 2 * th || rw < 2 * tw));
              ++reduced;
            }
            for (int y = 0; y < rh; ++y)
              ASSERT_EQ(std::memcmp(r.pixels + y * r.stride, want.data() + static_cast<size_t>(y) * rw * channels,
                                    static_cast<size_t>(rw) * channels),
                        0)
                  << "row " << y;
            // Through the seam to the target: the area average resized bilinearly, as the whole image would be.
            std::vector<uint8_t> got(static_cast<size_t>(th) * tw * channels), ref(got.size());
            ASSERT_TRUE(decode_crop_to(png.data(), png.size(), CropChooser{fixed_crop, &cb}, false, th, tw, channels,
                                       got.data(), &err))
                << err;
            resize_bilinear(want.data(), rh, rw, channels, ref.data(), th, tw);
            ASSERT_EQ(got, ref);
            ++checked;
          }
    }
  }
  EXPECT_EQ(checked, 4 * 2 * 5 * 6 * 2);
  EXPECT_GT(reduced, checked / 3);
}

// Whether a file decodes cannot depend on the crop (the decoder pool's batches would then depend on which thread
// met a file first): a file cut below the crop fails like the whole image does.
TEST(PngStream, AFileCutBelowTheCropFailsLikeTheWholeImage) {
  const int h = 200, w = 120;
  const std::vector<uint8_t> px = test::smooth_image(h, w, 3, 5);
  std::vector<uint8_t> png = stream_png(h, w, 3, false, [&](int y, uint8_t* d) {
    for (int x = 0; x < w * 3; ++x) d[x] = static_cast<uint8_t>(px[static_cast<size_t>(y) * w * 3 + x] ^ (x * y * 37));
  });
  png.resize(png.size() * 3 / 5);
  const CropBox top{0, 0, 20, w};
  std::vector<uint8_t> dst(10 * 60 * 3);
  std::string err;
  EXPECT_FALSE(decode_crop_to(png.data(), png.size(), CropChooser{}, false, 10, 60, 3, dst.data(), &err));
  EXPECT_EQ(problem_of(err), Problem::corrupt) << err;
  EXPECT_FALSE(
      decode_crop_to(png.data(), png.size(), CropChooser{fixed_crop, &top}, false, 10, 60, 3, dst.data(), &err))
      << "the top rows are in the file, but the file is cut";
  EXPECT_EQ(problem_of(err), Problem::corrupt) << err;
}

// A legal image many times the training size: 4000 x 3000 RGBA is 48 MB decoded whole. Streamed, a decoder's heap
// peaks at one row and the reduced crop, whatever the image's height.
TEST(PngStream, ALargeLegalImageDecodesInABoundedHeap) {
  const int h = 3000, w = 4000;
  const std::vector<uint8_t> png = stream_png(h, w, 4, false, [&](int y, uint8_t* d) {
    for (int x = 0; x < w; ++x) {  // a gradient, half transparent on the right
      d[4 * x] = static_cast<uint8_t>(x * 255 / (w - 1));
      d[4 * x + 1] = static_cast<uint8_t>(y * 255 / (h - 1));
      d[4 * x + 2] = 100;
      d[4 * x + 3] = x < w / 2 ? 255 : 128;
    }
  });
  std::printf("the PNG: %dx%d RGBA, %zu bytes\n", w, h, png.size());
  struct Case {
    const char* what;
    CropBox crop;
  } cases[] = {{"whole image", {0, 0, h, w}}, {"random-resized-crop style region", {700, 1100, 1500, 2100}}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    std::vector<uint8_t> dst(224 * 224 * 3);
    std::string err;
    bool ok = false;
    // On a new thread, so its per-thread buffers are counted too (a decoder thread keeps them between images).
    const int64_t before = g_live.load();
    g_peak.store(before);
    std::thread([&] {
      ok = decode_crop_to(png.data(), png.size(), CropChooser{fixed_crop, &c.crop}, false, 224, 224, 3, dst.data(),
                          &err);
    }).join();
    ASSERT_TRUE(ok) << err;
    const int64_t peak = g_peak.load() - before;
    std::printf("%s: heap peak %.1f KiB above the live heap (the image decoded whole: %.1f MiB)\n", c.what,
                static_cast<double>(peak) / 1024.0, static_cast<double>(int64_t{h} * w * 4) / 1048576.0);
    EXPECT_LT(peak, int64_t{1} << 20) << "a decoder holds more than a row and the reduced crop";
    // The pixels are the gradient's: left to right in red, top to bottom in green, the right half at half alpha.
    const uint8_t* left = dst.data() + (112 * 224 + 10) * 3;
    const uint8_t* right = dst.data() + (112 * 224 + 213) * 3;
    EXPECT_LT(left[0], 128);
    EXPECT_NEAR(left[2], 100, 1);
    EXPECT_NEAR(right[2], 50, 1);  // 100 over black at alpha 128
  }
}

}  // namespace
}  // namespace stoke::io
