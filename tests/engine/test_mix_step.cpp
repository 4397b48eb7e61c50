// Batch mixing through the engine: a run's BatchMix per (seed, epoch, batch index) (engine/augment_plan.h), the CPU
// backend's step with it (normalize mixes after the transforms, the loss takes the mixed targets), and what data
// parallel does with it: each rank pairs the samples of its own slice, so 2 ranks are not 1 process once mixing is on.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>
#include <vector>

#include "engine/augment_plan.h"
#include "engine/backend.h"
#include "engine/cpu/executor.h"
#include "kernels/augment.h"
#include "kernels/mix.h"
#include "kernels/softmax_ce.h"
#include "models/models.h"
#include "tests/engine/thread_world.h"

namespace stoke {
namespace {

constexpr int kBatch = 6;
const Shape3 kShape{10, 10, 3};
const std::vector<float> kMean = {0.4f, 0.5f, 0.45f}, kStd = {0.3f, 0.25f, 0.2f};

std::vector<uint8_t> pixels() {
  std::vector<uint8_t> px(static_cast<size_t>(kBatch * kShape.size()));
  for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 53 + i / 7) % 253);
  return px;
}
const std::vector<int32_t> kLabels = {0, 1, 2, 2, 1, 0};

TEST(MixPlan, OneMixPerGlobalBatchNoneInTheLastEpochs) {
  MixRecipe r;
  EXPECT_FALSE(batch_mix(r, 0, 3, kShape, 1, 0, 0).has_value());  // a run that does not mix hands over nothing
  r.mixup_alpha = 0.4f;
  r.cutmix_alpha = 1.f;
  const std::optional<BatchMix> a = batch_mix(r, 1, 3, kShape, 7, 1, 4);
  ASSERT_TRUE(a.has_value());
  const BatchMix want = draw_batch_mix(r, kShape.h, kShape.w, mix_key(7, 1, 4));
  EXPECT_EQ(a->lam, want.lam);
  EXPECT_EQ(a->cutmix, want.cutmix);
  EXPECT_EQ(a->x0, want.x0);
  int differ = 0;
  for (int64_t index = 0; index < 8; ++index)
    differ += batch_mix(r, 1, 3, kShape, 7, 1, index)->lam != batch_mix(r, 1, 3, kShape, 7, 0, index)->lam;
  EXPECT_EQ(differ, 8);                                                     // the epoch is part of the key
  const std::optional<BatchMix> off = batch_mix(r, 1, 3, kShape, 7, 2, 4);  // epoch 2 of 3 is the last one
  ASSERT_TRUE(off.has_value());
  EXPECT_EQ(off->lam, 1.f);
  EXPECT_EQ(off->cutmix, 0);
}

struct Init {
  std::vector<float> params, buffers;
};
Init init(const Graph& g) {
  Init s{std::vector<float>(static_cast<size_t>(g.num_params())),
         std::vector<float>(static_cast<size_t>(g.num_buffers()))};
  g.initialize(s.params.data(), s.buffers.data(), 9);
  return s;
}

// One step of `n` samples on a fresh CPU backend (of a world when comm is set).
StepResult step(const Graph& g, int n, const uint8_t* px, const int32_t* labels, const SampleTransform* t,
                std::optional<BatchMix> mix, dist::Communicator* comm = nullptr) {
  BackendOptions o;
  o.max_batch = n;
  o.mean = kMean;
  o.stdev = kStd;
  o.label_smoothing = 0.1f;
  o.comm = comm;
  auto be = make_cpu_backend(g, o);
  const Init s = init(g);
  std::vector<float> p, b, state;
  int64_t steps = 0;
  be->get_state(p, b, state, steps);
  be->set_state(s.params, s.buffers, state, 0);
  StepRequest r;
  r.batch.tag = 0;
  r.batch.size = n;
  r.batch.pixels = px;
  r.batch.labels = labels;
  r.transforms = t;
  r.mix = mix;
  r.lr = 0.05f;
  return be->train_step(r);
}

// The reference of a mixed step's loss: transform, normalise, mix, forward, mixed cross-entropy.
float reference_loss(const Graph& g, int n, const uint8_t* px, const int32_t* labels, const SampleTransform* t,
                     const BatchMix& mix, int64_t* correct) {
  std::vector<float> scale, shift, x(static_cast<size_t>(n * kShape.size()));
  normalize_coefficients(kMean, kStd, scale, shift);
  if (t)
    cpu::augment_transform_normalize(n, kShape.h, kShape.w, kShape.c, px, t, scale.data(), shift.data(), x.data());
  else
    cpu::augment_normalize(n, kShape.h, kShape.w, kShape.c, px, nullptr, scale.data(), shift.data(), x.data());
  cpu::mix_batch(n, kShape.h, kShape.w, kShape.c, &mix, x.data());
  CpuExecutor ex(g, n);
  Init s = init(g);
  const float* logits = ex.forward(n, x.data(), s.params.data(), s.buffers.data(), true);
  return cpu::softmax_cross_entropy_mixed(n, ex.outputs(), logits, labels, &mix, 0.1f, 1.f, nullptr, nullptr, correct);
}

TEST(MixStep, TheLossIsTheReferenceOfTheTransformedThenMixedBatch) {
  const Graph g = small_cnn(kShape, 3, 8);
  const std::vector<uint8_t> px = pixels();
  AugmentRecipe recipe;
  recipe.rotate_deg = {-20.f, 20.f};
  recipe.hflip_p = 0.5f;
  const std::vector<int64_t> ids = {3, 14, 15, 92, 65, 35};
  std::vector<SampleTransform> t(kBatch);
  draw_batch_transforms(recipe, kShape, 5, 2, kBatch, ids.data(), t.data());
  for (const BatchMix& m : {BatchMix{0.3f, 0, 0, 0, 0, 0}, cutmix_box(0.5f, kShape.h, kShape.w, 4, 6)}) {
    int64_t correct = 0;
    const float want = reference_loss(g, kBatch, px.data(), kLabels.data(), t.data(), m, &correct);
    const StepResult got = step(g, kBatch, px.data(), kLabels.data(), t.data(), m);
    EXPECT_EQ(got.loss, want) << (m.cutmix ? "cutmix" : "mixup");
    EXPECT_EQ(got.correct, correct);
    EXPECT_NE(step(g, kBatch, px.data(), kLabels.data(), t.data(), std::nullopt).loss, want);
  }
  // The identity mix (a batch a mixing run leaves unmixed) is the plain step bit for bit.
  EXPECT_EQ(step(g, kBatch, px.data(), kLabels.data(), t.data(), BatchMix{}).loss,
            step(g, kBatch, px.data(), kLabels.data(), t.data(), std::nullopt).loss);
}

// Two ranks, each with half of the batch and the same BatchMix (drawn per global batch): each pairs the samples of its
// own slice (timm under DDP), so the world's loss is the mean of the two slices' mixed losses. Without batch norm and
// without mixing 2 ranks give 1 process's loss (to float summation); with mixing they do not, as the pairs differ.
TEST(MixStep, DataParallelRanksPairWithinTheirSlice) {
  const Graph g = small_cnn(kShape, 3, 8, /*batchnorm=*/false);
  const std::vector<uint8_t> px = pixels();
  const int half = kBatch / 2;
  auto world_loss = [&](std::optional<BatchMix> mix) {
    test::ThreadWorld world(2);
    StepResult res[2];
    world.run([&](int r) {
      res[r] =
          step(g, half, px.data() + r * half * kShape.size(), kLabels.data() + r * half, nullptr, mix, &world.rank(r));
    });
    EXPECT_EQ(res[0].loss, res[1].loss);  // every rank reports the global batch's
    return res[0].loss;
  };
  const BatchMix m{0.3f, 0, 0, 0, 0, 0};
  float slices = 0.f;
  for (int r = 0; r < 2; ++r)
    slices +=
        reference_loss(g, half, px.data() + r * half * kShape.size(), kLabels.data() + r * half, nullptr, m, nullptr) *
        static_cast<float>(half);
  const float two = world_loss(m), one = step(g, kBatch, px.data(), kLabels.data(), nullptr, m).loss;
  EXPECT_NEAR(two, slices / kBatch, 1e-6f);
  EXPECT_GT(std::fabs(two - one), 1e-3f) << "pairs across the whole batch";
  EXPECT_NEAR(world_loss(std::nullopt), step(g, kBatch, px.data(), kLabels.data(), nullptr, std::nullopt).loss, 1e-6f);
}

}  // namespace
}  // namespace stoke
