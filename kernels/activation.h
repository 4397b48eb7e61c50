// Element-wise activations. See kernels/README.md for conventions.
#pragma once

#include <cstdint>

namespace stoke::cpu {

// y = max(x, 0). y may alias x.
void relu_forward(int64_t n, const float* x, float* y);

// dx = dy where y > 0, else 0 (y is the forward output; the kink at 0 takes gradient 0). dx may alias dy.
void relu_backward(int64_t n, const float* y, const float* dy, float* dx);

}  // namespace stoke::cpu
