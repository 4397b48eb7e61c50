// A few CPU training steps per zoo model at a small input must lower the loss: every model's forward and
// backward run on the CPU executor. Seconds per model in a Release build, so labelled slow (skipped under ASan).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "engine/cpu/executor.h"
#include "engine/optimizer.h"
#include "base/rng.h"
#include "kernels/softmax_ce.h"
#include "models/models.h"

using namespace stoke;

// A few AdamW steps on one tiny batch (32x32x3, batch 4, 3 classes) must lower the training loss, and the
// logits must stay finite. It exercises every model's forward and backward on the CPU executor.
class ZooLearns : public ::testing::TestWithParam<std::string> {};

TEST_P(ZooLearns, AFewStepsLowerTheLoss) {
  const std::string name = GetParam();
  const int n = 4, classes = 3;
  const bool heavy = name != "small-cnn" && name != "resnet18";
  const int steps = heavy ? 3 : 5;
  Graph g = build_model(name, {32, 32, 3}, classes);
  std::vector<float> params(static_cast<size_t>(g.num_params())), grads(params.size()),
      buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), 5);
  std::vector<float> x(static_cast<size_t>(n * g.input_shape().size()));
  for (size_t i = 0; i < x.size(); ++i) x[i] = normal01(77, i);
  std::vector<int32_t> labels = {0, 1, 2, 1};
  OptimizerConfig oc;
  oc.kind = OptimizerKind::adamw;
  oc.weight_decay = 0.f;
  Optimizer opt(oc, g.params(), g.num_params());
  CpuExecutor ex(g, n);
  std::vector<float> dl(static_cast<size_t>(n * classes));
  std::vector<float> losses;
  const auto t0 = std::chrono::steady_clock::now();
  for (int step = 0; step <= steps; ++step) {
    const float* logits = ex.forward(n, x.data(), params.data(), buffers.data(), true);
    for (int i = 0; i < n * classes; ++i) ASSERT_TRUE(std::isfinite(logits[i])) << "step " << step;
    losses.push_back(
        cpu::softmax_cross_entropy(n, classes, logits, labels.data(), 0.f, 1.f, nullptr, dl.data(), nullptr));
    if (step == steps) break;
    std::fill(grads.begin(), grads.end(), 0.f);
    ex.backward(params.data(), grads.data(), dl.data());
    opt.step(params.data(), grads.data(), 1e-3f);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s: loss %.4f -> %.4f in %d steps (%.2f s per step, 32x32x3, batch %d)\n", name.c_str(),
              static_cast<double>(losses.front()), static_cast<double>(losses.back()), steps, secs / (steps + 1), n);
  EXPECT_LT(losses.back(), 0.8f * losses.front()) << name;
}

INSTANTIATE_TEST_SUITE_P(Models, ZooLearns,
                         ::testing::Values("small-cnn", "resnet18", "resnet34", "resnet50", "densenet121"),
                         [](const ::testing::TestParamInfo<std::string>& p) {
                           std::string s = p.param;
                           std::replace(s.begin(), s.end(), '-', '_');
                           return s;
                         });
