// --ema and --tta flip on the CPU backend (the reference): the EMA after each step is the recurrence computed here
// from the trained weights the backend hands back, over the parameters and the batch-norm statistics, and a skipped
// update leaves it alone; evaluation on it is evaluation of those weights; a mirrored evaluation mirrors, and TTA's
// probabilities are the mean of the two passes' softmaxes computed here from known weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "base/rng.h"
#include "engine/backend.h"
#include "engine/bn_recalibrate.h"
#include "engine/graph.h"
#include "engine/optimizer.h"
#include "engine/tta.h"
#include "tests/engine/ema_reference.h"

using namespace stoke;
using stoke::test::reference_ema;
using stoke::test::warmup_decay;

namespace {

constexpr int kH = 5, kW = 6, kC = 1, kN = 6, kClasses = 3;
constexpr float kDecay = 0.75f;  // far from 1: every step moves the EMA by a visible amount

Graph bn_graph() {
  Graph g({kH, kW, kC}, "ema-test");
  int x = g.relu(g.batchnorm(g.conv(g.input(), 4, 3, 1, 1, false, "conv"), "bn"));
  g.linear(g.global_avgpool(x), kClasses, "fc");
  return g;
}

std::vector<uint8_t> pixels(uint64_t seed, int n) {
  std::vector<uint8_t> p(static_cast<size_t>(n * kH * kW * kC));
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(uniform_below(seed, i, 256));
  return p;
}

BackendOptions options(float ema) {
  BackendOptions o;
  o.max_batch = kN;
  o.optimizer.kind = OptimizerKind::adamw;
  o.mean = {0.5f};
  o.stdev = {0.25f};
  o.ema_decay = ema;
  return o;
}

struct State {
  std::vector<float> params, buffers, opt;
  int64_t steps = 0;
};

// The graph's seeded weights, zero optimizer state, set on the backend as step 0.
State start_state(const Graph& g, uint64_t seed, TrainingBackend& b) {
  State s;
  s.params.resize(static_cast<size_t>(g.num_params()));
  s.buffers.resize(static_cast<size_t>(g.num_buffers()));
  g.initialize(s.params.data(), s.buffers.data(), seed);
  s.opt.assign(2 * s.params.size(), 0.f);
  b.set_state(s.params, s.buffers, s.opt, 0);
  return s;
}

}  // namespace

TEST(Ema, WarmupDecayIsTimmsScheduleClampedToTheDecay) {
  EXPECT_EQ(ema_decay_at(1, 0.9999f, true), 0.f) << "the first update copies the weights";
  EXPECT_EQ(ema_decay_at(2, 0.9999f, true), static_cast<float>(1.0 - std::cbrt(0.25)));
  EXPECT_EQ(ema_decay_at(8, 0.9999f, true), 0.75f);  // 8^(-2/3) = 1/4
  EXPECT_EQ(ema_decay_at(27, 0.9999f, true), static_cast<float>(1.0 - 1.0 / 9.0));
  EXPECT_EQ(ema_decay_at(27, 0.8f, true), 0.8f) << "clamped to --ema's decay";
  EXPECT_EQ(ema_decay_at(int64_t{1} << 40, 0.9999f, true), 0.9999f);
  for (const int64_t t : {int64_t{1}, int64_t{2}, int64_t{1000}}) EXPECT_EQ(ema_decay_at(t, 0.99f, false), 0.99f);
  for (int64_t t = 1; t < 5000; t += 7) ASSERT_EQ(ema_decay_at(t, 0.999f, true), warmup_decay(t, 0.999f)) << t;
}

// The decay follows the count of applied updates: a skipped step does not count, and a backend given the state
// (optimizer steps included) and the EMA of another goes on exactly as that one would have: a resume.
TEST(Ema, WarmupCountsAppliedUpdatesAndARestoredStateGoesOnWithTheCount) {
  constexpr float kLong = 0.9f;  // reached at update 32: every step here is in the warm-up
  const Graph g = bn_graph();
  BackendOptions o = options(kLong);
  o.ema_warmup = true;
  auto b = make_cpu_backend(g, o);
  State s = start_state(g, 8, *b);
  std::vector<float> ref_p = s.params, ref_b = s.buffers;
  const std::vector<int32_t> labels = {0, 1, 2, 0, 1, 2};
  int64_t applied = 0;
  for (int k = 0; k < 7; ++k) {
    if (k == 4) {  // a resume: a new backend from the state and the EMA
      std::vector<float> ep, eb;
      b->get_state(s.params, s.buffers, s.opt, s.steps);
      b->get_ema(ep, eb);
      b = make_cpu_backend(g, o);
      b->set_state(s.params, s.buffers, s.opt, s.steps);
      b->set_ema(ep, eb);
    }
    const std::vector<uint8_t> px = pixels(500 + k, kN);
    const bool skip = k == 1;
    ASSERT_EQ(b->train_step(kN, px.data(), labels.data(), nullptr, 0.05f, skip).applied, !skip);
    b->get_state(s.params, s.buffers, s.opt, s.steps);
    if (!skip) {
      ++applied;
      reference_ema(ref_p, s.params, warmup_decay(applied, kLong));
      reference_ema(ref_b, s.buffers, warmup_decay(applied, kLong));
    }
    std::vector<float> ema_p, ema_b;
    b->get_ema(ema_p, ema_b);
    ASSERT_EQ(s.steps, applied);
    ASSERT_EQ(ema_p, ref_p) << "step " << k << ", update " << applied;
    ASSERT_EQ(ema_b, ref_b) << "step " << k << ", update " << applied;
    if (applied == 1) {
      EXPECT_EQ(ema_p, s.params) << "decay 0: the first update copies the weights";
    }
  }
}

TEST(Ema, EveryAppliedStepMovesTheAverageOfWeightsAndStatisticsAndASkippedOneDoesNot) {
  const Graph g = bn_graph();
  auto b = make_cpu_backend(g, options(kDecay));
  State s = start_state(g, 7, *b);
  std::vector<float> ref_p = s.params, ref_b = s.buffers;  // the EMA starts at the first weights (timm's deepcopy)
  const std::vector<int32_t> labels = {0, 1, 2, 0, 1, 2};
  for (int k = 0; k < 4; ++k) {
    const std::vector<uint8_t> px = pixels(100 + k, kN);
    const bool skip = k == 2;
    const StepResult r = b->train_step(kN, px.data(), labels.data(), nullptr, 0.05f, skip);
    ASSERT_EQ(r.applied, !skip);
    b->get_state(s.params, s.buffers, s.opt, s.steps);
    if (!skip) {
      reference_ema(ref_p, s.params, kDecay);
      reference_ema(ref_b, s.buffers, kDecay);
    }
    std::vector<float> ema_p, ema_b;
    b->get_ema(ema_p, ema_b);
    ASSERT_EQ(ema_p, ref_p) << "step " << k;
    ASSERT_EQ(ema_b, ref_b) << "step " << k << ": the running statistics are averaged too";
    EXPECT_NE(ema_p, s.params) << "the EMA lags the trained weights";
  }
}

TEST(Ema, EvaluationOnTheEmaIsEvaluationOfItsWeightsAndLeavesTheTrainedOnesInPlace) {
  const Graph g = bn_graph();
  auto b = make_cpu_backend(g, options(kDecay));
  State s = start_state(g, 3, *b);
  const std::vector<int32_t> labels = {0, 1, 2, 0, 1, 2};
  for (int k = 0; k < 3; ++k) {
    const std::vector<uint8_t> px = pixels(200 + k, kN);
    b->train_step(kN, px.data(), labels.data(), nullptr, 0.05f);
  }
  std::vector<float> ema_p, ema_b;
  b->get_ema(ema_p, ema_b);
  b->get_state(s.params, s.buffers, s.opt, s.steps);
  // A plain backend holding the EMA as its weights is the reference of evaluation on it.
  auto plain = make_cpu_backend(g, options(0.f));
  plain->set_state(ema_p, ema_b, s.opt, s.steps);
  const std::vector<uint8_t> px = pixels(300, kN);
  float loss = 0, want_loss = 0;
  const float* want = plain->eval_batch(kN, px.data(), labels.data(), &want_loss);
  const std::vector<float> expected(want, want + kN * kClasses);
  b->use_ema(true);
  const float* got = b->eval_batch(kN, px.data(), labels.data(), &loss);
  EXPECT_EQ(std::vector<float>(got, got + kN * kClasses), expected);
  EXPECT_EQ(loss, want_loss);
  b->use_ema(false);
  got = b->eval_batch(kN, px.data(), labels.data(), &loss);
  EXPECT_NE(std::vector<float>(got, got + kN * kClasses), expected) << "use_ema(false) evaluates the trained weights";
  State after;
  b->get_state(after.params, after.buffers, after.opt, after.steps);
  EXPECT_EQ(after.params, s.params);
  EXPECT_EQ(after.buffers, s.buffers);
}

// --bn-recalibrate with --ema: the EMA's statistics become those a plain backend holding the EMA's weights
// recalibrates to from the same batches (swa_utils.update_bn on the averaged model); its parameters stay.
TEST(Ema, RecalibrationRecomputesTheEmasStatisticsUnderItsOwnWeights) {
  const Graph g = bn_graph();
  auto b = make_cpu_backend(g, options(kDecay));
  State s = start_state(g, 5, *b);
  const std::vector<int32_t> labels = {0, 1, 2, 0, 1, 2};
  std::vector<std::vector<uint8_t>> px;
  for (int k = 0; k < 5; ++k) px.push_back(pixels(400 + k, kN));
  for (int k = 0; k < 3; ++k) b->train_step(kN, px[static_cast<size_t>(k)].data(), labels.data(), nullptr, 0.05f);
  std::vector<float> ema_p, ema_b;
  b->get_ema(ema_p, ema_b);
  b->get_state(s.params, s.buffers, s.opt, s.steps);
  auto next = [&](int k) {
    StepRequest r;
    r.batch.tag = k;
    r.batch.size = kN;
    r.batch.pixels = px[static_cast<size_t>(3 + k)].data();
    r.batch.labels = labels.data();
    return r;
  };
  auto plain = make_cpu_backend(g, options(0.f));
  plain->set_state(ema_p, ema_b, s.opt, s.steps);
  recalibrate_batchnorm(*plain, g, 2, next, [](int64_t) {});
  State want;
  plain->get_state(want.params, want.buffers, want.opt, want.steps);
  recalibrate_batchnorm(
      *b, g, 2, next, [](int64_t) {}, true);
  std::vector<float> got_p, got_b;
  b->get_ema(got_p, got_b);
  EXPECT_EQ(got_p, ema_p);
  EXPECT_EQ(got_b, want.buffers);
  EXPECT_NE(got_b, ema_b) << "the averaged statistics were replaced";
  State after;
  b->get_state(after.params, after.buffers, after.opt, after.steps);
  EXPECT_EQ(after.params, s.params);
}

// A linear classifier straight on the pixels with known weights: class 0 looks at the left half, class 1 at the right
// half, class 2 at the top row. Mirroring swaps classes 0 and 1, so the mirrored pass really differs.
TEST(Tta, FlipAveragesTheSoftmaxOfTheImageAndOfItsMirror) {
  Graph g({kH, kW, kC}, "tta-test");
  g.linear(g.input(), kClasses, "fc");
  BackendOptions o = options(0.f);
  o.mean = {0.f};
  o.stdev = {1.f};  // the input is pixel / 255
  auto b = make_cpu_backend(g, o);
  std::vector<float> params(static_cast<size_t>(g.num_params()), 0.f), buffers, opt(2 * params.size(), 0.f);
  const ParamInfo& w = g.params()[static_cast<size_t>(g.find_param("fc.weight"))];
  const ParamInfo& bias = g.params()[static_cast<size_t>(g.find_param("fc.bias"))];
  auto weight = [&](int cls, int y, int x) -> float& {
    return params[static_cast<size_t>(w.offset + cls * kH * kW + y * kW + x)];
  };
  for (int y = 0; y < kH; ++y)
    for (int x = 0; x < kW; ++x) {
      weight(0, y, x) = x < kW / 2 ? 0.9f : -0.2f;
      weight(1, y, x) = x >= kW / 2 ? 0.7f : 0.1f;
      weight(2, y, x) = y == 0 ? 1.3f : 0.f;
    }
  params[static_cast<size_t>(bias.offset + 2)] = -0.4f;
  b->set_state(params, buffers, opt, 0);

  const std::vector<uint8_t> px = pixels(11, kN);
  const std::vector<int32_t> labels = {0, 1, 2, 2, 1, 0};
  // The reference, written out here: logits of the image and of its mirror from the known weights.
  std::vector<double> expected(static_cast<size_t>(kN * kClasses));
  double expected_loss = 0;
  for (int i = 0; i < kN; ++i) {
    double p[2][kClasses];
    for (int m = 0; m < 2; ++m) {
      double z[kClasses], sum = 0;
      for (int c = 0; c < kClasses; ++c) {
        z[c] = params[static_cast<size_t>(bias.offset + c)];
        for (int y = 0; y < kH; ++y)
          for (int x = 0; x < kW; ++x) {
            const int sx = m ? kW - 1 - x : x;
            z[c] += weight(c, y, x) * (px[static_cast<size_t>((i * kH + y) * kW + sx)] / 255.0);
          }
      }
      for (int c = 0; c < kClasses; ++c) sum += std::exp(z[c]);
      for (int c = 0; c < kClasses; ++c) p[m][c] = std::exp(z[c]) / sum;
    }
    for (int c = 0; c < kClasses; ++c) expected[static_cast<size_t>(i * kClasses + c)] = 0.5 * (p[0][c] + p[1][c]);
    expected_loss -= std::log(expected[static_cast<size_t>(i * kClasses + labels[static_cast<size_t>(i)])]);
    EXPECT_GT(std::fabs(p[0][0] - p[1][0]), 1e-3)
        << "the mirror must change the prediction for the test to mean anything";
  }
  expected_loss /= kN;

  std::vector<float> scratch;
  float loss = 0;
  const float* logits = eval_logits(*b, kN, kClasses, px.data(), labels.data(), true, &loss, scratch);
  const std::vector<double> got = softmax_rows(logits, kN, kClasses);
  for (size_t j = 0; j < got.size(); ++j) EXPECT_NEAR(got[j], expected[j], 2e-6) << "row " << j / kClasses;
  EXPECT_NEAR(loss, expected_loss, 1e-5);
  // Without TTA: the image alone (the check above is not passing by accident of equal passes).
  const std::vector<double> plain =
      softmax_rows(eval_logits(*b, kN, kClasses, px.data(), labels.data(), false, &loss, scratch), kN, kClasses);
  EXPECT_GT(std::fabs(plain[0] - expected[0]), 1e-4);
}
