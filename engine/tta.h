// Test-time augmentation (--tta flip): the class probabilities of each image and of its left-right mirror, averaged,
// as timm's validate --tta and MONAI's TestTimeAugmentation with a flip average them. Used by the trainer's
// validation, `stoke eval` and `stoke predict` alike.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/backend.h"

namespace stoke {

// One evaluation batch of n images: the backend's logits, or with tta_flip the logarithm of the averaged probabilities
// (so a softmax of them gives those probabilities back, and accuracy, ROC-AUC and the confusion matrix need no other
// path), in `scratch`. *loss: the batch's mean cross-entropy; with tta_flip -log of the label's averaged probability.
const float* eval_logits(TrainingBackend& backend, int n, int classes, const uint8_t* pixels, const int32_t* labels,
                         bool tta_flip, float* loss, std::vector<float>& scratch);

// The softmax of each row of logits (n x classes), in double.
std::vector<double> softmax_rows(const float* logits, int n, int classes);

}  // namespace stoke
