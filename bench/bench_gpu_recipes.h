// The transforms bench_gpu feeds the fused augment kernel: a batch's draws from a real recipe (the presets of
// `stoke train --augment`, resolved and drawn by engine/augment_plan.h as the trainer does), compiled by the host
// compiler so that bench_gpu.cu needs none of the engine's headers.
#pragma once

#include <string>
#include <vector>

#include "kernels/augment.h"

namespace stoke::bench {

// The recipes benchmarked, by name: "monai", "imagenet", "cifar" (the presets) and "every-step" (monai with colour
// jitter, hue, gamma, noise and erasing: every step of the op, the transcendental ones included).
const std::vector<std::string>& augment_bench_recipes();

// The transforms of samples 0..n-1 of an h x w x c batch at seed 0, epoch 0.
std::vector<SampleTransform> augment_bench_transforms(const std::string& recipe, int n, int h, int w, int c);

}  // namespace stoke::bench
