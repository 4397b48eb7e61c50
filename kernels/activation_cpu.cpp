// CPU reference activations: element-wise, so any split of the range gives the same result.
#include <cstdint>

#include "kernels/activation.h"
#include "kernels/parallel.h"

namespace stoke::cpu {
namespace {
constexpr int64_t kGrain = 1 << 15;
}

void relu_forward(int64_t n, const float* x, float* y) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
  });
}

void relu_backward(int64_t n, const float* y, const float* dy, float* dx) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
  });
}

}  // namespace stoke::cpu
