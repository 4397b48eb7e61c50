// Optimizer steps against closed forms, learning-rate schedules against their formulas, and the checks of a run's
// optimizer settings.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "base/error.h"
#include "engine/optimizer.h"
#include "engine/training_run.h"

using namespace stoke;

namespace {
std::vector<ParamInfo> two_params() {
  ParamInfo w{"w", 0, 3, {3}, Init::zeros, 1, true};
  ParamInfo b{"b", 3, 2, {2}, Init::zeros, 1, false};
  return {w, b};
}
}  // namespace

TEST(Sgd, PlainStepIsLrTimesGradPlusDecay) {
  OptimizerConfig c;
  c.kind = OptimizerKind::sgd;
  c.momentum = 0.f;
  c.weight_decay = 0.1f;
  Optimizer opt(c, two_params(), 5);
  std::vector<float> p = {1, 2, 3, 4, 5}, g = {0.5f, -1, 2, 1, 1};
  opt.step(p.data(), g.data(), 0.1f);
  // decayed: p - lr*(g + wd*p); not decayed (bias): p - lr*g
  EXPECT_FLOAT_EQ(p[0], 1 - 0.1f * (0.5f + 0.1f * 1));
  EXPECT_FLOAT_EQ(p[1], 2 - 0.1f * (-1 + 0.1f * 2));
  EXPECT_FLOAT_EQ(p[2], 3 - 0.1f * (2 + 0.1f * 3));
  EXPECT_FLOAT_EQ(p[3], 4 - 0.1f * 1);
  EXPECT_FLOAT_EQ(p[4], 5 - 0.1f * 1);
}

TEST(Sgd, MomentumMatchesClosedFormOverThreeSteps) {
  for (bool nesterov : {false, true}) {
    OptimizerConfig c;
    c.kind = OptimizerKind::sgd;
    c.momentum = 0.9f;
    c.nesterov = nesterov;
    c.weight_decay = 0.f;
    Optimizer opt(c, two_params(), 5);
    std::vector<float> p(5, 1.f), g(5, 1.f);
    // Constant gradient 1: buf_t = 1, 1.9, 2.71; step = buf (classic) or 1 + 0.9*buf (Nesterov).
    double expect = 1.0, buf = 0.0;
    for (int t = 0; t < 3; ++t) {
      opt.step(p.data(), g.data(), 0.5f);
      buf = t == 0 ? 1.0 : 0.9 * buf + 1.0;
      expect -= 0.5 * (nesterov ? 1.0 + 0.9 * buf : buf);
      EXPECT_NEAR(p[0], expect, 1e-6) << "nesterov=" << nesterov << " t=" << t;
    }
  }
}

TEST(AdamW, MatchesClosedForm) {
  OptimizerConfig c;
  c.kind = OptimizerKind::adamw;
  c.weight_decay = 0.01f;
  Optimizer opt(c, two_params(), 5);
  std::vector<float> p = {1, -2, 0.5f, 3, -1};
  const std::vector<std::vector<float>> gs = {{0.1f, 0.2f, -0.3f, 1, 0}, {-0.5f, 0.2f, 0.1f, 2, 0.01f}};
  std::vector<double> ref(p.begin(), p.end()), m(5, 0), v(5, 0);
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  for (int t = 1; t <= 2; ++t) {
    const auto& g = gs[static_cast<size_t>(t - 1)];
    opt.step(p.data(), g.data(), static_cast<float>(lr));
    for (int i = 0; i < 5; ++i) {
      double wd = i < 3 ? 0.01 : 0.0;
      ref[i] -= lr * wd * ref[i];
      m[i] = b1 * m[i] + (1 - b1) * g[i];
      v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
      double mh = m[i] / (1 - std::pow(b1, t)), vh = v[i] / (1 - std::pow(b2, t));
      ref[i] -= lr * mh / (std::sqrt(vh) + eps);
      EXPECT_NEAR(p[i], ref[i], 1e-6) << "t=" << t << " i=" << i;
    }
  }
  // The very first AdamW step moves every parameter with a non-zero gradient by about lr (sign of g).
  EXPECT_EQ(opt.steps(), 2);
}

TEST(Optimizer, ParsesNamesAndRejectsUnknown) {
  EXPECT_EQ(parse_optimizer("adamw"), OptimizerKind::adamw);
  EXPECT_THROW(parse_optimizer("adam"), UserError);
  EXPECT_EQ(parse_schedule("onecycle"), ScheduleKind::onecycle);
  EXPECT_THROW(parse_schedule("step"), UserError);
}

TEST(Schedule, ConstantWithLinearWarmup) {
  Schedule s;
  s.kind = ScheduleKind::constant;
  s.lr = 1.f;
  s.total_steps = 100;
  s.warmup_steps = 10;
  s.warmup_start_factor = 0.1f;
  EXPECT_FLOAT_EQ(s.at(0), 0.1f);
  EXPECT_FLOAT_EQ(s.at(5), 0.1f + 0.9f * 0.5f);
  EXPECT_FLOAT_EQ(s.at(10), 1.f);
  EXPECT_FLOAT_EQ(s.at(99), 1.f);
}

TEST(Schedule, CosineGoesFromPeakToFinal) {
  Schedule s;
  s.kind = ScheduleKind::cosine;
  s.lr = 0.4f;
  s.total_steps = 100;
  s.final_factor = 0.f;
  EXPECT_FLOAT_EQ(s.at(0), 0.4f);
  EXPECT_NEAR(s.at(50), 0.2f, 1e-6);  // half way: half the peak
  EXPECT_NEAR(s.at(100), 0.f, 1e-7);
  for (int i = 1; i <= 100; ++i) EXPECT_LE(s.at(i), s.at(i - 1));
}

TEST(Schedule, OneCycleMatchesPyTorch) {
  // torch.optim.lr_scheduler.OneCycleLR(max_lr=1, total_steps=100, pct_start=0.25) gives at step 0
  // 1/25 = 0.04, its peak 1.0 at step floor(0.25*100)-1 = 24, and 1/25/1e4 = 4e-6 at step 99.
  Schedule s;
  s.kind = ScheduleKind::onecycle;
  s.lr = 1.f;
  s.total_steps = 100;
  s.pct_start = 0.25f;
  EXPECT_NEAR(s.at(0), 0.04f, 1e-7);
  EXPECT_NEAR(s.at(24), 1.f, 1e-7);
  EXPECT_NEAR(s.at(99), 4e-6f, 1e-9);
  // Half-way up: cosine midpoint of 0.04 and 1.
  EXPECT_NEAR(s.at(12), 0.04f + (1.f - 0.04f) * 0.5f, 1e-6);
  for (int i = 1; i <= 24; ++i) EXPECT_GT(s.at(i), s.at(i - 1));
  for (int i = 25; i < 100; ++i) EXPECT_LT(s.at(i), s.at(i - 1));
}

TEST(ClipGradNorm, ScalesToTheLimitAndOnlyAboveIt) {
  std::vector<float> g = {3, 4, 0, 0, 12};  // norm 13
  EXPECT_DOUBLE_EQ(clip_grad_norm(g.data(), 5, 26.0), 13.0);
  EXPECT_EQ(g, (std::vector<float>{3, 4, 0, 0, 12}));
  EXPECT_DOUBLE_EQ(clip_grad_norm(g.data(), 5, 1.3), 13.0);
  EXPECT_NEAR(g[0], 0.3f, 1e-6);
  EXPECT_NEAR(g[4], 1.2f, 1e-6);
  std::vector<float> big(300000, 1.f);  // several chunks
  EXPECT_NEAR(clip_grad_norm(big.data(), 300000, 1.0), std::sqrt(300000.0), 1e-6);
  EXPECT_NEAR(clip_grad_norm(big.data(), 300000, 1e9), 1.0, 1e-5);
}

// The library's own check of a run's settings (callers other than the CLI reach it): NaN and infinity are refused by
// name, where a check written as `x < lo || x > hi` lets NaN through.
TEST(TrainSettings, NonFiniteValuesAreRefusedByName) {
  const auto refusal = [](const TrainConfig& c) -> std::string {
    try {
      check_train_config(c);
    } catch (const UserError& e) {
      return e.what();
    }
    return "";
  };
  TrainConfig ok;
  ok.data = "somewhere";
  EXPECT_EQ(refusal(ok), "");
  const float nan = std::nanf(""), inf = INFINITY;
  struct Case {
    const char* flag;
    std::function<void(TrainConfig&, float)> set;
  };
  const std::vector<Case> cases = {
      {"--lr", [](TrainConfig& c, float v) { c.lr = v; }},
      {"--label-smoothing", [](TrainConfig& c, float v) { c.label_smoothing = v; }},
      {"--momentum", [](TrainConfig& c, float v) { c.optimizer.momentum = v; }},
      {"--weight-decay", [](TrainConfig& c, float v) { c.optimizer.weight_decay = v; }},
      {"--clip-grad-norm", [](TrainConfig& c, float v) { c.clip_grad_norm = v; }},
      {"--warmup-epochs", [](TrainConfig& c, float v) { c.warmup_epochs = v; }},
  };
  for (const Case& k : cases)
    for (float v : {nan, inf}) {
      TrainConfig c = ok;
      k.set(c, v);
      EXPECT_NE(refusal(c).find(k.flag), std::string::npos) << k.flag << " = " << v << ": " << refusal(c);
    }
}
