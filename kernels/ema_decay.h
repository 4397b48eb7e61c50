// --ema-warmup's decay of applied update t (timm's ModelEmaV3 with warmup_gamma 1, warmup_power 2/3, min_decay 0):
// one definition for the CPU reference (engine/optimizer.h ema_decay_at) and the device's prepare_step
// (kernels/optimizer.cuh), in double and rounded to float once. Without warm-up it is the decay itself.
#pragma once

#include <cmath>
#include <cstdint>

#include "base/rng.h"  // STOKE_HD

namespace stoke {

STOKE_HD inline float ema_step_decay(int64_t t, float decay, bool warmup) {
  if (!warmup) return decay;
#if defined(__CUDA_ARCH__)
  auto dpow = [](double x, double y) { return pow(x, y); };
#else
  auto dpow = [](double x, double y) { return std::pow(x, y); };
#endif
  if (t <= 1) return 0.f;  // timm: max(0, t - 1) <= 0 gives 0, the weights copied
  double d = 1.0 - dpow(1.0 + static_cast<double>(t - 1) / 1.0, -2.0 / 3.0);
  if (d > static_cast<double>(decay)) d = static_cast<double>(decay);
  if (d < 0.0) d = 0.0;
  return static_cast<float>(d);
}

}  // namespace stoke
