// The CUDA backend's steps with an augmentation recipe's transforms (StepRequest::transforms, copied with the batch
// and applied by cuda::augment_transform_normalize in the normalize phase) against the CPU backend's: the same losses
// and weights within the whole-model fp32 tolerance, eager and replayed as a captured CUDA graph alike. With batch
// mixing too (StepRequest::mix: mixup, cutmix and the identity in turn, so the replayed graph meets every kind).
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "engine/augment_plan.h"
#include "engine/backend.h"
#include "models/models.h"
#include "tests/gpu/gpu_test_util.h"

namespace stoke {
namespace {

constexpr int kBatch = 16, kSteps = 6;  // past the backend's 3 warm-up steps: the last ones replay a graph
const Shape3 kShape{20, 20, 3};

struct Trace {
  std::vector<float> losses, params;
};

// Step k's mixing: mixup, cutmix, none, in turn.
BatchMix mix_of(int k) {
  if (k % 3 == 0) return BatchMix{0.35f, 0, 0, 0, 0, 0};
  if (k % 3 == 1) return cutmix_box(0.6f, kShape.h, kShape.w, 3 + k, 15 - k);
  return BatchMix{};
}

Trace run(bool cuda, bool graphs, bool mixing = false) {
  const Graph g = build_model("small-cnn", kShape, 4);
  BackendOptions o;
  o.max_batch = kBatch;
  o.mean = {0.5f, 0.45f, 0.4f};
  o.stdev = {0.25f, 0.2f, 0.3f};
  o.precision = PrecisionRequest::fp32;
  o.deterministic = true;
  o.graphs = graphs;
  std::unique_ptr<TrainingBackend> be = cuda ? make_cuda_backend(g, o) : make_cpu_backend(g, o);
  std::vector<float> params(static_cast<size_t>(g.num_params())), buffers(static_cast<size_t>(g.num_buffers()));
  g.initialize(params.data(), buffers.data(), 4);
  std::vector<float> p, b, state;
  int64_t t = 0;
  be->get_state(p, b, state, t);
  be->set_state(params, buffers, state, 0);
  AugmentFlags f;  // geometry, colour and erasing; no gamma or noise, whose libm calls differ by a few ulp
  f.augment = "cifar";
  f.rotate = 20.f;
  f.zoom = "0.8:1.2";
  f.brightness = 0.3f;
  f.saturation = 0.4f;
  f.hue = 0.1f;
  const AugmentRecipe recipe = resolve_augment(f).recipe;
  Trace tr;
  for (int k = 0; k < kSteps; ++k) {
    std::vector<uint8_t> px(static_cast<size_t>(kBatch * kShape.size()));
    for (size_t i = 0; i < px.size(); ++i) px[i] = static_cast<uint8_t>((i * 29 + k * 7 + i / 13) % 251);
    std::vector<int32_t> labels;
    std::vector<int64_t> ids;
    for (int i = 0; i < kBatch; ++i) {
      labels.push_back((i + k) % 4);
      ids.push_back(k * kBatch + i);
    }
    std::vector<SampleTransform> tf(kBatch);
    draw_batch_transforms(recipe, kShape, 1, 0, kBatch, ids.data(), tf.data());
    StepRequest r;
    r.batch.tag = k;
    r.batch.size = kBatch;
    r.batch.pixels = px.data();
    r.batch.labels = labels.data();
    r.transforms = tf.data();
    if (mixing) r.mix = mix_of(k);
    r.lr = 0.02f;
    tr.losses.push_back(be->train_step(r).loss);
  }
  be->get_state(tr.params, b, state, t);
  return tr;
}

TEST(GpuAugmentStep, TransformedStepsMatchTheCpuBackend) {
  REQUIRE_GPU();
  const Trace cpu = run(false, false);
  for (bool graphs : {false, true}) {
    const Trace gpu = run(true, graphs);
    const char* what = graphs ? "augmented steps, graphs" : "augmented steps, eager";
    test::expect_model_close<float>(std::string(what) + " losses", gpu.losses, cpu.losses);
    test::expect_model_close<float>(std::string(what) + " weights", gpu.params, cpu.params);
  }
}

TEST(GpuAugmentStep, MixedStepsMatchTheCpuBackend) {
  REQUIRE_GPU();
  const Trace cpu = run(false, false, true);
  for (bool graphs : {false, true}) {
    const Trace gpu = run(true, graphs, true);
    const char* what = graphs ? "mixed steps, graphs" : "mixed steps, eager";
    test::expect_model_close<float>(std::string(what) + " losses", gpu.losses, cpu.losses);
    test::expect_model_close<float>(std::string(what) + " weights", gpu.params, cpu.params);
  }
}

}  // namespace
}  // namespace stoke
