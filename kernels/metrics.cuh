// Classification metrics on the device: the confusion matrix (and from it accuracy) of a batch of logits.
// Integer atomics only, so the counts are exact and deterministic.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace stoke::cuda {

// counts[label * classes + predicted] += 1 for each of the n rows, predicted = the first arg-max of the row
// (as softmax_cross_entropy counts `correct`). counts: classes x classes int32 on the device, accumulated (zero
// it to start). Rows whose label is outside [0, classes) are not counted.
template <typename T>
void confusion_update(int n, int classes, const T* logits, const int32_t* labels, int32_t* counts, cudaStream_t stream);

}  // namespace stoke::cuda
