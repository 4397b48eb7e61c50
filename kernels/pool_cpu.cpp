// CPU reference pooling over NHWC tensors. Every task owns whole images, so the scatter-adds of the
// backward passes (overlapping windows) run in a fixed order whatever the thread count.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "base/error.h"
#include "base/parallel.h"
#include "kernels/pool.h"

namespace stoke::cpu {
namespace {

void check(const PoolShape& sh) {
  STOKE_CHECK(sh.n > 0 && sh.h > 0 && sh.w > 0 && sh.c > 0, "bad pool shape");
  STOKE_CHECK(sh.kernel > 0 && sh.stride > 0 && sh.pad >= 0, "bad pool kernel/stride/pad");
  STOKE_CHECK(sh.h + 2 * sh.pad >= sh.kernel && sh.w + 2 * sh.pad >= sh.kernel, "pool window larger than input");
}

// Calls fn(n) for every image, spread over the pool.
template <typename F>
void per_image(int n, F&& fn) {
  parallel_for(n, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) fn(i);
  });
}

// y[c] = max of x over pixels [h0,h1) x [w0,w1) of one image, a[c] = the winner's h*W + w. Pixels are
// scanned in row-major order and only a strictly greater value (or a NaN, which propagates) replaces the
// current winner, so ties keep the first. Branch-free selects, so the channel loop vectorises.
void max_window(const float* xn, int W, int C, int h0, int h1, int w0, int w1, float* __restrict y,
                int32_t* __restrict a) {
  if (h0 >= h1 || w0 >= w1) {  // a window entirely in the padding (pad >= kernel): nothing to take
    std::fill(y, y + C, 0.f);
    std::fill(a, a + C, -1);
    return;
  }
  const float* first = xn + (int64_t{h0} * W + w0) * C;
  std::copy(first, first + C, y);
  std::fill(a, a + C, h0 * W + w0);
  for (int h = h0; h < h1; ++h)
    for (int w = (h == h0 ? w0 + 1 : w0); w < w1; ++w) {
      const float* xv = xn + (int64_t{h} * W + w) * C;
      const int32_t idx = h * W + w;
      for (int c = 0; c < C; ++c) {
        const float v = xv[c], best = y[c];
        const bool take = static_cast<int>(v > best) | (static_cast<int>(std::isnan(v)) &
                                                        static_cast<int>(!std::isnan(best)));  // bitwise: no branches
        y[c] = take ? v : best;
        a[c] = take ? idx : a[c];
      }
    }
}

}  // namespace

void maxpool_forward(const PoolShape& sh, const float* x, float* y, int32_t* argmax) {
  check(sh);
  const int H = sh.h, W = sh.w, C = sh.c, P = sh.p(), Q = sh.q();
  per_image(sh.n, [=](int64_t n) {
    thread_local std::vector<int32_t> no_argmax;  // winners still have to be tracked when argmax is null
    if (!argmax && static_cast<int>(no_argmax.size()) < C) no_argmax.resize(static_cast<size_t>(C));
    const float* xn = x + n * H * W * C;
    for (int p = 0; p < P; ++p)
      for (int q = 0; q < Q; ++q) {
        const int64_t o = ((n * P + p) * Q + q) * C;
        int32_t* ao = argmax ? argmax + o : no_argmax.data();
        const int h0 = std::max(p * sh.stride - sh.pad, 0), h1 = std::min(p * sh.stride - sh.pad + sh.kernel, H);
        const int w0 = std::max(q * sh.stride - sh.pad, 0), w1 = std::min(q * sh.stride - sh.pad + sh.kernel, W);
        max_window(xn, W, C, h0, h1, w0, w1, y + o, ao);
      }
  });
}

void maxpool_backward(const PoolShape& sh, const int32_t* argmax, const float* dy, float* dx) {
  check(sh);
  const int H = sh.h, W = sh.w, C = sh.c, P = sh.p(), Q = sh.q();
  per_image(sh.n, [&](int64_t n) {
    float* dxn = dx + n * H * W * C;
    std::fill(dxn, dxn + int64_t{H} * W * C, 0.f);
    const int64_t o0 = n * P * Q * C;
    for (int64_t i = 0; i < int64_t{P} * Q; ++i)
      for (int c = 0; c < C; ++c) {
        const int64_t o = o0 + i * C + c;
        if (argmax[o] >= 0) dxn[int64_t{argmax[o]} * C + c] += dy[o];
      }
  });
}

void avgpool_forward(const PoolShape& sh, const float* x, float* y) {
  check(sh);
  const int H = sh.h, W = sh.w, C = sh.c, P = sh.p(), Q = sh.q();
  const float inv = 1.f / static_cast<float>(sh.kernel * sh.kernel);  // padding counts in the divisor
  per_image(sh.n, [&](int64_t n) {
    const float* xn = x + n * H * W * C;
    for (int p = 0; p < P; ++p)
      for (int q = 0; q < Q; ++q) {
        float* yo = y + ((n * P + p) * Q + q) * C;
        std::fill(yo, yo + C, 0.f);
        const int h0 = std::max(p * sh.stride - sh.pad, 0), h1 = std::min(p * sh.stride - sh.pad + sh.kernel, H);
        const int w0 = std::max(q * sh.stride - sh.pad, 0), w1 = std::min(q * sh.stride - sh.pad + sh.kernel, W);
        for (int h = h0; h < h1; ++h)
          for (int w = w0; w < w1; ++w) {
            const float* xv = xn + (int64_t{h} * W + w) * C;
            for (int c = 0; c < C; ++c) yo[c] += xv[c];
          }
        for (int c = 0; c < C; ++c) yo[c] *= inv;
      }
  });
}

void avgpool_backward(const PoolShape& sh, const float* dy, float* dx) {
  check(sh);
  const int H = sh.h, W = sh.w, C = sh.c, P = sh.p(), Q = sh.q();
  const float inv = 1.f / static_cast<float>(sh.kernel * sh.kernel);
  per_image(sh.n, [&](int64_t n) {
    float* dxn = dx + n * H * W * C;
    std::fill(dxn, dxn + int64_t{H} * W * C, 0.f);
    for (int p = 0; p < P; ++p)
      for (int q = 0; q < Q; ++q) {
        const float* g = dy + ((n * P + p) * Q + q) * C;
        const int h0 = std::max(p * sh.stride - sh.pad, 0), h1 = std::min(p * sh.stride - sh.pad + sh.kernel, H);
        const int w0 = std::max(q * sh.stride - sh.pad, 0), w1 = std::min(q * sh.stride - sh.pad + sh.kernel, W);
        for (int h = h0; h < h1; ++h)
          for (int w = w0; w < w1; ++w) {
            float* d = dxn + (int64_t{h} * W + w) * C;
            for (int c = 0; c < C; ++c) d[c] += g[c] * inv;
          }
      }
  });
}

void global_avgpool_forward(int n, int hw, int c, const float* x, float* y) {
  STOKE_CHECK(n > 0 && hw > 0 && c > 0, "bad global pool shape");
  per_image(n, [&](int64_t i) {
    const float* xn = x + i * hw * c;
    float* yn = y + i * c;
    std::fill(yn, yn + c, 0.f);
    for (int j = 0; j < hw; ++j)
      for (int k = 0; k < c; ++k) yn[k] += xn[int64_t{j} * c + k];
    const float inv = 1.f / static_cast<float>(hw);
    for (int k = 0; k < c; ++k) yn[k] *= inv;
  });
}

void global_avgpool_backward(int n, int hw, int c, const float* dy, float* dx) {
  STOKE_CHECK(n > 0 && hw > 0 && c > 0, "bad global pool shape");
  const float inv = 1.f / static_cast<float>(hw);
  per_image(n, [&](int64_t i) {
    const float* g = dy + i * c;
    float* dxn = dx + i * hw * c;
    for (int j = 0; j < hw; ++j)
      for (int k = 0; k < c; ++k) dxn[int64_t{j} * c + k] = g[k] * inv;
  });
}

}  // namespace stoke::cpu
