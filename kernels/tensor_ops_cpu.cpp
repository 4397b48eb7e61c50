// CPU reference residual add and channel concatenation (pure data movement, no reductions).
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "base/parallel.h"
#include "kernels/tensor_ops.h"

namespace stoke::cpu {
namespace {
constexpr int64_t kGrain = 1 << 15;

void copy(int64_t n, const float* src, float* dst) {
  if (!dst || dst == src) return;
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) { std::memcpy(dst + b, src + b, sizeof(float) * (e - b)); });
}
}  // namespace

void add_forward(int64_t n, const float* a, const float* b, float* y) {
  parallel_for(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) y[i] = a[i] + b[i];
  });
}

void add_backward(int64_t n, const float* dy, float* da, float* db) {
  copy(n, dy, da);
  copy(n, dy, db);
}

void concat_forward(int64_t rows, int nparts, const float* const* xs, const int* cs, float* y) {
  int total = 0;
  for (int i = 0; i < nparts; ++i) total += cs[i];
  parallel_for(rows, std::max<int64_t>(1, kGrain / std::max(total, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* dst = y + r * total;
      for (int i = 0; i < nparts; ++i) {
        std::memcpy(dst, xs[i] + r * cs[i], sizeof(float) * cs[i]);
        dst += cs[i];
      }
    }
  });
}

void concat_backward(int64_t rows, int nparts, const float* dy, const int* cs, float* const* dxs) {
  int total = 0;
  for (int i = 0; i < nparts; ++i) total += cs[i];
  parallel_for(rows, std::max<int64_t>(1, kGrain / std::max(total, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* src = dy + r * total;
      for (int i = 0; i < nparts; ++i) {
        if (dxs[i]) std::memcpy(dxs[i] + r * cs[i], src, sizeof(float) * cs[i]);
        src += cs[i];
      }
    }
  });
}

}  // namespace stoke::cpu
