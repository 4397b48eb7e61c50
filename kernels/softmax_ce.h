// Softmax cross-entropy with label smoothing, fused with its gradient. See kernels/README.md.
//
// For a row of logits z (K classes) and label y, with smoothing e, the target distribution is
// t = (1-e)*onehot(y) + e/K, and the loss is -sum_k t_k * log softmax(z)_k. The batch loss is the mean
// over rows; its gradient w.r.t. z is (softmax(z) - t) / N.
//
// Mixed (mixup, cutmix: kernels/mix.h): row i's target is lam * t(y_i) + (1 - lam) * t(y_{n-1-i}), the smoothed
// targets of its own label and its partner's (the batch reversed), and the gradient is again softmax(z) - t.
#pragma once

#include <cstdint>

#include "kernels/mix.h"

namespace stoke::cpu {

// Returns the mean loss over n rows. losses[n] (per-row loss) and dlogits[n, K] may be null.
// dlogits receives the gradient of the mean loss, multiplied by `grad_scale` (the fp16 loss scale; 1 otherwise).
// correct (may be null) receives the number of rows whose arg-max equals the label.
float softmax_cross_entropy(int n, int classes, const float* logits, const int32_t* labels, float smoothing,
                            float grad_scale, float* losses, float* dlogits, int64_t* correct);

// The same against the batch's mixed targets (mix: this batch's BatchMix). A row counts as correct when its arg-max
// is the label of the larger weight: its own for lam >= 0.5, else its partner's. The identity mix (lam 1) gives
// softmax_cross_entropy's results bit for bit.
float softmax_cross_entropy_mixed(int n, int classes, const float* logits, const int32_t* labels, const BatchMix* mix,
                                  float smoothing, float grad_scale, float* losses, float* dlogits, int64_t* correct);

}  // namespace stoke::cpu
