// The weight EMA written out for tests, independently of the engine's (engine/optimizer.h, kernels/ema_decay.h):
// the CPU backend's and the trainer's checkpoints are compared with these.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

namespace stoke::test {

// The recurrence as the CPU reference defines it: (1 - decay) once in float, both products and the sum rounded.
inline void reference_ema(std::vector<float>& ema, const std::vector<float>& x, float decay) {
  const float keep = decay, take = 1.f - decay;
  for (size_t i = 0; i < ema.size(); ++i) {
    const float kept = keep * ema[i], taken = take * x[i];
    ema[i] = kept + taken;
  }
}

// --ema-warmup's decay, written out from timm's ModelEmaV3.get_decay with its defaults (warmup_gamma 1,
// warmup_power 2/3, min_decay 0): update t (1-based) decays by min(decay, 1 - t^(-2/3)), in double, then float.
inline float warmup_decay(int64_t t, float decay) {
  return static_cast<float>(std::min(1.0 - std::pow(static_cast<double>(t), -2.0 / 3.0), static_cast<double>(decay)));
}

}  // namespace stoke::test
