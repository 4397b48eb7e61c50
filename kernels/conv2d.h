// 2-D convolution (cross-correlation, as in every framework). See kernels/README.md for conventions.
#pragma once

namespace stoke {

struct ConvShape {
  int n = 1, h = 1, w = 1, c = 1;  // input  N x H x W x C
  int k = 1, r = 1, s = 1;         // filter K x R x S x C
  int stride = 1, pad = 0;         // same along both axes
  int p() const { return (h + 2 * pad - r) / stride + 1; }  // output height
  int q() const { return (w + 2 * pad - s) / stride + 1; }  // output width
};

namespace cpu {

// y[N,P,Q,K] = conv(x, w) + b. b may be null.
void conv2d_forward(const ConvShape& sh, const float* x, const float* w, const float* b, float* y);

// dx = conv_transpose(dy, w) (assigned; null to skip), dw += corr(x, dy), db += sum(dy) (null to skip).
void conv2d_backward(const ConvShape& sh, const float* x, const float* w, const float* dy, float* dx, float* dw,
                     float* db);

}  // namespace cpu
}  // namespace stoke
