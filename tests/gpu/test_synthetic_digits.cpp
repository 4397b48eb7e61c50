// The synthetic digits the GPU training test uses: deterministic, balanced, and learnable by the CPU backend in
// 200 steps (the accuracy band the GPU must land in is measured in the same run there).
#include <gtest/gtest.h>

#include <chrono>

#include "models/models.h"
#include "tests/gpu/synthetic_digits.h"
#include "tests/gpu/train_util.h"

namespace stoke::test {
namespace {

TEST(SyntheticDigits, DeterministicAndBalanced) {
  const DigitSet a = make_digits(500, 3), b = make_digits(500, 3), c = make_digits(500, 4);
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_NE(a.pixels, c.pixels);
  std::vector<int> count(10, 0);
  for (int32_t l : a.labels) ++count[static_cast<size_t>(l)];
  for (int k = 0; k < 10; ++k) EXPECT_GT(count[static_cast<size_t>(k)], 25) << "digit " << k;
  // Ink covers a plausible share of the canvas (MNIST: about 19% of pixels above 128).
  int64_t bright = 0;
  for (uint8_t p : a.pixels) bright += p > 128;
  const double share = static_cast<double>(bright) / static_cast<double>(a.pixels.size());
  EXPECT_GT(share, 0.06);
  EXPECT_LT(share, 0.35);
}

TEST(SyntheticDigits, TheCpuBackendLearnsThemIn200Steps) {
  const DigitSet train = make_digits(200 * 64, 11), test = make_digits(2000, 12);
  const Graph g = build_model("small-cnn", {28, 28, 1}, 10);
  const auto t0 = std::chrono::steady_clock::now();
  const double acc = train_cpu(g, train, test, TrainRecipe{});
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("CPU backend, small CNN, 200 steps of 64 synthetic digits: test accuracy %.2f%% (%.1f s)\n", 100 * acc,
              s);
  EXPECT_GE(acc, 0.90);
}

}  // namespace
}  // namespace stoke::test
