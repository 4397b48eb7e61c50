// Shared by the synthetic data sets' learnability tests: train stoke's small CNN on images already in memory
// (NHWC floats, interleaved classes) with AdamW on the CPU executor, then its accuracy on held-out images.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "engine/cpu/executor.h"
#include "engine/optimizer.h"
#include "kernels/softmax_ce.h"
#include "models/models.h"

namespace stoke::test {

inline double small_cnn_held_out_accuracy(const Shape3& shape, int classes, const std::vector<float>& xtr,
                                          const std::vector<int32_t>& ytr, const std::vector<float>& xte,
                                          const std::vector<int32_t>& yte, int epochs, int batch, float lr) {
  const size_t px = static_cast<size_t>(shape.size());
  Graph g = build_model("small-cnn", shape, classes);
  std::vector<float> params(static_cast<size_t>(g.num_params())), grads(params.size()),
      buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), 1);
  OptimizerConfig oc;
  oc.kind = OptimizerKind::adamw;
  oc.weight_decay = 0.f;
  Optimizer opt(oc, g.params(), g.num_params());
  const int ntrain = static_cast<int>(ytr.size());
  CpuExecutor ex(g, batch);
  std::vector<float> dl(static_cast<size_t>(batch * classes));
  for (int epoch = 0; epoch < epochs; ++epoch)
    for (int b = 0; b + batch <= ntrain; b += batch) {
      const float* logits =
          ex.forward(batch, xtr.data() + static_cast<size_t>(b) * px, params.data(), buffers.data(), true);
      cpu::softmax_cross_entropy(batch, classes, logits, ytr.data() + b, 0.f, 1.f, nullptr, dl.data(), nullptr);
      std::fill(grads.begin(), grads.end(), 0.f);
      ex.backward(params.data(), grads.data(), dl.data());
      opt.step(params.data(), grads.data(), lr);
    }
  int64_t correct = 0;
  for (size_t b = 0; b < yte.size(); b += static_cast<size_t>(batch)) {
    const int n = static_cast<int>(std::min<size_t>(static_cast<size_t>(batch), yte.size() - b));
    int64_t c = 0;
    const float* logits = ex.forward(n, xte.data() + b * px, params.data(), buffers.data(), false);
    cpu::softmax_cross_entropy(n, classes, logits, yte.data() + b, 0.f, 1.f, nullptr, nullptr, &c);
    correct += c;
  }
  return static_cast<double>(correct) / static_cast<double>(yte.size());
}

}  // namespace stoke::test
