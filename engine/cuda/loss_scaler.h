// Dynamic loss scaling for fp16 training, the host half of it (PyTorch GradScaler's rules): the loss gradient is
// multiplied by scale(); after each step the device's finite flag says whether every gradient was finite.
//   not finite: the step was skipped (the optimizer kernel checked the flag), scale *= backoff, streak = 0
//   finite:     ++streak; after growth_interval finite steps in a row, scale *= growth, streak = 0
// bf16 and fp32 need no scaling: their executors never construct one.
#pragma once

#include <cstdint>

namespace stoke::cuda {

class LossScaler {
 public:
  explicit LossScaler(float initial = 65536.f, int growth_interval = 2000, float backoff = 0.5f, float growth = 2.f)
      : scale_(initial), interval_(growth_interval), backoff_(backoff), growth_(growth) {}

  float scale() const { return scale_; }
  int64_t skipped() const { return skipped_; }
  int streak() const { return streak_; }

  void update(bool finite) {
    if (!finite) {
      scale_ *= backoff_;
      if (scale_ < kMinScale) scale_ = kMinScale;
      streak_ = 0;
      ++skipped_;
      return;
    }
    if (++streak_ >= interval_) {
      const float grown = scale_ * growth_;
      if (grown <= kMaxScale) scale_ = grown;
      streak_ = 0;
    }
  }

  // For checkpoints: the whole state.
  void restore(float scale, int streak, int64_t skipped) {
    scale_ = scale;
    streak_ = streak;
    skipped_ = skipped;
  }

  static constexpr float kMinScale = 1.f / 65536.f;
  static constexpr float kMaxScale = 16777216.f;  // 2^24: far past what fp16 gradients ever need

 private:
  float scale_;
  int interval_;
  float backoff_, growth_;
  int streak_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace stoke::cuda
