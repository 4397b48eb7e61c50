// Bilinear resizing and mirroring of uint8 HWC pixels: what every decoded image goes through on its way to
// the model's input size. Integer arithmetic, so every build and every CPU gives the same bytes.

#include "io/codec/resize.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

#include "base/error.h"

namespace stoke::io {

void flip_horizontal(uint8_t* pixels, int h, int w, int c) {
  const size_t row = static_cast<size_t>(w) * c;
  for (int y = 0; y < h; ++y) {
    uint8_t* r = pixels + static_cast<size_t>(y) * row;
    if (c == 1) {
      std::reverse(r, r + w);
      continue;
    }
    for (int a = 0, b = w - 1; a < b; ++a, --b)
      for (int k = 0; k < c; ++k) std::swap(r[static_cast<size_t>(a) * c + k], r[static_cast<size_t>(b) * c + k]);
  }
}

namespace {

// Bilinear taps in 11-bit fixed point: out = (in[i0] * (2048 - w) + in[i1] * w) / 2048.
constexpr int kWeightBits = 11;
constexpr int kOne = 1 << kWeightBits;

struct Tap {
  int i0, i1, w1;
};

// Source coordinate of a destination centre: (i + 0.5) * sn / dn - 0.5, clamped to the edge pixels.
// Fills a per-thread vector (no allocation once it has grown).
void bilinear_taps(int dn, int sn, std::vector<Tap>& t) {
  t.resize(static_cast<size_t>(dn));
  const double scale = static_cast<double>(sn) / dn;
  for (int i = 0; i < dn; ++i) {
    double s = (i + 0.5) * scale - 0.5;
    if (s < 0) s = 0;
    int i0 = static_cast<int>(s);
    Tap& tap = t[static_cast<size_t>(i)];
    if (i0 >= sn - 1) {
      tap = {sn - 1, sn - 1, 0};
    } else {
      tap = {i0, i0 + 1, static_cast<int>(std::lround((s - i0) * kOne))};
    }
  }
}

// One output row's vertical blend over the whole source width: most of a downscale's arithmetic. 32-bit multiplies
// need SSE4.1/AVX2 to vectorize well, so it is compiled for x86-64-v3 too and dispatched at load time (like the
// GEMM); integer arithmetic, so every clone gives the same bytes.
// Not under ThreadSanitizer: the clones' ifunc resolver runs during relocation, before the TSan runtime is up,
// and its instrumented entry segfaults the process at start.
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
#define STOKE_RESIZE_CLONES __attribute__((target_clones("default", "arch=x86-64-v3")))
#else
#define STOKE_RESIZE_CLONES
#endif
STOKE_RESIZE_CLONES void blend_rows(const uint8_t* __restrict r0, const uint8_t* __restrict r1, int32_t w0, int32_t w1,
                                    int32_t* __restrict col, size_t n) {
  for (size_t i = 0; i < n; ++i) col[i] = r0[i] * w0 + r1[i] * w1;
}

thread_local std::vector<Tap> t_xtaps, t_ytaps;
thread_local std::vector<int32_t> t_blend;

// Separable, vertical pass first: for each output row, blend its two source rows over the full source width
// (contiguous, vectorizes), then pick and blend columns. Integer throughout with one rounding at the end, so
// the result is the exact fixed-point bilinear value whichever pass runs first. C is the channel count
// (0: runtime `c`).
template <int C>
void resize_rows(const uint8_t* src, int sh, int sw, int c_runtime, size_t src_stride, uint8_t* dst, int dh, int dw) {
  const int c = C > 0 ? C : c_runtime;
  const size_t srow = static_cast<size_t>(sw) * c, drow = static_cast<size_t>(dw) * c;
  std::vector<Tap>& xt = t_xtaps;
  std::vector<Tap>& yt = t_ytaps;
  bilinear_taps(dw, sw, xt);
  bilinear_taps(dh, sh, yt);
  t_blend.resize(srow);
  int32_t* __restrict col = t_blend.data();
  const Tap* taps = xt.data();
  constexpr int kShift = 2 * kWeightBits;
  constexpr int32_t kHalf = int32_t{1} << (kShift - 1);
  for (int y = 0; y < dh; ++y) {
    const Tap ty = yt[static_cast<size_t>(y)];
    blend_rows(src + static_cast<size_t>(ty.i0) * src_stride, src + static_cast<size_t>(ty.i1) * src_stride,
               kOne - ty.w1, ty.w1, col, srow);
    uint8_t* __restrict out = dst + static_cast<size_t>(y) * drow;
    for (int x = 0; x < dw; ++x) {
      const Tap t = taps[x];
      const int32_t* a = col + static_cast<size_t>(t.i0) * c;
      const int32_t* b = col + static_cast<size_t>(t.i1) * c;
      uint8_t* o = out + static_cast<size_t>(x) * c;
      for (int k = 0; k < c; ++k) o[k] = static_cast<uint8_t>((a[k] * (kOne - t.w1) + b[k] * t.w1 + kHalf) >> kShift);
    }
  }
}

}  // namespace

void resize_bilinear(const uint8_t* src, int sh, int sw, int c, uint8_t* dst, int dh, int dw) {
  resize_bilinear_strided(src, sh, sw, c, static_cast<size_t>(sw) * static_cast<size_t>(c), dst, dh, dw);
}

void resize_bilinear_strided(const uint8_t* src, int sh, int sw, int c, size_t src_stride, uint8_t* dst, int dh,
                             int dw) {
  STOKE_CHECK(sh > 0 && sw > 0 && dh > 0 && dw > 0 && c > 0, "resize_bilinear ", sh, "x", sw, " -> ", dh, "x", dw);
  STOKE_CHECK(src_stride >= static_cast<size_t>(sw) * c, "resize_bilinear stride ", src_stride);
  if (sh == dh && sw == dw) {
    const size_t row = static_cast<size_t>(sw) * c;
    if (src_stride == row) {
      std::memcpy(dst, src, row * sh);
    } else {
      for (int y = 0; y < sh; ++y) std::memcpy(dst + y * row, src + y * src_stride, row);
    }
    return;
  }
  switch (c) {
    case 1:
      resize_rows<1>(src, sh, sw, c, src_stride, dst, dh, dw);
      break;
    case 3:
      resize_rows<3>(src, sh, sw, c, src_stride, dst, dh, dw);
      break;
    default:
      resize_rows<0>(src, sh, sw, c, src_stride, dst, dh, dw);
      break;
  }
}

}  // namespace stoke::io
