// Softmax cross-entropy with label smoothing, fused with its gradient. See kernels/README.md.
//
// For a row of logits z (K classes) and label y, with smoothing e, the target distribution is
// t = (1-e)*onehot(y) + e/K, and the loss is -sum_k t_k * log softmax(z)_k. The batch loss is the mean
// over rows; its gradient w.r.t. z is (softmax(z) - t) / N.
#pragma once

#include <cstdint>

namespace stoke::cpu {

// Returns the mean loss over n rows. losses[n] (per-row loss) and dlogits[n, K] may be null.
// dlogits receives the gradient of the mean loss, multiplied by `grad_scale` (the fp16 loss scale; 1 otherwise).
// correct (may be null) receives the number of rows whose arg-max equals the label.
float softmax_cross_entropy(int n, int classes, const float* logits, const int32_t* labels, float smoothing,
                            float grad_scale, float* losses, float* dlogits, int64_t* correct);

}  // namespace stoke::cpu
