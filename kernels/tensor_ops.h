// Residual add and channel concatenation. See kernels/README.md for conventions.
#pragma once

#include <cstdint>

namespace stoke::cpu {

// y = a + b (element-wise, n values). y may alias a or b.
void add_forward(int64_t n, const float* a, const float* b, float* y);
// The backward of add hands dy to both inputs: da = dy, db = dy (either may be null).
void add_backward(int64_t n, const float* dy, float* da, float* db);

// Channel concatenation of NHWC tensors with the same N*H*W = rows: y[rows, sum(cs)] = [x0 | x1 | ...].
void concat_forward(int64_t rows, int nparts, const float* const* xs, const int* cs, float* y);
// Splits dy back into the parts (each dxs[i] assigned; a null entry is skipped).
void concat_backward(int64_t rows, int nparts, const float* dy, const int* cs, float* const* dxs);

}  // namespace stoke::cpu
