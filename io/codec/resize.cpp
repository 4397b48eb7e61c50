// Bilinear resizing and mirroring of uint8 HWC pixels: what every decoded image goes through on its way to
// the model's input size. Integer arithmetic, so every build and every CPU gives the same bytes.

#include "io/codec/resize.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <vector>

#include "base/error.h"

namespace stoke::io {

void flip_vertical(uint8_t* pixels, int h, int w, int c) {
  const size_t row = static_cast<size_t>(w) * c;
  for (int a = 0, b = h - 1; a < b; ++a, --b)
    std::swap_ranges(pixels + static_cast<size_t>(a) * row, pixels + static_cast<size_t>(a + 1) * row,
                     pixels + static_cast<size_t>(b) * row);
}

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

// ---- the affine pass ----------------------------------------------------------------------------------------------
// Positions in 32.32 fixed point, stepped along a row by integer additions (no drift between pixels or builds).
constexpr int kFrac = 32;
constexpr int64_t kFixOne = int64_t{1} << kFrac;

int64_t to_fixed(double v) { return std::llround(v * static_cast<double>(kFixOne)); }

// The share of a bilinear sample at tap coordinate t (fixed point, pixel-index units) that falls on taps inside
// [0, n), in 11 bits: 2048 inside, 0 a whole pixel outside, linear in between.
int inside_weight(int64_t t, int n) {
  if (t >= 0 && t <= int64_t{n - 1} * kFixOne) return kOne;
  if (t <= -kFixOne || t >= int64_t{n} * kFixOne) return 0;
  const int64_t in = t < 0 ? kFixOne + t : int64_t{n} * kFixOne - t;
  return static_cast<int>((in + (int64_t{1} << (kFrac - kWeightBits - 1))) >> (kFrac - kWeightBits));
}

// A position stepped along a row: value at pixel x is a + x * d (fixed point).
struct Line {
  int64_t a, d;
  int64_t at(int x) const { return a + x * d; }
};

// Clamped source tap of position p (fixed point, rounded to 11-bit weights by the half added into p): index, the next
// index (the same at the last pixel) and the 11-bit weight of the next.
struct FixedTap {
  int i0, i1, w1;
};
inline FixedTap fixed_tap(int64_t p, int n) {
  p = std::clamp<int64_t>(p, 0, int64_t{n - 1} * kFixOne);
  const int i0 = static_cast<int>(p >> kFrac);
  return {i0, i0 + (i0 < n - 1 ? 1 : 0), static_cast<int>((p >> (kFrac - kWeightBits)) & (kOne - 1))};
}

// The pixels x in [lo, hi) of a row whose line stays within [min, max]: narrowed from a double estimate until both
// ends check exactly (a line is monotonic, so its ends bound it).
void keep_within(const Line& l, int64_t min, int64_t max, int& lo, int& hi) {
  if (lo >= hi) return;
  if (l.d == 0) {
    if (l.a < min || l.a > max) hi = lo;
    return;
  }
  const double x0 = (static_cast<double>(min) - static_cast<double>(l.a)) / static_cast<double>(l.d);
  const double x1 = (static_cast<double>(max) - static_cast<double>(l.a)) / static_cast<double>(l.d);
  const double from = std::max<double>(lo, std::ceil(std::min(x0, x1))),
               to = std::min<double>(hi, std::floor(std::max(x0, x1)) + 1);
  lo = static_cast<int>(std::min<double>(from, hi));
  hi = static_cast<int>(std::max<double>(to, lo));
  while (lo < hi && (l.at(lo) < min || l.at(lo) > max)) ++lo;
  while (lo < hi && (l.at(hi - 1) < min || l.at(hi - 1) > max)) --hi;
}

// The affine pass's arithmetic, in two rounded stages so that 16-bit lanes hold every intermediate (the SSE2 path
// below computes exactly this): a column blend with 11-bit weights kept to 7 fractional bits, then the row blend,
// 18 fractional bits. Identity positions (weight 0) give the pixel back exactly.
constexpr int kBlendBits = 7 + kWeightBits;
inline int32_t column(int32_t top, int32_t bottom, int32_t w) { return (top * (kOne - w) + bottom * w + 8) >> 4; }
inline int32_t blend2(int32_t left, int32_t right, int32_t w) { return left * (kOne - w) + right * w; }
inline uint8_t to_byte(int32_t v18) { return static_cast<uint8_t>((v18 + (1 << (kBlendBits - 1))) >> kBlendBits); }

#if defined(__SSE2__)
// One RGB pixel from its four taps (r0, r1: the top and bottom rows at the left tap; the right tap 3 bytes on).
inline void rgb_pixel_sse2(const uint8_t* r0, const uint8_t* r1, int32_t wx, int32_t wy, uint8_t* out) {
  // 6 bytes each (never past the last pixel of the last row), loaded as 4 + 2 into the register.
  auto load6 = [](const uint8_t* p) {
    int32_t lo4;
    uint16_t hi2;
    std::memcpy(&lo4, p, 4);
    std::memcpy(&hi2, p + 4, 2);
    return _mm_insert_epi16(_mm_cvtsi32_si128(lo4), hi2, 2);
  };
  const __m128i zero = _mm_setzero_si128();
  const __m128i t = _mm_unpacklo_epi8(load6(r0), zero);  // R0 G0 B0 R1 G1 B1
  const __m128i b = _mm_unpacklo_epi8(load6(r1), zero);
  const __m128i wv =
      _mm_set1_epi32(static_cast<int32_t>((static_cast<uint32_t>(wy) << 16) | static_cast<uint32_t>(kOne - wy)));
  const __m128i eight = _mm_set1_epi32(8);
  const __m128i lo = _mm_srai_epi32(_mm_add_epi32(_mm_madd_epi16(_mm_unpacklo_epi16(t, b), wv), eight), 4);
  const __m128i hi = _mm_srai_epi32(_mm_add_epi32(_mm_madd_epi16(_mm_unpackhi_epi16(t, b), wv), eight), 4);
  const __m128i cols = _mm_packs_epi32(lo, hi);                             // R0 G0 B0 R1 G1 B1 0 0
  const __m128i pairs = _mm_unpacklo_epi16(cols, _mm_srli_si128(cols, 6));  // R0 R1 G0 G1 B0 B1 . .
  const __m128i wh =
      _mm_set1_epi32(static_cast<int32_t>((static_cast<uint32_t>(wx) << 16) | static_cast<uint32_t>(kOne - wx)));
  const __m128i v =
      _mm_srai_epi32(_mm_add_epi32(_mm_madd_epi16(pairs, wh), _mm_set1_epi32(1 << (kBlendBits - 1))), kBlendBits);
  const auto px = static_cast<uint32_t>(_mm_cvtsi128_si32(_mm_packus_epi16(_mm_packs_epi32(v, zero), zero)));
  out[0] = static_cast<uint8_t>(px);
  out[1] = static_cast<uint8_t>(px >> 8);
  out[2] = static_cast<uint8_t>(px >> 16);
}
#endif

// Output pixel x of a row by the general rule: fill outside, blended at the border, clamped taps.
template <int C>
void affine_pixel(const uint8_t* src, int sh, int sw, int c, size_t stride, int dh, int dw, const Line& tu,
                  const Line& tv, const Line& px, const Line& py, const uint8_t* fill, int x, uint8_t* out) {
  if constexpr (C > 0) c = C;
  const int wx = inside_weight(tu.at(x), dw), wy = wx ? inside_weight(tv.at(x), dh) : 0;
  if (wx == 0 || wy == 0) {
    for (int k = 0; k < c; ++k) out[k] = fill[k];
    return;
  }
  const FixedTap tx = fixed_tap(px.at(x), sw), ty = fixed_tap(py.at(x), sh);
  const uint8_t* r0 = src + static_cast<size_t>(ty.i0) * stride;
  const uint8_t* r1 = src + static_cast<size_t>(ty.i1) * stride;
  const size_t a = static_cast<size_t>(tx.i0) * c, b = static_cast<size_t>(tx.i1) * c;
  const int64_t w_in = int64_t{wx} * wy, w_out = (int64_t{kOne} << kWeightBits) - w_in;
  for (int k = 0; k < c; ++k) {
    const int64_t v = blend2(column(r0[a + k], r1[a + k], ty.w1), column(r0[b + k], r1[b + k], ty.w1), tx.w1);
    const int64_t sum = v * w_in + (int64_t{fill[k]} << kBlendBits) * w_out;
    out[k] = static_cast<uint8_t>((sum + (int64_t{1} << (kBlendBits + 2 * kWeightBits - 1))) >>
                                  (kBlendBits + 2 * kWeightBits));
  }
}

template <int C>
void affine_rows(const uint8_t* src, int sh, int sw, int c_runtime, size_t stride, uint8_t* dst, int dh, int dw,
                 const double m[6], const uint8_t* fill) {
  const int c = C > 0 ? C : c_runtime;
  const double sx = static_cast<double>(sw) / dw, sy = static_cast<double>(sh) / dh;
  // The half added into the source positions rounds them to the 11-bit weights (a carry moves to the next tap).
  const int64_t half = int64_t{1} << (kFrac - kWeightBits - 1);
  for (int y = 0; y < dh; ++y) {
    const double Y = y + 0.5;
    // At X = 0.5: the target-space tap coordinate (u - 0.5) and the source position, stepped by m[0], m[3] per pixel.
    const double u = m[0] * 0.5 + m[1] * Y + m[2], v = m[3] * 0.5 + m[4] * Y + m[5];
    const Line tu{to_fixed(u - 0.5), to_fixed(m[0])}, tv{to_fixed(v - 0.5), to_fixed(m[3])};
    const Line px{to_fixed(u * sx - 0.5) + half, to_fixed(m[0] * sx)},
        py{to_fixed(v * sy - 0.5) + half, to_fixed(m[3] * sy)};
    // The interior: every tap inside the image and both next taps too, no fill, no clamp.
    int lo = 0, hi = dw;
    keep_within(tu, 0, int64_t{dw - 1} * kFixOne, lo, hi);
    keep_within(tv, 0, int64_t{dh - 1} * kFixOne, lo, hi);
    keep_within(px, 0, int64_t{sw - 1} * kFixOne - 1, lo, hi);
    keep_within(py, 0, int64_t{sh - 1} * kFixOne - 1, lo, hi);
    // Where the sample touches the image at all: outside it, the fill.
    int touch_lo = 0, touch_hi = dw;
    keep_within(tu, -kFixOne + 1, int64_t{dw} * kFixOne - 1, touch_lo, touch_hi);
    keep_within(tv, -kFixOne + 1, int64_t{dh} * kFixOne - 1, touch_lo, touch_hi);
    uint8_t* __restrict row = dst + static_cast<size_t>(y) * dw * c;
    auto fill_run = [&](int from, int to) {
      for (int x = from; x < to; ++x)
        for (int k = 0; k < c; ++k) row[static_cast<size_t>(x) * c + k] = fill[k];
    };
    if (touch_lo >= touch_hi) {
      fill_run(0, dw);
      continue;
    }
    fill_run(0, touch_lo);
    fill_run(touch_hi, dw);
    lo = std::max(lo, touch_lo);
    hi = std::min(hi, touch_hi);
    for (int x = touch_lo; x < std::min(lo, touch_hi); ++x)
      affine_pixel<C>(src, sh, sw, c, stride, dh, dw, tu, tv, px, py, fill, x, row + x * c);
    int64_t p = px.at(lo), q = py.at(lo);
    for (int x = lo; x < hi; ++x, p += px.d, q += py.d) {
      const int ix = static_cast<int>(p >> kFrac), iy = static_cast<int>(q >> kFrac);
      const int32_t wx = static_cast<int32_t>((p >> (kFrac - kWeightBits)) & (kOne - 1));
      const int32_t wy = static_cast<int32_t>((q >> (kFrac - kWeightBits)) & (kOne - 1));
      const uint8_t* r0 = src + static_cast<size_t>(iy) * stride + static_cast<size_t>(ix) * c;
      const uint8_t* r1 = r0 + stride;
      uint8_t* o = row + static_cast<size_t>(x) * c;
#if defined(__SSE2__)
      if constexpr (C == 3) {
        rgb_pixel_sse2(r0, r1, wx, wy, o);
        continue;
      }
#endif
      for (int k = 0; k < c; ++k)
        o[k] = to_byte(blend2(column(r0[k], r1[k], wy), column(r0[c + k], r1[c + k], wy), wx));
    }
    for (int x = std::max({hi, lo, touch_lo}); x < touch_hi; ++x)
      affine_pixel<C>(src, sh, sw, c, stride, dh, dw, tu, tv, px, py, fill, x, row + x * c);
  }
}

}  // namespace

bool affine_in_domain(const double m[6]) {
  for (int i = 0; i < 6; ++i)
    if (!(std::fabs(m[i]) < (i == 2 || i == 5 ? kMaxAffineShift : kMaxAffineScale))) return false;  // NaN too
  return true;
}

void resize_affine(const uint8_t* src, int sh, int sw, int c, size_t src_stride, uint8_t* dst, int dh, int dw,
                   const double m[6], const uint8_t* fill) {
  STOKE_CHECK(sh > 0 && sw > 0 && dh > 0 && dw > 0 && c > 0, "resize_affine ", sh, "x", sw, " -> ", dh, "x", dw);
  STOKE_CHECK(src_stride >= static_cast<size_t>(sw) * c, "resize_affine stride ", src_stride);
  STOKE_CHECK(affine_in_domain(m), "resize_affine: matrix ", m[0], " ", m[1], " ", m[2], " / ", m[3], " ", m[4], " ",
              m[5], " beyond its fixed point");
  switch (c) {
    case 1: affine_rows<1>(src, sh, sw, c, src_stride, dst, dh, dw, m, fill); break;
    case 3: affine_rows<3>(src, sh, sw, c, src_stride, dst, dh, dw, m, fill); break;
    default: affine_rows<0>(src, sh, sw, c, src_stride, dst, dh, dw, m, fill); break;
  }
}

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
    case 1: resize_rows<1>(src, sh, sw, c, src_stride, dst, dh, dw); break;
    case 3: resize_rows<3>(src, sh, sw, c, src_stride, dst, dh, dw); break;
    default: resize_rows<0>(src, sh, sw, c, src_stride, dst, dh, dw); break;
  }
}

}  // namespace stoke::io
