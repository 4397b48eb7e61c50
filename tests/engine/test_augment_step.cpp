// A CPU-backend step with transforms (StepRequest::transforms) runs engine/train_step.h's normalize phase through
// cpu::augment_transform_normalize: its loss is, bit for bit, the reference forward of the batch augmented by that op,
// and with transforms that only move pixels (transpose, flips) the whole step equals the plain step on the moved
// pixels — the weights after it included.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>
#include <thread>
#include <vector>

#include "engine/augment_plan.h"
#include "engine/backend.h"
#include "engine/cpu/executor.h"
#include "engine/graph.h"
#include "engine/step_queue.h"
#include "kernels/augment.h"
#include "kernels/softmax_ce.h"
#include "models/models.h"

namespace stoke {
namespace {

constexpr int kBatch = 6;
const Shape3 kShape{10, 10, 3};
const std::vector<float> kMean = {0.4f, 0.5f, 0.45f}, kStd = {0.3f, 0.25f, 0.2f};

struct Batch {
  std::vector<uint8_t> pixels;
  std::vector<int32_t> labels;
};

Batch make_batch() {
  Batch b;
  b.pixels.resize(static_cast<size_t>(kBatch * kShape.size()));
  for (size_t i = 0; i < b.pixels.size(); ++i) b.pixels[i] = static_cast<uint8_t>((i * 53 + i / 7) % 253);
  for (int i = 0; i < kBatch; ++i) b.labels.push_back(i % 3);
  return b;
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

struct After {
  StepResult result;
  std::vector<float> params;
};

After step(const Graph& g, const uint8_t* pixels, const int32_t* labels, const SampleTransform* transforms) {
  BackendOptions o;
  o.max_batch = kBatch;
  o.optimizer.momentum = 0.9f;
  o.mean = kMean;
  o.stdev = kStd;
  auto be = make_cpu_backend(g, o);
  const Init s = init(g);
  std::vector<float> p, b, state;
  int64_t t = 0;
  be->get_state(p, b, state, t);
  be->set_state(s.params, s.buffers, state, 0);
  StepRequest r;
  r.batch.tag = 0;
  r.batch.size = kBatch;
  r.batch.pixels = pixels;
  r.batch.labels = labels;
  r.transforms = transforms;
  r.lr = 0.05f;
  After a;
  a.result = be->train_step(r);
  be->get_state(a.params, b, state, t);
  return a;
}

TEST(AugmentStep, TheLossIsTheReferenceForwardOfTheAugmentedBatch) {
  const Graph g = small_cnn(kShape, 3, 8);
  const Batch d = make_batch();
  AugmentFlags f;
  f.augment = "monai";
  f.brightness = 0.3f;
  f.hue = 0.1f;
  f.noise = 0.05f;
  f.erase = 0.5f;
  const AugmentRecipe recipe = resolve_augment(f).recipe;
  const std::vector<int64_t> ids = {3, 14, 15, 92, 65, 35};
  std::vector<SampleTransform> t(kBatch);
  draw_batch_transforms(recipe, kShape, 5, 2, kBatch, ids.data(), t.data());

  std::vector<float> scale, shift, x(static_cast<size_t>(kBatch * kShape.size()));
  normalize_coefficients(kMean, kStd, scale, shift);
  cpu::augment_transform_normalize(kBatch, kShape.h, kShape.w, kShape.c, d.pixels.data(), t.data(), scale.data(),
                                   shift.data(), x.data());
  CpuExecutor ex(g, kBatch);
  Init s = init(g);
  const float* logits = ex.forward(kBatch, x.data(), s.params.data(), s.buffers.data(), true);
  std::vector<float> dlogits(static_cast<size_t>(kBatch * ex.outputs()));
  int64_t correct = 0;
  const float want = cpu::softmax_cross_entropy(kBatch, ex.outputs(), logits, d.labels.data(), 0.f, 1.f, nullptr,
                                                dlogits.data(), &correct);

  const After got = step(g, d.pixels.data(), d.labels.data(), t.data());
  EXPECT_EQ(got.result.loss, want);
  EXPECT_EQ(got.result.correct, correct);
  const After plain = step(g, d.pixels.data(), d.labels.data(), nullptr);
  EXPECT_NE(plain.result.loss, want);  // the transforms change the step
}

// Output (y, x) of sample k reads input pixel at(k, y, x): a transpose, both flips, or the identity.
std::vector<uint8_t> moved(const std::vector<uint8_t>& px, std::vector<SampleTransform>& t) {
  const int H = kShape.h, W = kShape.w, C = kShape.c;
  std::vector<uint8_t> out(px.size());
  t.assign(kBatch, SampleTransform{});
  for (int k = 0; k < kBatch; ++k) {
    const int kind = k % 3;
    if (kind == 1) {  // input (x, y) = (Y, X): the transpose
      const float m[6] = {0.f, 1.f, 0.f, 1.f, 0.f, 0.f};
      std::copy(m, m + 6, t[static_cast<size_t>(k)].m);
    } else if (kind == 2) {  // both flips
      const float m[6] = {-1.f, 0.f, static_cast<float>(W), 0.f, -1.f, static_cast<float>(H)};
      std::copy(m, m + 6, t[static_cast<size_t>(k)].m);
    }
    for (int y = 0; y < H; ++y)
      for (int x = 0; x < W; ++x) {
        const int sy = kind == 1 ? x : kind == 2 ? H - 1 - y : y, sx = kind == 1 ? y : kind == 2 ? W - 1 - x : x;
        for (int c = 0; c < C; ++c)
          out[static_cast<size_t>(((k * H + y) * W + x) * C + c)] =
              px[static_cast<size_t>(((k * H + sy) * W + sx) * C + c)];
      }
  }
  return out;
}

TEST(AugmentStep, PixelMovingTransformsEqualThePlainStepOnMovedPixels) {
  const Graph g = small_cnn(kShape, 3, 8);
  const Batch d = make_batch();
  std::vector<SampleTransform> t;
  const std::vector<uint8_t> px = moved(d.pixels, t);
  const After a = step(g, d.pixels.data(), d.labels.data(), t.data());
  const After b = step(g, px.data(), d.labels.data(), nullptr);
  const After c = step(g, d.pixels.data(), d.labels.data(), nullptr);
  ASSERT_TRUE(std::isfinite(a.result.loss));
  EXPECT_EQ(a.result.loss, b.result.loss);
  EXPECT_NE(a.result.loss, c.result.loss);
  ASSERT_EQ(a.params.size(), b.params.size());
  for (size_t i = 0; i < a.params.size(); ++i) ASSERT_EQ(a.params[i], b.params[i]) << "parameter " << i;
}

// The queue itself, with a compute slow enough that the caller has overwritten a released batch's transforms before
// that step computes: it must read its own copy (a queue that kept the caller's pointer sees zeros here).
TEST(AugmentStep, TheStepQueueCopiesTheTransformsBeforeTheRelease) {
  constexpr int kSteps = 4;
  std::vector<float> seen;
  StepQueue q(2, 4, 2, [&](const StepRequest& r) {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    seen.push_back(r.transforms ? r.transforms[1].brightness : -1.f);
    StepResult out;
    out.tag = r.batch.tag;
    return out;
  });
  std::vector<std::vector<SampleTransform>> t(kSteps, std::vector<SampleTransform>(2));
  const uint8_t px[8] = {};
  const int32_t labels[2] = {};
  std::vector<int64_t> released;
  std::vector<StepResult> results;
  for (int k = 0; k < kSteps; ++k) {
    t[static_cast<size_t>(k)][1].brightness = static_cast<float>(10 + k);
    StepRequest r;
    r.batch.tag = k;
    r.batch.size = 2;
    r.batch.pixels = px;
    r.batch.labels = labels;
    r.transforms = t[static_cast<size_t>(k)].data();
    q.submit(r);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // the copy completes, the compute is still asleep
    q.collect(released, results, false);
    for (int64_t tag : released) t[static_cast<size_t>(tag)][1].brightness = 0.f;
    released.clear();
  }
  q.drain();
  q.collect(released, results, false);
  EXPECT_EQ(seen, (std::vector<float>{10.f, 11.f, 12.f, 13.f}));
}

}  // namespace
}  // namespace stoke
