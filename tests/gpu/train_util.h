// A minimal training loop shared by the CPU-vs-GPU tests: the same batches, schedule and optimizer on the CPU
// backend (CpuExecutor + cpu::softmax_cross_entropy + Optimizer) and on the CUDA backend (CudaExecutor), so their
// accuracies can be compared. Not the trainer: no data pipeline, no metrics files.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <vector>

#include "engine/cpu/executor.h"
#include "engine/graph.h"
#include "engine/optimizer.h"
#include "kernels/softmax_ce.h"
#include "tests/gpu/synthetic_digits.h"

namespace stoke::test {

struct TrainRecipe {
  int steps = 200;
  int batch = 64;
  float lr = 0.05f;
  uint64_t seed = 7;
  OptimizerConfig optimizer;  // SGD, Nesterov momentum 0.9, weight decay 5e-4
};

// The uint8 pixels of batch `step` (wrapping around the set) normalised as the trainer does: x * scale + shift
// with scale = 1 / (255 std), shift = -mean / std, rounded separately (bit-identical to the GPU augment kernel).
inline void normalize_batch(const DigitSet& set, int first, int count, float mean, float stdev, float* out) {
  const float scale = 1.f / (255.f * stdev), shift = -mean / stdev;
  constexpr int px = DigitSet::kSize * DigitSet::kSize;
  for (int i = 0; i < count; ++i) {
    const int src = (first + i) % set.n;
    for (int j = 0; j < px; ++j)
      out[static_cast<size_t>(i) * px + j] =
          static_cast<float>(set.pixels[static_cast<size_t>(src) * px + j]) * scale + shift;
  }
}

inline std::vector<int32_t> batch_labels(const DigitSet& set, int first, int count) {
  std::vector<int32_t> l(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) l[static_cast<size_t>(i)] = set.labels[static_cast<size_t>((first + i) % set.n)];
  return l;
}

inline Schedule recipe_schedule(const TrainRecipe& r) {
  Schedule s;
  s.kind = ScheduleKind::onecycle;
  s.lr = r.lr;
  s.total_steps = r.steps;
  return s;
}

// Trains on the CPU backend; returns the test accuracy.
inline double train_cpu(const Graph& g, const DigitSet& train, const DigitSet& test, const TrainRecipe& r) {
  const auto [mean, stdev] = digit_stats(train);
  std::vector<float> params(static_cast<size_t>(g.num_params())), grads(params.size()),
      buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), r.seed);
  CpuExecutor ex(g, r.batch);
  Optimizer opt(r.optimizer, g.params(), g.num_params());
  const Schedule sched = recipe_schedule(r);
  constexpr int px = DigitSet::kSize * DigitSet::kSize;
  std::vector<float> x(static_cast<size_t>(r.batch) * px), dlogits(static_cast<size_t>(r.batch) * 10);
  for (int step = 0; step < r.steps; ++step) {
    const int first = step * r.batch;
    normalize_batch(train, first, r.batch, mean, stdev, x.data());
    const auto labels = batch_labels(train, first, r.batch);
    const float* logits = ex.forward(r.batch, x.data(), params.data(), buffers.data(), true);
    cpu::softmax_cross_entropy(r.batch, 10, logits, labels.data(), 0.f, 1.f, nullptr, dlogits.data(), nullptr);
    std::fill(grads.begin(), grads.end(), 0.f);
    ex.backward(params.data(), grads.data(), dlogits.data());
    opt.step(params.data(), grads.data(), sched.at(step));
  }
  int64_t correct = 0;
  for (int first = 0; first < test.n; first += r.batch) {
    const int count = std::min(r.batch, test.n - first);
    normalize_batch(test, first, count, mean, stdev, x.data());
    const auto labels = batch_labels(test, first, count);
    const float* logits = ex.forward(count, x.data(), params.data(), buffers.data(), false);
    int64_t c = 0;
    cpu::softmax_cross_entropy(count, 10, logits, labels.data(), 0.f, 1.f, nullptr, nullptr, &c);
    correct += c;
  }
  return static_cast<double>(correct) / test.n;
}

}  // namespace stoke::test
