// Fine-tuning controls on the CPU backend (engine/init_weights.h fine_tune_plan, BackendOptions::lr_mult and
// bn_eval): a frozen backbone is bit-identical after steps with its optimizer state untouched, a frozen batch norm
// keeps its statistics and trains as eval mode computes, a backbone lr multiplier scales the update, and a frozen
// backbone's backward gives the classifier the full backward's gradient while skipping the rest.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <vector>

#include "base/rng.h"
#include "engine/backend.h"
#include "engine/cpu/executor.h"
#include "engine/graph.h"
#include "engine/init_weights.h"
#include "models/models.h"

using namespace stoke;

namespace {

constexpr int kH = 6, kW = 5, kC = 2, kN = 7, kClasses = 3;

Graph small_graph() {
  Graph g({kH, kW, kC}, "freeze");
  int x = g.relu(g.batchnorm(g.conv(g.input(), 4, 3, 1, 1, true, "conv0"), "bn0"));
  x = g.relu(g.batchnorm(g.conv(x, 5, 3, 2, 1, false, "conv1"), "bn1"));
  g.linear(g.global_avgpool(x), kClasses, "fc");
  return g;
}

struct Data {
  std::vector<uint8_t> px;
  std::vector<int32_t> labels;
  explicit Data(uint64_t seed, int n = kN, int sample = kH * kW * kC) {
    px.resize(static_cast<size_t>(n * sample));
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>(uniform_below(seed, i, 256));
    for (int i = 0; i < n; ++i) labels.push_back(i % kClasses);
  }
  StepRequest request(float lr) const {
    StepRequest r;
    r.batch.size = static_cast<int>(labels.size());
    r.batch.pixels = px.data();
    r.batch.labels = labels.data();
    r.lr = lr;
    return r;
  }
};

struct State {
  std::vector<float> params, buffers, opt;
  int64_t steps = 0;
};

BackendOptions options(OptimizerKind kind, const FineTunePlan& plan) {
  BackendOptions o;
  o.max_batch = kN;
  o.optimizer.kind = kind;
  o.optimizer.weight_decay = 0.05f;  // large enough that a decayed frozen weight would move
  o.mean = {0.45f, 0.5f};
  o.stdev = {0.25f, 0.2f};
  o.lr_mult = plan.lr_mult;
  o.bn_eval = plan.bn_eval;
  return o;
}

// Random parameters, non-trivial running statistics and optimizer state, and a step count past the first (so
// SGD's momentum and AdamW's moments are read, not just written).
State start_state(const Graph& g, OptimizerKind kind) {
  State s;
  s.params.resize(static_cast<size_t>(g.num_params()));
  s.buffers.resize(static_cast<size_t>(g.num_buffers()));
  g.initialize(s.params.data(), s.buffers.data(), 7);
  for (size_t i = 0; i < s.buffers.size(); ++i) s.buffers[i] += 0.1f * static_cast<float>(uniform_below(3, i, 10));
  s.opt.resize(static_cast<size_t>(g.num_params()) * (kind == OptimizerKind::adamw ? 2 : 1));
  for (size_t i = 0; i < s.opt.size(); ++i) s.opt[i] = 0.01f * static_cast<float>(uniform_below(4, i, 10));
  s.steps = 3;
  return s;
}

State run(const Graph& g, const BackendOptions& o, const State& start, int steps, float lr) {
  std::unique_ptr<TrainingBackend> b = make_cpu_backend(g, o);
  b->set_state(start.params, start.buffers, start.opt, start.steps);
  for (int k = 0; k < steps; ++k) {
    const Data d(11 + k);
    EXPECT_TRUE(b->train_step(d.request(lr)).applied);
  }
  State s;
  b->get_state(s.params, s.buffers, s.opt, s.steps);
  return s;
}

// Elements [offset, offset + size) of v for parameter `name` (set = 0: the parameter's own, 1: AdamW's v).
std::vector<float> slice(const Graph& g, const std::vector<float>& v, const char* name, int set = 0) {
  const ParamInfo& p = g.params()[static_cast<size_t>(g.find_param(name))];
  const auto* at = v.data() + set * g.num_params() + p.offset;
  return {at, at + p.size};
}

void frozen_backbone_stays(OptimizerKind kind) {
  const Graph g = small_graph();
  const FineTunePlan plan = fine_tune_plan(g, Freeze::backbone, false, 1.f);
  const State start = start_state(g, kind);
  const State after = run(g, options(kind, plan), start, 3, 0.1f);
  const int sets = kind == OptimizerKind::adamw ? 2 : 1;
  for (const char* name : {"conv0.weight", "conv0.bias", "bn0.weight", "bn0.bias", "conv1.weight", "bn1.weight"}) {
    EXPECT_EQ(slice(g, after.params, name), slice(g, start.params, name)) << name << " moved";
    for (int set = 0; set < sets; ++set)
      EXPECT_EQ(slice(g, after.opt, name, set), slice(g, start.opt, name, set)) << name << "'s optimizer state";
  }
  EXPECT_EQ(after.buffers, start.buffers) << "a frozen backbone's batch-norm statistics moved";
  for (const char* name : {"fc.weight", "fc.bias"}) {
    EXPECT_NE(slice(g, after.params, name), slice(g, start.params, name))
        << "the classifier " << name << " did not train";
    EXPECT_NE(slice(g, after.opt, name), slice(g, start.opt, name)) << name << "'s optimizer state";
  }
  EXPECT_EQ(after.steps, start.steps + 3);
}

}  // namespace

TEST(Freeze, BackboneIsBitIdenticalAfterSgdMomentumSteps) { frozen_backbone_stays(OptimizerKind::sgd); }
TEST(Freeze, BackboneIsBitIdenticalAfterAdamwSteps) { frozen_backbone_stays(OptimizerKind::adamw); }

TEST(Freeze, PlanFreezesAllButTheClassifier) {
  const Graph g = small_graph();
  const FineTunePlan p = fine_tune_plan(g, Freeze::backbone, false, 1.f);
  int trained = 0;
  for (size_t i = 0; i < p.lr_mult.size(); ++i) trained += p.lr_mult[i] != 0.f;
  EXPECT_EQ(trained, 2);  // fc.weight, fc.bias
  EXPECT_EQ(p.lr_mult[static_cast<size_t>(g.find_param("fc.weight"))], 1.f);
  const FineTunePlan m = fine_tune_plan(g, Freeze::none, false, 0.1f);
  EXPECT_EQ(m.lr_mult[static_cast<size_t>(g.find_param("conv1.weight"))], 0.1f);
  EXPECT_EQ(m.lr_mult[static_cast<size_t>(g.find_param("fc.bias"))], 1.f);
  EXPECT_TRUE(fine_tune_plan(g, Freeze::none, false, 1.f).trivial());
  EXPECT_FALSE(fine_tune_plan(g, Freeze::none, true, 1.f).trivial());
}

TEST(Freeze, FrozenBatchNormKeepsItsStatisticsAndTrainsAsEvalMode) {
  const Graph g = small_graph();
  const FineTunePlan plan = fine_tune_plan(g, Freeze::none, /*freeze_bn=*/true, 1.f);
  const BackendOptions o = options(OptimizerKind::sgd, plan);
  const State start = start_state(g, OptimizerKind::sgd);
  const Data d(11);
  std::unique_ptr<TrainingBackend> b = make_cpu_backend(g, o);
  b->set_state(start.params, start.buffers, start.opt, start.steps);
  float eval_loss = 0;
  b->eval_batch(kN, d.px.data(), d.labels.data(), &eval_loss);
  const StepResult r = b->train_step(d.request(0.1f));
  EXPECT_EQ(r.loss, eval_loss) << "the training forward of a frozen batch norm is its eval forward";
  State after;
  b->get_state(after.params, after.buffers, after.opt, after.steps);
  EXPECT_EQ(after.buffers, start.buffers) << "running statistics updated";
  for (const char* name : {"bn0.weight", "bn1.bias", "conv0.weight"})  // gamma, beta and what lies before still train
    EXPECT_NE(slice(g, after.params, name), slice(g, start.params, name)) << name;
}

// The eval-mode batch norm's backward (kernels/batchnorm_cpu.cpp) against central differences of the loss, for a
// weight behind the batch norms (through dx) and for gamma.
TEST(Freeze, FrozenBatchNormBackwardMatchesFiniteDifferences) {
  const Graph g = small_graph();
  const FineTunePlan plan = fine_tune_plan(g, Freeze::none, true, 1.f);
  const State s = start_state(g, OptimizerKind::sgd);
  CpuExecutor ex(g, kN);
  ex.set_fine_tune(plan.lr_mult, plan.bn_eval);
  std::vector<float> x(static_cast<size_t>(kN * kH * kW * kC));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(uniform_below(9, i, 1000)) / 500.f - 1.f;
  std::vector<float> w(static_cast<size_t>(kN * kClasses));  // loss = sum(w * logits): dlogits = w
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(uniform_below(8, i, 100)) / 50.f - 1.f;
  std::vector<float> params = s.params, buffers = s.buffers;
  auto loss = [&]() {
    const float* y = ex.forward(kN, x.data(), params.data(), buffers.data(), true);
    double l = 0;
    for (size_t i = 0; i < w.size(); ++i) l += double{w[i]} * y[i];
    return l;
  };
  loss();
  std::vector<float> grads(params.size(), 0.f);
  ex.backward(params.data(), grads.data(), w.data());
  double worst = 0;
  for (const char* name : {"conv0.weight", "bn0.weight", "bn1.bias"}) {
    const ParamInfo& p = g.params()[static_cast<size_t>(g.find_param(name))];
    for (int64_t k = 0; k < std::min<int64_t>(p.size, 6); ++k) {
      float& v = params[static_cast<size_t>(p.offset + k)];
      const float v0 = v, h = 2e-4f;  // small: a larger step crosses ReLU kinks behind bn1
      v = v0 + h;
      const double up = loss();
      v = v0 - h;
      const double down = loss();
      v = v0;
      const double fd = (up - down) / (2.0 * h), an = grads[static_cast<size_t>(p.offset + k)];
      worst = std::max(worst, std::abs(fd - an) / std::max(1.0, std::abs(fd)));
    }
  }
  EXPECT_LT(worst, 1e-4);
  std::printf("eval-mode batch norm backward vs central differences: worst %.1e (%.0f%% of 1e-4)\n", worst,
              100 * worst / 1e-4);
}

TEST(Freeze, BackboneLrMultiplierScalesTheUpdate) {
  const Graph g = small_graph();
  const float F = 0.25f, lr = 0.1f;
  State start = start_state(g, OptimizerKind::sgd);
  start.steps = 0;  // the first step: buf = g, so the update is lr * (g + m * g) in closed form
  const State full = run(g, options(OptimizerKind::sgd, fine_tune_plan(g, Freeze::none, false, 1.f)), start, 1, lr);
  const State mult = run(g, options(OptimizerKind::sgd, fine_tune_plan(g, Freeze::none, false, F)), start, 1, lr);
  double worst = 0, moved = 0;
  for (const char* name : {"conv0.weight", "bn1.weight", "conv1.weight"}) {
    const auto p0 = slice(g, start.params, name), p1 = slice(g, full.params, name), pf = slice(g, mult.params, name);
    for (size_t i = 0; i < p0.size(); ++i) {
      const double d1 = double{p0[i]} - p1[i], df = double{p0[i]} - pf[i];
      worst = std::max(worst, std::abs(df - F * d1) / (std::abs(F * d1) + 1e-6));
      moved = std::max(moved, std::abs(d1));
    }
  }
  EXPECT_GT(moved, 1e-4);
  EXPECT_LT(worst, 1e-2) << "the backbone's update is not F times the unscaled one";
  EXPECT_EQ(slice(g, mult.params, "fc.weight"), slice(g, full.params, "fc.weight")) << "the classifier's lr changed";
  std::printf("lr multiplier %.2f: worst relative difference from F x the full update %.1e\n", F, worst);
}

// The classifier's gradient is the full backward's, bit for bit; the backbone gets none (its dW is not computed).
TEST(Freeze, FrozenBackboneBackwardGivesTheClassifierItsFullGradient) {
  const Graph g = small_graph();
  const FineTunePlan plan = fine_tune_plan(g, Freeze::backbone, false, 1.f);
  const State s = start_state(g, OptimizerKind::sgd);
  std::vector<float> x(static_cast<size_t>(kN * kH * kW * kC)), dy(static_cast<size_t>(kN * kClasses));
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(uniform_below(9, i, 1000)) / 500.f - 1.f;
  for (size_t i = 0; i < dy.size(); ++i) dy[i] = static_cast<float>(uniform_below(8, i, 100)) / 50.f - 1.f;
  auto grads_of = [&](bool frozen, std::vector<float> mult = {}) {
    CpuExecutor ex(g, kN);
    if (frozen)
      ex.set_fine_tune(mult.empty() ? plan.lr_mult : mult, {});  // training-mode forwards: the same activations
    std::vector<float> buffers = s.buffers, grads(s.params.size(), 0.f);
    ex.forward(kN, x.data(), s.params.data(), buffers.data(), true);
    ex.backward(s.params.data(), grads.data(), dy.data());
    return grads;
  };
  const std::vector<float> full = grads_of(false), frozen = grads_of(true);
  for (const char* name : {"fc.weight", "fc.bias"}) EXPECT_EQ(slice(g, frozen, name), slice(g, full, name)) << name;
  for (const char* name : {"conv0.weight", "bn0.weight", "conv1.weight", "bn1.bias"}) {
    EXPECT_NE(slice(g, full, name), std::vector<float>(slice(g, full, name).size(), 0.f)) << name;
    EXPECT_EQ(slice(g, frozen, name), std::vector<float>(slice(g, full, name).size(), 0.f))
        << name << " got a gradient";
  }
  // conv1 alone frozen: backward passes through it (conv0 still trains) but computes no dW for it.
  std::vector<float> mult(g.params().size(), 1.f);
  mult[static_cast<size_t>(g.find_param("conv1.weight"))] = 0.f;
  const std::vector<float> middle = grads_of(true, mult);
  EXPECT_EQ(slice(g, middle, "conv1.weight"), std::vector<float>(slice(g, full, "conv1.weight").size(), 0.f));
  EXPECT_EQ(slice(g, middle, "conv0.weight"), slice(g, full, "conv0.weight"));
}
