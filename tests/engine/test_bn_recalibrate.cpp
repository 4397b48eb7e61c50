// --bn-recalibrate's mechanism (engine/bn_recalibrate.h) on the CPU backend: after a few training steps the running
// statistics are the exact average of the batches' own statistics (the exponential average is not), they do not
// depend on the statistics or the steps before, and weights and optimizer state come back untouched.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "base/rng.h"
#include "engine/backend.h"
#include "engine/bn_recalibrate.h"
#include "engine/graph.h"

using namespace stoke;

namespace {

constexpr int kH = 6, kW = 5, kC = 2, kN = 7, kClasses = 3, kBatches = 3;

// bn0 normalises the (normalised) input itself, so its batch statistics can be computed here exactly; bn1 sits
// behind a conv.
Graph two_bn_graph() {
  Graph g({kH, kW, kC}, "two-bn");
  int x = g.relu(g.batchnorm(g.input(), "bn0"));
  x = g.batchnorm(g.conv(x, 4, 3, 1, 1, false, "conv"), "bn1");
  g.linear(g.global_avgpool(g.relu(x)), kClasses, "fc");
  return g;
}

struct Batches {
  std::vector<std::vector<uint8_t>> px;
  std::vector<std::vector<int32_t>> labels;
  explicit Batches(uint64_t seed) {
    for (int b = 0; b < kBatches; ++b) {
      std::vector<uint8_t> p(static_cast<size_t>(kN * kH * kW * kC));
      // Each batch its own brightness, so the per-batch statistics differ and their average matters.
      for (size_t i = 0; i < p.size(); ++i)
        p[i] = static_cast<uint8_t>(40 * b + static_cast<int>(uniform_below(seed, i + 1000 * b, 120)));
      std::vector<int32_t> l(kN);
      for (int i = 0; i < kN; ++i) l[static_cast<size_t>(i)] = (i + b) % kClasses;
      px.push_back(std::move(p));
      labels.push_back(std::move(l));
    }
  }
  StepRequest request(int k) const {
    StepRequest r;
    r.batch.tag = 100 + k;
    r.batch.size = kN;
    r.batch.pixels = px[static_cast<size_t>(k)].data();
    r.batch.labels = labels[static_cast<size_t>(k)].data();
    return r;
  }
};

BackendOptions options() {
  BackendOptions o;
  o.max_batch = kN;
  o.optimizer.kind = OptimizerKind::sgd;
  o.mean = {0.3f, 0.4f};
  o.stdev = {0.2f, 0.25f};
  return o;
}

struct State {
  std::vector<float> params, buffers, opt;
  int64_t steps = 0;
};
State state_of(TrainingBackend& b) {
  State s;
  b.get_state(s.params, s.buffers, s.opt, s.steps);
  return s;
}

const float* buffer(const Graph& g, const State& s, const char* name) {
  return s.buffers.data() + g.buffers()[static_cast<size_t>(g.find_buffer(name))].offset;
}

}  // namespace

TEST(BnRecalibrate, RunningStatisticsBecomeTheAverageOfTheBatchStatistics) {
  const Graph g = two_bn_graph();
  const Batches data(5);
  std::unique_ptr<TrainingBackend> backend = make_cpu_backend(g, options());
  State init;
  init.params.resize(static_cast<size_t>(g.num_params()));
  init.buffers.resize(static_cast<size_t>(g.num_buffers()));
  g.initialize(init.params.data(), init.buffers.data(), 3);
  init.opt.assign(static_cast<size_t>(g.num_params()), 0.f);
  backend->set_state(init.params, init.buffers, init.opt, 0);
  for (int k = 0; k < kBatches; ++k) {
    StepRequest r = data.request(k);
    r.lr = 0.05f;
    backend->train_step(r);
  }
  const State trained = state_of(*backend);

  std::vector<int64_t> released;
  recalibrate_batchnorm(
      *backend, g, kBatches, [&](int k) { return data.request(k); }, [&](int64_t tag) { released.push_back(tag); });
  const State after = state_of(*backend);
  EXPECT_EQ(released, (std::vector<int64_t>{100, 101, 102}));
  EXPECT_EQ(after.params, trained.params);  // bit for bit: no update, no decay
  EXPECT_EQ(after.opt, trained.opt);
  EXPECT_EQ(after.steps, trained.steps);

  // bn0's input is the normalised batch: x = px * 1/(255 std) - mean/std, per channel, as the backend computes it.
  const BackendOptions o = options();
  const int rows = kN * kH * kW;
  double worst = 0, ema_off = 0;
  for (int c = 0; c < kC; ++c) {
    const float scale = 1.f / (255.f * o.stdev[static_cast<size_t>(c)]);
    const float shift = -o.mean[static_cast<size_t>(c)] / o.stdev[static_cast<size_t>(c)];
    double mean_avg = 0, var_avg = 0;
    for (int b = 0; b < kBatches; ++b) {
      double s = 0, s2 = 0;
      for (int r = 0; r < rows; ++r) {
        const double x =
            static_cast<float>(data.px[static_cast<size_t>(b)][static_cast<size_t>(r * kC + c)]) * scale + shift;
        s += x;
        s2 += x * x;
      }
      const double m = s / rows;
      mean_avg += m / kBatches;
      var_avg += (s2 / rows - m * m) * rows / (rows - 1) / kBatches;  // unbiased, as PyTorch's running_var
    }
    const double got_mean = buffer(g, after, "bn0.running_mean")[c], got_var = buffer(g, after, "bn0.running_var")[c];
    worst =
        std::max({worst, std::abs(got_mean - mean_avg) / std::abs(mean_avg), std::abs(got_var - var_avg) / var_avg});
    // What training left: 0.9^3 of the start (0 and 1) plus the exponential average, far from the plain one.
    ema_off = std::max(ema_off, std::abs(buffer(g, trained, "bn0.running_var")[c] - var_avg) / var_avg);
  }
  EXPECT_LT(worst, 5e-7) << "relative error of the recalibrated bn0 statistics";
  EXPECT_GT(ema_off, 0.2) << "the exponential average should be far from the batch average here";
  std::printf("recalibrated bn0: worst relative error %.1e (%.0f%% of 5e-7); the exponential average was %.0f%% off\n",
              worst, 100 * worst / 5e-7, 100 * ema_off);
}

// The result depends on the weights and the batches only: not on the running statistics before, nor on how many
// skipped-update steps (which move them, not the weights) ran before it.
TEST(BnRecalibrate, ResultDoesNotDependOnTheStatisticsBefore) {
  const Graph g = two_bn_graph();
  const Batches data(9);
  std::vector<std::vector<float>> results;
  for (int extra = 0; extra < 3; ++extra) {
    std::unique_ptr<TrainingBackend> backend = make_cpu_backend(g, options());
    State s;
    s.params.resize(static_cast<size_t>(g.num_params()));
    s.buffers.resize(static_cast<size_t>(g.num_buffers()));
    g.initialize(s.params.data(), s.buffers.data(), 4);
    for (size_t i = 0; i < s.buffers.size(); ++i) s.buffers[i] += 0.5f * static_cast<float>(extra);
    s.opt.assign(static_cast<size_t>(g.num_params()), 0.f);
    backend->set_state(s.params, s.buffers, s.opt, 0);
    for (int k = 0; k < extra; ++k) {
      StepRequest r = data.request(k);
      r.skip = true;  // moves the running statistics only
      backend->train_step(r);
    }
    recalibrate_batchnorm(
        *backend, g, kBatches, [&](int k) { return data.request(k); }, [](int64_t) {});
    results.push_back(state_of(*backend).buffers);
  }
  EXPECT_EQ(results[0], results[1]);
  EXPECT_EQ(results[0], results[2]);
  const State none = [&] {
    State s;
    s.buffers.resize(static_cast<size_t>(g.num_buffers()));
    s.params.resize(static_cast<size_t>(g.num_params()));
    g.initialize(s.params.data(), s.buffers.data(), 4);
    return s;
  }();
  EXPECT_NE(results[0], none.buffers);  // it did change them
}
