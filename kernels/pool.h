// Pooling over NHWC tensors. See kernels/README.md for conventions.
#pragma once

#include <cstdint>

namespace stoke {

struct PoolShape {
  int n = 1, h = 1, w = 1, c = 1;
  int kernel = 2, stride = 2, pad = 0;
  int p() const { return (h + 2 * pad - kernel) / stride + 1; }
  int q() const { return (w + 2 * pad - kernel) / stride + 1; }
};

namespace cpu {

// Max pooling; padding never wins. argmax[N,P,Q,C] receives the flat input index (h*W + w) of the
// winner inside its image (first one on ties), for backward.
void maxpool_forward(const PoolShape& sh, const float* x, float* y, int32_t* argmax);
void maxpool_backward(const PoolShape& sh, const int32_t* argmax, const float* dy, float* dx);

// Average pooling; padded positions count in the divisor (PyTorch's count_include_pad=True).
void avgpool_forward(const PoolShape& sh, const float* x, float* y);
void avgpool_backward(const PoolShape& sh, const float* dy, float* dx);

// Global average pooling: x[N, HW, C] -> y[N, C].
void global_avgpool_forward(int n, int hw, int c, const float* x, float* y);
void global_avgpool_backward(int n, int hw, int c, const float* dy, float* dx);

}  // namespace cpu
}  // namespace stoke
