// Dynamic loss scaling for fp16 training, the host half of it (PyTorch GradScaler's rules): the loss gradient is
// multiplied by scale(); after each step the finite flag says whether every gradient was finite.
//   not finite: the step was skipped (the optimizer kernel checked the flag), scale *= backoff, streak = 0
//   finite:     ++streak; after growth_interval finite steps in a row, scale *= growth, streak = 0
// The executor runs the same rule on the device (cuda::prepare_step, kernels/optimizer.cuh: update_loss_scale is
// the one definition), so no step waits for the flag; this class is the host's model of it, for tests.
// bf16 and fp32 need no scaling: their executors never scale.
#pragma once

#include <cstdint>

#include "kernels/optimizer.cuh"

namespace stoke::cuda {

class LossScaler {
 public:
  explicit LossScaler(float initial = 65536.f, int growth_interval = 2000, float backoff = 0.5f, float growth = 2.f)
      : rule_{growth_interval, backoff, growth}, state_{initial, 0, 0} {}

  float scale() const { return state_.scale; }
  int64_t skipped() const { return state_.skipped; }
  int streak() const { return state_.streak; }
  const LossScaleRule& rule() const { return rule_; }
  const LossScaleState& state() const { return state_; }

  void update(bool finite) { update_loss_scale(state_, rule_, finite); }

  // For checkpoints: the whole state.
  void restore(float scale, int streak, int64_t skipped) { state_ = LossScaleState{scale, streak, skipped}; }

  static constexpr float kMinScale = kMinLossScale;
  static constexpr float kMaxScale = kMaxLossScale;

 private:
  LossScaleRule rule_;
  LossScaleState state_;
};

}  // namespace stoke::cuda
