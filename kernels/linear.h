// Fully connected layer: y[N, out] = x[N, in] * W^T + b, W is [out, in]. See kernels/README.md.
#pragma once

namespace stoke::cpu {

void linear_forward(int n, int in, int out, const float* x, const float* w, const float* b, float* y);

// dx = dy * W (assigned; null to skip), dw += dy^T * x, db += column sums of dy (null to skip).
void linear_backward(int n, int in, int out, const float* x, const float* w, const float* dy, float* dx, float* dw,
                     float* db);

}  // namespace stoke::cpu
